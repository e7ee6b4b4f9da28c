"""Streaming sources on loopback: Coinbase's ticker channel from the simulator into the feed cache.

Waits are on the cache's own updates (``next_update``), bounded by a timeout that only
matters when something is broken; nothing sleeps.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from typing import ClassVar

import aiohttp
import pytest
import pytest_asyncio

from feeds.cli import add_sources_commands
from feeds.errors import SourceConnectionError, SourceError, SourceInstrumentMismatch, SourceUnknownInstrument
from feeds.kinds import FactorKind
from feeds.poller import FeedCache
from feeds.registry import make_source
from feeds.simulated.coinbase import SimulatedCoinbase
from feeds.simulator import VenueSimulator
from feeds.sources.coinbase import CoinbaseSpot
from feeds.stream import read_message, run_stream

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("error"),
]

# The Exchange feed's documented ticker message.
DOCUMENTED_TICKER = (
    '{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79",'
    '"volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027",'
    '"best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040",'
    '"side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}'
)
TICKER_TIME = 1666222102.061769  # 2022-10-19T23:28:22.061769Z


def streaming_coinbase(sim: VenueSimulator, **overrides: object) -> CoinbaseSpot:
    source = make_source("coinbase", base_url=sim.venue_url("coinbase"), timeout=2.0,
                         stream_url=sim.stream_url("coinbase"))
    assert isinstance(source, CoinbaseSpot)
    for name, value in {"stream_backoff": (0.01, 0.05), **overrides}.items():
        setattr(source, name, value)
    return source


@pytest.fixture
def coinbase_feed(clean_faults: VenueSimulator) -> SimulatedCoinbase:
    venue = clean_faults.venue("coinbase")
    assert isinstance(venue, SimulatedCoinbase)
    venue.misroute = {}
    venue.stream_interval = 0.02
    return venue


@pytest_asyncio.fixture(loop_scope="module")
async def streaming() -> AsyncIterator[Callable[[FeedCache, aiohttp.ClientSession], asyncio.Task[None]]]:
    """Starts ``cache.run_streams`` in a task, cancelled after the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(cache: FeedCache, session: aiohttp.ClientSession) -> asyncio.Task[None]:
        tasks.append(asyncio.create_task(cache.run_streams(session, rng=random.Random(7))))
        return tasks[-1]

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(cache: FeedCache, done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await cache.next_update()
    except TimeoutError:
        raise AssertionError(f"expected {what} within {timeout:g}s; health: {cache.health}") from None


async def test_the_documented_ticker_message_reads_as_a_spot_reading() -> None:
    source = CoinbaseSpot()
    taken = read_message(source, DOCUMENTED_TICKER, ["ETH-USD"], received_at=TICKER_TIME + 0.25)
    assert taken is not None
    reading, sequence = taken
    assert (reading.source, reading.kind, reading.instrument) == ("coinbase", FactorKind.SPOT, "ETH-USD")
    assert reading.value == Decimal("1285.22") and sequence == 37475248783
    assert reading.observed_at == pytest.approx(TICKER_TIME, abs=1e-6)
    assert reading.fetched_at == TICKER_TIME + 0.25
    # Acks and heartbeats are no reading; a ticker for a product not subscribed is refused.
    assert read_message(source, '{"type":"subscriptions","channels":[]}', ["ETH-USD"], TICKER_TIME) is None
    with pytest.raises(SourceInstrumentMismatch, match="expected a body for product_id among BTC-USD, got "
                                                       "product_id 'ETH-USD'"):
        read_message(source, DOCUMENTED_TICKER, ["BTC-USD"], received_at=TICKER_TIME)
    with pytest.raises(SourceUnknownInstrument, match="BTC-USDX is not a valid product"):
        read_message(source, '{"type":"error","message":"Failed to subscribe","reason":"BTC-USDX is not a valid '
                             'product"}', ["BTC-USD"], TICKER_TIME)


async def test_each_venue_message_updates_the_cache_and_the_poller_leaves_the_stream_alone(
    coinbase_feed: SimulatedCoinbase, clean_faults: VenueSimulator, session: aiohttp.ClientSession,
    streaming: Callable[[FeedCache, aiohttp.ClientSession], asyncio.Task[None]],
) -> None:
    cache = FeedCache({"coinbase": streaming_coinbase(clean_faults)}, ["BTC-USD", "ETH-USD"])
    streaming(cache, session)
    seen: list[tuple[str, Decimal, float]] = []

    def took_ten() -> bool:
        for instrument in ("BTC-USD", "ETH-USD"):
            for reading in cache.readings(instrument):
                entry = (instrument, reading.value, reading.observed_at)
                if entry not in seen:
                    seen.append(entry)
        return len({e[2] for e in seen if e[0] == "BTC-USD"}) >= 10

    await until(cache, took_ten, "ten BTC-USD updates")
    for instrument, value, observed_at in seen:
        venue = clean_faults.venue_price("coinbase", instrument, observed_at)
        assert abs(value - venue) <= Decimal("0.01") + venue * Decimal("1e-6")
    assert cache.health["coinbase"].healthy and cache.health["coinbase"].ok_count >= 10
    # While the stream is live, polling asks the venue nothing for spot.
    before = clean_faults.requests["coinbase"]
    await cache.poll_once(session)
    assert clean_faults.requests["coinbase"] == before


async def test_a_dropped_connection_reconnects_and_updates_resume(
    coinbase_feed: SimulatedCoinbase, clean_faults: VenueSimulator, session: aiohttp.ClientSession,
    streaming: Callable[[FeedCache, aiohttp.ClientSession], asyncio.Task[None]],
) -> None:
    cache = FeedCache({"coinbase": streaming_coinbase(clean_faults)}, ["BTC-USD"])
    connections = coinbase_feed.stream_connections
    streaming(cache, session)
    await until(cache, lambda: cache.health["coinbase"].ok_count >= 3, "three updates")
    await coinbase_feed.drop_streams()
    await until(cache, lambda: cache.health["coinbase"].error_count >= 1, "the drop to be noticed")
    assert cache.health["coinbase"].last_error_type == "SourceConnectionError"
    assert "expected the stream to stay open, got CLOSE (going away)" in str(cache.health["coinbase"].last_error)
    ok_before = cache.health["coinbase"].ok_count
    await until(cache, lambda: cache.health["coinbase"].ok_count >= ok_before + 3, "updates after reconnecting")
    assert coinbase_feed.stream_connections == connections + 2
    assert cache.health["coinbase"].healthy


async def test_a_silent_stream_makes_the_source_unhealthy_and_the_poller_takes_over(
    coinbase_feed: SimulatedCoinbase, clean_faults: VenueSimulator, session: aiohttp.ClientSession,
    streaming: Callable[[FeedCache, aiohttp.ClientSession], asyncio.Task[None]],
) -> None:
    cache = FeedCache({"coinbase": streaming_coinbase(clean_faults, stream_silence=1.0)}, ["BTC-USD"])
    streaming(cache, session)
    await until(cache, lambda: cache.health["coinbase"].ok_count >= 1, "a first update")
    clean_faults.set_fault("coinbase", "timeout")  # connected, and silent
    await until(cache, lambda: cache.health["coinbase"].last_error_type == "SourceStaleError", "the silence rule")
    health = cache.health["coinbase"]
    assert not health.healthy
    assert "expected a usable stream message at least every 1s, got none for 1s" in str(health.last_error)
    # The stream is down: the next poll reads the REST ticker (which answers once the venue does).
    clean_faults.set_fault("coinbase", None)
    before = clean_faults.requests["coinbase"]
    await cache.poll_once(session)
    assert clean_faults.requests["coinbase"] == before + 1


async def test_a_message_for_another_instrument_is_refused(
    coinbase_feed: SimulatedCoinbase, clean_faults: VenueSimulator, session: aiohttp.ClientSession,
    streaming: Callable[[FeedCache, aiohttp.ClientSession], asyncio.Task[None]],
) -> None:
    cache = FeedCache({"coinbase": streaming_coinbase(clean_faults)}, ["BTC-USD"])
    streaming(cache, session)
    await until(cache, lambda: cache.health["coinbase"].ok_count >= 1, "a first update")
    coinbase_feed.misroute = {"BTC-USD": "ETH-USD"}  # BTC-USD's messages now say ETH-USD

    def mismatches() -> int:
        return cache.health["coinbase"].errors_by_type.get("SourceInstrumentMismatch", 0)

    await until(cache, lambda: mismatches() >= 3, "three refused messages")
    health = cache.health["coinbase"]
    assert "expected a body for product_id among BTC-USD, got product_id 'ETH-USD'" in str(health.last_error)
    assert not health.healthy
    # Three more refused messages, and not one of them reached the cache.
    ok, held, refused = health.ok_count, cache.readings("BTC-USD", now=0.0), mismatches()
    await until(cache, lambda: mismatches() >= refused + 3, "three more refused messages")
    assert health.ok_count == ok and cache.readings("BTC-USD", now=0.0) == held
    coinbase_feed.misroute = {}
    await until(cache, lambda: cache.health["coinbase"].ok_count > ok, "updates once the feed is right again")


async def test_a_stream_whose_every_message_is_refused_is_stale_and_the_poller_takes_over(
    coinbase_feed: SimulatedCoinbase, clean_faults: VenueSimulator, session: aiohttp.ClientSession,
    streaming: Callable[[FeedCache, aiohttp.ClientSession], asyncio.Task[None]],
) -> None:
    cache = FeedCache({"coinbase": streaming_coinbase(clean_faults, stream_silence=1.0)}, ["BTC-USD"])
    streaming(cache, session)
    await until(cache, lambda: cache.health["coinbase"].ok_count >= 1, "a first update")
    coinbase_feed.misroute = {"BTC-USD": "ETH-USD"}
    await until(cache, lambda: cache.health["coinbase"].last_error_type == "SourceStaleError", "the silence rule")
    assert cache.health["coinbase"].errors_by_type["SourceInstrumentMismatch"] >= 1
    before = clean_faults.requests["coinbase"]
    await cache.poll_once(session)
    assert clean_faults.requests["coinbase"] == before + 1
    # The REST ticker answered: a fresh BTC-USD reading, while the stream stays refused.
    [reading] = cache.readings("BTC-USD")
    assert reading.source == "coinbase" and reading.latency_ms > 0


async def test_a_refused_subscription_is_an_unknown_instrument_and_retried_with_back_off(
    coinbase_feed: SimulatedCoinbase, clean_faults: VenueSimulator, session: aiohttp.ClientSession,
) -> None:
    class Misnamed(CoinbaseSpot):
        symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTC-USDX"}

    source = Misnamed(base_url=clean_faults.venue_url("coinbase"), stream_url=clean_faults.stream_url("coinbase"))
    pauses: list[float] = []
    failures: list[SourceError] = []

    class Sink:
        def stream_reading(self, reading: object) -> None:
            raise AssertionError(f"no reading expected, got {reading!r}")

        def stream_failure(self, name: str, error: SourceError) -> None:
            failures.append(error)

        def stream_live(self, name: str, live: bool) -> None:
            assert not live

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_stream(source, session, ["BTC-USD"], Sink(), rng=random.Random(1), sleep=pause)
    assert all(isinstance(f, SourceUnknownInstrument) for f in failures) and len(failures) == 4
    assert "got the venue's error 'Failed to subscribe: BTC-USDX is not a valid product'" in str(failures[0])
    base, cap = source.stream_backoff
    for n, seconds in enumerate(pauses):
        assert 0.5 * min(cap, base * 2**n) <= seconds <= min(cap, base * 2**n)


async def test_an_unreachable_stream_backs_off_doubling(session: aiohttp.ClientSession) -> None:
    source = CoinbaseSpot(base_url="http://127.0.0.1:9", stream_url="ws://127.0.0.1:9/ws", timeout=1.0)
    pauses: list[float] = []
    failures: list[SourceError] = []

    class Sink:
        def stream_reading(self, reading: object) -> None:
            raise AssertionError("no reading expected")

        def stream_failure(self, name: str, error: SourceError) -> None:
            failures.append(error)

        def stream_live(self, name: str, live: bool) -> None:
            pass

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 8:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_stream(source, session, ["BTC-USD"], Sink(), rng=random.Random(1), sleep=pause)
    assert all(isinstance(f, SourceConnectionError) for f in failures)
    assert "expected a WebSocket connection to ws://127.0.0.1:9/ws within 1s" in str(failures[0])
    # 0.5, 1, 2, ... capped at 30 s, each times a jitter in [0.5, 1].
    for n, seconds in enumerate(pauses):
        assert 0.5 * min(30.0, 0.5 * 2**n) <= seconds <= min(30.0, 0.5 * 2**n)
    assert pauses[-1] > 15.0


async def test_the_cli_prints_the_first_stream_updates() -> None:
    def run(*argv: str) -> tuple[int, str]:
        parser = argparse.ArgumentParser(prog="relayer")
        add_sources_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(list(argv))
        out = io.StringIO()
        return int(args.func(args, out)), out.getvalue()

    # Its own event loop and simulator, in a thread.
    code, text = await asyncio.to_thread(run, "sources", "try", "coinbase", "--stream", "3", "--json")
    readings = [json.loads(line) for line in text.splitlines()]
    assert code == 0, text
    assert len(readings) == 3 and {(r["source"], r["kind"]) for r in readings} == {("coinbase", "spot")}
    assert [r["observed_at"] for r in readings] == sorted({r["observed_at"] for r in readings})
    code, text = await asyncio.to_thread(run, "sources", "try", "kraken", "--stream", "3")
    assert code == 2 and text == ""
