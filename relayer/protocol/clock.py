"""Time as the round protocol sees it: an injected clock, so tests step time instead of sleeping.

The engine never calls `time` or `asyncio.sleep` itself. `AsyncioClock` is the real one;
`relayer.testing.clock.ManualClock` advances only when a test says so.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A pending `call_later`; cancelling a timer that already fired does nothing."""

    def cancel(self) -> None: ...


class Clock(ABC):
    @abstractmethod
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for timeouts and intervals."""

    @abstractmethod
    def time(self) -> float:
        """Unix time in seconds: for what is recorded or sent (a round's start)."""

    @abstractmethod
    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` on the loop after `delay` seconds."""

    @abstractmethod
    async def sleep(self, delay: float) -> None: ...

    @abstractmethod
    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until `event` is set or `timeout` passes; True when the event is set."""


class AsyncioClock(Clock):
    """Wall and monotonic time of the process; timers on the running asyncio loop."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), timeout=timeout)
        except TimeoutError:
            return event.is_set()
        return True
