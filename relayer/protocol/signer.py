"""The report signature scheme behind one seam: who signs a report digest and how it is checked.

A scheme is named by an id that sits in the top two bytes of every config digest
(DESIGN.md section 6), so a report made under one scheme never verifies under another.
0x0001 is per-member ECDSA (secp256k1) over the EIP-712 report digest; the contract
checks a bitmask of signers and one compact signature each.

0x0002 is threshold Schnorr (FROST, relayer/crypto/frost.py) under a group key the members
made with a distributed key generation and approved on-chain (`approve_group_key`). Signing
takes two rounds, so it is not a one-shot `ReportSigner.sign`: each chosen member publishes
nonce commitments, answers the leader's (report digest, commitment list) with a signature
share (`frost.sign`, after durably marking its nonces used), and the leader's
`FrostReportAggregator` checks every share, blames a bad one on its member and sums the rest
into the one signature `QuorumOracle` takes. Nothing else in the protocol calls a curve.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from coincurve import PublicKey

from relayer.chain.codec import (
    SIGNATURE_SCHEME,
    THRESHOLD_SCHNORR_SCHEME,
    PackedSignatures,
    ReportDomain,
    ThresholdKey,
    pack_signatures,
    recover_address,
    schnorr_signature,
    sign_digest,
)
from relayer.chain.errors import CodecError
from relayer.crypto import frost
from relayer.protocol.committee import Committee
from relayer.protocol.errors import ProtocolError, SchemeMismatch, SignatureRejected

ECDSA_EIP712 = SIGNATURE_SCHEME  # 0x0001
THRESHOLD_SCHNORR = THRESHOLD_SCHNORR_SCHEME  # 0x0002


def scheme_of(config_digest: bytes) -> int:
    """The signature scheme a config digest commits to (its top two bytes)."""
    return int.from_bytes(config_digest[:2], "big")


def _require_scheme(committee: Committee, scheme_id: int) -> None:
    found = scheme_of(committee.config_digest)
    if found != scheme_id:
        raise SchemeMismatch(
            f"config digest {committee.digest_hex[:10]}.. names signature scheme 0x{found:04x}; this node "
            f"signs with 0x{scheme_id:04x}; run a release that supports 0x{found:04x}"
        )


class ReportSigner(ABC):
    """One node's side of a report signature scheme."""

    scheme_id: int

    @abstractmethod
    def sign(self, report_digest: bytes) -> bytes:
        """This node's signature over a 32-byte report digest."""

    @abstractmethod
    def verify(self, report_digest: bytes, signatures: Sequence[tuple[int, bytes]], committee: Committee) -> None:
        """Each (member index, signature) is by that member over `report_digest`, no index twice.

        Raises SignatureRejected naming the first that is not. How many are enough is the
        protocol's rule (the committee's threshold), not the scheme's.
        """

    @abstractmethod
    def encode_for_contract(self, signatures: Sequence[tuple[int, bytes]]) -> tuple[int, bytes]:
        """What `QuorumOracle.transmit` takes: (signer bitmask, signature bytes)."""

    def check_committee(self, committee: Committee) -> None:
        """Refuse a committee whose config digest names another scheme."""
        _require_scheme(committee, self.scheme_id)


class EcdsaReportSigner(ReportSigner):
    """Scheme 0x0001: every member signs the EIP-712 digest with its secp256k1 key."""

    scheme_id = ECDSA_EIP712

    def __init__(self, private_key: bytes) -> None:
        self._key = private_key

    def sign(self, report_digest: bytes) -> bytes:
        return sign_digest(self._key, report_digest)

    def verify(self, report_digest: bytes, signatures: Sequence[tuple[int, bytes]], committee: Committee) -> None:
        seen: set[int] = set()
        for index, signature in signatures:
            if not 0 <= index < committee.n:
                raise SignatureRejected(f"signer index {index} outside the committee of {committee.n}")
            if index in seen:
                raise SignatureRejected(f"signer index {index} appears twice")
            seen.add(index)
            try:
                signer = recover_address(report_digest, signature)
            except CodecError as exc:
                raise SignatureRejected(f"signature {index} does not recover: {exc}") from None
            expected = committee.signers[index]
            if signer.lower() != expected.lower():
                raise SignatureRejected(f"signature {index} is by {signer}, not by member {index} {expected}")

    def encode_for_contract(self, signatures: Sequence[tuple[int, bytes]]) -> tuple[int, bytes]:
        return pack_signatures(signatures)


class InsufficientShares(SignatureRejected):
    """Fewer signature shares than the committee's threshold: they cannot make a signature."""


class InvalidSignatureShare(SignatureRejected):
    """A member's signature share does not verify; `member` is its committee index, so the
    leader can exclude it from the signing set and retry with another."""

    def __init__(self, member: int, message: str) -> None:
        super().__init__(message)
        self.member = member


def frost_identifier(member: int) -> int:
    """FROST identifiers are 1..n; committee member indexes are 0..n-1."""
    return member + 1


class FrostReportAggregator:
    """Scheme 0x0002, the leader's side: the chosen members' shares over one report digest,
    each checked against the member's verification share (from the key generation), summed
    into one Schnorr signature in the form `QuorumOracle.transmit` takes."""

    scheme_id = THRESHOLD_SCHNORR

    def __init__(
        self, group_public_key: PublicKey, verification_shares: Mapping[int, PublicKey], threshold: int
    ) -> None:
        """`verification_shares` by committee member index (0-based)."""
        if threshold < 2:
            raise ProtocolError(f"a threshold key needs a threshold of at least 2, got {threshold}")
        self.group_public_key = group_public_key
        self.threshold = threshold
        self._verification = {frost_identifier(m): share for m, share in verification_shares.items()}

    def check_committee(self, committee: Committee) -> None:
        _require_scheme(committee, self.scheme_id)
        if committee.threshold != self.threshold:
            raise SchemeMismatch(
                f"the committee's threshold is {committee.threshold}, the group key's {self.threshold}; "
                "a committee change needs a new key generation"
            )

    def aggregate(
        self, report_digest: bytes, commitments: Mapping[int, frost.Commitment], shares: Mapping[int, int]
    ) -> PackedSignatures:
        """One signature from `shares` (by member index) over `report_digest`, made with the
        nonce `commitments` (by member index) the leader sent with the proposal.

        Raises InsufficientShares below the threshold, SignatureRejected when shares and
        commitments name different members, InvalidSignatureShare naming the first member
        whose share does not verify."""
        if len(report_digest) != 32:
            raise SignatureRejected(f"a report digest is 32 bytes, got {len(report_digest)}")
        if set(shares) != set(commitments):
            raise SignatureRejected(
                f"shares from members {sorted(shares)}, commitments from members {sorted(commitments)}: "
                "aggregate the shares of exactly the signing set the proposal named"
            )
        if len(shares) < self.threshold:
            raise InsufficientShares(
                f"{len(shares)} signature shares, the threshold is {self.threshold}: wait for more members"
            )
        listed = []
        for member, commitment in commitments.items():
            if commitment.identifier != frost_identifier(member):
                raise SignatureRejected(
                    f"member {member}'s commitment names FROST identifier {commitment.identifier}, "
                    f"expected {frost_identifier(member)}"
                )
            if commitment.identifier not in self._verification:
                raise SignatureRejected(f"member {member} has no verification share in this group key")
            listed.append(commitment)
        try:
            signature = frost.aggregate(
                listed,
                report_digest,
                self.group_public_key,
                {frost_identifier(m): z for m, z in shares.items()},
                self._verification,
            )
        except frost.InvalidShare as exc:
            member = exc.identifier - 1
            raise InvalidSignatureShare(member, f"signature share of member {member} does not verify") from None
        except frost.FrostError as exc:
            raise SignatureRejected(f"the shares do not aggregate: {exc}") from None
        if not frost.verify(signature, self.group_public_key, report_digest):
            raise SignatureRejected("the aggregate does not verify under the group key though every share did")
        try:
            return schnorr_signature(signature.r, signature.z)
        except CodecError as exc:
            raise SignatureRejected(f"the aggregate cannot be encoded for the contract: {exc}") from None


def approve_group_key(private_key: bytes, domain: ReportDomain, config_digest: bytes, key: ThresholdKey) -> bytes:
    """A member's approval (65-byte ECDSA signature, its committee key) of `key` for the
    config `config_digest`, which `setThresholdConfig` requires from `threshold` members.

    A member signs only after checking that `key` is the group key its own key generation
    produced and `key.transcript_hash` the transcript it saw, and that `config_digest` is
    `codec.config_digest` of the committee it agreed to, with that key."""
    return sign_digest(private_key, domain.key_approval_digest(config_digest, key))
