"""Peer id <-> Ethereum address binding, checked against independent derivations."""

from __future__ import annotations

import os

import coincurve
import pytest
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address
from libp2p.crypto.ed25519 import create_new_key_pair as create_ed25519_key_pair
from libp2p.peer.id import ID

from relayer.p2p.errors import P2PError, PeerRejected
from relayer.p2p.identity import address_of_peer_id, keypair_from_secret, peer_id_of

pytestmark = pytest.mark.unit


def _address_by_hand(private_key: bytes) -> str:
    uncompressed = coincurve.PrivateKey(private_key).public_key.format(compressed=False)
    return to_checksum_address(keccak(uncompressed[1:])[-20:])


@pytest.mark.parametrize(
    "private_key",
    [os.urandom(32) for _ in range(5)] + [b"\x00" * 31 + b"\x01"],
    ids=[*(f"random{i}" for i in range(5)), "one"],
)
def test_address_of_peer_id_matches_ethereum_address(private_key: bytes) -> None:
    peer_id = peer_id_of(private_key)

    assert peer_id.startswith("16Uiu2")
    assert address_of_peer_id(peer_id) == Account.from_key(private_key).address
    assert address_of_peer_id(peer_id) == _address_by_hand(private_key)
    assert address_of_peer_id(ID.from_base58(peer_id)) == _address_by_hand(private_key)


def test_keypair_is_the_signing_key() -> None:
    private_key = os.urandom(32)
    key_pair = keypair_from_secret(private_key)

    assert key_pair.private_key.to_bytes() == private_key
    assert ID.from_pubkey(key_pair.public_key).to_base58() == peer_id_of(private_key)


def test_ed25519_peer_id_is_rejected() -> None:
    ed_peer = ID.from_pubkey(create_ed25519_key_pair().public_key)

    with pytest.raises(PeerRejected, match="secp256k1"):
        address_of_peer_id(ed_peer)


@pytest.mark.parametrize("bad", ["", "not-a-peer-id", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"])
def test_malformed_peer_ids_are_rejected(bad: str) -> None:
    with pytest.raises(PeerRejected):
        address_of_peer_id(bad)
    assert issubclass(PeerRejected, P2PError)


@pytest.mark.parametrize(
    "bad_key", [b"", b"\x01" * 31, b"\x00" * 32, b"\xff" * 32], ids=["empty", "short", "zero", "above-order"]
)
def test_invalid_private_keys_raise_value_error(bad_key: bytes) -> None:
    with pytest.raises(ValueError):
        keypair_from_secret(bad_key)
