"""The overview's SVG chart keeps its axis labels inside the drawing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from monitor.web.render import AXIS_CHAR_WIDTH, volume_chart


def extent(x: float, label: str, anchor: str) -> tuple[float, float]:
    width = len(label) * AXIS_CHAR_WIDTH
    start = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return start, start + width


@pytest.mark.parametrize("days", [7, 14, 30, 31])
def test_every_x_axis_label_fits_the_view_box(days: int) -> None:
    end = date(2026, 12, 2)
    volume = {"ceasefire": {(end - timedelta(days=n)).isoformat(): n + 1 for n in range(days)}}
    chart = volume_chart(volume, end=end, days=days)
    assert chart["ticks"], chart
    for tick in chart["ticks"]:
        left, right = extent(tick["x"], tick["label"], tick["anchor"])
        assert left >= 0 and right <= chart["width"], tick
    assert chart["ticks"][-1]["label"] == "02 Dec"  # the last day is labelled, and not clipped
    assert chart["ticks"][-1]["anchor"] == "end"
