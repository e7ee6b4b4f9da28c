"""The pure report codec: update words, EIP-712 digest, signatures (no chain, no sockets)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from relayer.chain.codec import (
    INT192_MAX,
    INT192_MIN,
    FeedUpdate,
    ReportDomain,
    address_of,
    decode_updates,
    encode_updates,
    feed_id_bytes,
    keccak,
    pack_signatures,
    unpack_signatures,
    recover_address,
    sign_digest,
    to_compact,
)
from relayer.chain.errors import CodecError

pytestmark = pytest.mark.unit

KEY = keccak(b"codec test key")
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

feed_updates = st.lists(
    st.builds(
        FeedUpdate,
        feed_index=st.integers(0, 2**16 - 1),
        observed_at=st.integers(0, 2**32 - 1),
        num_sources=st.integers(0, 255),
        value=st.integers(INT192_MIN, INT192_MAX),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda u: u.feed_index,
).map(lambda us: sorted(us, key=lambda u: u.feed_index))


@given(feed_updates)
def test_updates_round_trip(updates: list[FeedUpdate]) -> None:
    data = encode_updates(updates)
    assert len(data) == 32 * len(updates)
    assert decode_updates(data) == updates


def test_update_word_layout() -> None:
    word = encode_updates([FeedUpdate(feed_index=3, observed_at=1_700_000_000, num_sources=5, value=-2)])
    assert word[:2] == (3).to_bytes(2, "big")
    assert word[2:6] == (1_700_000_000).to_bytes(4, "big")
    assert word[6] == 5 and word[7] == 0
    assert word[8:] == b"\xff" * 23 + b"\xfe"  # int192 two's complement


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ([], "at least one"),
        ([FeedUpdate(1, 0, 0, 0), FeedUpdate(1, 0, 0, 0)], "ascending"),
        ([FeedUpdate(2, 0, 0, 0), FeedUpdate(1, 0, 0, 0)], "ascending"),
        ([FeedUpdate(2**16, 0, 0, 0)], "uint16"),
        ([FeedUpdate(0, 2**32, 0, 0)], "uint32"),
        ([FeedUpdate(0, 0, 256, 0)], "uint8"),
        ([FeedUpdate(0, 0, 0, INT192_MAX + 1)], "int192"),
    ],
)
def test_encode_refuses_what_the_contract_would(updates: list[FeedUpdate], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        encode_updates(updates)


def test_decode_refuses_malformed_bytes() -> None:
    good = encode_updates([FeedUpdate(1, 0, 0, 7), FeedUpdate(4, 0, 0, 8)])
    for bad in (b"", good[:-1], good[32:] + good[:32], good + good[32:]):
        with pytest.raises(CodecError):
            decode_updates(bad)
    reserved = bytearray(good)
    reserved[7] = 1
    with pytest.raises(CodecError, match="reserved"):
        decode_updates(bytes(reserved))


def test_digest_equals_eth_account_typed_data() -> None:
    domain = ReportDomain(31337, CONTRACT.lower())
    config_digest = b"\x00\x01" + keccak(b"config")[2:]
    updates = encode_updates([FeedUpdate(0, 1_700_000_000, 3, 123), FeedUpdate(9, 1_700_000_001, 2, -1)])
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
        "domain": {"name": "QuorumOracle", "version": "1", "chainId": 31337, "verifyingContract": CONTRACT},
        "message": {"configDigest": config_digest, "epoch": 3, "round": 9, "updates": updates},
    })
    assert signable.header == domain.separator
    assert domain.report_digest(config_digest, 3, 9, updates) == keccak(
        b"\x19" + signable.version + signable.header + signable.body
    )
    signature = sign_digest(KEY, domain.report_digest(config_digest, 3, 9, updates))
    assert Account.recover_message(signable, signature=signature) == address_of(KEY)


def test_sign_and_recover_agree_with_eth_account() -> None:
    digest = keccak(b"some report")
    signature = sign_digest(KEY, digest)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert address_of(KEY) == Account.from_key(KEY).address
    assert recover_address(digest, signature) == address_of(KEY)
    assert recover_address(digest, to_compact(signature)) == address_of(KEY)
    assert Account._recover_hash(digest, signature=signature) == address_of(KEY)


def test_compact_form_folds_high_s() -> None:
    digest = keccak(b"malleable")
    signature = sign_digest(KEY, digest)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high = r + (N - s).to_bytes(32, "big") + bytes((55 - v,))  # same signature, other half
    assert recover_address(digest, high) == address_of(KEY)
    assert to_compact(high) == to_compact(signature)


def test_recover_refuses_garbage() -> None:
    digest = keccak(b"x")
    for bad in (b"", b"\x01" * 63, b"\x00" * 65, sign_digest(KEY, digest)[:64] + b"\x05"):
        with pytest.raises(CodecError):
            recover_address(digest, bad)


def test_pack_signatures_orders_by_index_and_refuses_duplicates() -> None:
    digest = keccak(b"report")
    sigs = {i: sign_digest(keccak(bytes([i])), digest) for i in (0, 3, 5)}
    bitmask, packed = pack_signatures([(5, sigs[5]), (0, sigs[0]), (3, sigs[3])])
    assert bitmask == 0b101001
    assert packed == to_compact(sigs[0]) + to_compact(sigs[3]) + to_compact(sigs[5])
    with pytest.raises(CodecError, match="twice"):
        pack_signatures([(3, sigs[3]), (3, sigs[0])])
    with pytest.raises(CodecError):
        pack_signatures([(256, sigs[0])])


def test_unpacked_signatures_are_the_packed_ones_and_recover_their_signers() -> None:
    digest = keccak(b"report")
    keys = {i: keccak(bytes([i])) for i in (0, 3, 5, 200)}
    sigs = [(i, sign_digest(k, digest)) for i, k in keys.items()]
    unpacked = unpack_signatures(*pack_signatures(sigs))
    assert [i for i, _ in unpacked] == [0, 3, 5, 200]
    for (i, sig), (_, original) in zip(unpacked, sorted(sigs)):
        assert len(sig) == 65 and sig[64] in (27, 28)
        assert recover_address(digest, sig) == recover_address(digest, original) == address_of(keys[i])
        assert to_compact(sig) == to_compact(original)
    with pytest.raises(CodecError, match="signature bytes"):
        unpack_signatures(0b11, to_compact(sigs[0][1]))


def test_feed_ids_are_hashed_names() -> None:
    assert feed_id_bytes("ETH/USD") == keccak(b"ETH/USD")
    with pytest.raises(CodecError):
        feed_id_bytes("")
