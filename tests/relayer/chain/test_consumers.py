"""Chainlink-style consumers (contracts/test/ConsumerPatterns.sol) reading through FeedProxy
and StrictFeedProxy: correct reads, with observations ahead of the chain's clock, while the
oracle is paused and while the feed's breaker is tripped, each as docs/contracts.md says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from web3 import Web3

from relayer.chain.contract import deploy_contract, send_call
from relayer.chain.errors import ContractRevert
from relayer.chain.oracle import FeedParameters, deploy_proxy, load_artifact

from .conftest import Deployment

pytestmark = pytest.mark.integration

PRICE = 3_000 * 10**8
MAX_STALENESS = 300
ASSET = Web3.to_checksum_address("0x" + "ee" * 20)


@dataclass
class Readers:
    """The four consumer patterns over one proxy."""

    staleness: Any
    round_complete: Any
    latest_answer: Any
    lending: Any


async def _contract(d: Deployment, name: str, *args: Any) -> Any:
    address = await deploy_contract(d.w3, d.owner_key, name, *args)
    return d.w3.eth.contract(address=address, abi=load_artifact(name)["abi"])


async def _readers(d: Deployment, proxy: str) -> Readers:
    lending = await _contract(d, "LendingOracleWrapper")
    await send_call(d.w3, d.owner_key, lending.functions.setSource(ASSET, proxy, 0), "setSource")
    return Readers(
        staleness=await _contract(d, "StalenessCheckedConsumer", proxy, MAX_STALENESS),
        round_complete=await _contract(d, "RoundCompleteConsumer", proxy),
        latest_answer=await _contract(d, "LatestAnswerConsumer", proxy, MAX_STALENESS),
        lending=lending,
    )


async def _reason(call: Any, d: Deployment) -> str | None:
    with pytest.raises(ContractRevert) as caught:
        await send_call(d.w3, d.owner_key, call, "read")
    return caught.value.reason


@pytest.fixture
async def feeds(oracle: Deployment) -> tuple[Readers, Readers]:
    """Consumers on a FeedProxy (frozen while unusable) and on a StrictFeedProxy, feed 0,
    which has a 10 % breaker."""
    await oracle.client.set_feed_parameters(oracle.owner_key, 0, FeedParameters(1, 10**18, breaker_bps=1_000))
    frozen = await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address, 0)
    strict = await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address, 0, strict=True)
    return await _readers(oracle, frozen), await _readers(oracle, strict)


async def _all_read(r: Readers, value: int, updated_at: int) -> None:
    assert await r.staleness.functions.read().call() == [value, updated_at]
    assert (await r.round_complete.functions.read().call())[0] == value
    assert await r.latest_answer.functions.answer().call() == value
    assert await r.latest_answer.functions.freshAnswer().call() == value
    assert await r.lending.functions.getAssetPrice(ASSET).call() == value
    assert await r.lending.functions.collateralValue(ASSET, 2 * 10**18).call() == 2 * value


async def test_every_pattern_reads_the_value_through_both_proxies(oracle: Deployment, feeds: tuple[Readers, Readers]) -> None:
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now - 2, (0, PRICE)))
    for readers in feeds:
        await _all_read(readers, PRICE, now - 2)
    oracle.anvil.rpc("evm_increaseTime", [MAX_STALENESS + 1])
    oracle.anvil.rpc("evm_mine")
    for readers in feeds:  # old data: the patterns that check an age refuse it
        assert await _reason(readers.staleness.functions.read(), oracle) == "StaleAnswer"
        assert await _reason(readers.latest_answer.functions.freshAnswer(), oracle) == "StaleAnswer"


async def test_nodes_clocks_ahead_of_the_chain_never_break_a_staleness_check(
    oracle: Deployment, feeds: tuple[Readers, Readers]
) -> None:
    now = await oracle.now()
    receipt = await oracle.transmit(1, 1, oracle.updates(now + 45, (0, PRICE)))  # 45 s ahead
    stored_at = int((await oracle.w3.eth.get_block(receipt.block_number))["timestamp"])
    assert stored_at < now + 45
    for readers in feeds:  # no arithmetic underflow in block.timestamp - updatedAt
        await _all_read(readers, PRICE, stored_at)
    oracle.anvil.rpc("evm_increaseTime", [MAX_STALENESS + 1])  # and it ages from its block, not ahead
    oracle.anvil.rpc("evm_mine")
    assert await _reason(feeds[0].staleness.functions.read(), oracle) == "StaleAnswer"


async def test_a_paused_oracle_is_visible_to_every_reader_that_checks_anything(
    oracle: Deployment, feeds: tuple[Readers, Readers]
) -> None:
    frozen, strict = feeds
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now, (0, PRICE)))
    await oracle.client.pause(oracle.owner_key)

    # Frozen: updatedAt 0 and answeredInRound 0, refused at once by every time or round check.
    assert await _reason(frozen.staleness.functions.read(), oracle) == "StaleAnswer"
    assert await _reason(frozen.round_complete.functions.read(), oracle) == "RoundNotComplete"
    assert await _reason(frozen.latest_answer.functions.freshAnswer(), oracle) == "StaleAnswer"
    # latestAnswer carries no time: its readers keep the last good value (documented) ...
    assert await frozen.latest_answer.functions.answer().call() == PRICE
    assert await frozen.lending.functions.getAssetPrice(ASSET).call() == PRICE
    # ... unless they read a strict proxy, which refuses every read of the latest value.
    for call in (strict.staleness.functions.read(), strict.round_complete.functions.read(),
                 strict.latest_answer.functions.answer(), strict.lending.functions.getAssetPrice(ASSET)):
        assert await _reason(call, oracle) == "OraclePaused"

    await oracle.client.unpause(oracle.owner_key)
    for readers in feeds:
        await _all_read(readers, PRICE, now)


async def test_a_tripped_breaker_is_visible_to_every_reader_that_checks_anything(
    oracle: Deployment, feeds: tuple[Readers, Readers]
) -> None:
    frozen, strict = feeds
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now - 1, (0, PRICE)))
    await oracle.transmit(1, 2, oracle.updates(now, (0, 2 * PRICE)))  # +100 %: trips, not stored
    assert (await oracle.client.feed_status(0)).tripped

    assert await _reason(frozen.staleness.functions.read(), oracle) == "StaleAnswer"
    assert await _reason(frozen.round_complete.functions.read(), oracle) == "RoundNotComplete"
    assert await frozen.latest_answer.functions.answer().call() == PRICE  # the last good one
    for call in (strict.staleness.functions.read(), strict.latest_answer.functions.answer(),
                 strict.lending.functions.getAssetPrice(ASSET)):
        assert await _reason(call, oracle) == "FeedBreakerTripped"

    await oracle.client.reset_breaker(oracle.owner_key, 0)
    await oracle.transmit(1, 3, oracle.updates(now, (0, 2 * PRICE)))  # re-anchored on the new level
    for readers in feeds:
        await _all_read(readers, 2 * PRICE, now)


async def test_proxies_present_history_as_it_was_and_the_latest_round_as_now(oracle: Deployment) -> None:
    index = await oracle.client.add_feed(oracle.owner_key, "HIST", 8, "hist", 1, 10**18, history_depth=4)
    frozen = oracle.w3.eth.contract(address=await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address,
                                                               index), abi=load_artifact("FeedProxy")["abi"])
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now - 1, (index, PRICE)))
    await oracle.transmit(1, 2, oracle.updates(now, (index, PRICE + 1)))
    await oracle.client.pause(oracle.owner_key)
    assert await frozen.functions.getRoundData(1).call() == [1, PRICE, now - 1, now - 1, 1]  # history
    assert await frozen.functions.getRoundData(2).call() == [2, PRICE + 1, 0, 0, 0]  # the latest: frozen
    assert await frozen.functions.latestRoundData().call() == [2, PRICE + 1, 0, 0, 0]
    assert await frozen.functions.getTimestamp(2).call() == 0 and await frozen.functions.latestTimestamp().call() == 0
    assert await frozen.functions.getAnswer(1).call() == PRICE
