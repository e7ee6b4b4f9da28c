"""The dashboard's margin is what the deployed RiskGate returns, or it says there is none.

A real anvil: QuorumOracle with a spot, a volatility and a depth feed, a RiskGate with a
governance-set curve for one market, and telemetry reading both as a node's would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from web3 import AsyncWeb3

from aggregation.margin import MarginCurve, Reading, compute_margins
from feeds.kinds import FactorKind
from relayer.chain.anvil import AnvilNode
from relayer.chain.oracle import QuorumOracleClient, deploy_oracle
from relayer.chain.risk_gate import MarketInputs, RiskGateClient, deploy_risk_gate, market_id_bytes
from relayer.metrics import ChainContext, NodeIdentity, Telemetry
from relayer.node import ServedFeed
from relayer.settings import FeedSpec
from relayer.store import Store
from tests.relayer.chain.conftest import ETH_USD, Deployment, anvil, deploy, w3  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

MARKET = market_id_bytes("ETH-PERP")
CURVE = MarginCurve(
    base_im_bps=200, vol_slope_bps=3_000, dispersion_multiplier_bps=10_000, depth_penalty_bps=800,
    depth_ref_usd=10_000_000, floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
)


def expected(curve: MarginCurve, vol: int, depth: int) -> tuple[int, int]:
    m = compute_margins(curve, Reading(vol, 6), depth=Reading(depth, 0))
    return m.initial_bps, m.maintenance_bps


def feed(feed_id: str, kind: str, decimals: int) -> FeedSpec:
    return FeedSpec(feed_id=feed_id, instrument="ETH-USD", kind=FactorKind(kind), decimals=decimals,
                    sources=("binance", "coinbase", "kraken"), min_sources=2)


async def _market(dep: Deployment) -> tuple[RiskGateClient, list[ServedFeed]]:
    vol = await dep.client.add_feed(dep.owner_key, "ETH-VOL", 6, "ETH vol fraction", 0, 20 * 10**6,
                                    breaker_bps=5_000, heartbeat=600)
    depth = await dep.client.add_feed(dep.owner_key, "ETH-DEPTH", 0, "ETH depth USD", 0, 10**15,
                                      breaker_bps=5_000, heartbeat=600)
    gate = RiskGateClient(dep.w3, await deploy_risk_gate(dep.w3, dep.owner_key, dep.client.address))
    await gate.set_curve(dep.owner_key, MARKET, MarketInputs(vol, 600, depth_feed=depth), CURVE)
    served = [ServedFeed(feed(ETH_USD, "spot", 8), 0), ServedFeed(feed("ETH-VOL", "realized_vol", 6), vol),
              ServedFeed(feed("ETH-DEPTH", "depth", 0), depth)]
    return gate, served


def _telemetry(tmp_path: Path, dep: Deployment, served: Sequence[ServedFeed], gate: RiskGateClient | None) -> Telemetry:
    me = NodeIdentity(name="n0", address=dep.anvil.accounts[0][0], dry_run=True, oracle=dep.client.address,
                      risk_gate=gate.address if gate is not None else None)
    t = Telemetry(me, Store(tmp_path / "node.sqlite"))
    t.chain = ChainContext(oracle=dep.client, chain_id=dep.anvil.chain_id, feeds=served, risk_gate=gate)
    return t


def _spot(t: Telemetry) -> dict[str, Any]:
    return next(f for f in t.feed_view() if f["feed_id"] == ETH_USD)


async def test_the_margin_shown_is_what_the_deployed_risk_gate_returns(
    anvil: AnvilNode, w3: AsyncWeb3, tmp_path: Path  # noqa: F811 - fixtures
) -> None:
    dep = await deploy(anvil, w3, n=4, f=1, threshold=3)
    gate, served = await _market(dep)
    vol, depth = served[1].index, served[2].index
    now = await dep.now()
    await dep.transmit(1, 1, dep.updates(now, (0, 3_000 * 10**8), (vol, 600_000), (depth, 4_000_000)))
    t = _telemetry(tmp_path, dep, served, gate)
    await t.sample_chain(slow=True)

    onchain = await gate.margins(MARKET)
    margin = _spot(t)["margin"]
    assert margin is not None and margin["name"] == "ETH-PERP" and margin["error"] is None
    assert (margin["initial_bps"], margin["maintenance_bps"], margin["usable"]) == (
        onchain.initial_bps, onchain.maintenance_bps, True)
    assert (margin["vol_feed_id"], margin["depth_feed_id"]) == ("ETH-VOL", "ETH-DEPTH")
    assert (margin["implied_vol_feed"], margin["dispersion_feed_id"], margin["max_age"]) == (None, None, 600)
    # The curve governance set, on a 6-decimal volatility fraction and depth in USD.
    assert (margin["initial_bps"], margin["maintenance_bps"]) == expected(CURVE, 600_000, 4_000_000) == (2_480, 1_488)
    view = t.risk_gate_view()
    assert view["configured"] is True and view["address"] == gate.address and view["markets"] == [margin]

    # A landing moves the margin: higher volatility, thinner book, tighter margin.
    await dep.transmit(1, 2, dep.updates(now, (vol, 800_000), (depth, 3_000_000)))
    await t.sample_chain(slow=False)
    tighter = _spot(t)["margin"]
    assert tighter["initial_bps"] == (await gate.margins(MARKET)).initial_bps > margin["initial_bps"]

    # Governance replaces the curve: the page follows the chain's new curve.
    looser = dataclasses.replace(CURVE, vol_slope_bps=1_000)
    await gate.set_curve(dep.owner_key, MARKET, MarketInputs(vol, 600, depth_feed=depth), looser)
    await t.sample_chain(slow=True)
    relaxed = _spot(t)["margin"]
    assert relaxed["initial_bps"] == expected(looser, 800_000, 3_000_000)[0] < tighter["initial_bps"]

    # A tripped breaker on an input: the gate calls its margins unusable, and so does the page.
    await dep.transmit(1, 3, dep.updates(now, (vol, 2_000_000)))
    await t.sample_chain(slow=False)
    assert _spot(t)["margin"]["usable"] is False


async def test_a_risk_gate_reading_another_oracle_is_named_not_shown(
    anvil: AnvilNode, w3: AsyncWeb3, tmp_path: Path  # noqa: F811 - fixtures
) -> None:
    dep = await deploy(anvil, w3, n=4, f=1, threshold=3)
    other = await deploy_oracle(w3, dep.owner_key)
    gate = RiskGateClient(w3, await deploy_risk_gate(w3, dep.owner_key, other))
    t = _telemetry(tmp_path, dep, [ServedFeed(feed(ETH_USD, "spot", 8), 0)], gate)
    await t.sample_chain(slow=True)
    view = t.risk_gate_view()
    assert view["configured"] is True and view["markets"] == []
    assert view["error"] is not None and f"reads oracle {QuorumOracleClient(w3, other).address}" in view["error"]
    assert _spot(t)["margin"] is None


async def test_without_a_risk_gate_landed_feeds_carry_no_margin(
    anvil: AnvilNode, w3: AsyncWeb3, tmp_path: Path  # noqa: F811 - fixtures
) -> None:
    dep = await deploy(anvil, w3, n=4, f=1, threshold=3)
    _gate, served = await _market(dep)
    now = await dep.now()
    await dep.transmit(1, 1, dep.updates(now, (0, 3_000 * 10**8), (served[1].index, 600_000)))
    t = _telemetry(tmp_path, dep, served, None)
    await t.sample_chain(slow=True)
    spot = _spot(t)
    assert spot["value"] == "3000.00000000"  # landed and read
    assert spot["margin"] is None
    view = t.risk_gate_view()
    assert view["configured"] is False and "no RiskGate configured" in view["message"]
