"""Every venue x factor over real HTTP against the simulated venue, and every injected fault.

For each fault: the error is typed and says what was wrong, the source's health
drops, and the feed is still served by the others when enough remain — or withheld
with a reason when not.
"""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest

from feeds.catalog import FeedDefinition
from feeds.errors import (
    FeedWithheld,
    SourceFormatError,
    SourceFrozenError,
    SourceHTTPError,
    SourceRateLimited,
    SourceStaleError,
    SourceTimeout,
    SourceUnavailable,
    SourceValueError,
)
from feeds.kinds import FactorKind
from feeds.poller import FeedCache
from feeds.registry import load_sources, make_source
from feeds.simulator import VenueSimulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("error"),
]

SPOT_VENUES = tuple(name for name, cls in load_sources().items() if FactorKind.SPOT in cls.factors)
PAIRS = sorted((name, kind) for name, cls in load_sources().items() for kind in cls.factors)


@pytest.mark.parametrize(("name", "kind"), PAIRS)
async def test_every_venue_and_factor_reads_the_simulated_venue(
    name: str, kind: FactorKind, clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    sim = clean_faults
    source = make_source(name, base_url=sim.venue_url(name), timeout=3.0)
    reading = await source.fetch(session, kind, "BTC-USD")
    assert (reading.source, reading.kind) == (name, kind)
    t = reading.fetched_at
    model = sim.model
    if kind == FactorKind.SPOT:
        truth = model.true_price("BTC-USD", reading.observed_at)
        assert abs(reading.value - truth) / truth * 10_000 <= sim.noise_bps[name] + 2
    elif kind == FactorKind.FUNDING_RATE:
        assert abs(reading.value - model.funding_rate("BTC-USD", t)) <= Decimal("0.00003")
    elif kind == FactorKind.OPEN_INTEREST:
        assert abs(reading.value - sim.venue_open_interest(name, "BTC-USD", t)) / reading.value < Decimal("0.01")
    elif kind == FactorKind.IMPLIED_VOL:
        assert abs(reading.value - model.implied_vol("BTC-USD", t)) < Decimal("0.01")
    elif kind == FactorKind.REALIZED_VOL:
        assert Decimal("0.05") < reading.value < Decimal(5)
    elif kind == FactorKind.DEPTH:
        # 50 one-bp levels a side inside the band, sized from the model (+-30 % per level).
        expected = 2 * 50 * model.usd_per_level("BTC-USD", t) * {"binance": Decimal("1.3"), "coinbase": Decimal("0.9"),
                                                                  "kraken": Decimal("0.6"), "okx": 1, "bybit": Decimal("0.8")}[name]
        assert abs(reading.value - expected) / expected < Decimal("0.1")
    assert reading.fetched_at - 5 < reading.observed_at <= reading.fetched_at


# ---- faults ------------------------------------------------------------------------

# The primary factor of each venue, and what each fault must surface as.
PRIMARY = {"binance": FactorKind.SPOT, "binance-futures": FactorKind.FUNDING_RATE, "coinbase": FactorKind.SPOT,
           "kraken": FactorKind.SPOT, "okx": FactorKind.SPOT, "bybit": FactorKind.SPOT,
           "deribit": FactorKind.IMPLIED_VOL}
FAULTS = {
    "timeout": (SourceTimeout, "expected a response from"),
    "http429": (SourceRateLimited, "got 429"),
    "http500": (SourceUnavailable, "expected HTTP 200, got 500"),
    "html": (SourceFormatError, "HTML page"),
    "truncated": (SourceFormatError, "truncated JSON"),
    "nan": (SourceValueError, "non-finite value (NaN)"),
    "negative": (SourceValueError, "which is not positive"),
    "zero": (SourceValueError, "which is not positive"),
    "stale": (SourceStaleError, "stopped updating"),
    # In an HTTP 200 body on Kraken, OKX and Bybit; as HTTP 429 / 503 elsewhere.
    "rate_limited": (SourceRateLimited, "the venue is rate limiting us"),
    "unavailable": (SourceUnavailable, "the venue is failing"),
}
# Kraken's ticker carries no timestamp, so a stale Kraken ticker cannot be seen as such.
CASES = [(v, f) for v in PRIMARY for f in FAULTS if not (v == "kraken" and f == "stale")]


def _case_error(venue: str, fault: str) -> tuple[type[Exception], str]:
    error, words = FAULTS[fault]
    if venue == "binance-futures" and fault == "negative":
        return SourceValueError, "outside the sane range"  # a negative funding rate is legal; -1 is not
    if venue == "binance-futures" and fault == "zero":
        return type(None), ""  # zero funding is a legal value
    return error, words


@pytest.mark.parametrize(("venue", "fault"), CASES)
async def test_each_fault_is_typed_and_says_what_was_wrong(
    venue: str, fault: str, clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    clean_faults.set_fault(venue, fault)
    error, words = _case_error(venue, fault)
    source = make_source(venue, base_url=clean_faults.venue_url(venue), timeout=0.5)
    if error is type(None):
        reading = await source.fetch(session, PRIMARY[venue], "BTC-USD")
        assert reading.value == 0
        return
    with pytest.raises(error) as caught:
        await source.fetch(session, PRIMARY[venue], "BTC-USD")
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{venue} BTC-USD: expected")
    if fault == "http429":
        assert caught.value.retry_after == 2.0  # type: ignore[attr-defined]


def _spot_feed(min_sources: int) -> FeedDefinition:
    return FeedDefinition(feed_id="BTC-USD", instrument="BTC-USD", sources=SPOT_VENUES, min_sources=min_sources)


def _cache(sim: VenueSimulator, **options: object) -> FeedCache:
    sources = {v: make_source(v, base_url=sim.venue_url(v), timeout=0.5) for v in SPOT_VENUES}
    return FeedCache.for_feeds(sources, [_spot_feed(3)], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "stale"] + ["stale"])
async def test_a_faulty_venue_loses_health_and_the_feed_is_served_by_the_rest(
    fault: str, clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    venue = "coinbase"  # has a timestamp, so every fault is visible
    cache = _cache(clean_faults, backoff_base=0)
    before = cache.health[venue].score()
    clean_faults.set_fault(venue, fault)
    for _ in range(3):
        await cache.poll_once(session)
    health = cache.health[venue]
    # A 429 with Retry-After stops the asking until then: one error, not three.
    assert health.error_count == (1 if fault == "http429" else 3) and not health.healthy
    assert health.last_error_type == FAULTS[fault][0].__name__
    assert health.score() < before == 1.0
    local = cache.aggregate(_spot_feed(3))
    assert venue not in local.sources and local.num_sources == 4
    truth = clean_faults.model.true_price("BTC-USD", cache.readings("BTC-USD")[0].observed_at)
    assert abs(Decimal(local.value).scaleb(-8) - truth) / truth < Decimal("0.001")
    for other in SPOT_VENUES:
        if other != venue:
            assert cache.health[other].healthy


async def test_a_feed_is_withheld_with_a_reason_when_too_few_remain(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = _cache(clean_faults, backoff_base=0)
    for venue in ("binance", "kraken", "okx"):
        clean_faults.set_fault(venue, "html")
    await cache.poll_once(session)
    with pytest.raises(FeedWithheld) as caught:
        cache.aggregate(_spot_feed(3))
    assert caught.value.reason == "too_few_sources"
    message = str(caught.value)
    assert "expected readings from at least 3 sources, got 2 (bybit, coinbase)" in message
    assert "binance: SourceFormatError" in message


async def test_a_frozen_venue_is_detected_and_dropped(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = _cache(clean_faults, backoff_base=0, frozen_after={"spot": 1.5})
    clean_faults.set_fault("okx", "frozen")
    import asyncio

    for _ in range(4):
        await cache.poll_once(session)
        await asyncio.sleep(0.6)
    health = cache.health["okx"]
    assert health.last_error_type == SourceFrozenError.__name__
    assert "unchanged for" in (health.last_error or "")
    assert "okx" not in [r.source for r in cache.readings("BTC-USD")]
    assert cache.aggregate(_spot_feed(3)).num_sources == 4


async def test_retry_after_blocks_the_venue_until_then(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = _cache(clean_faults, backoff_base=0)
    clean_faults.set_fault("bybit", "http429")
    await cache.poll_once(session)
    asked = clean_faults.requests["bybit"]
    await cache.poll_once(session)
    await cache.poll_once(session)
    assert clean_faults.requests["bybit"] == asked  # not asked again within Retry-After (2 s)
    assert cache.health["bybit"].errors_by_type == {"SourceRateLimited": 1}


@pytest.mark.parametrize(
    ("venue", "fault", "status", "pause"),
    [("kraken", "rate_limited", 200, 5.0), ("okx", "rate_limited", 200, 2.0), ("bybit", "rate_limited", 200, 5.0),
     ("bybit", "http429", 429, 2.0)],
)
async def test_an_in_body_rate_limit_blocks_the_venue_as_a_429_does(
    venue: str, fault: str, status: int, pause: float, clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = _cache(clean_faults, backoff_base=0)
    clean_faults.set_fault(venue, fault)
    await cache.poll_once(session)
    asked = clean_faults.requests[venue]
    await cache.poll_once(session)
    await cache.poll_once(session)
    assert clean_faults.requests[venue] == asked  # not asked again within the venue's window
    assert cache.health[venue].errors_by_type == {"SourceRateLimited": 1}
    assert cache._venue_not_before[venue] - cache.health[venue].last_error_at == pytest.approx(pause)  # noqa: SLF001
    assert f"got {status}" in (cache.health[venue].last_error or "") if status != 200 else \
        "inside HTTP 200" in (cache.health[venue].last_error or "")
    assert venue not in [r.source for r in cache.readings("BTC-USD")]


async def test_an_in_body_outage_is_retried_within_the_poll_as_a_5xx_is(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    cache = _cache(clean_faults, backoff_base=0, retries=1)
    clean_faults.set_fault("okx", "unavailable")
    asked = clean_faults.requests["okx"]
    await cache.poll_once(session)
    assert clean_faults.requests["okx"] == asked + 2
    assert cache.health["okx"].errors_by_type == {"SourceUnavailable": 1}
    assert "code 50001" in (cache.health["okx"].last_error or "")


async def test_backoff_spaces_out_a_failing_venue(clean_faults: VenueSimulator, session: aiohttp.ClientSession) -> None:
    cache = _cache(clean_faults, backoff_base=5.0, retries=0)
    clean_faults.set_fault("kraken", "http500")
    await cache.poll_once(session)
    asked = clean_faults.requests["kraken"]
    for _ in range(3):
        await cache.poll_once(session)
    assert clean_faults.requests["kraken"] == asked
    assert cache.health["kraken"].error_count == 1


async def test_every_feed_kind_aggregates_from_the_simulated_venues(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    from feeds.catalog import load_catalog

    feeds = load_catalog()
    names = sorted({n for f in feeds for n in f.sources})
    sources = {n: make_source(n, base_url=clean_faults.venue_url(n), timeout=3.0) for n in names}
    cache = FeedCache.for_feeds(sources, feeds)
    async with aiohttp.ClientSession() as own:  # one shared session, as a node has
        await cache.poll_once(own)
    served = {f.feed_id: cache.aggregate(f) for f in feeds}
    assert len(served) == 14
    assert {f.kind for f in feeds} == set(FactorKind)
    assert served["BTC-USD-DISPERSION"].num_sources == 5
    assert served["BTC-FUNDING-8H"].num_sources == 4


async def test_a_5xx_is_retried_once_within_the_poll(clean_faults: VenueSimulator, session: aiohttp.ClientSession) -> None:
    cache = _cache(clean_faults, backoff_base=0, retries=1)
    clean_faults.set_fault("okx", "http500")
    asked = clean_faults.requests["okx"]
    await cache.poll_once(session)
    assert clean_faults.requests["okx"] == asked + 2
    assert cache.health["okx"].error_count == 1


async def test_a_hanging_venue_does_not_hold_back_the_others_or_the_next_poll(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    import time

    cache = _cache(clean_faults, backoff_base=0, poll_budget=0.2)
    clean_faults.set_fault("kraken", "timeout")  # kraken's timeout here is 0.5 s
    started = time.monotonic()
    await cache.poll_once(session)
    assert time.monotonic() - started < 0.45
    assert sorted(r.source for r in cache.readings("BTC-USD")) == ["binance", "bybit", "coinbase", "okx"]
    assert cache.health["kraken"].error_count == 0  # still in flight
    await cache.poll_once(session)  # kraken is not started twice
    import asyncio

    await asyncio.sleep(0.6)
    assert cache.health["kraken"].error_count == 1
    assert cache.health["kraken"].last_error_type == "SourceTimeout"


async def test_coinbase_leaves_out_quiet_minutes_and_the_adapter_still_computes_realized_vol(
    clean_faults: VenueSimulator, session: aiohttp.ClientSession
) -> None:
    venue = clean_faults.venue("coinbase")
    venue.quiet_minutes = frozenset({2, 17, 33})  # type: ignore[attr-defined]
    try:
        url = clean_faults.venue_url("coinbase")
        source = make_source("coinbase", base_url=url, timeout=3.0)
        (path, params), = source.plan(FactorKind.REALIZED_VOL, "BTC-USD")
        async with session.get(url + path, params=params) as response:
            rows = await response.json()
        # The 123 minutes asked for, less the three without trades.
        assert len(rows) == 120
        assert sum(1 for newer, older in zip(rows, rows[1:]) if newer[0] - older[0] == 120) == 3
        reading = await source.fetch(session, FactorKind.REALIZED_VOL, "BTC-USD")
        assert Decimal("0.05") < reading.value < Decimal(5)
        assert reading.fetched_at - 65 < reading.observed_at <= reading.fetched_at
    finally:
        venue.quiet_minutes = frozenset()  # type: ignore[attr-defined]
