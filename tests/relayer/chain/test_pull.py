"""The pull path on a real anvil: verifyReport and submit, the safety model of a
permissionless submitter (docs/contracts.md, point by point), and a keeper contract that
submits a node's report and reads the fresh value in one transaction."""

from __future__ import annotations

from typing import Any

import pytest

from relayer.chain.codec import ReportDomain, pack_signatures, sign_digest
from relayer.chain.contract import deploy_contract, send_call, send_transaction
from relayer.chain.errors import ContractRevert, ReportRefused, TransmitError
from relayer.chain.oracle import deploy_oracle, deploy_proxy, load_artifact

from .conftest import Deployment, reverts

pytestmark = pytest.mark.integration

ETH = 3_000 * 10**8
BTC = 60_000 * 10**8


# -- verify only ------------------------------------------------------------------------


async def test_verify_returns_the_reports_values_and_stores_nothing(oracle: Deployment) -> None:
    now = await oracle.now()
    updates = oracle.updates(now - 5, (0, ETH), (1, BTC))
    verified = await oracle.verify(1, 1, updates)
    assert [(v.feed_index, v.value, v.observed_at) for v in verified] == [(0, ETH, now - 5), (1, BTC, now - 5)]
    assert (await oracle.client.latest_feed(0)).round_id == 0
    assert await oracle.client.latest_epoch_round() == (0, 0)

    # The watermark plays no part: a report older than what landed still verifies.
    await oracle.transmit(1, 2, oracle.updates(now, (0, ETH + 1)))
    assert [v.value for v in await oracle.verify(1, 1, updates)] == [ETH, BTC]


async def test_verify_refuses_with_the_errors_of_transmit(oracle: Deployment) -> None:
    now = await oracle.now()
    updates = oracle.updates(now, (0, ETH))
    digest = oracle.config.config_digest

    tampered = oracle.updates(now, (0, ETH + 1))  # signed ETH, carries ETH + 1
    error = await reverts(oracle.client.verify_report(digest, 1, 1, tampered, oracle.sign(1, 1, updates, (0, 1, 2))),
                          ReportRefused)
    assert error.reason == "SignerMismatch"
    assert (await reverts(oracle.verify(1, 1, updates, (0, 1)), ReportRefused)).reason == "InsufficientSignatures"
    foreign = ReportDomain(oracle.anvil.chain_id + 1, oracle.client.address).report_digest(digest, 1, 1, updates)
    sigs = [(i, sign_digest(oracle.signer_keys[i], foreign)) for i in (0, 1, 2)]
    assert (await reverts(oracle.client.verify_report(digest, 1, 1, updates, sigs), ReportRefused)).reason == \
        "SignerMismatch"
    for bad, reason in ((oracle.updates(now, (0, 0)), "ValueOutOfBounds"),
                        (oracle.updates(now + 3_600, (0, ETH)), "ObservationInFuture"),
                        (oracle.updates(now - 3_601, (0, ETH)), "ObservationExpired"),
                        (oracle.updates(now, (5, ETH)), "UnknownFeed")):
        assert (await reverts(oracle.verify(1, 1, bad), ReportRefused)).reason == reason
    await oracle.client.pause(oracle.owner_key)
    assert (await reverts(oracle.verify(1, 1, updates), ReportRefused)).reason == "Paused"


async def test_a_report_of_a_replaced_committee_is_refused_everywhere(oracle: Deployment) -> None:
    now = await oracle.now()
    updates = oracle.updates(now, (0, ETH))
    old = oracle.config
    signatures = oracle.sign(1, 1, updates, (0, 1, 2))
    await oracle.client.set_config(oracle.owner_key, old.signers, old.transmitters, 1, 3, b"offchain-v2")
    stranger = oracle.anvil.accounts[28][1]
    for call in (oracle.client.verify_report(old.config_digest, 1, 1, updates, signatures),
                 oracle.client.submit_report(stranger, old.config_digest, 1, 1, updates, signatures)):
        error = await reverts(call, ReportRefused)
        assert error.reason == "ConfigDigestMismatch" and error.error_args[1] == old.config_digest


# -- submit: what lands --------------------------------------------------------------------


async def test_anyone_may_submit_and_the_watermark_follows(oracle: Deployment) -> None:
    now = await oracle.now()
    updates = oracle.updates(now - 1, (0, ETH), (1, BTC))
    receipt = await oracle.submit(1, 3, updates)
    assert receipt.succeeded
    assert [(u.feed_index, u.value, u.updated_at, u.round_id) for u in receipt.updated] == \
        [(0, ETH, now - 1, 1), (1, BTC, now - 1, 1)]
    assert (await oracle.client.latest_feed(1)).value == BTC
    assert await oracle.client.latest_epoch_round() == (1, 3)  # in sequence: as transmit would
    assert await oracle.client.latest_signer_count() == 3
    (event,) = await oracle.client.contract.events.ReportSubmitted().get_logs(from_block=receipt.block_number)
    assert event["args"]["sender"] == oracle.anvil.accounts[28][0] and event["args"]["feedsStored"] == 2
    assert not await oracle.client.transmission_events(receipt.block_number, receipt.block_number)

    # The committee's own transmitter for that round now finds it landed: refused before gas.
    error = await reverts(oracle.transmit(1, 3, updates), TransmitError)
    assert error.reason == "StaleRound"
    await oracle.transmit(1, 4, oracle.updates(now, (0, ETH + 5)))
    assert (await oracle.client.latest_feed(0)).value == ETH + 5


async def test_front_running_the_same_report_cannot_make_a_submit_fail(oracle: Deployment) -> None:
    updates = oracle.updates(await oracle.now(), (0, ETH))
    first = await oracle.submit(1, 1, updates, sender=29)
    second = await oracle.submit(1, 1, updates, sender=28)  # the victim lands after the front-runner
    assert first.succeeded and second.succeeded
    assert [u.feed_index for u in first.updated] == [0] and second.updated == ()
    assert (await oracle.client.latest_feed(0)).round_id == 1  # stored once


async def test_stale_replays_never_roll_a_feed_back(oracle: Deployment) -> None:
    now = await oracle.now()
    old = oracle.updates(now - 10, (0, ETH), (1, BTC))
    await oracle.transmit(1, 1, old)
    await oracle.transmit(1, 2, oracle.updates(now - 5, (0, ETH + 50)))

    # In sequence but older per feed: ETH skipped (older), BTC stored (newer).
    mixed = oracle.updates(now - 7, (0, ETH - 50), (1, BTC + 9))
    receipt = await oracle.submit(1, 3, mixed)
    assert [u.feed_index for u in receipt.updated] == [1]
    assert (await oracle.client.latest_feed(0)).value == ETH + 50

    # Out of sequence: the first report again, and one at the same second as the stored value.
    assert (await oracle.submit(1, 1, old)).updated == ()
    same_second = oracle.updates(now - 5, (0, ETH - 1))
    assert (await oracle.submit(1, 0, same_second)).updated == ()
    eth = await oracle.client.latest_feed(0)
    assert (eth.value, eth.observed_at, eth.round_id) == (ETH + 50, now - 5, 2)
    assert await oracle.client.latest_epoch_round() == (1, 3)

    # Older than the heartbeat: refused by name, not silently skipped.
    expired = oracle.updates(now - 3_601, (0, ETH))
    assert (await reverts(oracle.submit(1, 9, expired), ReportRefused)).reason == "ObservationExpired"


async def test_a_feed_missing_from_later_reports_is_filled_out_of_sequence(oracle: Deployment) -> None:
    now = await oracle.now()
    eth_report = oracle.updates(now - 2, (0, ETH))
    await oracle.transmit(1, 2, oracle.updates(now - 1, (1, BTC)))  # round 2 landed, without ETH
    receipt = await oracle.submit(1, 1, eth_report)  # below the watermark, but newer for ETH
    assert [u.feed_index for u in receipt.updated] == [0]
    assert await oracle.client.latest_epoch_round() == (1, 2)  # not moved back


async def test_a_replay_can_neither_clear_nor_prolong_a_trip(oracle: Deployment) -> None:
    index = await oracle.client.add_feed(oracle.owner_key, "SOL/USD", 8, "SOL / USD", 1, 10**18, breaker_bps=1_000)
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now - 10, (index, 100 * 10**8)))
    await oracle.transmit(1, 2, oracle.updates(now - 9, (index, 200 * 10**8)))  # trips
    in_limit = oracle.updates(now - 8, (index, 101 * 10**8))
    await oracle.transmit(1, 3, in_limit)  # first in-limit report: counted
    assert (await oracle.submit(1, 3, in_limit)).updated == ()  # the same again: not a second one
    assert (await oracle.client.feed_status(index)).tripped
    beyond = oracle.updates(now - 9, (index, 200 * 10**8))
    assert (await oracle.submit(1, 2, beyond)).updated == ()  # a replayed jump does not restart the count
    await oracle.transmit(1, 4, oracle.updates(now - 7, (index, 102 * 10**8)))  # the second, in sequence
    status = await oracle.client.feed_status(index)
    assert not status.tripped and status.value == 102 * 10**8


async def test_observations_ahead_of_the_block_store_the_block_time(oracle: Deployment) -> None:
    now = await oracle.now()
    receipt = await oracle.transmit(1, 2, oracle.updates(now + 40, (0, ETH)))
    block_time = int((await oracle.w3.eth.get_block(receipt.block_number))["timestamp"])
    assert block_time < now + 40
    assert (await oracle.client.latest_feed(0)).observed_at == block_time  # never after its block

    # Its true time is unknown within the skew window: an out-of-sequence report needs a time
    # beyond anything it may have been; the committee's next round is taken as transmit would.
    assert (await oracle.submit(1, 1, oracle.updates(now + 30, (0, ETH - 1)))).updated == ()
    receipt = await oracle.submit(1, 3, oracle.updates(now + 20, (0, ETH + 1)))
    assert [u.value for u in receipt.updated] == [ETH + 1]


async def test_paused_oracle_refuses_submit(oracle: Deployment) -> None:
    await oracle.client.pause(oracle.owner_key)
    error = await reverts(oracle.submit(1, 1, oracle.updates(await oracle.now(), (0, ETH))), ReportRefused)
    assert error.reason == "Paused"


async def test_calldata_must_be_canonical_with_nothing_after_it(oracle: Deployment) -> None:
    """As OCR2: the bytes readers decode from a landed transaction mean one thing only."""
    updates = oracle.updates(await oracle.now(), (0, ETH))
    data = oracle.client.transmit_calldata(oracle.config.config_digest, 1, 1, updates,
                                           oracle.sign(1, 1, updates, (0, 1, 2)))
    key = oracle.transmitter_keys[0]
    # The same arguments with the signatures' tail before the updates': decodes the same.
    head, updates_tail, signatures_tail = data[:4 + 192], data[4 + 192:4 + 192 + 64], data[4 + 192 + 64:]
    swapped = (head[:4 + 96] + (0xc0 + len(signatures_tail)).to_bytes(32, "big") + head[4 + 128:4 + 160]
               + (0xc0).to_bytes(32, "big") + signatures_tail + updates_tail)
    assert len(swapped) == len(data)
    for bad in (data + bytes(32), data + b"\x01", swapped):
        error = await reverts(send_transaction(oracle.client.rpc, key, oracle.client.address, bad, "transmit",
                                               error_cls=TransmitError), TransmitError)
        assert error.reason == "MalformedCalldata"
    assert (await send_transaction(oracle.client.rpc, key, oracle.client.address, data, "transmit"))["status"] == 1


# -- a keeper brings the report into its own transaction ----------------------------------


class Keeper:
    def __init__(self, d: Deployment, address: str) -> None:
        self.d = d
        self.contract = d.w3.eth.contract(address=address, abi=load_artifact("PullKeeper")["abi"])
        self.key = d.anvil.accounts[29][1]

    def call(self, epoch: int, round: int, updates: bytes, signatures: list[tuple[int, bytes]],
             digest: bytes | None = None) -> Any:
        bitmask, packed = pack_signatures(signatures)
        return self.contract.functions.submitAndRead(
            digest or self.d.config.config_digest, epoch, round, updates, bitmask, packed)

    async def refusal(self, call: Any) -> ContractRevert:
        return await reverts(send_call(self.d.w3, self.key, call, "submitAndRead"))


@pytest.fixture
async def keeper(oracle: Deployment) -> Keeper:
    proxy = await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address, 0)
    return Keeper(oracle, await deploy_contract(oracle.w3, oracle.owner_key, "PullKeeper", oracle.client.address,
                                                proxy, 120))


async def test_keeper_submits_and_reads_the_fresh_value_in_one_call(oracle: Deployment, keeper: Keeper) -> None:
    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now - 100, (0, ETH)))
    updates = oracle.updates(now, (0, ETH + 77))
    call = keeper.call(1, 2, updates, oracle.sign(1, 2, updates, (1, 2, 3)))
    assert await call.call({"from": oracle.anvil.accounts[29][0]}) == [ETH + 77, now]  # what the keeper sees

    receipt = await send_call(oracle.w3, keeper.key, call, "submitAndRead")
    (used,) = await keeper.contract.events.PriceUsed().get_logs(from_block=receipt["blockNumber"])
    assert (used["args"]["answer"], used["args"]["updatedAt"], used["args"]["feedsStored"]) == (ETH + 77, now, 1)
    assert (await oracle.client.latest_feed(0)).value == ETH + 77

    # The same report again (front-run, or sent twice): nothing new, the keeper still reads it.
    receipt = await send_call(oracle.w3, keeper.key, call, "submitAndRead")
    (again,) = await keeper.contract.events.PriceUsed().get_logs(from_block=receipt["blockNumber"])
    assert (again["args"]["answer"], again["args"]["feedsStored"]) == (ETH + 77, 0)


async def test_keeper_refuses_tampered_stale_foreign_reports_by_name(oracle: Deployment, keeper: Keeper) -> None:
    now = await oracle.now()
    updates = oracle.updates(now, (0, ETH))
    good = oracle.sign(1, 1, updates, (0, 1, 2))
    digest = oracle.config.config_digest

    tampered = oracle.updates(now, (0, ETH * 2))
    assert (await keeper.refusal(keeper.call(1, 1, tampered, good))).reason == "SignerMismatch"
    expired = oracle.updates(now - 3_601, (0, ETH))
    assert (await keeper.refusal(keeper.call(1, 1, expired, oracle.sign(1, 1, expired, (0, 1, 2))))).reason == \
        "ObservationExpired"
    foreign_chain = ReportDomain(oracle.anvil.chain_id + 1, oracle.client.address).report_digest(digest, 1, 1, updates)
    signatures = [(i, sign_digest(oracle.signer_keys[i], foreign_chain)) for i in (0, 1, 2)]
    assert (await keeper.refusal(keeper.call(1, 1, updates, signatures))).reason == "SignerMismatch"

    # Another oracle's committee (same keys, another contract and digest), and a replaced one.
    twin = await deploy_oracle(oracle.w3, oracle.owner_key)
    twin_digest = b"\x00\x01" + bytes(range(30))
    twin_sigs = [(i, sign_digest(oracle.signer_keys[i], ReportDomain(oracle.anvil.chain_id, twin).report_digest(
        twin_digest, 1, 1, updates))) for i in (0, 1, 2)]
    assert (await keeper.refusal(keeper.call(1, 1, updates, twin_sigs, twin_digest))).reason == \
        "ConfigDigestMismatch"
    cfg = oracle.config
    await oracle.client.set_config(oracle.owner_key, cfg.signers, cfg.transmitters, 1, 3, b"offchain-v2")
    assert (await keeper.refusal(keeper.call(1, 1, updates, good))).reason == "ConfigDigestMismatch"
    assert (await oracle.client.latest_feed(0)).round_id == 0


async def test_keeper_refuses_a_value_older_than_its_own_limit(oracle: Deployment, keeper: Keeper) -> None:
    """A report the oracle accepts (within the heartbeat) but older than the keeper's 120 s."""
    now = await oracle.now()
    old = oracle.updates(now - 600, (0, ETH))
    error = await keeper.refusal(keeper.call(1, 1, old, oracle.sign(1, 1, old, (0, 1, 2))))
    assert error.reason == "StalePrice" and error.error_args == (now - 600, 120)
