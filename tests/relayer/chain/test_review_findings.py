"""The contract findings of the adversarial review (issue 12), one test each, and the
per-feed FeedUpdated event. Bounds outside int64 and trailing calldata are covered in
test_security_and_breaker.py and test_pull.py."""

from __future__ import annotations

import pytest

from relayer.chain.errors import TransmitError
from relayer.chain.oracle import FeedParameters
from relayer.chain.subscriptions import SubscriptionRegistryClient, deploy_subscription_registry

from .conftest import Deployment, reverts

pytestmark = pytest.mark.integration

ETH = 3_000 * 10**8


async def test_a_first_value_older_than_the_heartbeat_is_refused(oracle: Deployment) -> None:
    now = await oracle.now()
    error = await reverts(oracle.transmit(1, 1, oracle.updates(now - 3_601, (0, ETH))), TransmitError)
    assert error.reason == "ObservationExpired" and error.error_args == (0, now - 3_601, 3_600)
    await oracle.transmit(1, 1, oracle.updates(now - 3_500, (0, ETH)))  # within the heartbeat: fine


async def test_reset_breaker_on_a_feed_that_is_not_tripped_reverts(oracle: Deployment) -> None:
    index = await oracle.client.add_feed(oracle.owner_key, "SOL/USD", 8, "SOL", 1, 10**18, breaker_bps=1_000)
    error = await reverts(oracle.client.reset_breaker(oracle.owner_key, index))
    assert error.reason == "BreakerNotTripped" and error.error_args == (index,)
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (index, 100)))
    assert (await reverts(oracle.client.reset_breaker(oracle.owner_key, index))).reason == "BreakerNotTripped"
    await oracle.transmit(1, 2, oracle.updates(now, (index, 200)))  # trips
    await oracle.client.reset_breaker(oracle.owner_key, index)
    # Not a free pass any more: the reset cannot be repeated to skip checks.
    assert (await reverts(oracle.client.reset_breaker(oracle.owner_key, index))).reason == "BreakerNotTripped"


async def test_the_breaker_floor_keeps_a_feed_at_zero_from_sticking(oracle: Deployment) -> None:
    add = oracle.client.add_feed
    floored = await add(oracle.owner_key, "FUNDING", 8, "funding", -10**9, 10**9, breaker_bps=1_000,
                        breaker_floor=50)
    bare = await add(oracle.owner_key, "FUNDING-BARE", 8, "funding", -10**9, 10**9, breaker_bps=1_000)
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (floored, 0), (bare, 0)))
    await oracle.transmit(1, 2, oracle.updates(now, (floored, -40), (bare, -40)))
    assert (await oracle.client.latest_feed(floored)).value == -40  # within the floor of 0
    assert (await oracle.client.feed_status(bare)).tripped  # any move off 0 is a "jump" without one

    await oracle.transmit(1, 3, oracle.updates(now, (floored, 500)))  # beyond both limits: trips
    assert (await oracle.client.feed_status(floored)).tripped
    await oracle.transmit(1, 4, oracle.updates(now, (floored, -20)))
    await oracle.transmit(1, 5, oracle.updates(now, (floored, 5)))  # two in limit of -40: clears
    status = await oracle.client.feed_status(floored)
    assert not status.tripped and status.value == 5


async def test_the_guardian_cannot_lift_a_pause_the_owner_set(oracle: Deployment) -> None:
    guardian_address, guardian = oracle.anvil.accounts[25]
    await oracle.client.set_guardian(oracle.owner_key, guardian_address)
    await oracle.client.pause(oracle.owner_key)
    assert (await reverts(oracle.client.unpause(guardian))).reason == "PausedByOwner"
    await oracle.client.pause(guardian)  # a guardian's pause does not lower the owner's
    assert (await reverts(oracle.client.unpause(guardian))).reason == "PausedByOwner"
    await oracle.client.unpause(oracle.owner_key)
    assert not await oracle.client.paused()

    await oracle.client.pause(guardian)
    await oracle.client.unpause(guardian)  # its own pause: yes
    await oracle.client.pause(guardian)
    await oracle.client.pause(oracle.owner_key)  # the owner takes it over
    assert (await reverts(oracle.client.unpause(guardian))).reason == "PausedByOwner"
    await oracle.client.unpause(oracle.owner_key)
    await oracle.transmit(1, 1, oracle.updates(await oracle.now(), (0, ETH)))


async def test_set_config_keeps_the_latest_signer_count_meaningful(oracle: Deployment) -> None:
    await oracle.transmit(1, 1, oracle.updates(await oracle.now(), (0, ETH)), (0, 1, 2, 3))
    cfg = oracle.config
    await oracle.client.set_config(oracle.owner_key, cfg.signers, cfg.transmitters, 1, 2, b"offchain-v2")
    # The stored values still come from a report with four signatures, not zero.
    assert await oracle.client.latest_signer_count() == 4
    status = await oracle.client.feed_status(0)
    assert (status.signer_count, status.threshold, status.value) == (4, 2, ETH)


async def test_f_zero_is_refused(oracle: Deployment) -> None:
    cfg = oracle.config
    error = await reverts(oracle.client.set_config(oracle.owner_key, cfg.signers, cfg.transmitters, 0, 1, b""))
    assert error.reason == "ZeroFaultTolerance"


async def test_subscription_pages_clip_instead_of_overflowing(oracle: Deployment) -> None:
    address = await deploy_subscription_registry(oracle.w3, oracle.owner_key, oracle.client.address, 5, 60)
    registry = SubscriptionRegistryClient(oracle.w3, address)
    subscriber, key = oracle.anvil.accounts[21]
    await registry.approve(oracle.owner_key, subscriber, 2)
    await registry.subscribe(key, "ETH/USD", 50, 3_600)
    await registry.subscribe(key, "BTC/USD", 50, 3_600)
    assert len(await registry._call("subscriptions", 1, 2**256 - 1)) == 1
    assert len(await registry._call("subscriptions", 0, 2**256 - 1)) == 2
    assert await registry._call("subscriptions", 2**256 - 1, 2**256 - 1) == []


async def test_each_stored_feed_emits_feed_updated_unless_turned_off(oracle: Deployment) -> None:
    index = await oracle.client.add_feed(oracle.owner_key, "QUIET", 8, "quiet", 1, 10**18, update_events=False)
    now = await oracle.now()
    receipt = await oracle.transmit(1, 1, oracle.updates(now - 1, (0, ETH), (1, 2 * ETH), (index, 7)))
    raw = await oracle.client.rpc.request("eth_getTransactionReceipt", ["0x" + receipt.tx_hash.hex()])
    updated = oracle.client.feed_updates(raw["logs"])
    assert [(u.feed_index, u.value, u.updated_at, u.round_id) for u in updated] == \
        [(0, ETH, now - 1, 1), (1, 2 * ETH, now - 1, 1)]
    assert (await oracle.client.latest_feed(index)).value == 7  # stored, silently

    # Filterable by feed: the index is a topic.
    events = await oracle.client.contract.events.FeedUpdated().get_logs(
        from_block=receipt.block_number, argument_filters={"feedIndex": 1})
    assert [e["args"]["value"] for e in events] == [2 * ETH]
