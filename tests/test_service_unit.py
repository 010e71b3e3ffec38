"""deploy/newsmon.service: ``systemd-analyze verify`` passes and ``security`` rates it OK.

Needs ``systemd-analyze`` (Debian: ``apt-get install -y systemd``); skipped without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

UNIT = REPO / "deploy" / "newsmon.service"
EXEC = "/opt/newsmon/venv/bin/newsmon"

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze is not installed (apt-get install -y systemd)")


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_runs_newsmon_as_a_notify_service_with_its_own_directories() -> None:
    unit = directives(UNIT.read_text(encoding="utf-8"))
    assert unit["Type"] == ["notify"]
    assert unit["ExecStart"] == [f"{EXEC} run --config /etc/newsmon/newsmon.yaml"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["WatchdogSec"] and unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["newsmon"] and unit["ConfigurationDirectory"] == ["newsmon"]
    assert unit["EnvironmentFile"] == ["-/etc/newsmon/newsmon.env"]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges",
                "RestrictAddressFamilies", "SystemCallFilter", "MemoryMax"):
        assert key in unit, key


@needs_analyze
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: stand a stub in for the installed venv,
    # changing nothing else in the unit.
    stub = tmp_path / "bin" / "newsmon"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = tmp_path / "newsmon.service"
    text = UNIT.read_text(encoding="utf-8")
    assert EXEC in text
    unit.write_text(text.replace(EXEC, str(stub)), encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "newsmon.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@needs_analyze
def test_systemd_analyze_security_rates_it_ok() -> None:
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for newsmon\.service: ([\d.]+) (\w+)",
                      result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0 and match.group(2) == "OK", match.group(0)
