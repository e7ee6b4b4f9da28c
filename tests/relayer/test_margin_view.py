"""The dashboard's margin: what RiskGate would set from the landed vol and depth feeds."""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from types import SimpleNamespace

import pytest

from aggregation.margin import compute_margins
from relayer.metrics import DEFAULT_CURVE, Telemetry
from relayer.settings import FeedSpec

pytestmark = pytest.mark.unit


def spec(feed_id: str, kind: str, decimals: int) -> FeedSpec:
    return FeedSpec(feed_id=feed_id, instrument="BTC-USD", kind=kind, sources=["binance", "coinbase", "kraken"],
                    min_sources=2, decimals=decimals)


def telemetry(*specs: FeedSpec) -> Telemetry:
    node = SimpleNamespace(served=[SimpleNamespace(spec=s, index=i) for i, s in enumerate(specs)],
                           committee=None, engine=None, host=None, cache=None)
    return Telemetry(node)  # type: ignore[arg-type]


def land(t: Telemetry, feed_id: str, value: str) -> None:
    t.latest[feed_id] = {"feed_id": feed_id, "value": value}


def test_margin_reads_the_landed_vol_and_depth_feeds_as_riskgate_would() -> None:
    t = telemetry(spec("BTC-USD", "spot", 8), spec("BTC-RVOL-1H", "realized_vol", 6),
                  spec("BTC-DEPTH-50BPS", "depth", 0))
    land(t, "BTC-USD", "65000")
    land(t, "BTC-RVOL-1H", "0.55")  # 55% annualized
    land(t, "BTC-DEPTH-50BPS", "2500000")  # half the reference depth: a liquidity add-on
    m = t.margin("BTC-USD")
    assert m is not None
    expected = compute_margins(DEFAULT_CURVE, 5500, 2_500_000)
    assert (m["volatility_bps"], m["depth"]) == (5500, 2_500_000)
    assert (m["initial_bps"], m["maintenance_bps"]) == (expected.initial_bps, expected.maintenance_bps)
    assert m["source"] == {"volatility": "BTC-RVOL-1H", "depth": "BTC-DEPTH-50BPS"}

    # Thinner books tighten the margin; calmer markets loosen it.
    land(t, "BTC-DEPTH-50BPS", "500000")
    thinner = t.margin("BTC-USD")
    land(t, "BTC-RVOL-1H", "0.20")
    calmer = t.margin("BTC-USD")
    assert thinner is not None and calmer is not None
    assert thinner["initial_bps"] > m["initial_bps"]  # same vol, less depth
    assert calmer["initial_bps"] < thinner["initial_bps"]  # same depth, less vol


def test_without_vol_and_depth_feeds_it_falls_back_to_landed_prices() -> None:
    t = telemetry(spec("BTC-USD", "spot", 8))
    assert t.margin("BTC-USD") is None  # nothing landed yet
    t.history["BTC-USD"] = deque(
        [(1000.0 + i, str(Decimal(65000) + (i % 3) * 50)) for i in range(10)]
    )
    m = t.margin("BTC-USD")
    assert m is not None and m["volatility_bps"] > 0
    assert m["source"] == {"volatility": "landed prices", "depth": "reference"}
    assert m["depth"] == DEFAULT_CURVE.depth_ref


def test_only_spot_feeds_carry_a_margin() -> None:
    t = telemetry(spec("BTC-USD", "spot", 8), spec("BTC-RVOL-1H", "realized_vol", 6))
    land(t, "BTC-RVOL-1H", "0.5")
    assert t.margin("BTC-RVOL-1H") is None
    assert t.margin("NO-SUCH-FEED") is None
