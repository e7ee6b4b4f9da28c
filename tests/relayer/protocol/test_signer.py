"""The report signature seam: scheme 0x0001 (ECDSA over the EIP-712 report digest)."""

from __future__ import annotations

import pytest

from relayer.chain.codec import keccak, pack_signatures
from relayer.protocol.committee import Committee
from relayer.protocol.errors import SignatureRejected
from relayer.protocol.signer import ECDSA_EIP712, EcdsaReportSigner, scheme_of

pytestmark = pytest.mark.unit

DIGEST = keccak(b"a report")


def test_the_scheme_id_is_the_config_digests_top_two_bytes(committee: Committee) -> None:
    assert ECDSA_EIP712 == 0x0001 == EcdsaReportSigner.scheme_id == scheme_of(committee.config_digest)


def test_signatures_verify_against_their_members(keys: list[bytes], committee: Committee) -> None:
    signed = [(i, EcdsaReportSigner(keys[i]).sign(DIGEST)) for i in (3, 0, 2)]
    EcdsaReportSigner(keys[1]).verify(DIGEST, signed, committee)


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (lambda s: [(1, s[0][1])], "not by member 1"),  # member 0's signature claimed for member 1
        (lambda s: s + [s[0]], "appears twice"),
        (lambda s: [(4, s[0][1])], "outside the committee"),
        (lambda s: [(0, b"\x01" * 64 + b"\x05")], "does not recover"),
    ],
)
def test_a_wrong_set_is_rejected_naming_the_signature(tamper, words, keys: list[bytes],  # type: ignore[no-untyped-def]
                                                      committee: Committee) -> None:
    signed = [(0, EcdsaReportSigner(keys[0]).sign(DIGEST))]
    with pytest.raises(SignatureRejected, match=words):
        EcdsaReportSigner(keys[1]).verify(DIGEST, tamper(signed), committee)


def test_a_signature_over_another_digest_is_rejected(keys: list[bytes], committee: Committee) -> None:
    other = EcdsaReportSigner(keys[0]).sign(keccak(b"another report"))
    with pytest.raises(SignatureRejected):
        EcdsaReportSigner(keys[1]).verify(DIGEST, [(0, other)], committee)


def test_encoding_for_the_contract_is_the_bitmask_and_compact_signatures(keys: list[bytes]) -> None:
    signed = [(i, EcdsaReportSigner(keys[i]).sign(DIGEST)) for i in (2, 0)]
    bitmask, packed = EcdsaReportSigner(keys[0]).encode_for_contract(signed)
    assert bitmask == 0b101 and len(packed) == 2 * 64
    assert (bitmask, packed) == pack_signatures(signed)
