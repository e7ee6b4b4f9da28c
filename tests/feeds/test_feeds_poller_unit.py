"""FeedCache construction and lookups that need no network."""

from __future__ import annotations

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
