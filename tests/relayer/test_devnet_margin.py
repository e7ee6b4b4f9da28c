"""The devnet's margin desk without a chain: which markets the served feeds make, their data age
limit, the margins line, the curve on the simulated market's calm inputs, and the spot breaker
against the simulated market's largest move."""

from __future__ import annotations

from typing import Any

import pytest

from aggregation.margin import Reading, compute_margins
from feeds.catalog import load_catalog
from feeds.market import MarketModel
from relayer.chain.oracle import FeedStatus
from relayer.chain.risk_gate import MarketInputs, MarketMargins
from relayer.devnet_margin import (
    MARKETS,
    SPOT_BREAKER_BPS,
    FeedWatch,
    format_margins,
    listable,
    market_max_age,
    sync_due,
)

pytestmark = pytest.mark.unit


def _served(kinds: set[str] | None = None) -> list[dict[str, Any]]:
    """The packaged catalog as the devnet lists its feeds (index in catalog order)."""
    return [{"feed_id": f.feed_id, "instrument": f.instrument, "kind": str(f.kind), "index": i,
             "heartbeat_s": f.heartbeat_s}
            for i, f in enumerate(load_catalog()) if kinds is None or str(f.kind) in kinds]


def test_max_age_is_thirty_rounds_and_at_least_a_minute_or_the_heartbeat_under_the_trigger_policy() -> None:
    assert market_max_age(1000, "all", [3600]) == 60
    assert market_max_age(500, "all", [3600]) == 60
    assert market_max_age(5000, "all", [3600]) == 150
    assert market_max_age(1000, "trigger", [600, 3600]) == 3600


def test_markets_read_every_served_input_of_their_instrument() -> None:
    served = _served()
    index = {fd["feed_id"]: fd["index"] for fd in served}
    assert listable(MARKETS[0], served, 1000, "all") == (index["BTC-USD"], MarketInputs(
        index["BTC-RVOL-1H"], 60, index["BTC-DVOL"], index["BTC-DEPTH-50BPS"], index["BTC-USD-DISPERSION"],
        index["BTC-FUNDING-8H"], index["BTC-OI-USD"]))
    # ETH-PERP reads no crowding inputs, though the catalog serves them for ETH.
    eth = listable(MARKETS[1], served, 1000, "all")
    assert not isinstance(eth, str) and (eth[1].funding_feed, eth[1].open_interest_feed) == (None, None)
    # Only spot and realized volatility are needed; a catalog without implied vol leaves it out.
    partial = _served({"spot", "realized_vol", "depth"})
    price, inputs = listable(MARKETS[1], partial, 1000, "all")  # type: ignore[misc]
    assert (inputs.implied_vol_feed, inputs.dispersion_feed) == (None, None) and inputs.depth_feed is not None


def test_a_market_without_a_volatility_feed_is_left_out_and_says_why() -> None:
    reason = listable(MARKETS[0], _served({"spot"}), 1000, "all")
    assert reason == "no BTC-PERP: the catalog serves no realized_vol feed for BTC-USD"


def test_the_curve_on_calm_simulated_inputs_and_in_a_volatility_spike() -> None:
    btc = MARKETS[0]
    # What the calm devnet lands: volatility near 1.0, DVOL 0.47, $42M depth, 5.3 bps dispersion.
    calm = compute_margins(btc.curve(), Reading(997_564, 6), implied_vol=Reading(473_400, 6),
                           depth=Reading(42_069_355, 0), dispersion=Reading(531, 2))
    assert (calm.initial_bps, calm.maintenance_bps) == (200 + 997 + 10, (200 + 997 + 10) * 6 // 10)
    spike = compute_margins(btc.curve(), Reading(2_000_000, 6), implied_vol=Reading(900_000, 6),
                            depth=Reading(15_000_000, 0), dispersion=Reading(2_000, 2))
    assert spike.initial_bps >= calm.initial_bps * 3 // 2
    assert spike.initial_bps == 200 + 2_000 + 40 + 250
    # Crowding on BTC-PERP: the simulated market's resting funding (0.01 % per 8 h) and a median
    # venue's open interest ($2.8B, under the $3B reference) add nothing; the funding walk's
    # extreme, -0.05 % per 8 h, adds 2 %; open interest at $4.5B adds 5 %.
    calm_inputs = {"implied_vol": Reading(473_400, 6), "depth": Reading(42_069_355, 0), "dispersion": Reading(531, 2)}
    rv = Reading(997_564, 6)
    resting = compute_margins(btc.curve(), rv, **calm_inputs, funding=Reading(10_000, 8),
                              open_interest=Reading(2_820_000_000, 0))
    assert resting == calm
    crowded = compute_margins(btc.curve(), rv, **calm_inputs, funding=Reading(-50_000, 8),
                              open_interest=Reading(4_500_000_000, 0))
    assert crowded.initial_bps == calm.initial_bps + 200 + 500
    assert MARKETS[1].curve().funding_slope_bps == MARKETS[1].curve().open_interest_slope_bps == 0
    # The cap holds however wild the inputs.
    assert compute_margins(btc.curve(), Reading(10**12, 6)).initial_bps == 5_000


def test_format_margins_reads_bps_as_percent_and_flags_unusable_inputs() -> None:
    text = format_margins({"BTC-PERP": MarketMargins(1194, 716, True), "ETH-PERP": MarketMargins(305, 150, False)})
    assert text == "BTC-PERP IM 11.94% MM 7.16%  ETH-PERP IM 3.05% MM 1.50% (refuses new risk)"
    assert format_margins({}) == ""


@pytest.mark.parametrize("seed", [7, 1, 2024])
def test_the_simulated_market_never_moves_as_far_as_the_spot_breaker(seed: int) -> None:
    """The devnet's default market (seed 7) and others: over two hours sampled every 7 s, no two
    prices are as far apart as the breaker's limit, so a calm devnet never trips it."""
    model = MarketModel(seed)
    for instrument in model.instruments:
        prices = [model.true_price(instrument, 1_700_000_000.0 + 7 * i) for i in range(1_000)]
        low, high = min(prices), max(prices)
        assert (high - low) * 10_000 < SPOT_BREAKER_BPS * low / 2, (instrument, low, high)


def _status(round_id: int, observed_at: int, *, stale: bool = False, tripped: bool = False) -> FeedStatus:
    return FeedStatus(value=1, observed_at=observed_at, round_id=round_id, stale=stale, tripped=tripped,
                      signer_count=3, threshold=2, heartbeat=3_600)


def test_the_keeper_syncs_only_when_the_vault_would_record_trouble_or_a_recovery() -> None:
    max_age, now = 60, 10_000
    def due(status: FeedStatus, trouble: int = 0, recovered: int = 0) -> str | None:
        return sync_due(FeedWatch(7, status, trouble, recovered), max_age, now)
    assert due(_status(5, now - 1)) is None  # healthy, nothing recorded
    assert due(_status(5, now, tripped=True)) == "trouble"
    assert due(_status(5, now, tripped=True), trouble=5) is None  # already recorded at this round
    assert due(_status(5, now - max_age - 1)) == "trouble"  # too old for the market
    assert due(_status(5, now, stale=True)) == "trouble"  # past its heartbeat, or the oracle paused
    assert due(_status(0, 0, stale=True)) is None  # never written: no cool-down for a first value
    assert due(_status(5, now), trouble=5) is None  # usable, but still the troubled round
    assert due(_status(6, now), trouble=5) == "recovery"
    assert due(_status(9, now), trouble=5, recovered=now - 3) is None  # the recovery is recorded once
    assert due(_status(9, now, tripped=True), trouble=5, recovered=now - 3) == "trouble"  # new trouble
