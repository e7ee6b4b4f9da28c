"""The trio/asyncio bridge on its own: a plain trio service in its thread, driven from asyncio.

Like every module but the bridge, this one does not import trio: the service waits on
what the bridge hands it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from relayer.p2p.bridge import StopRequested, TrioThread
from relayer.p2p.errors import P2PError, P2PStartError

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


class Service:
    """A trio service that records what reached it, and on which thread."""

    def __init__(self, *, fail_before_ready: bool = False) -> None:
        self.fail_before_ready = fail_before_ready
        self.calls: list[object] = []
        self.threads: set[int] = set()
        self.torn_down = False
        self.stop_requested: StopRequested | None = None

    async def __call__(self, ready: Callable[[], None], stop_requested: StopRequested) -> None:
        self.threads.add(threading.get_ident())
        if self.fail_before_ready:
            raise OSError("address already in use")
        self.stop_requested = stop_requested
        ready()
        await stop_requested.wait()
        self.torn_down = True

    def record(self, value: object) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append(value)


def _bridge() -> TrioThread:
    return TrioThread(label="test service", thread_name="p2p-test")


async def test_calls_cross_both_ways_and_stop_tears_down_in_order() -> None:
    bridge, service = _bridge(), Service()
    await bridge.start(service, timeout=5.0)
    loop = asyncio.get_running_loop()
    delivered: asyncio.Future[tuple[object, int]] = loop.create_future()

    assert bridge.call_soon(service.record, "to trio")

    async def echo() -> str:
        bridge.to_asyncio(lambda: delivered.set_result(("to asyncio", threading.get_ident())))
        return "result"

    assert await bridge.run(echo, timeout=5.0) == "result"
    assert await delivered == ("to asyncio", threading.get_ident())
    assert service.calls == ["to trio"]
    assert len(service.threads) == 1 and threading.get_ident() not in service.threads

    await bridge.stop()
    await bridge.stop()  # idempotent
    assert service.torn_down
    assert bridge.state == "stopped"
    assert not [t for t in threading.enumerate() if t.name == "p2p-test"]
    assert not bridge.call_soon(service.record, "late")
    with pytest.raises(P2PError, match="has stopped"):
        await bridge.run(echo, timeout=1.0)


async def test_a_trio_error_is_raised_to_the_asyncio_caller_and_a_timeout_is_a_p2p_error() -> None:
    bridge, service = _bridge(), Service()
    await bridge.start(service, timeout=5.0)
    try:

        async def fails() -> None:
            raise ValueError("bad dial")

        async def hangs() -> None:
            assert service.stop_requested is not None
            await service.stop_requested.wait()

        with pytest.raises(ValueError, match="bad dial"):
            await bridge.run(fails, timeout=5.0)
        with pytest.raises(P2PError, match="timed out after 0.05 s"):
            await bridge.run(hangs, timeout=0.05)
    finally:
        await bridge.stop()


async def test_a_service_that_fails_before_ready_fails_start_with_its_reason() -> None:
    bridge = _bridge()

    with pytest.raises(P2PStartError, match="test service failed to start: OSError: address already in use"):
        await bridge.start(Service(fail_before_ready=True), timeout=5.0)
    assert bridge.state == "stopped"
    with pytest.raises(P2PStartError, match="already started"):
        await bridge.start(Service(), timeout=5.0)
    with pytest.raises(P2PError, match="call start"):
        bridge.require_running("publish")
