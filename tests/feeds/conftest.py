"""Shared fixtures for feeds tests: a no-network guard for unit tests, and the simulator."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import pytest_asyncio

from feeds.simulator import MarketModel, VenueSimulator

SEED = 20240101


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
