"""RiskGateClient against a deployed RiskGate: markets found from CurveSet, margins as the
contract's own view returns them, reverts by name."""

from __future__ import annotations

import dataclasses

import pytest

from aggregation.margin import MarginCurve, compute_margins
from relayer.chain.errors import ContractRevert
from relayer.chain.risk_gate import RiskGateClient, RiskMarket, deploy_risk_gate, market_id_bytes

from .conftest import Deployment

pytestmark = pytest.mark.integration

CURVE = MarginCurve(
    base_im_bps=200, vol_multiplier_bps=2_500, depth_penalty_bps=800, depth_ref=10**9,
    floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
)


async def test_markets_curves_and_margins_read_from_the_gate(oracle: Deployment) -> None:
    gate = RiskGateClient(oracle.w3, await deploy_risk_gate(oracle.w3, oracle.owner_key, oracle.client.address))
    assert await gate.oracle() == oracle.client.address
    vol = await oracle.client.add_feed(oracle.owner_key, "ETH-VOL", 0, "vol", 0, 100_000)
    depth = await oracle.client.add_feed(oracle.owner_key, "ETH-DEPTH", 0, "depth", 0, 10**15)
    eth, raw_id = market_id_bytes("ETH-PERP"), b"\xff" * 32
    replaced = dataclasses.replace(CURVE, base_im_bps=400)
    await gate.set_curve(oracle.owner_key, eth, vol, depth, CURVE)
    await gate.set_curve(oracle.owner_key, raw_id, depth, vol, CURVE)
    await gate.set_curve(oracle.owner_key, eth, vol, depth, replaced)

    head = await gate.rpc.block_number()
    events = await gate.curve_events(0, head)
    assert events == [RiskMarket(eth, vol, depth, CURVE), RiskMarket(raw_id, depth, vol, CURVE),
                      RiskMarket(eth, vol, depth, replaced)]
    assert [m.name for m in events[:2]] == ["ETH-PERP", "0x" + "ff" * 32]
    assert await gate.market(eth) == RiskMarket(eth, vol, depth, replaced)
    assert await gate.curve_events(head, head) == events[-1:]  # one block, one event

    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (vol, 6_000), (depth, 4 * 10**8)))
    margins = await gate.margins(eth)
    expected = compute_margins(replaced, 6_000, 4 * 10**8)
    assert (margins.initial_bps, margins.maintenance_bps, margins.usable) == (
        expected.initial_bps, expected.maintenance_bps, True)

    with pytest.raises(ContractRevert) as caught:
        await gate.margins(market_id_bytes("NO-SUCH"))
    assert caught.value.reason == "UnknownMarket"
    with pytest.raises(ValueError, match="32 bytes"):
        market_id_bytes("X" * 33)
