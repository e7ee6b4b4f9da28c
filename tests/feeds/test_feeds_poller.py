"""FeedCache against the simulator: a bad venue never takes the instrument down."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from feeds.base import Source
from feeds.poller import FeedCache
from feeds.registry import make_source
from feeds.simulator import VenueSimulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("error"),
]

VENUES = ("binance", "coinbase", "kraken")
INSTRUMENTS = ("BTC-USD", "ETH-USD")


def make_cache(sim: VenueSimulator, timeout: float = 2.0, max_age: float = 10.0) -> FeedCache:
    sources = {venue: make_source(venue, base_url=sim.venue_url(venue), timeout=timeout) for venue in VENUES}
    return FeedCache(sources, INSTRUMENTS, max_age=max_age, backoff_base=0)


async def test_all_healthy_venues_fill_every_instrument(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = make_cache(clean_faults)
    await cache.poll_once(session)
    for instrument in INSTRUMENTS:
        readings = cache.readings(instrument)
        assert [r.source for r in readings] == list(VENUES)
        for reading in readings:
            truth = clean_faults.model.true_price(instrument, reading.observed_at)
            assert abs(reading.price - truth) / truth * 10_000 <= 5
    for venue in VENUES:
        health = cache.health[venue]
        assert (health.ok_count, health.error_count, health.consecutive_failures) == (2, 0, 0)
        assert health.healthy and health.last_latency_ms is not None


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        ("garbage", "SourceFormatError): kraken BTC-USD: expected a JSON ticker body, got HTML page (text/html"),
        ("timeout", "SourceTimeout): kraken BTC-USD: expected a response from"),
    ],
)
async def test_one_bad_venue_leaves_the_feed_to_the_other_two(
    fault: str,
    logged: str,
    clean_faults: VenueSimulator,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = make_cache(clean_faults, timeout=0.3)
    clean_faults.set_fault("kraken", fault)
    with caplog.at_level(logging.WARNING, logger="feeds.poller"):
        await cache.poll_once(session)

    for instrument in INSTRUMENTS:
        assert [r.source for r in cache.readings(instrument)] == ["binance", "coinbase"]
    kraken = cache.health["kraken"]
    assert (kraken.ok_count, kraken.error_count, kraken.consecutive_failures) == (0, 2, 2)
    assert not kraken.healthy
    # Fetches are recorded in configured order, so the last error is ETH-USD's.
    assert (kraken.last_error or "").startswith("kraken ETH-USD: expected")
    assert kraken.last_error_type == logged.split(")", 1)[0]
    assert cache.health["binance"].healthy and cache.health["coinbase"].healthy

    failures = [r for r in caplog.records if r.name == "feeds.poller"]
    # One line per failed (source, instrument) per poll, nothing for the good ones.
    assert len(failures) == 2
    assert {(r.source, r.instrument) for r in failures} == {("kraken", "BTC-USD"), ("kraken", "ETH-USD")}  # type: ignore[attr-defined]
    assert all(r.levelno == logging.WARNING for r in failures)
    assert any(logged in r.getMessage() for r in failures)


async def test_a_recovered_venue_resets_consecutive_failures_and_returns(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = make_cache(clean_faults)
    clean_faults.set_fault("binance", "nan")
    await cache.poll_once(session)
    await cache.poll_once(session)
    assert cache.health["binance"].consecutive_failures == 4
    assert "non-finite" in (cache.health["binance"].last_error or "")
    assert cache.health["binance"].last_error_type == "SourceValueError"
    clean_faults.set_fault("binance", None)
    await cache.poll_once(session)
    assert cache.health["binance"].consecutive_failures == 0
    assert (cache.health["binance"].ok_count, cache.health["binance"].error_count) == (2, 4)
    assert "binance" in [r.source for r in cache.readings("BTC-USD")]


async def test_a_failing_poll_keeps_the_last_good_reading_until_it_ages_out(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = make_cache(clean_faults, max_age=10.0)
    await cache.poll_once(session)
    good = {r.source: r for r in cache.readings("BTC-USD")}
    clean_faults.set_fault("coinbase", "http500")
    await cache.poll_once(session)
    kept = {r.source: r for r in cache.readings("BTC-USD")}
    assert kept["coinbase"] == good["coinbase"]
    later = good["coinbase"].observed_at + 10.5
    assert "coinbase" not in [r.source for r in cache.readings("BTC-USD", now=later)]


async def test_all_venues_down_means_no_readings_not_an_exception(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = make_cache(clean_faults)
    for venue in VENUES:
        clean_faults.set_fault(venue, "truncated")
    await cache.poll_once(session)
    assert cache.readings("BTC-USD") == []
    assert all(h.error_count == 2 for h in cache.health.values())


class _BuggySource(Source):
    """A third-party source with a bug: it raises something that is not a SourceError."""

    name = "buggy"
    default_url = "http://127.0.0.1:9"
    symbols = {"BTC-USD": "BTC", "ETH-USD": "ETH"}

    def request(self, instrument: str) -> tuple[str, dict[str, str]]:
        return "/", {}

    def extract(self, payload: object, instrument: str) -> object:  # type: ignore[override]
        raise AssertionError("unreachable")

    async def fetch_spot(self, session: aiohttp.ClientSession, instrument: str):  # type: ignore[no-untyped-def]
        raise KeyError("price")


async def test_a_buggy_plugin_cannot_cancel_the_other_fetches(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    sources: dict[str, Source] = {
        "coinbase": make_source("coinbase", base_url=clean_faults.venue_url("coinbase")),
        "buggy": _BuggySource(),
    }
    cache = FeedCache(sources, INSTRUMENTS)
    with caplog.at_level(logging.ERROR, logger="feeds.poller"):
        await cache.poll_once(session)
    assert [r.source for r in cache.readings("BTC-USD")] == ["coinbase"]
    assert cache.health["buggy"].last_error_type == "KeyError"
    assert any("unexpected KeyError" in r.getMessage() for r in caplog.records)
