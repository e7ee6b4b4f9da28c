"""The source registry reads the relayer.sources entry points; third-party plugins included."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from feeds.base import Source
from feeds.errors import SourceError, SourcePluginError, UnknownSourceError
from feeds.registry import ENTRY_POINT_GROUP, load_sources, make_source
from feeds.sources.binance import BinanceSpot
from feeds.sources.coinbase import CoinbaseSpot
from feeds.sources.kraken import KrakenSpot

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]


def install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, dist: str, entry: str, module: str, code: str) -> None:
    """A real installed distribution on sys.path: dist-info with an entry point, plus its module."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(code))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_entry_points_list_the_seven_sources_of_six_venues() -> None:
    from feeds.sources.binance_futures import BinanceFutures
    from feeds.sources.bybit import BybitSource
    from feeds.sources.deribit import DeribitSource
    from feeds.sources.okx import OkxSource

    assert load_sources() == {
        "binance": BinanceSpot, "binance-futures": BinanceFutures, "bybit": BybitSource,
        "coinbase": CoinbaseSpot, "deribit": DeribitSource, "kraken": KrakenSpot, "okx": OkxSource,
    }


def test_make_source_builds_the_named_source_with_its_settings() -> None:
    source = make_source("kraken", base_url="http://127.0.0.1:8700/kraken", timeout=0.5)
    assert isinstance(source, KrakenSpot)
    assert (source.base_url, source.timeout) == ("http://127.0.0.1:8700/kraken", 0.5)
    assert make_source("binance").base_url == "https://api.binance.com"


def test_unknown_source_lists_the_known_names() -> None:
    with pytest.raises(UnknownSourceError) as caught:
        make_source("ftx")
    assert "expected a registered source name (binance, binance-futures, bybit, coinbase, deribit, kraken, okx), got 'ftx'" in str(caught.value)
    assert isinstance(caught.value, SourceError) and caught.value.source == "ftx"


def test_a_third_party_plugin_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(
        tmp_path, monkeypatch, "bitstamp_source", "bitstamp = bitstamp_plugin:BitstampSpot", "bitstamp_plugin",
        """
        from feeds.base import Source, VenueQuote

        class BitstampSpot(Source):
            name = "bitstamp"
            default_url = "https://www.bitstamp.net"
            symbols = {"BTC-USD": "btcusd"}

            def request(self, instrument):
                return f"/api/v2/ticker/{self.symbol(instrument)}/", {}

            def extract(self, payload, instrument):
                return VenueQuote(price=self.body(payload, instrument).decimal("last"))
        """,
    )
    sources = load_sources()
    assert sorted(sources) == ["binance", "binance-futures", "bitstamp", "bybit", "coinbase", "deribit", "kraken", "okx"]
    assert issubclass(sources["bitstamp"], Source)
    assert make_source("bitstamp").symbol("BTC-USD") == "btcusd"


def test_a_plugin_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(
        tmp_path, monkeypatch, "broken_source", "broken = broken_plugin:Spot", "broken_plugin",
        "import a_module_that_does_not_exist\n",
    )
    with pytest.raises(SourcePluginError) as caught:
        load_sources()
    message = str(caught.value)
    assert "source plugin 'broken'" in message
    assert "ModuleNotFoundError" in message
    assert "broken_source" in message  # the distribution to fix or uninstall
    # Only the named plugin is imported when building one source.
    assert isinstance(make_source("kraken"), KrakenSpot)


def test_a_plugin_that_is_not_a_source_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(
        tmp_path, monkeypatch, "odd_source", "odd = odd_plugin:thing", "odd_plugin", "thing = 42\n"
    )
    with pytest.raises(SourcePluginError, match="'odd': expected a subclass of feeds.base.Source, got 42"):
        make_source("odd")


def test_a_plugin_whose_name_disagrees_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(
        tmp_path, monkeypatch, "alias_source", "okx = alias_plugin:Spot", "alias_plugin",
        """
        from feeds.sources.kraken import KrakenSpot

        class Spot(KrakenSpot):
            pass
        """,
    )
    with pytest.raises(SourcePluginError, match=r"expected Spot.name == 'okx', got 'kraken'"):
        load_sources()
