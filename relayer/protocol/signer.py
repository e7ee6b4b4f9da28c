"""The report signature scheme behind one seam: who signs a report digest and how it is checked.

A scheme is named by an id that sits in the top two bytes of every config digest
(DESIGN.md section 6), so a report made under one scheme never verifies under another.
0x0001 is per-member ECDSA (secp256k1) over the EIP-712 report digest; the contract
checks a bitmask of signers and one compact signature each. A second scheme (threshold
Schnorr) is another `ReportSigner`; nothing else in the protocol calls a curve.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from relayer.chain.codec import SIGNATURE_SCHEME, pack_signatures, recover_address, sign_digest
from relayer.chain.errors import CodecError
from relayer.protocol.committee import Committee
from relayer.protocol.errors import SchemeMismatch, SignatureRejected

ECDSA_EIP712 = SIGNATURE_SCHEME  # 0x0001


def scheme_of(config_digest: bytes) -> int:
    """The signature scheme a config digest commits to (its top two bytes)."""
    return int.from_bytes(config_digest[:2], "big")


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
        found = scheme_of(committee.config_digest)
        if found != self.scheme_id:
            raise SchemeMismatch(
                f"config digest {committee.digest_hex[:10]}.. names signature scheme 0x{found:04x}; this node "
                f"signs with 0x{self.scheme_id:04x}; run a release that supports 0x{found:04x}"
            )


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
