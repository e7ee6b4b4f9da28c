"""RiskGate (margins in the units of the feeds it reads, refusal on stale/tripped/negative
data for the markets that use it, governance), the Python mirror's exact agreement with it,
a Chainlink-style consumer on FeedProxy, and the subscription registry."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import fields
from decimal import Decimal
from typing import Any

import pytest
from web3 import Web3

from aggregation.errors import InvalidInput
from aggregation.margin import MAX_DECIMALS, MarginCurve, Reading, compute_margins
from feeds.catalog import load_catalog
from relayer.chain.codec import feed_id_bytes
from relayer.chain.contract import send_call as _send
from relayer.chain.errors import ContractRevert
from relayer.chain.oracle import deploy_contract, deploy_proxy, load_artifact
from relayer.chain.risk_gate import MarginCase, MarketInputs, RiskGateClient, deploy_risk_gate, market_id_bytes
from relayer.chain.subscriptions import SubscriptionRegistryClient, deploy_subscription_registry

from .conftest import Deployment

pytestmark = pytest.mark.integration

ETH_PERP, BTC_PERP = market_id_bytes("ETH-PERP"), market_id_bytes("BTC-PERP")
# 2 % at rest; +30 % of margin per 1.0 of volatility; up to +10 % as depth falls below $10M;
# +1 bps per bps of cross-venue dispersion; within 3 % .. 50 %; maintenance 60 % of initial.
CURVE = MarginCurve(
    base_im_bps=200, vol_slope_bps=3_000, dispersion_multiplier_bps=10_000, depth_penalty_bps=1_000,
    depth_ref_usd=10_000_000, floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
)
VOL_DECIMALS, DEPTH_DECIMALS, DISPERSION_DECIMALS = 6, 0, 2
MAX_AGE = 600


async def _revert_reason(call: Any, oracle: Deployment) -> str | None:
    with pytest.raises(ContractRevert) as caught:
        await _send(oracle.w3, oracle.owner_key, call, "check")
    return caught.value.reason


async def _refusal(gate: RiskGateClient, market: bytes) -> ContractRevert:
    with pytest.raises(ContractRevert) as caught:
        await gate.check_action(market, True)
    return caught.value


async def _market_feeds(oracle: Deployment, asset: str, *, heartbeat: int = 3_600) -> MarketInputs:
    """Realized vol (6-decimal fraction), depth (USD), dispersion (bps, 2 decimals), as the
    devnet catalog ships them; vol bounds allow a negative value, which is how a bad one lands."""
    add = oracle.client.add_feed
    vol = await add(oracle.owner_key, f"{asset}-RVOL", VOL_DECIMALS, "rvol", -10**6, 20 * 10**6,
                    breaker_bps=5_000, heartbeat=heartbeat)
    depth = await add(oracle.owner_key, f"{asset}-DEPTH", DEPTH_DECIMALS, "depth", 0, 10**15,
                      breaker_bps=5_000, heartbeat=heartbeat)
    dispersion = await add(oracle.owner_key, f"{asset}-DISP", DISPERSION_DECIMALS, "disp", 0, 10**6,
                           heartbeat=heartbeat)
    return MarketInputs(realized_vol_feed=vol, max_age=MAX_AGE, depth_feed=depth, dispersion_feed=dispersion)


async def _gate(oracle: Deployment) -> RiskGateClient:
    return RiskGateClient(oracle.w3, await deploy_risk_gate(oracle.w3, oracle.owner_key, oracle.client.address))


def _expected(vol: int, depth: int, dispersion: int) -> tuple[int, int]:
    m = compute_margins(CURVE, Reading(vol, VOL_DECIMALS), depth=Reading(depth, DEPTH_DECIMALS),
                        dispersion=Reading(dispersion, DISPERSION_DECIMALS))
    return m.initial_bps, m.maintenance_bps


async def test_margins_follow_the_curve_in_feed_units_and_refuse_new_risk_on_bad_data(oracle: Deployment) -> None:
    gate, eth = await _gate(oracle), await _market_feeds(oracle, "ETH")
    await gate.set_curve(oracle.owner_key, ETH_PERP, eth, CURVE)
    market = await gate.market(ETH_PERP)
    assert market.inputs == eth and market.curve == CURVE
    assert market.decimals == (VOL_DECIMALS, 0, DEPTH_DECIMALS, DISPERSION_DECIMALS, 0, 0)  # read from the oracle
    vol, depth, disp = eth.realized_vol_feed, eth.depth_feed, eth.dispersion_feed
    assert depth is not None and disp is not None
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (vol, 550_000), (depth, 3_000_000), (disp, 500)))
    calm = await gate.check_action(ETH_PERP, True)
    # 200 + 0.55 * 3000 = 1850; + 1000 * 7/10 = 2550; + 5 bps dispersion = 2555; mm 60 %.
    assert (calm.initial_bps, calm.maintenance_bps) == _expected(550_000, 3_000_000, 500) == (2_555, 1_533)

    # Higher volatility, thinner book, wider dispersion: tighter margins.
    await oracle.transmit(1, 2, oracle.updates(now, (vol, 800_000), (depth, 2_000_000), (disp, 900)))
    tighter = await gate.check_action(ETH_PERP, True)
    assert (tighter.initial_bps, tighter.maintenance_bps) == _expected(800_000, 2_000_000, 900)
    assert tighter.initial_bps > calm.initial_bps and tighter.maintenance_bps > calm.maintenance_bps

    # A 50 %+ jump in volatility trips its breaker: new risk refused by name, reduction passes.
    await oracle.transmit(1, 3, oracle.updates(now, (vol, 2_000_000)))
    assert (await oracle.client.feed_status(vol)).tripped
    refused = await _refusal(gate, ETH_PERP)
    assert refused.reason == "FeedTripped" and refused.error_args == (vol,)
    assert await gate.check_action(ETH_PERP, False) == tighter  # the breaker held the last good value
    assert (await gate.margins(ETH_PERP)).usable is False

    # Older than the market's max age (the feeds' heartbeat is longer): stale, by name.
    await oracle.client.reset_breaker(oracle.owner_key, vol)
    await oracle.transmit(1, 4, oracle.updates(now, (vol, 800_000), (depth, 2_000_000), (disp, 900)))
    assert (await gate.margins(ETH_PERP)).usable is True
    oracle.anvil.rpc("evm_increaseTime", [MAX_AGE + 1])
    oracle.anvil.rpc("evm_mine")
    assert not (await oracle.client.feed_status(vol)).stale  # the oracle's heartbeat has not run out
    refused = await _refusal(gate, ETH_PERP)
    assert refused.reason == "FeedStale" and refused.error_args == (vol, now, MAX_AGE)
    assert await gate.check_action(ETH_PERP, False) == tighter


async def test_funding_and_open_interest_raise_margin_and_isolate_the_markets_that_use_them(
    oracle: Deployment,
) -> None:
    """The catalog's BTC funding (a fraction per 8 h, 8 decimals, signed) and open interest (USD,
    0 decimals) as curve inputs: margins as the mirror computes them, negative funding by its
    absolute value and never refused, and a stale or tripped funding or open-interest feed
    refusing new risk only on the market that reads it."""
    catalog = {f.feed_id: f for f in load_catalog()}
    funding_spec, oi_spec = catalog["BTC-FUNDING-8H"], catalog["BTC-OI-USD"]
    gate, btc = await _gate(oracle), await _market_feeds(oracle, "BTC")
    funding = await oracle.client.add_feed(oracle.owner_key, funding_spec.feed_id, funding_spec.decimals, "funding",
                                           *funding_spec.bounds_fixed, breaker_bps=5_000, breaker_floor=100_000,
                                           heartbeat=3_600)  # jumps of up to 0.1 % per 8 h always pass
    oi = await oracle.client.add_feed(oracle.owner_key, oi_spec.feed_id, oi_spec.decimals, "oi",
                                      *oi_spec.bounds_fixed, heartbeat=3_600)
    crowded = dataclasses.replace(CURVE, funding_slope_bps=1_000_000, funding_threshold_ppm=100,
                                  open_interest_slope_bps=1_000, open_interest_ref_usd=5_000_000_000)
    inputs = dataclasses.replace(btc, funding_feed=funding, open_interest_feed=oi)
    plain = MarketInputs(btc.realized_vol_feed, MAX_AGE)  # the same volatility, no crowding inputs
    await gate.set_curve(oracle.owner_key, BTC_PERP, inputs, crowded)
    await gate.set_curve(oracle.owner_key, ETH_PERP, plain, CURVE)
    market = await gate.market(BTC_PERP)
    assert market.decimals == (6, 0, 0, 2, funding_spec.decimals, oi_spec.decimals) == (6, 0, 0, 2, 8, 0)
    vol, depth, disp = btc.realized_vol_feed, btc.depth_feed, btc.dispersion_feed
    assert depth is not None and disp is not None
    round_ = 0

    async def land(*values: tuple[int, int]) -> None:
        nonlocal round_
        round_ += 1
        receipt = await oracle.transmit(1, round_, oracle.updates(await oracle.now(), *sorted(values)))
        assert receipt.succeeded

    async def expect(values: dict[int, int]) -> None:
        want = market.case([None if f is None else values[f] for f in inputs.feeds()]).mirror()
        got = await gate.check_action(BTC_PERP, False)
        assert got == want

    calm = {vol: 550_000, depth: 3_000_000, disp: 500, funding: 10_000, oi: 4_000_000_000}
    await land(*calm.items())
    await expect(calm)
    base = await gate.check_action(BTC_PERP, True)
    # 0.01 % funding is at the threshold and $4B open interest under the reference: neither adds.
    assert base.initial_bps == _expected(550_000, 3_000_000, 500)[0] == 2_555
    # Funding at -0.05 % per 8 h (shorts crowded) adds 400 bps, as +0.05 % would; OI 50 % over adds 500.
    for rate in (-50_000, 50_000):
        values = {**calm, funding: rate, oi: 7_500_000_000}
        await land((funding, rate), (oi, 7_500_000_000))
        await expect(values)
        crowd = await gate.check_action(BTC_PERP, True)  # negative funding never refuses new risk
        assert crowd.initial_bps == base.initial_bps + 400 + 500
        assert (await gate.margins(BTC_PERP)).usable

    # Open interest older than the market's max age: BTC-PERP refuses new risk, ETH-PERP does not.
    oracle.anvil.rpc("evm_increaseTime", [MAX_AGE + 1])
    oracle.anvil.rpc("evm_mine")
    await land((vol, 550_000), (depth, 3_000_000), (disp, 500), (funding, 50_000))
    refused = await _refusal(gate, BTC_PERP)
    assert refused.reason == "FeedStale" and refused.error_args[0] == oi
    await gate.check_action(ETH_PERP, True)
    await gate.check_action(BTC_PERP, False)  # reducing risk passes

    # A funding jump beyond its breaker (0.05 % to 0.5 % per 8 h) trips it: the same isolation.
    await land((oi, 7_500_000_000), (funding, 500_000))
    assert (await oracle.client.feed_status(funding)).tripped
    refused = await _refusal(gate, BTC_PERP)
    assert refused.reason == "FeedTripped" and refused.error_args == (funding,)
    await gate.check_action(ETH_PERP, True)
    assert not (await gate.margins(BTC_PERP)).usable and (await gate.margins(ETH_PERP)).usable


async def test_negative_or_absurd_inputs_never_block_risk_reduction(oracle: Deployment) -> None:
    gate, eth = await _gate(oracle), await _market_feeds(oracle, "ETH")
    await gate.set_curve(oracle.owner_key, ETH_PERP, eth, CURVE)
    vol, depth, disp = eth.realized_vol_feed, eth.depth_feed, eth.dispersion_feed
    assert depth is not None and disp is not None
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (vol, -5), (depth, 0), (disp, 0)))
    reduced = await gate.check_action(ETH_PERP, False)  # negative vol counts as 0, zero depth: full penalty
    assert (reduced.initial_bps, reduced.maintenance_bps) == _expected(-5, 0, 0) == (1_200, 720)
    refused = await _refusal(gate, ETH_PERP)
    assert refused.reason == "NegativeRiskInput" and refused.error_args == (vol, -5)
    margins = await gate.margins(ETH_PERP)
    assert (margins.initial_bps, margins.usable) == (1_200, False)

    # Absurd but in bounds (a first landing, so no breaker): capped, never reverted.
    btc = await _market_feeds(oracle, "BTC")
    await gate.set_curve(oracle.owner_key, BTC_PERP, btc, CURVE)
    assert btc.depth_feed is not None and btc.dispersion_feed is not None
    await oracle.transmit(1, 2, oracle.updates(
        now, (btc.realized_vol_feed, 20 * 10**6), (btc.depth_feed, 10**15), (btc.dispersion_feed, 10**6)))
    absurd = await gate.check_action(BTC_PERP, False)
    assert (absurd.initial_bps, absurd.maintenance_bps) == (CURVE.cap_im_bps, 3_000)
    assert await gate.check_action(BTC_PERP, True) == absurd  # fresh and in bounds: allowed, at the cap

    # A never-written feed is stale: new risk refused, reduction passes.
    fresh = await _market_feeds(oracle, "SOL")
    await gate.set_curve(oracle.owner_key, market_id_bytes("SOL-PERP"), fresh, CURVE)
    assert (await _refusal(gate, market_id_bytes("SOL-PERP"))).reason == "FeedStale"
    assert (await gate.check_action(market_id_bytes("SOL-PERP"), False)).initial_bps == 1_200


async def test_a_stale_or_tripped_eth_feed_does_not_block_btc_markets(oracle: Deployment) -> None:
    gate = await _gate(oracle)
    eth, btc = await _market_feeds(oracle, "ETH"), await _market_feeds(oracle, "BTC")
    await gate.set_curve(oracle.owner_key, ETH_PERP, eth, CURVE)
    await gate.set_curve(oracle.owner_key, BTC_PERP, btc, CURVE)

    def values(inputs: MarketInputs, vol: int) -> list[tuple[int, int]]:
        assert inputs.depth_feed is not None and inputs.dispersion_feed is not None
        return [(inputs.realized_vol_feed, vol), (inputs.depth_feed, 3_000_000), (inputs.dispersion_feed, 500)]

    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, *values(eth, 600_000), *values(btc, 550_000)))
    oracle.anvil.rpc("evm_increaseTime", [MAX_AGE - 100])
    oracle.anvil.rpc("evm_mine")
    later = await oracle.now()
    await oracle.transmit(1, 2, oracle.updates(later, *values(btc, 560_000)))  # only BTC lands again
    oracle.anvil.rpc("evm_increaseTime", [200])
    oracle.anvil.rpc("evm_mine")

    refused = await _refusal(gate, ETH_PERP)
    assert refused.reason == "FeedStale" and refused.error_args[0] == eth.realized_vol_feed
    btc_margins = await gate.check_action(BTC_PERP, True)  # BTC's own feeds are fresh: new risk passes
    assert (btc_margins.initial_bps, btc_margins.maintenance_bps) == _expected(560_000, 3_000_000, 500)
    assert (await gate.margins(ETH_PERP)).usable is False and (await gate.margins(BTC_PERP)).usable is True

    # ETH fresh again, then its volatility breaker trips: still only ETH is refused.
    now = await oracle.now()
    await oracle.transmit(1, 3, oracle.updates(now, *values(eth, 600_000), *values(btc, 560_000)))
    await oracle.transmit(1, 4, oracle.updates(now, (eth.realized_vol_feed, 3_000_000)))
    assert (await _refusal(gate, ETH_PERP)).reason == "FeedTripped"
    assert await gate.check_action(BTC_PERP, True) == btc_margins


async def test_implied_volatility_raises_margin_only_above_realized(oracle: Deployment) -> None:
    gate, eth = await _gate(oracle), await _market_feeds(oracle, "ETH")
    implied = await oracle.client.add_feed(oracle.owner_key, "ETH-DVOL", 6, "dvol", 0, 20 * 10**6, heartbeat=3_600)
    inputs = MarketInputs(eth.realized_vol_feed, MAX_AGE, implied_vol_feed=implied)
    await gate.set_curve(oracle.owner_key, ETH_PERP, inputs, CURVE)
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (eth.realized_vol_feed, 500_000), (implied, 400_000)))
    assert (await gate.check_action(ETH_PERP, True)).initial_bps == 200 + 1_500  # realized is higher
    await oracle.transmit(1, 2, oracle.updates(now, (eth.realized_vol_feed, 500_000), (implied, 900_000)))
    assert (await gate.check_action(ETH_PERP, True)).initial_bps == 200 + 2_700  # implied is higher
    oracle.anvil.rpc("evm_increaseTime", [MAX_AGE + 1])
    oracle.anvil.rpc("evm_mine")
    assert (await _refusal(gate, ETH_PERP)).reason == "FeedStale"


async def test_devnet_catalog_feeds_give_margins_in_a_sensible_range(oracle: Deployment) -> None:
    """BTC-RVOL-1H (a 6-decimal fraction) and BTC-DEPTH-50BPS (USD): 55 % vol and $3M depth
    land mid-curve, not pinned at the cap as when volatility was read as bps."""
    catalog = {f.feed_id: f for f in load_catalog()}
    index = {}
    for feed_id in ("BTC-RVOL-1H", "BTC-DEPTH-50BPS", "BTC-USD-DISPERSION", "BTC-DVOL"):
        spec = catalog[feed_id]
        scale = Decimal(10) ** spec.decimals
        assert spec.min_value is not None and spec.max_value is not None
        index[feed_id] = await oracle.client.add_feed(
            oracle.owner_key, feed_id, spec.decimals, spec.description,
            int(spec.min_value * scale), int(spec.max_value * scale), heartbeat=spec.heartbeat_s)
    assert (catalog["BTC-RVOL-1H"].decimals, catalog["BTC-DEPTH-50BPS"].decimals) == (6, 0)
    gate = await _gate(oracle)
    inputs = MarketInputs(index["BTC-RVOL-1H"], MAX_AGE, implied_vol_feed=index["BTC-DVOL"],
                          depth_feed=index["BTC-DEPTH-50BPS"], dispersion_feed=index["BTC-USD-DISPERSION"])
    await gate.set_curve(oracle.owner_key, BTC_PERP, inputs, CURVE)
    now = await oracle.now()

    async def land(round_: int, vol: Decimal, implied: Decimal, depth_usd: int, dispersion_bps: Decimal) -> Any:
        await oracle.transmit(1, round_, oracle.updates(now, *sorted([
            (index["BTC-RVOL-1H"], int(vol * 10**6)), (index["BTC-DVOL"], int(implied * 10**6)),
            (index["BTC-DEPTH-50BPS"], depth_usd), (index["BTC-USD-DISPERSION"], int(dispersion_bps * 100))])))
        return await gate.margins(BTC_PERP)

    calm = await land(1, Decimal("0.55"), Decimal("0.50"), 3_000_000, Decimal("4.5"))
    assert calm.usable and 1_500 <= calm.initial_bps <= 3_500 < CURVE.cap_im_bps
    assert calm.initial_bps == 200 + 1_650 + 700 + 4 and calm.maintenance_bps == 1_532
    spike = await land(2, Decimal("1.10"), Decimal("0.95"), 1_500_000, Decimal("30"))
    assert calm.initial_bps < spike.initial_bps < CURVE.cap_im_bps
    quiet = await land(3, Decimal("0.20"), Decimal("0.25"), 20_000_000, Decimal("1"))
    assert CURVE.floor_im_bps < quiet.initial_bps < calm.initial_bps


async def test_curves_and_inputs_are_governance_only_and_bounded_by_name(oracle: Deployment) -> None:
    gate, eth = await _gate(oracle), await _market_feeds(oracle, "ETH")
    stranger = oracle.anvil.accounts[20][1]
    with pytest.raises(ContractRevert) as caught:
        await gate.set_curve(stranger, ETH_PERP, eth, CURVE)
    assert caught.value.reason == "NotOwner"

    def curve(**changes: int) -> tuple[int, ...]:  # a raw ABI tuple: the mirror would refuse a bad one
        return tuple(changes.get(f.name, v) for f, v in zip(fields(MarginCurve), CURVE.as_tuple()))

    contract = oracle.w3.eth.contract(address=gate.address, abi=load_artifact("RiskGate")["abi"])
    bad_curves = {
        "CapAboveFull": curve(cap_im_bps=10_001),
        "ZeroFloor": curve(floor_mm_bps=0),
        "FloorAboveCap": curve(floor_im_bps=5_001),
        "MaintenanceAboveInitial": curve(floor_mm_bps=301),
        "FundingThresholdAboveFull": curve(funding_threshold_ppm=1_000_001),
    }
    for name, raw in bad_curves.items():
        call = contract.functions.setCurve(ETH_PERP, eth.as_tuple(), raw)
        assert await _revert_reason(call, oracle) == name
        with pytest.raises(InvalidInput, match=name):  # the mirror refuses the same curve by the same name
            MarginCurve(*raw)
    assert await _revert_reason(contract.functions.setCurve(
        ETH_PERP, eth.as_tuple(), curve(mm_ratio_bps=10_001)), oracle) == "MaintenanceAboveInitial"

    no_depth_ref = curve(depth_ref_usd=0)
    assert await _revert_reason(contract.functions.setCurve(ETH_PERP, eth.as_tuple(), no_depth_ref), oracle) == \
        "ZeroDepthRef"
    await gate.set_curve(oracle.owner_key, ETH_PERP, MarketInputs(eth.realized_vol_feed, MAX_AGE),
                         MarginCurve(*no_depth_ref))  # fine without a depth feed
    with_oi = dataclasses.replace(eth, open_interest_feed=eth.depth_feed)
    assert await _revert_reason(contract.functions.setCurve(ETH_PERP, with_oi.as_tuple(), CURVE.as_tuple()), oracle) \
        == "ZeroOpenInterestRef"
    inputs = list(eth.as_tuple())
    for changes, name in (({6: 0}, "ZeroMaxAge"), ({0: 0xFFFF}, "MissingVolatilityFeed"), ({2: 99}, "UnknownFeed")):
        raw_inputs = tuple(changes.get(i, v) for i, v in enumerate(inputs))
        assert await _revert_reason(contract.functions.setCurve(ETH_PERP, raw_inputs, CURVE.as_tuple()), oracle) == name
    wide = await oracle.client.add_feed(oracle.owner_key, "WIDE", MAX_DECIMALS + 1, "too many decimals", 0, 10**9)
    assert await _revert_reason(contract.functions.setCurve(
        ETH_PERP, (wide, *[0xFFFF] * 5, MAX_AGE), CURVE.as_tuple()), oracle) == "UnsupportedDecimals"
    assert (await _refusal(gate, b"\x01" * 32)).reason == "UnknownMarket"


async def test_risk_gate_ownership_moves_in_two_steps(oracle: Deployment) -> None:
    gate_client, eth = await _gate(oracle), await _market_feeds(oracle, "ETH")
    gate = oracle.w3.eth.contract(address=gate_client.address, abi=load_artifact("RiskGate")["abi"])
    new_address, new_key = oracle.anvil.accounts[27]
    stranger = oracle.anvil.accounts[26][1]
    owner_address = Web3.to_checksum_address(oracle.anvil.accounts[0][0])
    assert await _revert_reason(gate.functions.transferOwnership("0x" + "00" * 20), oracle) == "ZeroAddress"
    with pytest.raises(ContractRevert) as caught:
        await _send(oracle.w3, stranger, gate.functions.transferOwnership(new_address), "transferOwnership")
    assert caught.value.reason == "NotOwner"

    await _send(oracle.w3, oracle.owner_key, gate.functions.transferOwnership(new_address), "transferOwnership")
    assert await gate.functions.owner().call() == owner_address  # not yet
    assert await gate.functions.pendingOwner().call() == new_address
    with pytest.raises(ContractRevert) as caught:
        await _send(oracle.w3, stranger, gate.functions.acceptOwnership(), "acceptOwnership")
    assert caught.value.reason == "NotPendingOwner"

    await _send(oracle.w3, new_key, gate.functions.acceptOwnership(), "acceptOwnership")
    assert await gate.functions.owner().call() == new_address
    assert int(await gate.functions.pendingOwner().call(), 16) == 0
    set_curve = gate.functions.setCurve(ETH_PERP, eth.as_tuple(), CURVE.as_tuple())
    assert await _revert_reason(set_curve, oracle) == "NotOwner"
    await gate_client.set_curve(new_key, ETH_PERP, eth, CURVE)


# -- differential: Python mirror == contract, exactly --------------------------------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CASES_PER_KIND = 1_000


FOCUS_KINDS = ("realized_vol", "implied_vol", "depth", "dispersion", "funding_rate", "open_interest")
# Each kind's decimals as the catalog ships its feeds: the draws use them often, beside any other.
CATALOG_DECIMALS = {kind: sorted({f.decimals for f in load_catalog() if str(f.kind) == kind}) for kind in FOCUS_KINDS}


def _random_curve(rng: random.Random) -> MarginCurve:
    cap = rng.choice((rng.randint(1, 10_000), 10_000, 5_000))
    floor_im = rng.randint(1, cap)
    u32 = 2**32 - 1

    def small_or_wide(small: int) -> int:
        return rng.choice((rng.randint(0, small), rng.randint(0, u32), 0))

    return MarginCurve(
        base_im_bps=small_or_wide(3_000), vol_slope_bps=small_or_wide(20_000),
        dispersion_multiplier_bps=small_or_wide(50_000), depth_penalty_bps=small_or_wide(5_000),
        depth_ref_usd=rng.choice((rng.randint(1, 10**9), rng.randint(1, 2**64 - 1), 1)),
        floor_im_bps=floor_im, cap_im_bps=cap, mm_ratio_bps=rng.randint(0, 10_000),
        floor_mm_bps=rng.randint(1, floor_im),
        funding_slope_bps=small_or_wide(10_000_000),
        funding_threshold_ppm=rng.choice((rng.randint(0, 1_000), rng.randint(0, 1_000_000), 0, 1_000_000)),
        open_interest_slope_bps=small_or_wide(5_000),
        open_interest_ref_usd=rng.choice((rng.randint(1, 10**10), rng.randint(1, 10**6), rng.randint(0, 2**64 - 1), 1, 0)),
    )


def _random_reading(rng: random.Random, kind: str, near: int | None = None) -> Reading:
    """A raw int64 value with decimals: the catalog's for ``kind``, or any; ``near`` (a raw
    value at 0 decimals' scale, e.g. a reference or threshold) adds draws around it."""
    decimals = rng.choice((rng.randint(0, MAX_DECIMALS), 0, 2, 6, 8, MAX_DECIMALS, *CATALOG_DECIMALS[kind] * 3))
    scale = 10**decimals
    choices = [
        rng.randint(INT64_MIN, INT64_MAX), rng.randint(-10 * scale, 10 * scale), rng.randint(0, 10**7),
        rng.choice((0, -1, 1, INT64_MIN, INT64_MAX)), rng.randint(0, 3 * scale),
    ]
    if near is not None:  # around a reference or threshold, where a term starts
        choices.append(near * scale + rng.randint(-3, 3))
    if kind == "open_interest" and near:  # up to three times the reference: a crowded market
        choices.append(rng.randint(near * scale, 3 * near * scale))
    if kind == "funding_rate":  # around the threshold (ppm of 1.0), either sign
        threshold = near or 0
        at = threshold * scale // 1_000_000 + rng.randint(-3, 3)
        choices = [*choices[:-1], rng.choice((at, -at)), rng.randint(-scale // 20, scale // 20)]
    return Reading(max(INT64_MIN, min(INT64_MAX, rng.choice(choices))), decimals)  # the oracle stores int64


def _random_cases(rng: random.Random, focus: str) -> list[MarginCase]:
    """CASES_PER_KIND cases where ``focus`` is always used and random; the others random or unused."""
    cases: list[MarginCase] = []
    for _ in range(CASES_PER_KIND):
        curve = _random_curve(rng)
        near = {"depth": curve.depth_ref_usd, "funding_rate": curve.funding_threshold_ppm,
                "open_interest": curve.open_interest_ref_usd}
        readings = {kind: _random_reading(rng, kind, near.get(kind)) for kind in FOCUS_KINDS}
        used = {k: k == focus or k == "realized_vol" or rng.random() < 0.5 for k in readings}
        cases.append(MarginCase(curve, readings["realized_vol"], *(readings[k] if used[k] else None
                                                                  for k in FOCUS_KINDS[1:])))
    return cases


@pytest.mark.parametrize("focus", FOCUS_KINDS)
async def test_python_margins_equal_the_contract_exactly(oracle: Deployment, focus: str) -> None:
    gate = await _gate(oracle)
    cases = _random_cases(random.Random(f"risk-gate-mirror-{focus}"), focus)
    onchain = await gate.compute_margins(cases)
    mirror = [case.mirror() for case in cases]
    assert len(onchain) == len(mirror) == CASES_PER_KIND
    mismatches = [(case, a, b) for case, a, b in zip(cases, onchain, mirror) if a != b]
    assert mismatches == []
    # The draws reach the interesting parts of the curve, not just one clamp, and the focused
    # input moves the margin in some of them.
    initial = [m.initial_bps for m in mirror]
    assert any(c.curve.floor_im_bps < m < c.curve.cap_im_bps for c, m in zip(cases, initial))
    assert any(m == c.curve.cap_im_bps for c, m in zip(cases, initial))
    assert any(m == c.curve.floor_im_bps for c, m in zip(cases, initial))
    if focus != "realized_vol":
        field = {"funding_rate": "funding"}.get(focus, focus)
        without = [dataclasses.replace(c, **{field: None}).mirror() for c in cases]
        assert sum(a != b for a, b in zip(mirror, without)) >= CASES_PER_KIND // 100


# -- a consumer written only against AggregatorV3Interface -------------------------


async def test_chainlink_style_consumer_works_unchanged_on_the_proxy(oracle: Deployment) -> None:
    proxy = await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address, 0)
    address = await deploy_contract(oracle.w3, oracle.owner_key, "ChainlinkConsumer", proxy, 300)
    consumer = oracle.w3.eth.contract(address=address, abi=load_artifact("ChainlinkConsumer")["abi"])

    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (0, 3_000 * 10**8)))
    assert await consumer.functions.price().call() == 3_000 * 10**18  # 8 decimals scaled to 18

    oracle.anvil.rpc("evm_increaseTime", [301])
    oracle.anvil.rpc("evm_mine")
    assert await _revert_reason(consumer.functions.price(), oracle) == "StalePrice"


# -- subscriptions ---------------------------------------------------------------------


async def _registry(oracle: Deployment) -> SubscriptionRegistryClient:
    address = await deploy_subscription_registry(oracle.w3, oracle.owner_key, oracle.client.address, 5, 60)
    return SubscriptionRegistryClient(oracle.w3, address)


async def test_subscription_union_is_the_tightest_tolerance(oracle: Deployment) -> None:
    registry = await _registry(oracle)
    lender, perps, options = (oracle.anvil.accounts[i][1] for i in (21, 22, 23))
    for i in (21, 22, 23):
        await registry.approve(oracle.owner_key, oracle.anvil.accounts[i][0], 4)
    await registry.subscribe(lender, "ETH/USD", 50, 3_600)
    await registry.subscribe(perps, "ETH/USD", 10, 7_200)
    await registry.subscribe(perps, "BTC/USD", 20, 600)
    await registry.subscribe(options, "ETH/USD", 100, 60)
    assert await registry.union() == {feed_id_bytes("ETH/USD"): (10, 60), feed_id_bytes("BTC/USD"): (20, 600)}
    # Addresses inside returned structs come back checksummed, as everywhere in this package.
    subscribers = {s.subscriber for s in await registry.subscriptions()}
    assert subscribers == {oracle.anvil.accounts[i][0] for i in (21, 22, 23)}

    await registry.subscribe(perps, "ETH/USD", 75, 7_200)  # loosened: an update, not a second entry
    await registry.unsubscribe(options, "ETH/USD")
    assert await registry.union() == {feed_id_bytes("ETH/USD"): (50, 3_600), feed_id_bytes("BTC/USD"): (20, 600)}
    kinds = [e.event for e in await registry.contract.events.SubscriptionUpdated().get_logs(from_block=0)]
    assert kinds == ["SubscriptionUpdated"]
    assert len(await registry.contract.events.Subscribed().get_logs(from_block=0)) == 4
    assert len(await registry.contract.events.Unsubscribed().get_logs(from_block=0)) == 1

    with pytest.raises(ContractRevert) as caught:
        await registry.subscribe(lender, "ETH/USD", 0, 60)
    assert caught.value.reason == "InvalidSubscription"
    with pytest.raises(ContractRevert) as caught:
        await registry.unsubscribe(options, "BTC/USD")
    assert caught.value.reason == "NotSubscribed"


async def test_strangers_unknown_feeds_and_wishes_below_the_floors_are_refused(oracle: Deployment) -> None:
    registry = await _registry(oracle)
    stranger_address, stranger = oracle.anvil.accounts[24]
    with pytest.raises(ContractRevert) as caught:
        await registry.subscribe(stranger, "ETH/USD", 50, 3_600)
    assert caught.value.reason == "NotApproved"
    with pytest.raises(ContractRevert) as caught:  # only the owner approves
        await registry.approve(stranger, stranger_address, 100)
    assert caught.value.reason == "NotOwner"

    perps_address, perps = oracle.anvil.accounts[25]
    await registry.approve(oracle.owner_key, perps_address, 1)
    with pytest.raises(ContractRevert) as caught:
        await registry.subscribe(perps, "DOGE/USD", 50, 3_600)
    assert caught.value.reason == "UnknownFeed"
    with pytest.raises(ContractRevert) as caught:
        await registry.subscribe(perps, "ETH/USD", 4, 3_600)  # default floor: 5 bps
    assert caught.value.reason == "BelowFloor"
    await registry.set_floors(oracle.owner_key, "ETH/USD", 20, 300)
    with pytest.raises(ContractRevert) as caught:
        await registry.subscribe(perps, "ETH/USD", 25, 120)  # the feed's own floor: 300 s
    assert caught.value.reason == "BelowFloor" and caught.value.error_args[1:] == (20, 300)
    with pytest.raises(ContractRevert) as caught:
        await registry.set_floors(oracle.owner_key, "DOGE/USD", 20, 300)
    assert caught.value.reason == "UnknownFeed"

    await registry.subscribe(perps, "ETH/USD", 20, 300)
    with pytest.raises(ContractRevert) as caught:  # bounded: approved for one
        await registry.subscribe(perps, "BTC/USD", 50, 3_600)
    assert caught.value.reason == "TooManySubscriptions"
    await registry.subscribe(perps, "ETH/USD", 30, 600)  # replacing its one subscription is fine
    assert await registry.allowance(perps_address) == (1, 1)

    await registry.revoke(oracle.owner_key, perps_address)
    assert await registry.subscriptions() == []
    assert await registry.allowance(perps_address) == (0, 0)
    with pytest.raises(ContractRevert) as caught:
        await registry.subscribe(perps, "ETH/USD", 30, 600)
    assert caught.value.reason == "NotApproved"


async def test_promises_combine_catalog_defaults_subscriptions_and_floors(oracle: Deployment) -> None:
    from aggregation.trigger import Promise

    registry = await _registry(oracle)
    address, lender = oracle.anvil.accounts[26]
    await registry.approve(oracle.owner_key, address, 5)
    defaults = {feed_id_bytes("ETH/USD"): Promise(25, 3_600), feed_id_bytes("BTC/USD"): Promise(3, 3_600)}
    await registry.subscribe(lender, "ETH/USD", 10, 7_200)
    promises = await registry.promises(defaults)
    assert promises[feed_id_bytes("ETH/USD")] == Promise(10, 3_600)  # tighter deviation, default heartbeat
    assert promises[feed_id_bytes("BTC/USD")] == Promise(5, 3_600)  # a default below the floor is clamped


async def test_an_observation_ahead_of_the_block_never_makes_updated_at_future(oracle: Deployment) -> None:
    """The oracle accepts observation times a little ahead of its block (clock skew); a
    consumer's `block.timestamp - updatedAt` must not underflow on them."""
    proxy_address = await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address, 0)
    address = await deploy_contract(oracle.w3, oracle.owner_key, "ChainlinkConsumer", proxy_address, 300)
    consumer = oracle.w3.eth.contract(address=address, abi=load_artifact("ChainlinkConsumer")["abi"])
    proxy = oracle.w3.eth.contract(address=proxy_address, abi=load_artifact("FeedProxy")["abi"])

    ahead = await oracle.now() + 30
    await oracle.transmit(1, 1, oracle.updates(ahead, (0, 3_000 * 10**8)))
    block_time = await oracle.now()
    assert block_time < ahead
    _, answer, started, updated, _ = await proxy.functions.latestRoundData().call()
    assert answer == 3_000 * 10**8 and started == updated <= block_time + 1
    assert await consumer.functions.price().call() == 3_000 * 10**18  # no arithmetic underflow
    assert await proxy.functions.latestTimestamp().call() <= block_time + 1


async def test_aggregator_v2_members_answer_like_chainlinks(oracle: Deployment) -> None:
    proxy = oracle.w3.eth.contract(address=await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address, 0),
                                   abi=load_artifact("FeedProxy")["abi"])
    # No data yet: V2 answers 0 where V3 reverts.
    assert await proxy.functions.latestAnswer().call() == 0
    assert await proxy.functions.latestTimestamp().call() == 0
    assert await proxy.functions.latestRound().call() == 0
    assert await proxy.functions.getAnswer(1).call() == 0

    t = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(t, (0, 3_000 * 10**8)))
    await oracle.transmit(1, 2, oracle.updates(t + 1, (0, 3_005 * 10**8)))
    assert await proxy.functions.latestAnswer().call() == 3_005 * 10**8
    assert await proxy.functions.latestRound().call() == 2
    expected = min(t + 1, await oracle.now())  # never ahead of the block read
    assert await proxy.functions.latestTimestamp().call() == expected
    assert await proxy.functions.getAnswer(2).call() == 3_005 * 10**8
    assert await proxy.functions.getTimestamp(2).call() == expected
    assert await proxy.functions.getAnswer(99).call() == 0 and await proxy.functions.getTimestamp(99).call() == 0
    assert await proxy.functions.getAnswer(2**200).call() == 0
