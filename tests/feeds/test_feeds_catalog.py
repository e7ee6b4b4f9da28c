"""The feed catalog: TOML validated by pydantic; a bad entry fails at start naming the line."""

from __future__ import annotations

import pytest

from feeds.catalog import FeedDefinition, load_catalog, parse_catalog
from feeds.errors import CatalogError
from feeds.kinds import FactorKind
from feeds.registry import load_sources

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

GOOD = """
[[feed]]
feed_id = "BTC-USD"
instrument = "BTC-USD"
sources = ["binance", "coinbase"]

[[feed]]
feed_id = "BTC-FUNDING-8H"
kind = "funding_rate"
instrument = "BTC-USD"
sources = ["okx", "bybit", "deribit"]
method = "weighted_median"
weights = { okx = "2" }
min_value = "-0.05"
max_value = "0.05"
"""


def test_the_devnet_catalog_has_14_feeds_over_every_kind_that_fit_int64() -> None:
    feeds = load_catalog()
    assert len(feeds) == 14 and {f.kind for f in feeds} == set(FactorKind)
    for feed in feeds:
        low, high = feed.bounds_fixed
        assert -(2**63) <= low < high <= 2**63 - 1
        assert len(feed.feed_id) <= 32


def test_a_good_catalog_parses() -> None:
    feeds = parse_catalog(GOOD, "x.toml", load_sources())
    assert [f.feed_id for f in feeds] == ["BTC-USD", "BTC-FUNDING-8H"]
    assert feeds[1].bounds_fixed == (-5_000_000, 5_000_000)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (('"okx", "bybit", "deribit"', '"okx", "ftx"'), "x.toml:11: feed 'BTC-FUNDING-8H': unknown source 'ftx'"),
        (('"okx", "bybit", "deribit"', '"okx", "coinbase"'), "x.toml:11: feed 'BTC-FUNDING-8H': source 'coinbase' does not serve funding_rate"),
        (('sources = ["binance", "coinbase"]', 'sources = ["binance"]\nmin_sources = 3'), "x.toml:2: feed 'BTC-USD' table: Value error, min_sources = 3 can never be met"),
        (('max_value = "0.05"', 'max_value = "-0.06"'), "min_value -0.05 must be below max_value -0.06"),
        (('method = "weighted_median"', 'method = "mean"'), "method must be one of median, weighted_median, trimmed_mean"),
        (('feed_id = "BTC-USD"', 'feed_id = "A-VERY-LONG-FEED-ID-THAT-IS-OVER-32"'), "x.toml:3: feed 'A-VERY-LONG-FEED-ID-THAT-IS-OVER-32' feed_id"),
        (('kind = "funding_rate"', 'kind = "vibes"'), "x.toml:9: feed 'BTC-FUNDING-8H' kind: Input should be"),
        (('max_value = "0.05"', 'max_value = "1e30"'), "does not fit the on-chain int64"),
        (('weights = { okx = "2" }', 'weights = { kraken = "2" }'), "weights name sources not in this feed: kraken"),
    ],
)
def test_a_bad_catalog_fails_naming_the_line(edit: tuple[str, str], words: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(GOOD.replace(*edit), "x.toml", load_sources())
    assert words in str(caught.value)


def test_duplicate_ids_and_syntax_errors_are_named() -> None:
    with pytest.raises(CatalogError, match="x.toml:7: feed id 'BTC-USD' is already defined at line 2"):
        parse_catalog(GOOD.replace('feed_id = "BTC-FUNDING-8H"', 'feed_id = "BTC-USD"'), "x.toml")
    with pytest.raises(CatalogError, match="expected TOML"):
        parse_catalog("[[feed]\n", "x.toml")


def test_settings_feedspec_is_the_catalog_model() -> None:
    from relayer.settings import FeedSpec

    spec = FeedSpec(feed_id="ETH-USD", instrument="ETH-USD", sources=("binance", "kraken"))
    assert isinstance(spec, FeedDefinition) and spec.kind == FactorKind.SPOT and spec.min_sources == 2
