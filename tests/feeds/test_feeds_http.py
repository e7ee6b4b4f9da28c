"""Sources over real HTTP against the venue simulator on loopback (no live APIs, no mocks)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web

from feeds.errors import (
    SourceConnectionError,
    SourceFormatError,
    SourceHTTPError,
    SourceStaleError,
    SourceTimeout,
    SourceValueError,
)
from feeds.registry import make_source
from feeds.simulator import VenueSimulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("error"),
]

VENUES = ("binance", "coinbase", "kraken")


def deviation_bps(price: Decimal, truth: Decimal) -> Decimal:
    return abs(price - truth) / truth * 10_000


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize("instrument", ["BTC-USD", "ETH-USD"])
async def test_source_reads_the_simulated_venue_within_its_noise(
    venue: str, instrument: str, clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    source = make_source(venue, base_url=clean_faults.venue_url(venue), timeout=2.0)
    reading = await source.fetch_spot(session, instrument)
    truth = clean_faults.model.true_price(instrument, reading.observed_at)
    # Venue noise (<= 4 bps) plus the venue's tick rounding plus a few ms of drift.
    assert deviation_bps(reading.price, truth) <= clean_faults.noise_bps[venue] + 1
    assert (reading.source, reading.instrument) == (venue, instrument)
    assert reading.fetched_at - 5 < reading.observed_at <= reading.fetched_at
    assert 0 < reading.latency_ms < 2000


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("garbage", SourceFormatError, "HTML page (text/html"),
        ("truncated", SourceFormatError, "truncated JSON"),
        ("nan", SourceValueError, "non-finite value (NaN)"),
        ("http500", SourceHTTPError, "expected HTTP 200, got 500"),
    ],
)
@pytest.mark.parametrize("venue", VENUES)
async def test_each_fault_surfaces_as_its_typed_error(
    venue: str,
    fault: str,
    error: type[Exception],
    words: str,
    clean_faults: VenueSimulator,
    session: aiohttp.ClientSession,
) -> None:
    clean_faults.set_fault(venue, fault)
    source = make_source(venue, base_url=clean_faults.venue_url(venue), timeout=2.0)
    with pytest.raises(error) as caught:
        await source.fetch_spot(session, "BTC-USD")
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{venue} BTC-USD: expected")


@pytest.mark.parametrize("venue", VENUES)
async def test_a_hanging_venue_is_a_timeout_after_the_client_timeout(
    venue: str, clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    clean_faults.set_fault(venue, "timeout")
    source = make_source(venue, base_url=clean_faults.venue_url(venue), timeout=0.3)
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match=r"within 0\.3s, got none"):
        await source.fetch_spot(session, "BTC-USD")
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("venue", ["binance", "coinbase"])
async def test_a_frozen_venue_timestamp_is_stale(
    venue: str, clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    clean_faults.set_fault(venue, "stale")
    source = make_source(venue, base_url=clean_faults.venue_url(venue))
    with pytest.raises(SourceStaleError, match="stopped updating"):
        await source.fetch_spot(session, "BTC-USD")


async def test_kraken_unknown_pair_comes_back_as_the_venues_error(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    # Kraken's real behaviour: HTTP 200 with an error list. Force a pair the
    # simulator does not list by pointing the ETH mapping at a bogus pair.
    source = make_source("kraken", base_url=clean_faults.venue_url("kraken"))
    source.symbols = {"BTC-USD": "XBTUSD", "ETH-USD": "NOPEUSD"}  # type: ignore[misc]
    with pytest.raises(SourceHTTPError, match=r"EQuery:Unknown asset pair"):
        await source.fetch_spot(session, "ETH-USD")


async def test_refused_connection_is_a_connection_error(session: aiohttp.ClientSession) -> None:
    # Bind then close a port so nothing listens there.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    source = make_source("coinbase", base_url=f"http://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(SourceConnectionError, match="unreachable") as caught:
        await source.fetch_spot(session, "BTC-USD")
    assert caught.value.status is None
    assert isinstance(caught.value, SourceHTTPError)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def test_oversized_body_is_refused_without_reading_it_all(session: aiohttp.ClientSession) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(100):
            await response.write(b" " * 4096)
        return response

    app = web.Application()
    app.router.add_get("/products/BTC-USD/ticker", huge)
    runner, base = await _serve(app)
    try:
        source = make_source("coinbase", base_url=base)
        with pytest.raises(SourceFormatError, match="at most 65536 bytes"):
            await source.fetch_spot(session, "BTC-USD")
    finally:
        await runner.cleanup()


async def test_redirects_are_not_followed(session: aiohttp.ClientSession) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://attacker.invalid/ticker")

    app = web.Application()
    app.router.add_get("/products/BTC-USD/ticker", redirect)
    runner, base = await _serve(app)
    try:
        source = make_source("coinbase", base_url=base)
        with pytest.raises(SourceHTTPError, match="got 302.*redirects are not followed") as caught:
            await source.fetch_spot(session, "BTC-USD")
        assert caught.value.status == 302
    finally:
        await runner.cleanup()


# ---- simulator control endpoints --------------------------------------------------


async def test_truth_endpoint_matches_the_model(clean_faults: VenueSimulator, session: aiohttp.ClientSession) -> None:
    url = f"{clean_faults.base_url}/sim/truth"
    async with session.get(url, params={"instrument": "ETH-USD", "t": "1700000000.25"}) as response:
        assert response.status == 200
        body = await response.json()
    assert body == {
        "instrument": "ETH-USD",
        "price": str(clean_faults.model.true_price("ETH-USD", 1700000000.25)),
        "t": 1700000000.25,
    }
    async with session.get(url, params={"instrument": "DOGE-USD"}) as response:
        assert response.status == 400
        assert "DOGE-USD" in (await response.json())["error"]


async def test_fault_endpoint_switches_a_venue(clean_faults: VenueSimulator, session: aiohttp.ClientSession) -> None:
    url = f"{clean_faults.base_url}/sim/fault"
    async with session.post(url, json={"venue": "kraken", "fault": "garbage"}) as response:
        assert response.status == 200
        assert (await response.json())["kraken"] == "garbage"
    assert clean_faults.faults()["kraken"] == "garbage"
    source = make_source("kraken", base_url=clean_faults.venue_url("kraken"))
    with pytest.raises(SourceFormatError, match="HTML page"):
        await source.fetch_spot(session, "BTC-USD")
    async with session.post(url, json={"venue": "kraken", "fault": None}) as response:
        assert (await response.json())["kraken"] is None
    async with session.post(url, json={"venue": "kraken", "fault": "meteor"}) as response:
        assert response.status == 400
        assert "garbage" in (await response.json())["error"]


async def test_standalone_simulator_prints_its_url_serves_and_exits_on_sigterm(
    session: aiohttp.ClientSession,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "feeds.simulator", "--port", "0", "--seed", "7",
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[1]
        async with session.get(f"{base}/sim/truth", params={"instrument": "BTC-USD", "t": "1700000000"}) as response:
            body = await response.json()
        from feeds.simulator import MarketModel

        # Same seed, another process: same truth.
        assert Decimal(body["price"]) == MarketModel(7).true_price("BTC-USD", 1700000000)
        reading = await make_source("binance", base_url=f"{base}/binance").fetch_spot(session, "BTC-USD")
        assert reading.price > 0
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
