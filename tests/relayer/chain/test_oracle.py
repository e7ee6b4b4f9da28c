"""QuorumOracle on a real anvil: what lands, and every way a report is refused."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from relayer.chain.anvil import AnvilNode
from relayer.chain.codec import (
    address_of,
    config_digest,
    feed_id_bytes,
    keccak,
    pack_signatures,
    sign_digest,
    to_compact,
)
from relayer.chain.errors import ContractRevert, TransmitError
from relayer.chain.oracle import FeedParameters, FeedProxyClient, deploy_proxy

from .conftest import BTC_USD, ETH_USD, MAX_VALUE, Deployment, deploy

pytestmark = pytest.mark.integration

ETH = 3_000 * 10**8
BTC = 60_000 * 10**8


async def reverts(call: Awaitable[Any], error_cls: type[ContractRevert] = TransmitError) -> ContractRevert:
    with pytest.raises(error_cls) as caught:
        await call
    return caught.value


async def test_valid_report_lands_and_is_stored(oracle: Deployment) -> None:
    now = await oracle.now()
    updates = oracle.updates(now - 2, (0, ETH), (1, BTC))

    receipt = await oracle.transmit(1, 1, updates, (0, 2, 3))

    assert receipt.succeeded and receipt.gas_used > 21_000
    eth = await oracle.client.latest_feed(0)
    btc = await oracle.client.latest_feed(1)
    assert (eth.value, eth.observed_at, eth.round_id) == (ETH, now - 2, 1)
    assert (btc.value, btc.observed_at, btc.round_id) == (BTC, now - 2, 1)
    assert await oracle.client.latest_epoch_round() == (1, 1)
    assert await oracle.client.latest_signer_count() == 3

    (event,) = await oracle.client.transmission_events(receipt.block_number, receipt.block_number)
    assert event.signer_bitmask == 0b1101
    assert (event.epoch, event.round) == (1, 1)
    assert event.tx_hash == receipt.tx_hash
    tx = await oracle.w3.eth.get_transaction(receipt.tx_hash)
    assert oracle.client.decode_transmit_input(tx["input"])["updates"] == updates

    # A later round updates one feed only; the other keeps its value and round id.
    await oracle.transmit(1, 2, oracle.updates(now, (1, BTC + 5)), (0, 1, 2), transmitter=3)
    assert (await oracle.client.latest_feed(1)).round_id == 2
    assert (await oracle.client.latest_feed(0)).round_id == 1
    assert await oracle.client.latest_epoch_round() == (1, 2)


async def test_config_is_readable_and_its_digest_carries_the_scheme(oracle: Deployment) -> None:
    cfg = oracle.config
    assert cfg.config_count == 1 and cfg.f == 1 and cfg.threshold == 3
    assert cfg.signers == [address_of(k) for k in oracle.signer_keys]
    assert cfg.transmitters == [address_of(k) for k in oracle.transmitter_keys]
    assert cfg.offchain_config == b"offchain-v1"
    assert cfg.config_digest[:2] == b"\x00\x01"
    assert cfg.config_digest == config_digest(
        chain_id=oracle.anvil.chain_id, contract=oracle.client.address, config_count=1,
        signers=cfg.signers, transmitters=cfg.transmitters, f=1, threshold=3, offchain_config=b"offchain-v1",
    )
    assert await oracle.client.feed_index(BTC_USD) == 1
    info = await oracle.client.contract.functions.feedInfo(0).call()
    assert info == [feed_id_bytes(ETH_USD), 8, "ETH / USD", 1, MAX_VALUE]
    assert (await reverts(oracle.client.feed_index("SOL/USD"), ContractRevert)).reason == "UnknownFeedId"


async def test_python_digest_equals_contract_and_eth_account(oracle: Deployment) -> None:
    updates = oracle.updates(1_700_000_000, (0, -5), (1, BTC))
    epoch, round_ = 7, 42
    ours = oracle.domain.report_digest(oracle.config.config_digest, epoch, round_, updates)

    contract = await oracle.client.report_digest(oracle.config.config_digest, epoch, round_, updates)
    signable = encode_typed_data(full_message={
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
            ],
            "Report": [
                {"name": "configDigest", "type": "bytes32"}, {"name": "epoch", "type": "uint32"},
                {"name": "round", "type": "uint32"}, {"name": "updates", "type": "bytes"},
            ],
        },
        "primaryType": "Report",
        "domain": {
            "name": "QuorumOracle", "version": "1",
            "chainId": oracle.anvil.chain_id, "verifyingContract": oracle.client.address,
        },
        "message": {"configDigest": oracle.config.config_digest, "epoch": epoch, "round": round_, "updates": updates},
    })
    eth_account_digest = keccak(b"\x19" + signable.version + signable.header + signable.body)

    assert ours == contract == eth_account_digest
    assert oracle.domain.separator == bytes(await oracle.client.contract.functions.domainSeparator().call())
    signature = sign_digest(oracle.signer_keys[0], ours)
    assert Account.recover_message(signable, signature=signature) == address_of(oracle.signer_keys[0])


async def test_non_committee_key_is_refused(oracle: Deployment) -> None:
    now = await oracle.now()
    updates = oracle.updates(now, (0, ETH))
    digest = oracle.domain.report_digest(oracle.config.config_digest, 1, 1, updates)
    outsider = keccak(b"not in the committee")
    signatures = oracle.sign(1, 1, updates, (0, 1)) + [(2, sign_digest(outsider, digest))]

    error = await reverts(oracle.client.transmit(
        oracle.transmitter_keys[0], oracle.config.config_digest, 1, 1, updates, signatures))

    assert error.reason == "SignerMismatch"
    assert error.error_args == (2, address_of(outsider))


async def test_duplicate_signer_is_refused(oracle: Deployment) -> None:
    # The bitmask cannot name one signer twice, so a duplicate must sit under another
    # index, where it recovers to the wrong committee member: SignerMismatch.
    now = await oracle.now()
    updates = oracle.updates(now, (0, ETH))
    (_, sig0), (_, sig1) = oracle.sign(1, 1, updates, (0, 1))
    packed = to_compact(sig0) + to_compact(sig1) + to_compact(sig1)

    error = await reverts(oracle.client.transmit_packed(
        oracle.transmitter_keys[0], oracle.config.config_digest, 1, 1, updates, 0b0111, packed))

    assert error.reason == "SignerMismatch"
    assert error.error_args == (2, address_of(oracle.signer_keys[1]))


async def test_too_few_signatures_are_refused(oracle: Deployment) -> None:
    updates = oracle.updates(await oracle.now(), (0, ETH))
    error = await reverts(oracle.transmit(1, 1, updates, (0, 3)))
    assert error.reason == "InsufficientSignatures"
    assert error.error_args == (2, 3)


async def test_bitmask_must_match_signatures_and_committee(oracle: Deployment) -> None:
    updates = oracle.updates(await oracle.now(), (0, ETH))
    bitmask, packed = pack_signatures(oracle.sign(1, 1, updates, (0, 1, 2)))
    send = oracle.client.transmit_packed
    key, digest = oracle.transmitter_keys[0], oracle.config.config_digest

    assert (await reverts(send(key, digest, 1, 1, updates, bitmask | 0b1000, packed))).reason == "SignatureCountMismatch"
    assert (await reverts(send(key, digest, 1, 1, updates, bitmask, packed[:-1]))).reason == "SignatureCountMismatch"
    assert (await reverts(send(key, digest, 1, 1, updates, bitmask | 1 << 4, packed))).reason == "UnknownSigner"


async def test_wrong_config_digest_is_refused(oracle: Deployment) -> None:
    updates = oracle.updates(await oracle.now(), (0, ETH))
    wrong = b"\x00\x01" + bytes(30)
    error = await reverts(oracle.client.transmit(
        oracle.transmitter_keys[0], wrong, 1, 1, updates, oracle.sign(1, 1, updates, (0, 1, 2), config_digest=wrong)))
    assert error.reason == "ConfigDigestMismatch"


async def test_old_rounds_are_refused(oracle: Deployment) -> None:
    now = await oracle.now()
    await oracle.transmit(2, 5, oracle.updates(now, (0, ETH)))
    for epoch, round_ in [(2, 5), (2, 4), (1, 9)]:
        error = await reverts(oracle.transmit(epoch, round_, oracle.updates(now, (0, ETH))))
        assert error.reason == "StaleRound"
        assert error.error_args == (2, 5)
    await oracle.transmit(3, 0, oracle.updates(now, (0, ETH)))  # a new epoch restarts rounds
    assert await oracle.client.latest_epoch_round() == (3, 0)


async def test_only_transmitters_may_transmit(oracle: Deployment) -> None:
    updates = oracle.updates(await oracle.now(), (0, ETH))
    stranger = oracle.anvil.accounts[20][1]
    error = await reverts(oracle.client.transmit(
        stranger, oracle.config.config_digest, 1, 1, updates, oracle.sign(1, 1, updates, (0, 1, 2))))
    assert error.reason == "UnauthorizedTransmitter"


async def test_feed_values_and_times_are_checked(oracle: Deployment) -> None:
    now = await oracle.now()
    cases = [
        (oracle.updates(now, (0, MAX_VALUE + 1)), "ValueOutOfBounds"),
        (oracle.updates(now, (0, 0)), "ValueOutOfBounds"),
        (oracle.updates(now + 3600, (0, ETH)), "ObservationInFuture"),
        (oracle.updates(now, (0, ETH), (2, ETH)), "UnknownFeed"),
        # Descending feed indexes, and a non-zero reserved byte: malformed.
        (oracle.updates(now, (1, BTC))[:32] + oracle.updates(now, (0, ETH)), "InvalidUpdates"),
        ((int.from_bytes(oracle.updates(now, (0, ETH)), "big") | 1 << 192).to_bytes(32, "big"), "InvalidUpdates"),
        (oracle.updates(now, (0, ETH))[:31], "InvalidUpdates"),
    ]
    for updates, reason in cases:
        assert (await reverts(oracle.transmit(1, 1, updates))).reason == reason, reason

    await oracle.transmit(1, 1, oracle.updates(now, (0, ETH)))
    error = await reverts(oracle.transmit(1, 2, oracle.updates(now - 1, (0, ETH))))
    assert error.reason == "ObservationTooOld"
    assert error.error_args == (0, now - 1, now)


async def test_a_word_failing_several_checks_is_refused_by_the_first_in_order(oracle: Deployment) -> None:
    # transmit tests a word's refusals together and names one only when that test fails: it must
    # be the first of InvalidUpdates, UnknownFeed, ValueOutOfBounds, ObservationInFuture,
    # ObservationExpired, with that word's arguments, on the push path and in verifyReport alike.
    now = await oracle.now()
    good = oracle.updates(now, (0, ETH))
    reserved = (int.from_bytes(oracle.updates(now + 3_600, (7, 0)), "big") | 1 << 192).to_bytes(32, "big")
    cases = [
        (oracle.updates(now, (1, BTC)) + oracle.updates(now + 3_600, (0, 0)), "InvalidUpdates", ()),
        (reserved, "InvalidUpdates", ()),
        (oracle.updates(now + 3_600, (7, 0)), "UnknownFeed", (7,)),
        (oracle.updates(now - 3_601, (7, 0)), "UnknownFeed", (7,)),
        (oracle.updates(now + 3_600, (0, 0)), "ValueOutOfBounds", (0, 0)),
        (oracle.updates(now - 3_601, (0, MAX_VALUE + 1)), "ValueOutOfBounds", (0, MAX_VALUE + 1)),
        (good + oracle.updates(now + 3_600, (1, BTC)), "ObservationInFuture", (1, now + 3_600)),
        (good + oracle.updates(now - 3_601, (1, BTC)), "ObservationExpired", (1, now - 3_601, 3_600)),
    ]
    for updates, reason, args in cases:
        for error in (await reverts(oracle.transmit(1, 1, updates)),
                      await reverts(oracle.verify(1, 1, updates), ContractRevert)):
            assert (error.reason, error.error_args) == (reason, args), reason
    assert await oracle.client.latest_epoch_round() == (0, 0)


async def test_administration_is_owner_only_and_validated(oracle: Deployment) -> None:
    client, owner = oracle.client, oracle.owner_key
    stranger = oracle.anvil.accounts[20][1]
    addrs = [address_of(k) for k in oracle.signer_keys]
    tx = [address_of(k) for k in oracle.transmitter_keys]

    assert (await reverts(client.set_config(stranger, addrs, tx, 1, 3, b""), ContractRevert)).reason == "NotOwner"
    assert (await reverts(client.add_feed(stranger, "X", 8, "x", 0, 1), ContractRevert)).reason == "NotOwner"
    assert (await reverts(client.set_config(owner, addrs[:3], tx[:3], 1, 2, b""), ContractRevert)).reason == "FaultToleranceTooHigh"
    assert (await reverts(client.set_config(owner, addrs, tx, 1, 1, b""), ContractRevert)).reason == "InvalidThreshold"
    dup = [addrs[0], addrs[1], addrs[2], addrs[0]]
    assert (await reverts(client.set_config(owner, dup, tx, 1, 3, b""), ContractRevert)).reason == "DuplicateAddress"
    assert (await reverts(client.add_feed(owner, ETH_USD, 8, "again", 0, 1), ContractRevert)).reason == "FeedExists"


async def test_new_config_resets_round_and_retires_old_digest(oracle: Deployment) -> None:
    now = await oracle.now()
    await oracle.transmit(4, 4, oracle.updates(now, (0, ETH)))
    old = oracle.config
    # Same members, different threshold: a new digest, and the watermark starts over.
    new = await oracle.client.set_config(oracle.owner_key, old.signers, old.transmitters, 1, 2, b"offchain-v2")
    assert new.config_count == 2 and new.config_digest != old.config_digest
    assert await oracle.client.latest_epoch_round() == (0, 0)

    updates = oracle.updates(now, (0, ETH))
    error = await reverts(oracle.transmit(5, 1, updates))  # signed and sent under the old digest
    assert error.reason == "ConfigDigestMismatch"
    oracle.config = new
    await oracle.transmit(1, 1, updates, (1, 3))
    assert await oracle.client.latest_epoch_round() == (1, 1)


async def test_feed_proxy_reads_like_a_chainlink_aggregator(oracle: Deployment) -> None:
    proxy = FeedProxyClient(oracle.w3, await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address, 1))
    assert await proxy.decimals() == 8
    assert await proxy.description() == "BTC / USD"
    assert (await reverts(proxy.latest_round_data(), ContractRevert)).reason == "NoDataPresent"

    now = await oracle.now()
    await oracle.transmit(1, 1, oracle.updates(now - 3, (0, ETH), (1, BTC)))
    await oracle.transmit(1, 2, oracle.updates(now - 1, (1, BTC + 7)))

    assert await proxy.latest_round_data() == (2, BTC + 7, now - 1, now - 1, 2)
    assert await proxy.get_round_data(2) == (2, BTC + 7, now - 1, now - 1, 2)
    error = await reverts(proxy.get_round_data(1), ContractRevert)
    assert error.reason == "RoundNotAvailable"
    with pytest.raises(ContractRevert) as caught:
        await deploy_proxy(oracle.w3, oracle.owner_key, oracle.client.address, 9)
    assert caught.value.reason == "UnknownFeed"


@pytest.mark.parametrize(("n", "f", "feeds"), [(4, 1, 1), (10, 3, 10)])
async def test_transmit_gas_stays_within_budget(anvil: AnvilNode, w3: Any, n: int, f: int, feeds: int) -> None:
    """Guards against gas regressions; bench/ owns the measurements themselves."""
    d = await deploy(anvil, w3, n=n, f=f, threshold=n)  # every member signs: the worst case
    # The push path as bench/gas.py's main table measures it: FeedUpdated events off.
    for i in range(2):
        await d.client.set_feed_parameters(d.owner_key, i, FeedParameters(1, MAX_VALUE, update_events=False))
    for i in range(2, feeds):
        await d.client.add_feed(d.owner_key, f"FEED{i}/USD", 8, f"feed {i}", 1, MAX_VALUE, update_events=False)
    now = await d.now()
    # First write of each feed slot is zero -> non-zero (20k); measure the steady state.
    await d.transmit(1, 1, d.updates(now - 1, *[(i, ETH + i) for i in range(feeds)]), range(n))

    receipt = await d.transmit(1, 2, d.updates(now, *[(i, ETH + 2 * i + 1) for i in range(feeds)]), range(n))

    print(f"transmit gas: {feeds} feed(s), {n} signatures: {receipt.gas_used}")
    budget = {(4, 1): 58_500, (10, 10): 116_000}[(n, feeds)]
    assert receipt.gas_used <= budget


async def test_client_surfaces_reverts_of_reads(oracle: Deployment) -> None:
    error = await reverts(oracle.client.latest_feed(7), ContractRevert)
    assert error.reason == "UnknownFeed" and error.error_args == (7,)



async def test_latest_feeds_reads_every_feed_in_one_batch(oracle: Deployment) -> None:
    """The batched read used by the node's telemetry agrees with one call per feed."""
    now = await oracle.now()
    await oracle.transmit(2, 5, oracle.updates(now - 1, (0, ETH), (1, BTC)), (0, 1, 2))
    key, states = await oracle.client.latest_feeds([1, 0])
    assert key == (2, 5)
    assert [(s.value, s.round_id) for s in states] == [(BTC, 1), (ETH, 1)]
    assert states == [await oracle.client.latest_feed(1), await oracle.client.latest_feed(0)]
