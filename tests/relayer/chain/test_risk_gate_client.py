"""RiskGateClient against a deployed RiskGate: markets found from CurveSet, margins as the
contract's own view returns them, reverts by name."""

from __future__ import annotations

import dataclasses

import pytest

from aggregation.margin import MarginCurve, Reading, compute_margins
from relayer.chain.errors import ContractRevert
from relayer.chain.risk_gate import MarketInputs, RiskGateClient, RiskMarket, deploy_risk_gate, market_id_bytes

from .conftest import Deployment

pytestmark = pytest.mark.integration

CURVE = MarginCurve(
    base_im_bps=200, vol_slope_bps=3_000, dispersion_multiplier_bps=10_000, depth_penalty_bps=800,
    depth_ref_usd=10_000_000, floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
)


async def test_markets_curves_and_margins_read_from_the_gate(oracle: Deployment) -> None:
    gate = RiskGateClient(oracle.w3, await deploy_risk_gate(oracle.w3, oracle.owner_key, oracle.client.address))
    assert await gate.oracle() == oracle.client.address
    vol = await oracle.client.add_feed(oracle.owner_key, "ETH-VOL", 6, "vol fraction", 0, 20 * 10**6)
    depth = await oracle.client.add_feed(oracle.owner_key, "ETH-DEPTH", 0, "depth USD", 0, 10**15)
    eth, raw_id = market_id_bytes("ETH-PERP"), b"\xff" * 32
    eth_inputs = MarketInputs(vol, 600, depth_feed=depth)
    raw_inputs = MarketInputs(depth, 300, implied_vol_feed=vol)
    replaced = dataclasses.replace(CURVE, base_im_bps=400)
    await gate.set_curve(oracle.owner_key, eth, eth_inputs, CURVE)
    await gate.set_curve(oracle.owner_key, raw_id, raw_inputs, CURVE)
    await gate.set_curve(oracle.owner_key, eth, eth_inputs, replaced)

    head = await gate.rpc.block_number()
    events = await gate.curve_events(0, head)
    assert events == [RiskMarket(eth, eth_inputs, (6, 0, 0, 0, 0, 0), CURVE),
                      RiskMarket(raw_id, raw_inputs, (0, 6, 0, 0, 0, 0), CURVE),
                      RiskMarket(eth, eth_inputs, (6, 0, 0, 0, 0, 0), replaced)]
    assert [m.name for m in events[:2]] == ["ETH-PERP", "0x" + "ff" * 32]
    assert (events[0].vol_feed, events[0].depth_feed, events[1].depth_feed) == (vol, depth, None)
    assert await gate.market(eth) == events[-1]
    assert await gate.curve_events(head, head) == events[-1:]  # one block, one event

    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (vol, 600_000), (depth, 4_000_000)))
    margins = await gate.margins(eth)
    expected = compute_margins(replaced, Reading(600_000, 6), depth=Reading(4_000_000, 0))
    assert (margins.initial_bps, margins.maintenance_bps, margins.usable) == (
        expected.initial_bps, expected.maintenance_bps, True)
    assert await gate.check_action(eth, True) == expected

    with pytest.raises(ContractRevert) as caught:
        await gate.margins(market_id_bytes("NO-SUCH"))
    assert caught.value.reason == "UnknownMarket"
    with pytest.raises(ValueError, match="32 bytes"):
        market_id_bytes("X" * 33)
