"""The leader's side of scheme 0x0002 (relayer/protocol/signer.py's FrostReportAggregator) and
the contract encoding of its output (relayer/chain/codec.py), without a chain."""

from __future__ import annotations

import secrets

import pytest

from relayer.chain.codec import ThresholdKey, config_digest, keccak, schnorr_signature
from relayer.chain.errors import CodecError
from relayer.crypto import frost
from relayer.crypto.frost import ORDER
from relayer.protocol.errors import SignatureRejected
from relayer.protocol.signer import FrostReportAggregator, InsufficientShares, InvalidSignatureShare, frost_identifier

pytestmark = pytest.mark.unit

DIGEST = keccak(b"a report")


@pytest.fixture(scope="module")
def group() -> tuple[dict[int, frost.KeyShare], list[frost.PublicKey]]:
    """A 5-member, threshold-3 key from a dealer, by member index."""
    shares, vss = frost.trusted_dealer_keygen(secrets.randbelow(ORDER - 1) + 1, 5, 3)
    return {s.identifier - 1: s for s in shares}, vss


def _aggregator(group: tuple[dict[int, frost.KeyShare], list[frost.PublicKey]]) -> FrostReportAggregator:
    shares, vss = group
    return FrostReportAggregator(shares[0].group_public_key,
                                 {m: frost.public_key_share(vss, frost_identifier(m)) for m in shares}, 3)


def _round(group: tuple[dict[int, frost.KeyShare], list[frost.PublicKey]], members: list[int]
           ) -> tuple[dict[int, frost.Commitment], dict[int, int]]:
    shares, _ = group
    nonces = {m: frost.commit(shares[m].secret) for m in members}
    commitments = {m: nonces[m].commitment(frost_identifier(m)) for m in members}
    return commitments, {m: frost.sign(shares[m], nonces[m], list(commitments.values()), DIGEST) for m in members}


def test_threshold_shares_aggregate_into_the_contract_form(
    group: tuple[dict[int, frost.KeyShare], list[frost.PublicKey]],
) -> None:
    commitments, shares = _round(group, [4, 0, 2])
    packed = _aggregator(group).aggregate(DIGEST, commitments, shares)
    assert packed.signer_bitmask == 0 and len(packed.signatures) == 96
    r = frost.PublicKey(b"\x04" + packed.signatures[:64])
    z = int.from_bytes(packed.signatures[64:], "big")
    assert frost.verify(frost.Signature(r, z), group[0][0].group_public_key, DIGEST)


def test_a_bad_share_is_blamed_on_its_member(group: tuple[dict[int, frost.KeyShare], list[frost.PublicKey]]) -> None:
    commitments, shares = _round(group, [1, 2, 3])
    shares[2] = (shares[2] + 1) % ORDER
    with pytest.raises(InvalidSignatureShare) as caught:
        _aggregator(group).aggregate(DIGEST, commitments, shares)
    assert caught.value.member == 2


def test_fewer_than_threshold_shares_or_a_mismatched_set_are_refused(
    group: tuple[dict[int, frost.KeyShare], list[frost.PublicKey]],
) -> None:
    commitments, shares = _round(group, [0, 1])
    with pytest.raises(InsufficientShares, match="2 signature shares, the threshold is 3"):
        _aggregator(group).aggregate(DIGEST, commitments, shares)
    commitments, shares = _round(group, [0, 1, 2])
    del shares[1]
    with pytest.raises(SignatureRejected, match="exactly the signing set"):
        _aggregator(group).aggregate(DIGEST, commitments, shares)
    commitments, shares = _round(group, [0, 1, 2])
    commitments[3], shares[3] = commitments.pop(2), shares.pop(2)  # member 2's work claimed for 3
    with pytest.raises(SignatureRejected, match="identifier 3, expected 4"):
        _aggregator(group).aggregate(DIGEST, commitments, shares)


def test_threshold_key_and_digest_encodings() -> None:
    with pytest.raises(CodecError, match="below the group order"):
        ThresholdKey(ORDER, 0, bytes(32))
    with pytest.raises(CodecError, match="parity"):
        ThresholdKey(1, 2, bytes(32))
    with pytest.raises(CodecError, match="z must be"):
        schnorr_signature(frost.base_mul(1), 0)
    common = dict(chain_id=31337, contract="0x" + "11" * 20, config_count=2, signers=["0x" + "22" * 20],
                  transmitters=["0x" + "33" * 20], f=1, threshold=1, offchain_config=b"")
    ecdsa = config_digest(**common)  # type: ignore[arg-type]
    schnorr = config_digest(**common, group_key=ThresholdKey(5, 1, bytes(32)))  # type: ignore[arg-type]
    assert ecdsa[:2] == b"\x00\x01" and schnorr[:2] == b"\x00\x02" and ecdsa[2:] != schnorr[2:]
