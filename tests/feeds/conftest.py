"""Shared fixtures for feeds tests: a no-network guard for unit tests, the simulator, and replays."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from feeds.replay import Replay
from feeds.simulator import MarketModel, VenueSimulator

SEED = 20240101
# Recordings of each venue's documented example answers, in the record format (feeds/replay.py).
RECORDED = Path(__file__).parent / "recorded"


@pytest.fixture(autouse=True)
def _no_network_in_unit_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # Unit tests must not touch the network; a test that does is an integration test.
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unit test tried to open a network connection; mark it integration")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket.socket, "bind", refuse)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def simulator() -> AsyncIterator[VenueSimulator]:
    """One simulator per test module, on a loopback port."""
    sim = VenueSimulator(MarketModel(SEED))
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
def clean_faults(simulator: VenueSimulator) -> Iterator[VenueSimulator]:
    """The module's simulator with every venue healthy before and after the test."""
    for venue in simulator.venues:
        simulator.set_fault(venue, None)
    yield simulator
    for venue in simulator.venues:
        simulator.set_fault(venue, None)


@pytest_asyncio.fixture(loop_scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


OpenReplay = Callable[..., Awaitable[Replay]]


@pytest_asyncio.fixture(loop_scope="module")
async def replay() -> AsyncIterator[OpenReplay]:
    """Opens recordings on loopback: ``await replay(RECORDED / "binance")`` (or any recording directory).

    Keyword arguments go to :meth:`feeds.replay.Replay.open` (``clock=`` to pin "now");
    every replay opened is closed after the test.
    """
    opened: list[Replay] = []

    async def open_replay(directory: Path | str, **options: object) -> Replay:
        started = await Replay.open(directory, **options).start()  # type: ignore[arg-type]
        opened.append(started)
        return started

    yield open_replay
    for started in opened:
        await started.close()
