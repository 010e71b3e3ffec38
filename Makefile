# Two commands on a fresh machine:
#   make run    create .venv, install newsmon, run the daemon with config/newsmon.yaml
#   make test   create .venv, install newsmon with its test tools, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= config/newsmon.yaml
STAMP   = $(VENV)/.installed

.PHONY: run once check test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,ru,langdetect,postgresql,embeddings]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/newsmon --config $(CONFIG) run

once: $(STAMP)
	$(BIN)/newsmon --config $(CONFIG) once

check: $(STAMP)
	$(BIN)/newsmon --config $(CONFIG) check

test: $(STAMP)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/mypy monitor
	$(BIN)/python -m pytest -q -n 2

typecheck: $(STAMP)
	$(BIN)/mypy monitor

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
