"""A clock that moves only when a test advances it (see `relayer.protocol.clock`).

Timers fire in time order as `advance` passes them, and the loop is given a few turns
after each one so that the tasks and callbacks it woke run before time moves on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from relayer.protocol.clock import Clock, Timer

# Loop turns after each fired timer: enough for a message to cross an in-process bus and
# be answered a few times over (each hop is one call_soon).
SETTLE_TURNS = 50


@dataclass(order=True)
class _Pending:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ManualClock(Clock):
    def __init__(self, wall_start: float = 1_700_000_000.0) -> None:
        self._now = 0.0
        self._wall_start = wall_start
        self._pending: list[_Pending] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._wall_start + self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        pending = _Pending(self._now + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._pending, pending)
        return pending

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(delay, lambda: _wake(woken))
        try:
            await woken
        finally:
            timer.cancel()

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = asyncio.ensure_future(event.wait())
        waiter.add_done_callback(lambda _: _wake(woken))
        timer = self.call_later(timeout, lambda: _wake(woken))
        try:
            await woken
        finally:
            timer.cancel()
            waiter.cancel()
        return event.is_set()

    @staticmethod
    async def settle(turns: int = SETTLE_TURNS) -> None:
        """Give the loop `turns` turns without moving time."""
        for _ in range(turns):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing every timer due on the way, in order."""
        target = self._now + seconds
        await self.settle()
        while self._pending and self._pending[0].when <= target:
            due = heapq.heappop(self._pending)
            if due.cancelled:
                continue
            self._now = max(self._now, due.when)
            due.callback()
            await self.settle()
        self._now = target
        await self.settle()

    def pending(self) -> int:
        """Timers that have neither fired nor been cancelled."""
        return sum(1 for p in self._pending if not p.cancelled)
