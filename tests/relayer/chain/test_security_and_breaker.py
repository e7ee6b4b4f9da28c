"""QuorumOracle on anvil: every way a report is refused (by its named error), pause,
two-step ownership, and the circuit breaker with its clearing rule."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from relayer.chain.anvil import AnvilNode
from relayer.chain.codec import ReportDomain, address_of, sign_digest
from relayer.chain.errors import ContractRevert, TransmitError
from relayer.chain.oracle import FeedParameters, FeedProxyClient, QuorumOracleClient, deploy_oracle, deploy_proxy

from .conftest import Deployment, deploy

pytestmark = pytest.mark.integration

ETH = 3_000 * 10**8
LIMIT_BPS = 1_000  # 10% breaker on the feed added by `breaker`


async def reverts(call: Awaitable[Any], error_cls: type[ContractRevert] = TransmitError) -> ContractRevert:
    with pytest.raises(error_cls) as caught:
        await call
    return caught.value


async def test_the_same_report_replayed_is_refused(oracle: Deployment) -> None:
    updates = oracle.updates(await oracle.now(), (0, ETH))
    signatures = oracle.sign(1, 1, updates, (0, 1, 2))
    key, digest = oracle.transmitter_keys[0], oracle.config.config_digest
    await oracle.client.transmit(key, digest, 1, 1, updates, signatures)
    error = await reverts(oracle.client.transmit(oracle.transmitter_keys[1], digest, 1, 1, updates, signatures))
    assert error.reason == "StaleRound" and error.error_args == (1, 1)


async def test_a_report_signed_for_another_chain_id_is_refused(oracle: Deployment) -> None:
    updates = oracle.updates(await oracle.now(), (0, ETH))
    foreign = ReportDomain(oracle.anvil.chain_id + 1, oracle.client.address)
    digest = foreign.report_digest(oracle.config.config_digest, 1, 1, updates)
    signatures = [(i, sign_digest(oracle.signer_keys[i], digest)) for i in (0, 1, 2)]
    error = await reverts(oracle.client.transmit(
        oracle.transmitter_keys[0], oracle.config.config_digest, 1, 1, updates, signatures))
    assert error.reason == "SignerMismatch" and error.error_args[0] == 0


async def test_a_report_signed_for_another_contract_is_refused(oracle: Deployment) -> None:
    twin = await deploy_oracle(oracle.w3, oracle.owner_key)  # same chain, same committee keys
    updates = oracle.updates(await oracle.now(), (0, ETH))
    digest = ReportDomain(oracle.anvil.chain_id, twin).report_digest(oracle.config.config_digest, 1, 1, updates)
    signatures = [(i, sign_digest(oracle.signer_keys[i], digest)) for i in (0, 1, 2)]
    error = await reverts(oracle.client.transmit(
        oracle.transmitter_keys[0], oracle.config.config_digest, 1, 1, updates, signatures))
    assert error.reason == "SignerMismatch"


async def test_pause_by_guardian_stops_transmit_until_unpaused(oracle: Deployment) -> None:
    guardian_address, guardian_key = oracle.anvil.accounts[25]
    stranger = oracle.anvil.accounts[26][1]
    assert (await reverts(oracle.client.pause(guardian_key), ContractRevert)).reason == "NotGuardian"
    assert (await reverts(oracle.client.set_guardian(stranger, guardian_address), ContractRevert)).reason == "NotOwner"
    await oracle.client.set_guardian(oracle.owner_key, guardian_address)
    await oracle.client.pause(guardian_key)
    assert await oracle.client.paused()

    updates = oracle.updates(await oracle.now(), (0, ETH))
    assert (await reverts(oracle.transmit(1, 1, updates))).reason == "Paused"
    assert (await oracle.client.feed_status(0)).stale  # readers are told too
    assert (await reverts(oracle.client.unpause(stranger), ContractRevert)).reason == "NotGuardian"
    await oracle.client.unpause(guardian_key)
    await oracle.transmit(1, 1, updates)
    assert (await oracle.client.latest_feed(0)).value == ETH


async def test_ownership_moves_in_two_steps(oracle: Deployment) -> None:
    new_address, new_key = oracle.anvil.accounts[27]
    stranger = oracle.anvil.accounts[26][1]
    await oracle.client.transfer_ownership(oracle.owner_key, new_address)
    assert await oracle.client.owner() == address_of(oracle.owner_key)  # not yet
    assert (await reverts(oracle.client.accept_ownership(stranger), ContractRevert)).reason == "NotPendingOwner"
    await oracle.client.accept_ownership(new_key)
    assert await oracle.client.owner() == new_address
    cfg = oracle.config
    error = await reverts(oracle.client.set_config(oracle.owner_key, cfg.signers, cfg.transmitters, 1, 3, b""), ContractRevert)
    assert error.reason == "NotOwner"


async def test_bounds_outside_int64_are_refused_not_wrapped(oracle: Deployment) -> None:
    """A bound beyond the stored width used to be narrowed: a minimum of 2^63 became -2^63."""
    owner = oracle.owner_key
    for low, high in ((2**63, 2**63 + 1), (-(10**30), 10**30), (-(2**63) - 1, 0)):
        error = await reverts(oracle.client.add_feed(owner, "WIDE", 8, "wide", low, high), ContractRevert)
        assert error.reason == "InvalidBounds" and error.error_args == (low, high)
        error = await reverts(oracle.client.set_feed_parameters(owner, 0, FeedParameters(low, high)), ContractRevert)
        assert error.reason == "InvalidBounds"
    index = await oracle.client.add_feed(owner, "WIDE", 8, "wide", -(2**63), 2**63 - 1)
    info = await oracle.client.contract.functions.feedInfo(index).call()
    assert info[3:] == [-(2**63), 2**63 - 1]
    await oracle.client.set_feed_parameters(owner, index, FeedParameters(-5, 5, breaker_bps=100, breaker_floor=2,
                                                                        heartbeat=60, update_events=False))
    assert await oracle.client.feed_parameters(index) == FeedParameters(-5, 5, 100, 2, 60, 0, False)


# -- circuit breaker -------------------------------------------------------------------


class Breaker:
    """An oracle whose feed 2 has a 10% breaker and a 3-round history."""

    def __init__(self, d: Deployment, index: int) -> None:
        self.d, self.index, self.round = d, index, 0

    async def send(self, value: int) -> None:
        self.round += 1
        await self.d.transmit(1, self.round, self.d.updates(await self.d.now(), (self.index, value)))

    async def status(self) -> Any:
        return await self.d.client.feed_status(self.index)


@pytest.fixture
async def breaker(oracle: Deployment) -> Breaker:
    index = await oracle.client.add_feed(
        oracle.owner_key, "SOL/USD", 8, "SOL / USD", 1, 10**18, breaker_bps=LIMIT_BPS, heartbeat=600, history_depth=3
    )
    b = Breaker(oracle, index)
    await b.send(100 * 10**8)
    return b


async def test_a_jump_beyond_the_limit_trips_and_is_not_stored(breaker: Breaker) -> None:
    await breaker.send(110 * 10**8)  # exactly 10%: accepted
    receipt_block = await breaker.d.w3.eth.block_number
    await breaker.send(122 * 10**8)  # +10.9%: trips

    status = await breaker.status()
    assert status.tripped and not status.stale
    assert (status.value, status.round_id) == (110 * 10**8, 2)
    logs = await breaker.d.client.contract.events.BreakerTripped().get_logs(from_block=receipt_block + 1)
    assert [(e["args"]["lastGoodValue"], e["args"]["rejectedValue"]) for e in logs] == [(110 * 10**8, 122 * 10**8)]

    proxy = FeedProxyClient(breaker.d.w3, await deploy_proxy(breaker.d.w3, breaker.d.owner_key, breaker.d.client.address, breaker.index))
    assert (await proxy.latest_status()).tripped
    assert (await proxy.latest_round_data())[1] == 110 * 10**8  # the last good value, its own time


async def test_two_consecutive_in_limit_reports_clear_the_breaker(breaker: Breaker) -> None:
    await breaker.send(200 * 10**8)  # trips
    await breaker.send(105 * 10**8)  # in limit of 100: counted, not stored yet
    assert (await breaker.status()).tripped
    await breaker.send(300 * 10**8)  # out of limit again: the streak starts over
    await breaker.send(104 * 10**8)
    assert (await breaker.status()).tripped
    await breaker.send(103 * 10**8)  # second consecutive: clears and is stored

    status = await breaker.status()
    assert not status.tripped and (status.value, status.round_id) == (103 * 10**8, 2)


async def test_guardian_reset_reanchors_on_the_next_report(breaker: Breaker) -> None:
    await breaker.send(150 * 10**8)  # a real 50% move trips the breaker
    guardian_address, guardian_key = breaker.d.anvil.accounts[25]
    stranger = breaker.d.anvil.accounts[26][1]
    assert (await reverts(breaker.d.client.reset_breaker(stranger, breaker.index), ContractRevert)).reason == "NotGuardian"
    await breaker.d.client.set_guardian(breaker.d.owner_key, guardian_address)
    await breaker.d.client.reset_breaker(guardian_key, breaker.index)
    assert not (await breaker.status()).tripped

    await breaker.send(151 * 10**8)  # accepted whatever the jump: the new reference
    await breaker.send(160 * 10**8)  # and the limit applies from it
    status = await breaker.status()
    assert not status.tripped and (status.value, status.round_id) == (160 * 10**8, 3)


async def test_history_serves_get_round_data_within_its_depth(breaker: Breaker) -> None:
    for value in (101, 102, 103, 104):
        await breaker.send(value * 10**8)
    proxy = FeedProxyClient(breaker.d.w3, await deploy_proxy(breaker.d.w3, breaker.d.owner_key, breaker.d.client.address, breaker.index))
    assert (await proxy.latest_round_data())[:2] == (5, 104 * 10**8)
    assert [(await proxy.get_round_data(r))[1] for r in (3, 4, 5)] == [102 * 10**8, 103 * 10**8, 104 * 10**8]
    for r in (0, 2, 6):
        assert (await reverts(proxy.get_round_data(r), ContractRevert)).reason == "RoundNotAvailable"


async def test_staleness_follows_the_heartbeat(breaker: Breaker) -> None:
    assert not (await breaker.status()).stale
    breaker.d.anvil.rpc("evm_increaseTime", [601])
    breaker.d.anvil.rpc("evm_mine")
    assert (await breaker.status()).stale


async def test_unconfigured_oracle_refuses_transmit(anvil: AnvilNode, w3: Any) -> None:
    owner = anvil.accounts[0][1]
    client = QuorumOracleClient(w3, await deploy_oracle(w3, owner))
    d = await deploy(anvil, w3, n=4, f=1, threshold=3)
    updates = d.updates(await d.now(), (0, ETH))
    error = await reverts(client.transmit(d.transmitter_keys[0], d.config.config_digest, 1, 1, updates, d.sign(1, 1, updates, (0, 1, 2))))
    assert error.reason == "UnauthorizedTransmitter"
