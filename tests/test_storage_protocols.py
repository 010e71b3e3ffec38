"""The repositories (on SQLite and on PostgreSQL) satisfy the Protocols of ``monitor.ports`` that the stages
and the runtime are typed against (checked at run time here, and by mypy through
the annotated assignments)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor import ports
from monitor.storage import open_storage
from tests.helpers.storage import BACKENDS, new_target


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_repositories_satisfy_the_ports(backend: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    storage = open_storage(new_target(backend, tmp_path, request))
    assert storage.dialect == backend
    try:
        feeds: ports.FeedStates = storage.feeds
        items: ports.ItemStore = storage.items
        notices: ports.NoticeQueue = storage.outbox
        cycles: ports.CycleLog = storage.ops
        pipeline: ports.PipelineStorage = storage
        outbox: ports.Outbox = storage.outbox
        status: ports.StatusReader = storage.views
        maintenance: ports.Maintenance = storage.ops
        for value, protocol in ((feeds, ports.FeedStates), (items, ports.ItemStore),
                                (notices, ports.NoticeQueue), (cycles, ports.CycleLog),
                                (pipeline, ports.PipelineStorage), (outbox, ports.Outbox),
                                (status, ports.StatusReader), (maintenance, ports.Maintenance)):
            assert isinstance(value, protocol), protocol.__name__
    finally:
        storage.close()


def test_the_delivery_stage_does_not_import_storage() -> None:
    source = (Path(__file__).parent.parent / "monitor" / "delivery" / "deliverer.py").read_text()
    assert "monitor.storage" not in source
