"""FROST(secp256k1, SHA-256) against RFC 9591 Appendix E.5's test vectors, then the
properties the protocol relies on: any t of n sign, fewer cannot, a bad share is blamed."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayer.crypto import frost
from relayer.crypto.frost import ORDER, Commitment, InvalidShare, KeyShare, Nonces

pytestmark = pytest.mark.unit

# RFC 9591, Appendix E.5: FROST(secp256k1, SHA-256), MAX_PARTICIPANTS 3, MIN_PARTICIPANTS 2,
# signers 1 and 3, message "test".
V_SECRET = 0x0D004150D27C3BF2A42F312683D35FAC7394B1E9E318249C1BFE7F0795A83114
V_GROUP_PK = "02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b4f"
V_COEFFICIENT = 0xFBF85EADAE3058EA14F19148BB72B45E4399C0B16028ACAF0395C9B03C823579
V_MESSAGE = bytes.fromhex("74657374")
V_SHARES = {
    1: 0x08F89FFE80AC94DCB920C26F3F46140BFC7F95B493F8310F5FC1EA2B01F4254C,
    2: 0x04F0FEAC2EDCEDC6CE1253B7FAB8C86B856A797F44D83D82A385554E6E401984,
    3: 0x00E95D59DD0D46B0E303E500B62B7CCB0E555D49F5B849F5E748C071DA8C0DBC,
}
V_ROUND_ONE = {
    1: dict(
        hiding_randomness="bda8e748e599187762cff956f03dc6ea13fc8e04491a0427b7e6e78600f41c52",
        binding_randomness="2ca682429bf05df435b9927b8edb1d748278f3e42fa11ef358e49bbf4a1b780d",
        hiding_nonce=0x09764379667F9A9FA61928947BD925A7F162B21886B750D3B11C226D16B32F58,
        binding_nonce=0xB2D3F8CB9DA70984354C3FC3511B1F6ED21B7205941CB5553565D2ECADE8C694,
        hiding_commitment="0305e62a1d3f57a0b17ade569a3a4043e2a1fc3bd0b102614a8d8cc68e3322ad89",
        binding_commitment="03b634c2aed7f85b8eec22e97e5f916ab43a3518821480e15da2af7cffcb060a30",
        binding_factor=0x9BEE5AEF4012DE4B94C9FC1A9A9572181079E293BF1D7545A5AF0EF86F824A91,
        sig_share=0xCA54B18D7449377CFA680760A5770B9E64E201F7EA36B068EFFECA5FCE2155E5,
    ),
    3: dict(
        hiding_randomness="70818dd5170672c4a4285fd593d4f222417f941f3118e1244955e7a1098a35d8",
        binding_randomness="74ca2da071ed4a2a6cad5087d6758b48a558ab5861c61117fee05757e4b1309e",
        hiding_nonce=0x0D92E255E5B42EBC2863F8198D946FC10F388C4983073C18CBB77B88E3BF2E34,
        binding_nonce=0x1C7243CE00A499B1E7CE3403E7B731D0C820CF108FEB8C5EE7C29B4EF43BE5E0,
        hiding_commitment="036f878da0dc19ba7da9f2d9e795e2674e62ff06c990fc4464cc1ed55a2acce46b",
        binding_commitment="025350e2a9e32e7b1fe0161e990623600b2d301b3307641469129cff7936c4d2ce",
        binding_factor=0xCFE0DB2197C94CC355B6AB05610F27F4A874898009C8BF007F2A4E2CE2C8306D,
        sig_share=0xDA13D054E83052568706A6D161D80F112A6BC3F76AA903C022585AE7E091E65E,
    ),
}
V_BINDING_FACTOR_INPUT_PREFIX = (
    "02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b4fff9b5210ffbb3c07a73a7c8935be4a8c"
    "62cf015f6cf7ade6efac09a6513540fcfac8df6fa81b3f4d9ced4be2474894308232dc0be75dbf81f5a103579a823631"
)
V_SIGNATURE = (
    "024c1ad4e031872661fa6ebd05dfc7fb30db08b38d79f0edbc82051ae931381bc6"
    "a46881e25c7989d3816eae32074f1ab0d49ee908a59713ed5284c6bade7cfb02"
)


def _replay(*chunks: str) -> Callable[[int], bytes]:
    queue = [bytes.fromhex(c) for c in chunks]

    def random_bytes(n: int) -> bytes:
        out = queue.pop(0)
        assert len(out) == n
        return out

    return random_bytes


def _vector_keys() -> tuple[list[KeyShare], list[frost.PublicKey]]:
    return frost.trusted_dealer_keygen(V_SECRET, n=3, threshold=2, coefficients=[V_COEFFICIENT])


def test_dealer_shares_and_group_key_match_the_vectors() -> None:
    shares, vss = _vector_keys()
    assert {s.identifier: s.secret for s in shares} == V_SHARES
    assert frost.serialize_element(shares[0].group_public_key).hex() == V_GROUP_PK
    assert all(frost.vss_verify(s.identifier, s.secret, vss) for s in shares)
    assert not frost.vss_verify(2, V_SHARES[2] + 1, vss)


def test_round_one_nonces_and_commitments_match_the_vectors() -> None:
    for identifier, v in V_ROUND_ONE.items():
        nonces = frost.commit(V_SHARES[identifier], _replay(v["hiding_randomness"], v["binding_randomness"]))
        assert nonces == Nonces(v["hiding_nonce"], v["binding_nonce"])
        c = nonces.commitment(identifier)
        assert frost.serialize_element(c.hiding).hex() == v["hiding_commitment"]
        assert frost.serialize_element(c.binding).hex() == v["binding_commitment"]


def _vector_commitments() -> list[Commitment]:
    return [
        Commitment(
            i,
            frost.deserialize_element(bytes.fromhex(str(v["hiding_commitment"]))),
            frost.deserialize_element(bytes.fromhex(str(v["binding_commitment"]))),
        )
        for i, v in V_ROUND_ONE.items()
    ]


def test_binding_factors_match_the_vectors() -> None:
    group_pk = frost.deserialize_element(bytes.fromhex(V_GROUP_PK))
    commitments = _vector_commitments()
    assert frost.binding_factor_input(group_pk, commitments, V_MESSAGE).hex() == V_BINDING_FACTOR_INPUT_PREFIX
    factors = frost.compute_binding_factors(group_pk, commitments, V_MESSAGE)
    assert factors == {i: v["binding_factor"] for i, v in V_ROUND_ONE.items()}


def test_signature_shares_and_aggregate_match_the_vectors() -> None:
    shares, vss = _vector_keys()
    keys = {s.identifier: s for s in shares}
    commitments = _vector_commitments()
    sig_shares = {}
    for i, v in V_ROUND_ONE.items():
        nonces = Nonces(int(v["hiding_nonce"]), int(v["binding_nonce"]))
        sig_shares[i] = frost.sign(keys[i], nonces, commitments, V_MESSAGE)
        assert sig_shares[i] == v["sig_share"]
        assert frost.verify_share(
            i, frost.public_key_share(vss, i), sig_shares[i], commitments, keys[i].group_public_key, V_MESSAGE
        )
    pk_shares = {i: frost.public_key_share(vss, i) for i in sig_shares}
    signature = frost.aggregate(commitments, V_MESSAGE, keys[1].group_public_key, sig_shares, pk_shares)
    assert signature.encode().hex() == V_SIGNATURE
    assert frost.verify(frost.Signature.decode(bytes.fromhex(V_SIGNATURE)), keys[1].group_public_key, V_MESSAGE)
    assert not frost.verify(signature, keys[1].group_public_key, b"tesu")


def _sign_with(shares: list[KeyShare], vss: list[frost.PublicKey], chosen: list[int], msg: bytes) -> frost.Signature:
    keys = {s.identifier: s for s in shares}
    nonces = {i: frost.commit(keys[i].secret) for i in chosen}
    commitments = [nonces[i].commitment(i) for i in chosen]
    sig_shares = {i: frost.sign(keys[i], nonces[i], commitments, msg) for i in chosen}
    pk_shares = {i: frost.public_key_share(vss, i) for i in chosen}
    return frost.aggregate(commitments, msg, shares[0].group_public_key, sig_shares, pk_shares)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(3, 7), data=st.data())
def test_any_threshold_subset_signs_under_the_group_key(n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(2, n))
    shares, vss = frost.trusted_dealer_keygen(secrets.randbelow(ORDER - 1) + 1, n, t)
    chosen = sorted(data.draw(st.sets(st.integers(1, n), min_size=t, max_size=n)))
    msg = data.draw(st.binary(max_size=64))
    signature = _sign_with(shares, vss, chosen, msg)
    assert frost.verify(signature, shares[0].group_public_key, msg)


def test_fewer_than_threshold_shares_do_not_make_a_valid_signature() -> None:
    shares, vss = frost.trusted_dealer_keygen(secrets.randbelow(ORDER - 1) + 1, 5, 3)
    # Two signers interpolate a degree-2 polynomial wrongly: the signature must not verify.
    for chosen in itertools.combinations(range(1, 6), 2):
        signature = _sign_with(shares, vss, list(chosen), b"report")
        assert not frost.verify(signature, shares[0].group_public_key, b"report")


def test_a_bad_share_is_blamed_on_its_signer() -> None:
    shares, vss = frost.trusted_dealer_keygen(secrets.randbelow(ORDER - 1) + 1, 4, 3)
    keys = {s.identifier: s for s in shares}
    chosen = [1, 2, 4]
    nonces = {i: frost.commit(keys[i].secret) for i in chosen}
    commitments = [nonces[i].commitment(i) for i in chosen]
    sig_shares = {i: frost.sign(keys[i], nonces[i], commitments, b"m") for i in chosen}
    sig_shares[2] = (sig_shares[2] + 1) % ORDER
    pk_shares = {i: frost.public_key_share(vss, i) for i in chosen}
    with pytest.raises(InvalidShare) as caught:
        frost.aggregate(commitments, b"m", shares[0].group_public_key, sig_shares, pk_shares)
    assert caught.value.identifier == 2


def test_signing_refuses_a_list_without_or_with_another_commitment_for_the_signer() -> None:
    shares, _ = frost.trusted_dealer_keygen(7, 3, 2)
    nonces = {i: frost.commit(shares[i - 1].secret) for i in (1, 2, 3)}
    others = [nonces[i].commitment(i) for i in (2, 3)]
    with pytest.raises(frost.InvalidInput, match="no commitment"):
        frost.sign(shares[0], nonces[1], others, b"m")
    swapped = [Commitment(1, others[0].hiding, others[0].binding), others[1]]
    with pytest.raises(frost.InvalidInput, match="not of these nonces"):
        frost.sign(shares[0], nonces[1], swapped, b"m")
    with pytest.raises(frost.InvalidInput, match="twice"):
        frost.sign(shares[1], nonces[2], [others[0], others[0]], b"m")


def test_encodings_reject_what_is_not_in_the_group() -> None:
    with pytest.raises(frost.InvalidEncoding):
        frost.deserialize_scalar(ORDER.to_bytes(32, "big"))
    with pytest.raises(frost.InvalidEncoding):
        frost.deserialize_element(b"\x04" + bytes(32))
    with pytest.raises(frost.InvalidEncoding):
        # x = 5 is not the x-coordinate of any secp256k1 point.
        frost.deserialize_element(b"\x02" + (5).to_bytes(32, "big"))
    with pytest.raises(frost.InvalidEncoding):
        frost.Signature.decode(bytes(64))
