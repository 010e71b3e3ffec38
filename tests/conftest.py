"""Shared fixtures. Data in ../shared stays there; tests skip when it is absent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.servers import Mailbox, Site


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
