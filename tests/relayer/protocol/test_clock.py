"""The manual clock engine tests step: timers fire in time order, only when time passes."""

from __future__ import annotations

import asyncio

import pytest

from relayer.testing.clock import ManualClock

pytestmark = pytest.mark.unit


async def test_timers_fire_in_order_when_time_passes_and_not_once_cancelled() -> None:
    clock = ManualClock(wall_start=1000.0)
    fired: list[str] = []
    clock.call_later(0.3, lambda: fired.append("c"))
    clock.call_later(0.1, lambda: fired.append("a"))
    cancelled = clock.call_later(0.2, lambda: fired.append("b"))
    cancelled.cancel()
    await clock.advance(0.09)
    assert fired == []
    await clock.advance(0.21)
    assert fired == ["a", "c"]
    assert clock.monotonic() == pytest.approx(0.3) and clock.time() == pytest.approx(1000.3)
    assert clock.pending() == 0


async def test_sleep_and_wait_return_when_the_clock_says() -> None:
    clock = ManualClock()
    event = asyncio.Event()
    sleeper = asyncio.create_task(clock.sleep(1.0))
    waiter = asyncio.create_task(clock.wait(event, 0.5))
    setter = asyncio.create_task(clock.wait(event, 5.0))
    await clock.advance(0.4)
    assert not sleeper.done() and not waiter.done()
    await clock.advance(0.2)
    assert waiter.done() and waiter.result() is False  # timed out at 0.5
    event.set()
    await clock.settle()
    assert setter.done() and setter.result() is True  # the event, long before its 5 s
    await clock.advance(0.5)
    assert sleeper.done()
