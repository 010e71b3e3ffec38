"""The ``newsmon`` command line: one module per command group, ``app`` ties them."""

from monitor.cli.app import cli, main

__all__ = ["cli", "main"]
