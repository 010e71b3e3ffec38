"""The SQLite repositories satisfy the Protocols of ``monitor.ports`` that the stages
and the runtime are typed against (checked at run time here, and by mypy through
the annotated assignments)."""

from __future__ import annotations

from pathlib import Path

from monitor import ports
from monitor.storage import open_storage


def test_the_sqlite_repositories_satisfy_the_ports(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t.db")
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
