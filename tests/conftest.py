"""Shared fixtures. Data in ../shared stays there; tests skip when it is absent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Mailbox, Site

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEED = REPO / "seeds" / "000_0bf77761fc6f67fc.txt"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip naming what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data set sits beside the checkout in CI")
    return path


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
