"""Shared fixtures. Data in ../shared stays there; tests skip when it is absent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.configs import ConfigFactory
from tests.helpers.hostile import HostileServer
from tests.helpers.postgres import postgres_server  # noqa: F401  (a session fixture)
from tests.helpers.servers import Mailbox, Site


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Real newsmon configs in tmp_path: ``make_config.write(feeds=[url]) -> Path``,
    ``make_config.load(...) -> Config`` (tests/helpers/configs.py)."""
    return ConfigFactory(tmp_path)


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as s:
        yield s


@pytest.fixture
def receiver() -> Iterator[Site]:
    """A webhook receiver: every POST is recorded in ``receiver.requests``."""
    with Site(routes={"/hook": (200, {"Content-Type": "application/json"}, b"{}")}) as s:
        yield s


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with Mailbox() as m:
        yield m


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    """One hostile server for a test module (``hostile.reset()`` forgets its requests)."""
    with HostileServer() as srv:
        yield srv
