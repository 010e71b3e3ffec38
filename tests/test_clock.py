"""ClockGuard: a backward wall-clock step is noticed on the monotonic timer."""

from __future__ import annotations

import asyncio

from monitor.runtime.clock import ClockGuard


class FakeClocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 50.0

    def advance(self, seconds: float, *, wall_step: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + wall_step


def test_a_step_back_is_reported_with_its_size() -> None:
    clocks, steps = FakeClocks(), []
    guard = ClockGuard(steps.append, wall=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    assert guard.check() is None  # first reading: nothing to compare
    clocks.advance(2)
    assert guard.check() is None
    clocks.advance(2, wall_step=-3600)
    assert guard.check() == 3600
    assert steps == [3600]


def test_small_drift_and_forward_steps_are_ignored() -> None:
    clocks, steps = FakeClocks(), []
    guard = ClockGuard(steps.append, wall=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    guard.check()
    clocks.advance(2, wall_step=-1.0)  # NTP slewing, within tolerance
    clocks.advance(2, wall_step=+7200)  # a forward jump: coalesced misfires handle it
    guard.check()
    assert steps == []


def test_the_guard_runs_on_the_event_loop_timer() -> None:
    clocks, steps = FakeClocks(), []

    async def main() -> None:
        guard = ClockGuard(steps.append, every=0.01, wall=lambda: clocks.wall,
                           monotonic=lambda: clocks.mono)
        guard.start(asyncio.get_running_loop())
        await asyncio.sleep(0.05)
        clocks.advance(1, wall_step=-600)
        await asyncio.sleep(0.05)
        guard.stop()
        clocks.advance(1, wall_step=-600)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert steps == [600]  # seen once while running, not after stop()
