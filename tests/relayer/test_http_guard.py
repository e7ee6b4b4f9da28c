"""The API's connection cap, header and body timeouts and stream cap, on real loopback sockets.

Deadlines run on a clock the test holds: a connection is shown held while the clock stands
still (over several sweeps), and closed once the test moves the clock past its deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from relayer.api import ApiServer
from relayer.http_guard import ApiLimits, ConnectionGuard, guard_middleware
from relayer.metrics import NodeIdentity, Telemetry
from relayer.store import Store

pytestmark = pytest.mark.integration

SLOW_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: relayer\r\nUser-Agent: slow"  # never finished


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    server: ApiServer
    guard: ConnectionGuard
    clock: Clock
    telemetry: Telemetry
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


async def until(check: Callable[[], bool], what: str, deadline_s: float = 20.0) -> None:
    """Waits for a state, failing with ``what`` if it has not come by the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not check():
        assert loop.time() < end, f"still not the case after {deadline_s} s: {what}"
        await asyncio.sleep(0.02)


async def sweeps_pass(guard: ConnectionGuard, n: int = 3) -> None:
    seen = guard.stats.sweeps
    await until(lambda: guard.stats.sweeps >= seen + n, f"{n} sweeps")


@pytest.fixture
async def api_factory(tmp_path: Path) -> AsyncIterator[Callable[[ApiLimits], Awaitable[Api]]]:
    started: list[tuple[ApiServer, Store]] = []

    async def start(limits: ApiLimits) -> Api:
        store = Store(tmp_path / f"node{len(started)}.sqlite")
        telemetry = Telemetry(NodeIdentity(name="n0", address="0x" + "aa" * 20, dry_run=True,
                                           oracle="0x" + "bb" * 20), store)
        clock = Clock()
        guard = ConnectionGuard(limits, clock=clock, sweep_s=0.02)
        server = ApiServer(telemetry, "127.0.0.1", 0, guard=guard)
        await server.start()
        started.append((server, store))
        assert server.url is not None
        return Api(server, guard, clock, telemetry, "127.0.0.1", int(server.url.rsplit(":", 1)[1]))

    yield start
    for server, store in started:
        await server.stop()
        store.close()


async def open_slow(api: Api, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``n`` connections that each send the start of a request and then nothing."""
    out = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(api.host, api.port)
        writer.write(SLOW_HEADERS)
        out.append((reader, writer))
    return out


async def get(api: Api, path: str) -> int:
    # force_close: the client keeps no connection of its own in the count.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        async with session.get(api.url + path, timeout=aiohttp.ClientTimeout(total=10)) as response:
            await response.read()
            return response.status


async def test_a_thousand_slow_header_connections_are_closed_at_the_header_timeout(
        api_factory: Callable[[ApiLimits], Awaitable[Api]], caplog: pytest.LogCaptureFixture) -> None:
    api = await api_factory(ApiLimits(max_connections=1_100, header_timeout_s=5.0))
    slow = await open_slow(api, 1_000)
    await until(lambda: api.guard.stats.open == 1_000, "the guard holds the 1,000 connections")
    assert await get(api, "/healthz") == 200, "a normal request is served below the cap"
    await until(lambda: api.guard.stats.open == 1_000, "the normal request's connection closed")
    await sweeps_pass(api.guard)
    assert api.guard.stats.open == 1_000 and api.guard.stats.closed == {}, "closed before the header timeout"

    caplog.set_level(logging.WARNING, logger="relayer.http_guard")
    api.clock.now += 5.0
    await until(lambda: api.guard.stats.open == 0, "every slow connection closed")
    assert api.guard.stats.closed == {"header_timeout": 1_000}
    for reader, writer in slow:
        assert await asyncio.wait_for(reader.read(), timeout=10) == b"", "the server closed the connection"
        writer.close()
    lines = [r for r in caplog.records if r.name == "relayer.http_guard"]
    assert len(lines) <= 1, [r.getMessage() for r in lines]  # one line for the 1,000, not 1,000


async def test_the_cap_refuses_the_excess_at_once_and_serves_again_below_it(
        api_factory: Callable[[ApiLimits], Awaitable[Api]]) -> None:
    api = await api_factory(ApiLimits(max_connections=20, max_streams=2, header_timeout_s=60.0))
    held = await open_slow(api, 10)
    await until(lambda: api.guard.stats.open == 10, "10 connections held")
    assert await get(api, "/healthz") == 200, "served while the cap is not reached"
    await until(lambda: api.guard.stats.open == 10, "the normal request's connection closed")
    held += await open_slow(api, 10)
    await until(lambda: api.guard.stats.open == 20, "the cap reached")

    excess = await open_slow(api, 30)
    for reader, writer in excess:
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in answer, answer
        writer.close()
    assert api.guard.stats.refused == {"connection_cap": 30}
    assert api.guard.stats.open == 20, "the held connections are untouched"
    assert await get(api, "/healthz") == 503, "a normal request is refused as well while at the cap"
    assert api.guard.stats.refused == {"connection_cap": 31}

    for _, writer in held[:5]:
        writer.close()
    await until(lambda: api.guard.stats.open == 15, "5 connections freed")
    assert await get(api, "/healthz") == 200
    await until(lambda: api.guard.stats.open == 15, "the normal request's connection closed")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        async with session.get(api.url + "/metrics") as response:
            text = await response.text()
    assert 'relayer_api_refused_total{reason="connection_cap"} 31.0' in text, text
    assert "relayer_api_connections_open 16.0" in text  # 15 held and the scrape's own
    for _, writer in held[5:]:
        writer.close()


async def test_an_event_stream_lets_a_departed_client_go_at_once(
        api_factory: Callable[[ApiLimits], Awaitable[Api]]) -> None:
    api = await api_factory(ApiLimits(max_connections=8, max_streams=1, body_timeout_s=1.0))
    session = aiohttp.ClientSession()
    response = await session.get(api.url + "/api/events")
    assert response.status == 200
    assert (await response.content.readline()).startswith(b": connected")
    assert api.guard.stats.streams == 1

    api.clock.now += 60.0  # far past the body timeout: a stream is exempt
    await sweeps_pass(api.guard)
    assert api.guard.stats.streams == 1 and "body_timeout" not in api.guard.stats.closed
    assert await get(api, "/api/events") == 503, "one stream at most"
    assert api.guard.stats.refused == {"stream_cap": 1}

    response.close()  # the client goes away; the next keep-alive write would be 15 s off
    await session.close()
    await until(lambda: api.guard.stats.streams == 0, "the stream's handler ended", deadline_s=5.0)
    await until(lambda: api.guard.stats.open == 0, "the connection let go", deadline_s=5.0)


async def test_a_slow_body_is_cut_at_the_body_timeout() -> None:
    """On an app of its own: the node's API has no endpoint that reads a body."""
    started = asyncio.Event()

    async def upload(request: web.Request) -> web.Response:
        started.set()
        return web.Response(text=str(len(await request.read())))

    app = web.Application(middlewares=[guard_middleware(frozenset())])
    app.router.add_post("/upload", upload)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    clock = Clock()
    guard = ConnectionGuard(ApiLimits(header_timeout_s=5.0, body_timeout_s=10.0), clock=clock, sweep_s=0.02)
    assert runner.server is not None
    host, port = await guard.start(runner.server, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: relayer\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await asyncio.wait_for(started.wait(), timeout=10)
        clock.now += 9.0  # past the header timeout, within the body's
        await sweeps_pass(guard)
        assert guard.stats.open == 1 and guard.stats.closed == {}
        clock.now += 1.0
        await until(lambda: guard.stats.open == 0, "the slow upload cut off")
        assert guard.stats.closed == {"body_timeout": 1}
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        writer.close()

        # A whole request in time is answered, and the connection then idles until the header timeout.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: relayer\r\nContent-Length: 3\r\n\r\nabc")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)).startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(1) == b"3"
        clock.now += 5.0
        await until(lambda: guard.stats.closed.get("idle") == 1, "the idle keep-alive connection closed")
        writer.close()
    finally:
        await guard.stop()
        await runner.cleanup()
