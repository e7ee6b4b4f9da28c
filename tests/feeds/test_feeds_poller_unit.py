"""FeedCache construction and lookups that need no network."""

from __future__ import annotations

from decimal import Decimal

import pytest

from feeds.errors import SourceError, UnknownInstrumentError
from feeds.poller import FeedCache
from feeds.registry import make_source

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]


def test_unsupported_instrument_fails_at_construction() -> None:
    with pytest.raises(UnknownInstrumentError, match="kraken DOGE-USD"):
        FeedCache({"kraken": make_source("kraken")}, ["BTC-USD", "DOGE-USD"])


def test_readings_for_an_instrument_not_polled_is_an_error() -> None:
    cache = FeedCache({"kraken": make_source("kraken")}, ["BTC-USD"])
    with pytest.raises(SourceError, match="polled instruments \\(BTC-USD\\), got 'ETH-USD'"):
        cache.readings("ETH-USD")
    assert cache.readings("BTC-USD") == []


def test_sources_must_be_keyed_by_their_own_name() -> None:
    with pytest.raises(ValueError, match="named 'binance', got 'kraken'"):
        FeedCache({"binance": make_source("kraken")}, ["BTC-USD"])


def test_health_score_falls_with_errors_latency_staleness_and_outliers() -> None:
    from feeds.base import SourceReading
    from feeds.poller import SourceHealth

    health = SourceHealth("x")
    assert health.score(now=100.0) == 1.0
    reading = SourceReading(source="x", instrument="BTC-USD", price=Decimal(1), observed_at=100.0,
                            fetched_at=100.0, latency_ms=10.0)
    health.record_ok(reading)
    assert health.score(now=100.0) == 1.0
    assert health.score(now=35.0 + 100.0) == 0.5  # last good reading 35 s old: halfway from 10 s to 60 s
    health.record_error(ValueError("boom"), at=101.0)
    assert health.score(now=101.0) == 0.8
    health.record_outlier(True)
    assert health.score(now=101.0) == round(0.8 * 0.8, 6)
    slow = SourceHealth("y")
    slow.record_ok(reading.model_copy(update={"source": "y", "latency_ms": 1000.0}))
    assert slow.score(now=100.0) == 0.5


def test_each_kind_is_polled_at_its_own_interval() -> None:
    cache = FeedCache.for_feeds(
        {"binance": make_source("binance")},
        [type("F", (), {"kind": "realized_vol", "sources": ("binance",), "instrument": "BTC-USD"})(),
         type("F", (), {"kind": "dispersion", "sources": ("binance",), "instrument": "BTC-USD"})()],
    )
    assert cache.targets == [("binance", "realized_vol", "BTC-USD"), ("binance", "spot", "BTC-USD")]
    rv, spot = cache.targets
    cache._state[rv].last_attempt = 100.0  # noqa: SLF001 - the schedule is the unit under test
    cache._state[spot].last_attempt = 100.0  # noqa: SLF001
    assert cache._due(spot, 100.5) and not cache._due(rv, 110.0) and cache._due(rv, 115.0)  # noqa: SLF001
    assert cache.max_age_for("realized_vol") == 45.0


def test_a_source_is_not_polled_for_a_factor_it_does_not_serve() -> None:
    from feeds.errors import UnsupportedFactorError

    with pytest.raises(UnsupportedFactorError, match="kraken BTC-USD: expected a factor this source serves"):
        FeedCache({"kraken": make_source("kraken")}, (), targets=[("kraken", "funding_rate", "BTC-USD")])
