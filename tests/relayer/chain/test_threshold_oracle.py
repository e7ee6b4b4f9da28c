"""QuorumOracle under scheme 0x0002 (FROST threshold Schnorr) on a real anvil.

A committee runs the Pedersen key generation in-process (relayer/crypto/dkg.py); its group
key is installed only with approvals from at least `threshold` members, and reports then
carry one signature (R, z) that transmit, submit and verifyReport check with one ecrecover.
A report of one scheme never verifies under a config of the other.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import AsyncWeb3

from relayer.chain.anvil import AnvilNode
from relayer.chain.codec import (
    PackedSignatures,
    ThresholdKey,
    address_of,
    config_digest,
    pack_approvals,
    schnorr_signature,
)
from relayer.chain.errors import ReportRefused, TransmitError
from relayer.chain.oracle import OnchainConfig
from relayer.crypto import dkg, frost
from relayer.crypto.frost import ORDER
from relayer.protocol.signer import (
    FrostReportAggregator,
    InsufficientShares,
    approve_group_key,
    frost_identifier,
)
from tests.relayer.chain.conftest import Deployment, deploy, reverts

pytestmark = pytest.mark.integration

OFFCHAIN = b"offchain-frost"


@dataclass(frozen=True)
class GroupOutcome:
    """What an in-process key generation among n members leaves: each member's share (by
    member index), the public group key and verification shares, the transcript hash."""

    shares: dict[int, frost.KeyShare]
    group: dkg.GroupKey
    transcript_hash: bytes

    @property
    def key(self) -> frost.PublicKey:
        return self.group.group_public_key

    def aggregator(self, threshold: int) -> FrostReportAggregator:
        return FrostReportAggregator(
            self.key, {m: self.group.verification_share(frost_identifier(m)) for m in self.shares}, threshold)

    def shares_for(self, members: list[int], digest: bytes) -> tuple[dict[int, frost.Commitment], dict[int, int]]:
        """Both FROST rounds for `members` over `digest`: their commitments and shares."""
        nonces = {m: frost.commit(self.shares[m].secret) for m in members}
        commitments = {m: nonces[m].commitment(frost_identifier(m)) for m in members}
        listed = list(commitments.values())
        return commitments, {m: frost.sign(self.shares[m], nonces[m], listed, digest) for m in members}

    def sign(self, members: list[int], digest: bytes, threshold: int) -> PackedSignatures:
        commitments, shares = self.shares_for(members, digest)
        return self.aggregator(threshold).aggregate(digest, commitments, shares)


def run_dkg(n: int, t: int, context: bytes) -> GroupOutcome:
    """Every member's rounds of the key generation, in one process; again if the group key's
    x is not below the order (odds 2^-128: the contract refuses such a key)."""
    while True:
        secrets_, packages = {}, {}
        for i in range(1, n + 1):
            secrets_[i], packages[i] = dkg.round1(i, n, t, context)
        for package in packages.values():
            dkg.verify_round1(package, t, context)
        sent = {i: dkg.round2_shares(secrets_[i]) for i in packages}
        shares = {}
        for me in packages:
            shares[me - 1], group = dkg.finish(
                secrets_[me], packages, {i: sent[i][me] for i in packages if i != me}, packages)
        if group.group_public_key.point()[0] < ORDER:
            return GroupOutcome(shares, group, dkg.transcript_hash(packages.values(), context))


def threshold_key(outcome: GroupOutcome) -> ThresholdKey:
    return ThresholdKey.from_point(outcome.key, outcome.transcript_hash)


async def next_digest(d: Deployment, key: ThresholdKey, *, threshold: int | None = None) -> bytes:
    """The digest the next threshold config of d's committee will have: what members approve."""
    current = await d.client.config()
    return config_digest(
        chain_id=d.anvil.chain_id, contract=d.client.address, config_count=current.config_count + 1,
        signers=[address_of(k) for k in d.signer_keys], transmitters=[address_of(k) for k in d.transmitter_keys],
        f=current.f, threshold=threshold or current.threshold, offchain_config=OFFCHAIN, group_key=key,
    )


async def install(
    d: Deployment, outcome: GroupOutcome, approvers: list[int], *, key: ThresholdKey | None = None,
    approval_keys: list[bytes] | None = None, approved_key: ThresholdKey | None = None,
) -> OnchainConfig:
    """setThresholdConfig for d's committee (same f and threshold) with approvals by the
    members `approvers` (or by `approval_keys`), of `approved_key` (default: the key itself)."""
    key = key or threshold_key(outcome)
    current = await d.client.config()
    digest = await next_digest(d, key)
    signing = approval_keys if approval_keys is not None else [d.signer_keys[m] for m in approvers]
    approvals = pack_approvals([approve_group_key(k, d.domain, digest, approved_key or key) for k in signing])
    config = await d.client.set_threshold_config(
        d.owner_key, [address_of(k) for k in d.signer_keys], [address_of(k) for k in d.transmitter_keys],
        current.f, current.threshold, OFFCHAIN, key, approvals)
    d.config = config
    return config


@pytest.fixture
async def committee(anvil: AnvilNode, w3: AsyncWeb3) -> tuple[Deployment, GroupOutcome]:
    """n=4, f=1, threshold=3 under scheme 0x0001, and a key its members made (not installed)."""
    d = await deploy(anvil, w3, n=4, f=1, threshold=3)
    return d, run_dkg(4, 3, b"test committee 4/3")


async def test_a_dkg_key_with_threshold_approvals_is_installed_and_signs_reports(
    committee: tuple[Deployment, GroupOutcome],
) -> None:
    d, outcome = committee
    key = threshold_key(outcome)
    expected = await next_digest(d, key)
    assert await d.client.key_approval_digest(expected, key) == d.domain.key_approval_digest(expected, key)
    config = await install(d, outcome, [3, 0, 2])
    assert config.config_digest == expected  # the Python mirror of _thresholdConfigDigest
    assert config.config_digest[:2] == b"\x00\x02"
    assert await d.client.group_key() == key
    now = await d.now()
    updates = d.updates(now, (0, 3_000_00000000), (1, 60_000_00000000))
    report = d.domain.report_digest(config.config_digest, 1, 1, updates)
    receipt = await d.client.transmit(d.transmitter_keys[1], config.config_digest, 1, 1, updates,
                                      outcome.sign([0, 1, 3], report, 3))
    assert receipt.succeeded
    assert (await d.client.latest_feed(0)).value == 3_000_00000000
    assert (await d.client.latest_feed(1)).value == 60_000_00000000
    assert await d.client.latest_epoch_round() == (1, 1)
    assert await d.client.latest_signer_count() == 3  # the threshold: one signature of >= 3 members
    # A feed added later redeploys the config blob: the key stays.
    assert await d.client.add_feed(d.owner_key, "SOL/USD", 8, "SOL / USD", 1, 10**18) == 2
    assert await d.client.group_key() == key
    updates = d.updates(now + 1, (2, 150_00000000))
    report = d.domain.report_digest(config.config_digest, 1, 2, updates)
    assert (await d.client.transmit(d.transmitter_keys[0], config.config_digest, 1, 2, updates,
                                    outcome.sign([1, 2, 3], report, 3))).succeeded
    assert (await d.client.latest_feed(2)).value == 150_00000000
    # Back to 0x0001: the key is gone, and ECDSA reports land again.
    ecdsa = await d.client.set_config(d.owner_key, [address_of(k) for k in d.signer_keys],
                                      [address_of(k) for k in d.transmitter_keys], 1, 3, b"again")
    d.config = ecdsa
    assert ecdsa.config_digest[:2] == b"\x00\x01" and await d.client.group_key() is None
    assert (await d.transmit(1, 1, d.updates(now + 1, (0, 3_001_00000000)))).succeeded


async def test_approvals_below_threshold_foreign_duplicate_or_of_another_transcript_are_refused_by_name(
    committee: tuple[Deployment, GroupOutcome],
) -> None:
    d, outcome = committee
    before = await d.client.config()
    key = threshold_key(outcome)
    error = await reverts(install(d, outcome, [0, 2]))
    assert error.reason == "InsufficientApprovals" and error.error_args == (2, 3)
    outsider = bytes(31) + b"\x07"
    error = await reverts(install(d, outcome, [], approval_keys=[d.signer_keys[0], outsider, d.signer_keys[1]]))
    assert error.reason == "ForeignApproval" and error.error_args == (address_of(outsider),)
    error = await reverts(install(d, outcome, [0, 1, 1]))
    assert error.reason == "DuplicateApproval" and error.error_args == (address_of(d.signer_keys[1]),)
    # Members who approved another key generation's transcript: their signatures recover to
    # nobody in the committee.
    other = ThresholdKey(key.x, key.y_parity, bytes(32))
    error = await reverts(install(d, outcome, [0, 1, 2], approved_key=other))
    members = {address_of(k) for k in d.signer_keys}
    assert error.reason == "ForeignApproval" and error.error_args[0] not in members
    # The same members' approval of the same key for another config (the count moved on).
    stale = await next_digest(d, key)
    await d.client.set_config(d.owner_key, [address_of(k) for k in d.signer_keys],
                              [address_of(k) for k in d.transmitter_keys], 1, 3, b"moved on")
    approvals = pack_approvals([approve_group_key(d.signer_keys[m], d.domain, stale, key) for m in (0, 1, 2)])
    error = await reverts(d.client.set_threshold_config(
        d.owner_key, [address_of(k) for k in d.signer_keys], [address_of(k) for k in d.transmitter_keys],
        1, 3, OFFCHAIN, key, approvals))
    assert error.reason == "ForeignApproval"
    error = await reverts(install(d, outcome, [0, 1, 2], key=ThresholdKey(5, 0, key.transcript_hash)))
    assert error.reason == "InvalidGroupKey"  # x = 5: 5^3 + 7 is not a square mod p
    # Only the owner, whatever the approvals.
    approvals = pack_approvals([approve_group_key(d.signer_keys[m], d.domain, await next_digest(d, key), key)
                                for m in (0, 1, 2)])
    error = await reverts(d.client.set_threshold_config(
        d.transmitter_keys[0], [address_of(k) for k in d.signer_keys],
        [address_of(k) for k in d.transmitter_keys], 1, 3, OFFCHAIN, key, approvals))
    assert error.reason == "NotOwner"
    assert (await d.client.config()).config_digest[:2] == b"\x00\x01" and await d.client.group_key() is None
    assert (await d.client.config()).config_count == before.config_count + 1  # only the set_config above


async def test_reports_of_one_scheme_never_verify_under_the_other(committee: tuple[Deployment, GroupOutcome]) -> None:
    d, outcome = committee
    now = await d.now()
    updates = d.updates(now, (0, 3_000_00000000))
    ecdsa_digest = d.config.config_digest
    ecdsa_sigs = d.sign(1, 1, updates, (0, 1, 2))
    frost_config = await install(d, outcome, [0, 1, 2])
    frost_sig = outcome.sign([1, 2, 3], d.domain.report_digest(frost_config.config_digest, 1, 1, updates), 3)
    # An ECDSA report under the threshold config: its own digest is not the config's; relabelled
    # with the config's digest, its bitmask and 64-byte pairs are not a Schnorr signature.
    error = await reverts(d.client.verify_report(ecdsa_digest, 1, 1, updates, ecdsa_sigs), ReportRefused)
    assert error.reason == "ConfigDigestMismatch"
    relabelled = d.sign(1, 1, updates, (0, 1, 2), config_digest=frost_config.config_digest)
    error = await reverts(d.client.verify_report(frost_config.config_digest, 1, 1, updates, relabelled), ReportRefused)
    assert error.reason == "MalformedSchnorrSignature"
    three_pairs = PackedSignatures(0, b"".join(sig[:64] for _, sig in relabelled)[:96])
    error = await reverts(d.client.verify_report(frost_config.config_digest, 1, 1, updates, three_pairs),
                          ReportRefused)
    assert error.reason == "InvalidSchnorrSignature"  # 96 bytes, but no (R, z) of the group key
    assert [f.value for f in await d.client.verify_report(frost_config.config_digest, 1, 1, updates, frost_sig)] == \
        [3_000_00000000]
    # A Schnorr report under an ECDSA config: another digest, and no bitmask to count.
    ecdsa_again = await d.client.set_config(d.owner_key, [address_of(k) for k in d.signer_keys],
                                            [address_of(k) for k in d.transmitter_keys], 1, 3, b"back")
    error = await reverts(d.client.verify_report(frost_config.config_digest, 1, 1, updates, frost_sig), ReportRefused)
    assert error.reason == "ConfigDigestMismatch"
    resigned = outcome.sign([0, 1, 2], d.domain.report_digest(ecdsa_again.config_digest, 1, 1, updates), 3)
    error = await reverts(d.client.verify_report(ecdsa_again.config_digest, 1, 1, updates, resigned), ReportRefused)
    assert error.reason == "SignatureCountMismatch"


async def test_tampered_signatures_other_digests_and_a_replaced_key_are_refused(
    committee: tuple[Deployment, GroupOutcome],
) -> None:
    d, outcome = committee
    config = await install(d, outcome, [0, 1, 2])
    now = await d.now()
    updates = d.updates(now, (0, 3_000_00000000))
    signature = outcome.sign([0, 2, 3], d.domain.report_digest(config.config_digest, 1, 1, updates), 3)
    raw = signature.signatures
    rx, ry, z = (int.from_bytes(raw[i:i + 32], "big") for i in (0, 32, 64))
    p = 2**256 - 2**32 - 977

    def packed(*words: int) -> PackedSignatures:
        return PackedSignatures(0, b"".join(w.to_bytes(32, "big") for w in words))

    # z altered, out of range or 0; -R (same x); R off the curve; R's coordinates swapped.
    for bad in (packed(rx, ry, (z + 1) % ORDER), packed(rx, ry, ORDER), packed(rx, ry, 0), packed(rx, p - ry, z),
                packed(rx, ry + 1, z), packed(ry, rx, z)):
        error = await reverts(d.client.verify_report(config.config_digest, 1, 1, updates, bad), ReportRefused)
        assert error.reason == "InvalidSchnorrSignature"
    error = await reverts(d.client.verify_report(config.config_digest, 1, 1, updates, PackedSignatures(0, raw[:64])),
                          ReportRefused)
    assert error.reason == "MalformedSchnorrSignature" and error.error_args == (0, 64)
    error = await reverts(d.client.verify_report(config.config_digest, 1, 1, updates, PackedSignatures(1, raw)),
                          ReportRefused)
    assert error.reason == "MalformedSchnorrSignature" and error.error_args == (1, 96)
    # The same signature for another report: other values, another round.
    for other_updates, other_round in ((d.updates(now, (0, 3_000_00000001)), 1), (updates, 2)):
        error = await reverts(d.client.verify_report(config.config_digest, 1, other_round, other_updates, signature),
                              ReportRefused)
        assert error.reason == "InvalidSchnorrSignature"
    # A new key generation replaces the committee's key: old-key reports are refused, by digest
    # and, re-labelled, by signature.
    replacement = run_dkg(4, 3, b"test committee 4/3, second run")
    new_config = await install(d, replacement, [1, 2, 3])
    error = await reverts(d.client.verify_report(config.config_digest, 1, 1, updates, signature), ReportRefused)
    assert error.reason == "ConfigDigestMismatch"
    old_key_new_digest = outcome.sign([0, 1, 2], d.domain.report_digest(new_config.config_digest, 1, 1, updates), 3)
    error = await reverts(d.client.transmit(d.transmitter_keys[0], new_config.config_digest, 1, 1, updates,
                                            old_key_new_digest), TransmitError)
    assert error.reason == "InvalidSchnorrSignature"
    good = replacement.sign([0, 1, 2], d.domain.report_digest(new_config.config_digest, 1, 1, updates), 3)
    assert (await d.client.transmit(d.transmitter_keys[0], new_config.config_digest, 1, 1, updates, good)).succeeded


async def test_submit_verify_and_transmits_checks_under_the_threshold_scheme(
    committee: tuple[Deployment, GroupOutcome],
) -> None:
    d, outcome = committee
    config = await install(d, outcome, [0, 1, 2, 3])
    now = await d.now()

    def report(round_: int, value: int) -> tuple[bytes, PackedSignatures]:
        updates = d.updates(now + round_, (0, value), (1, 2 * value))
        return updates, outcome.sign(random.Random(round_).sample(range(4), 3),
                                     d.domain.report_digest(config.config_digest, 1, round_, updates), 3)

    updates, sig = report(1, 3_000_00000000)
    verified = await d.client.verify_report(config.config_digest, 1, 1, updates, sig)
    assert [(f.feed_index, f.value) for f in verified] == [(0, 3_000_00000000), (1, 6_000_00000000)]
    assert (await d.client.latest_feed(0)).round_id == 0  # verify stores nothing
    receipt = await d.client.submit_report(d.anvil.accounts[28][1], config.config_digest, 1, 1, updates, sig)
    assert [u.value for u in receipt.updated] == [3_000_00000000, 6_000_00000000]
    assert await d.client.latest_epoch_round() == (1, 1)
    # The push path's own checks still come first: the sender, then the round.
    updates2, sig2 = report(2, 3_010_00000000)
    error = await reverts(d.client.transmit(d.anvil.accounts[28][1], config.config_digest, 1, 2, updates2, sig2),
                          TransmitError)
    assert error.reason == "UnauthorizedTransmitter"
    error = await reverts(d.client.transmit(d.transmitter_keys[2], config.config_digest, 1, 1, updates, sig),
                          TransmitError)
    assert error.reason == "StaleRound"
    assert (await d.client.transmit(d.transmitter_keys[2], config.config_digest, 1, 2, updates2, sig2)).succeeded
    assert (await d.client.latest_feed(1)).value == 6_020_00000000
    # A second submit of a landed report stores nothing and does not fail.
    again = await d.client.submit_report(d.anvil.accounts[28][1], config.config_digest, 1, 2, updates2, sig2)
    assert again.succeeded and again.updated == ()


class TestAnyThresholdSubsetSigns:
    """Property: any t of n members give a signature the contract accepts; fewer than t
    cannot be aggregated, and their shares summed anyway are refused on-chain."""

    N, F, T = 7, 2, 5

    @pytest.fixture
    async def installed(self, anvil: AnvilNode, w3: AsyncWeb3) -> tuple[Deployment, GroupOutcome]:
        d = await deploy(anvil, w3, n=self.N, f=self.F, threshold=self.T)
        outcome = run_dkg(self.N, self.T, b"test committee 7/5")
        await install(d, outcome, list(range(self.T)))
        return d, outcome

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    async def test_any_t_of_n(self, installed: tuple[Deployment, GroupOutcome], data: st.DataObject) -> None:
        d, outcome = installed
        size = data.draw(st.integers(min_value=1, max_value=self.N), label="signers")
        members = sorted(data.draw(st.permutations(range(self.N)), label="order")[:size])
        value = data.draw(st.integers(min_value=1, max_value=10**15), label="value")
        now = await d.now()
        updates = d.updates(now, (0, value))
        digest = d.domain.report_digest(d.config.config_digest, 3, 4, updates)
        commitments, shares = outcome.shares_for(members, digest)
        if size >= self.T:
            signature = outcome.aggregator(self.T).aggregate(digest, commitments, shares)
            verified = await d.client.verify_report(d.config.config_digest, 3, 4, updates, signature)
            assert [(f.feed_index, f.value) for f in verified] == [(0, value)]
            return
        with pytest.raises(InsufficientShares):
            outcome.aggregator(self.T).aggregate(digest, commitments, shares)
        # Each share is right on its own; their sum is no signature of the group key.
        summed = frost.aggregate(
            list(commitments.values()), digest, outcome.key, {frost_identifier(m): z for m, z in shares.items()},
            {frost_identifier(m): outcome.group.verification_share(frost_identifier(m)) for m in members})
        assert not frost.verify(summed, outcome.key, digest)
        error = await reverts(d.client.verify_report(d.config.config_digest, 3, 4, updates,
                                                     schnorr_signature(summed.r, summed.z)), ReportRefused)
        assert error.reason == "InvalidSchnorrSignature"


async def test_approval_and_config_digests_match_the_contract(committee: tuple[Deployment, GroupOutcome]) -> None:
    d, outcome = committee
    key = threshold_key(outcome)
    digest = await next_digest(d, key)
    assert await d.client.key_approval_digest(digest, key) == d.domain.key_approval_digest(digest, key)
    other = ThresholdKey(key.x, 1 - key.y_parity, key.transcript_hash)
    assert d.domain.key_approval_digest(digest, other) != d.domain.key_approval_digest(digest, key)
    assert await next_digest(d, other) != digest  # the digest commits to the key
    # Approved but not installed: no report verifies under it.
    error = await reverts(d.client.verify_report(digest, 1, 1, d.updates(await d.now(), (0, 1)),
                                                 PackedSignatures(0, bytes(96))), ReportRefused)
    assert error.reason == "ConfigDigestMismatch"
