"""RiskGate (margins, refusal on stale/tripped data, governance), the Python mirror's exact
agreement with it, a Chainlink-style consumer on FeedProxy, and the subscription registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import HTTPProvider, Web3

from aggregation.margin import MarginCurve, compute_margins
from relayer.chain.anvil import AnvilNode
from relayer.chain.codec import feed_id_bytes
from relayer.chain.errors import ContractRevert
from relayer.chain.contract import send_call as _send
from relayer.chain.oracle import deploy_contract, deploy_proxy, load_artifact
from relayer.chain.subscriptions import SubscriptionRegistryClient, deploy_subscription_registry

from .conftest import Deployment

pytestmark = pytest.mark.integration

MARKET = b"ETH-PERP".ljust(32, b"\x00")
CURVE = MarginCurve(
    base_im_bps=200, vol_multiplier_bps=2_500, depth_penalty_bps=800, depth_ref=10**9,
    floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
)


async def _risk_gate(oracle: Deployment) -> Any:
    address = await deploy_contract(oracle.w3, oracle.owner_key, "RiskGate", oracle.client.address)
    gate = oracle.w3.eth.contract(address=address, abi=load_artifact("RiskGate")["abi"])
    vol = await oracle.client.add_feed(oracle.owner_key, "ETH-VOL", 0, "ETH 30d vol bps", 0, 100_000,
                                       breaker_bps=5_000, heartbeat=600)
    depth = await oracle.client.add_feed(oracle.owner_key, "ETH-DEPTH", 0, "ETH 2% depth USD", 0, 10**15,
                                         breaker_bps=5_000, heartbeat=600)
    await _send(oracle.w3, oracle.owner_key, gate.functions.setCurve(MARKET, vol, depth, CURVE.as_tuple()), "setCurve")
    return gate, vol, depth


async def _revert_reason(call: Any, oracle: Deployment) -> str | None:
    with pytest.raises(ContractRevert) as caught:
        await _send(oracle.w3, oracle.owner_key, call, "check")
    return caught.value.reason


async def test_risk_gate_margins_follow_the_curve_and_refuse_on_bad_data(oracle: Deployment) -> None:
    gate, vol, depth = await _risk_gate(oracle)
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (vol, 6_000), (depth, 4 * 10**8)))
    expected = compute_margins(CURVE, 6_000, 4 * 10**8)
    assert await gate.functions.checkAction(MARKET, True).call() == [expected.initial_bps, expected.maintenance_bps]

    # Higher volatility and thinner depth: tighter margins.
    await oracle.transmit(1, 2, oracle.updates(now, (vol, 8_000), (depth, 3 * 10**8)))
    tighter = await gate.functions.checkAction(MARKET, True).call()
    assert tighter[0] > expected.initial_bps and tighter[1] >= expected.maintenance_bps

    # A 50%+ jump in volatility trips its breaker: risk increase refused, reduction allowed.
    await oracle.transmit(1, 3, oracle.updates(now, (vol, 20_000)))
    assert (await oracle.client.feed_status(vol)).tripped
    assert await _revert_reason(gate.functions.checkAction(MARKET, True), oracle) == "FeedTripped"
    assert await gate.functions.checkAction(MARKET, False).call() == tighter
    assert (await gate.functions.margins(MARKET).call())[2] is False

    # Stale: past the heartbeat, same refusal by name.
    await oracle.client.reset_breaker(oracle.owner_key, vol)
    await oracle.transmit(1, 4, oracle.updates(now, (vol, 20_000)))
    oracle.anvil.rpc("evm_increaseTime", [601])
    oracle.anvil.rpc("evm_mine")
    assert await _revert_reason(gate.functions.checkAction(MARKET, True), oracle) == "FeedStale"
    await gate.functions.checkAction(MARKET, False).call()


async def test_curve_changes_are_governance_only_and_validated(oracle: Deployment) -> None:
    gate, vol, depth = await _risk_gate(oracle)
    stranger = oracle.anvil.accounts[20][1]
    with pytest.raises(ContractRevert) as caught:
        await _send(oracle.w3, stranger, gate.functions.setCurve(MARKET, vol, depth, CURVE.as_tuple()), "setCurve")
    assert caught.value.reason == "NotOwner"
    bad = list(CURVE.as_tuple())
    bad[4] = 6_000  # floor above cap
    assert await _revert_reason(gate.functions.setCurve(MARKET, vol, depth, tuple(bad)), oracle) == "InvalidCurve"
    assert await _revert_reason(gate.functions.checkAction(b"\x01" * 32, False), oracle) == "UnknownMarket"


async def test_risk_gate_ownership_moves_in_two_steps(oracle: Deployment) -> None:
    gate, vol, depth = await _risk_gate(oracle)
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
    assert await _revert_reason(gate.functions.setCurve(MARKET, vol, depth, CURVE.as_tuple()), oracle) == "NotOwner"
    await _send(oracle.w3, new_key, gate.functions.setCurve(MARKET, vol, depth, CURVE.as_tuple()), "setCurve")


# -- differential: Python mirror == contract, exactly --------------------------------


@st.composite
def curves(draw: st.DrawFn) -> MarginCurve:
    cap = draw(st.integers(1, 10_000))
    floor_im = draw(st.integers(1, cap))
    return MarginCurve(
        base_im_bps=draw(st.integers(0, 2**32 - 1) | st.integers(0, 20_000)),
        vol_multiplier_bps=draw(st.integers(0, 2**32 - 1) | st.integers(0, 30_000)),
        depth_penalty_bps=draw(st.integers(0, 2**32 - 1) | st.integers(0, 20_000)),
        depth_ref=draw(st.integers(1, 2**64 - 1) | st.integers(1, 10**10)),
        floor_im_bps=floor_im,
        cap_im_bps=cap,
        mm_ratio_bps=draw(st.integers(0, 10_000)),
        floor_mm_bps=draw(st.integers(1, floor_im)),
    )


@pytest.fixture(scope="module")
def sync_gate(anvil: AnvilNode) -> Iterator[Any]:
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    artifact = load_artifact("RiskGate")
    snapshot = anvil.rpc("evm_snapshot")
    tx = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"]).constructor(
        anvil.accounts[0][0]).transact({"from": anvil.accounts[0][0]})
    address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    yield w3.eth.contract(address=address, abi=artifact["abi"])
    anvil.rpc("evm_revert", [snapshot])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(curve=curves(), vol=st.integers(0, 2**63 - 1) | st.integers(0, 50_000),
       depth=st.integers(0, 2**63 - 1) | st.integers(0, 2 * 10**10))
def test_python_margins_equal_the_contract_exactly(sync_gate: Any, curve: MarginCurve, vol: int, depth: int) -> None:
    sync_gate.functions.validateCurve(curve.as_tuple()).call()  # both sides accept the curve
    onchain = sync_gate.functions.computeMargins(curve.as_tuple(), vol, depth).call()
    mirror = compute_margins(curve, vol, depth)
    assert onchain == [mirror.initial_bps, mirror.maintenance_bps]


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
