"""Optional dependencies: import one when it is needed, or say which extra installs it.

A module that only some installs need (a trained spaCy pipeline, ...) is
imported at the point of use with ``require``, never at the top of a module,
so ``import monitor`` and the commands that do not need it work without it::

    nlp_package = require("en_core_web_sm", extra="ner")

A missing module raises ``MissingDependencyError`` (a ``NewsmonError`` and an
``ImportError``) whose message names the ``pip install 'newsmon[extra]'`` to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from monitor.errors import MissingDependencyError

__all__ = ["is_available", "require"]


def require(module: str, extra: str | None = None, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` and return it, or raise MissingDependencyError naming ``extra``.

    ``purpose`` says what the module is for, in the message ("named entities").
    Only a missing ``module`` (or one of its parents) is reported so; an
    ImportError raised inside an installed module is a real fault and propagates.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not _is_self_or_parent(exc.name, module):
            raise
        for_what = f" (needed for {purpose})" if purpose else ""
        how = f"pip install 'newsmon[{extra}]'" if extra else f"pip install {module.split('.')[0]}"
        raise MissingDependencyError(
            f"optional module {module!r} is not installed{for_what}; install it with: {how}",
            module=module, extra=extra,
        ) from None


def is_available(module: str) -> bool:
    """Whether ``module`` can be imported (it is imported, so later imports are free)."""
    try:
        require(module)
    except MissingDependencyError:
        return False
    return True


def _is_self_or_parent(missing: str, module: str) -> bool:
    return module == missing or module.startswith(missing + ".")
