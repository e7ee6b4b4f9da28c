"""Bodies of real size: each endpoint's cap, the streaming read that stops at it, and a full Coinbase book."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web

from feeds.errors import SourceBodyTooLarge, SourceFormatError
from feeds.kinds import FactorKind
from feeds.registry import make_source
from feeds.simulated.coinbase import FAR_LEVELS
from feeds.simulator import VenueSimulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("error"),
]


async def test_a_full_size_coinbase_book_is_read_through_the_adapter(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    url = clean_faults.venue_url("coinbase")
    async with session.get(f"{url}/products/BTC-USD/book", params={"level": "2"}) as response:
        raw = await response.read()
        book = await response.json()
    # The full aggregated book, as Coinbase serves it: far above the old 64 KiB cap.
    assert len(raw) > 300 * 1024
    assert len(book["bids"]) == len(book["asks"]) == 100 + FAR_LEVELS
    source = make_source("coinbase", base_url=url, timeout=3.0)
    assert source.body_cap(FactorKind.DEPTH) > len(raw) > source.body_cap(FactorKind.SPOT)
    reading = await source.fetch(session, FactorKind.DEPTH, "BTC-USD")
    # Only the 50 one-bp levels a side within +-50 bps count; the far levels do not.
    expected = 2 * 50 * clean_faults.model.usd_per_level("BTC-USD", reading.fetched_at) * Decimal("0.9")
    assert abs(reading.value - expected) / expected < Decimal("0.1")


async def test_a_body_past_its_endpoints_cap_names_the_endpoint_and_the_cap(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    source = make_source("coinbase", base_url=clean_faults.venue_url("coinbase"), timeout=3.0)
    source.body_caps = {FactorKind.DEPTH: 256 * 1024}  # type: ignore[misc]
    with pytest.raises(SourceBodyTooLarge) as caught:
        await source.fetch(session, FactorKind.DEPTH, "BTC-USD")
    assert (caught.value.endpoint, caught.value.cap) == ("/products/BTC-USD/book", 256 * 1024)
    assert str(caught.value).startswith(
        "coinbase BTC-USD: expected a body of at most 262144 bytes (256 KiB) from /products/BTC-USD/book, got "
    )
    assert "raise that endpoint's cap" in str(caught.value)
    assert isinstance(caught.value, SourceFormatError)


async def test_an_endless_body_is_refused_at_the_cap_without_reading_on(session: aiohttp.ClientSession) -> None:
    written = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            while written < 64 * 1024 * 1024:
                await response.write(b"[" * 65536)
                written += 65536
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/api/v3/ticker/24hr", endless)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        source = make_source("binance", base_url=f"http://{host}:{port}", timeout=5.0)
        with pytest.raises(SourceBodyTooLarge) as caught:
            await source.fetch_spot(session, "BTC-USD")
        assert (caught.value.endpoint, caught.value.cap) == ("/api/v3/ticker/24hr", 64 * 1024)
        assert "got more than 65536 bytes" in str(caught.value)
    finally:
        await runner.cleanup()
    # The server stopped well short of its 64 MiB: the client let go at the cap.
    assert written < 16 * 1024 * 1024

