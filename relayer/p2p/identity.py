"""Binding between a node's Ethereum signing key and its libp2p identity.

The node's secp256k1 key is also its libp2p key, so the peer id (``16Uiu2...``)
embeds the compressed public key. Any authenticated peer id (Noise handshake,
gossipsub ``from`` with strict signing) therefore maps to exactly one Ethereum
address, which is what the committee lists.
"""

from __future__ import annotations

import coincurve
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.peer.id import ID

from relayer.p2p.errors import PeerRejected

_SECRET_LENGTH = 32


def keypair_from_secret(private_key: bytes) -> KeyPair:
    """The libp2p secp256k1 key pair for a 32-byte Ethereum private key."""
    if len(private_key) != _SECRET_LENGTH:
        raise ValueError(
            f"expected a {_SECRET_LENGTH}-byte secp256k1 private key, got {len(private_key)} bytes"
        )
    try:
        return create_new_key_pair(private_key)
    except Exception as exc:  # coincurve rejects 0 and values >= the group order
        raise ValueError("private key is not a valid secp256k1 scalar") from exc


def peer_id_of(private_key: bytes) -> str:
    """The base58 peer id (``16Uiu2...``) a node with this private key has."""
    return ID.from_pubkey(keypair_from_secret(private_key).public_key).to_base58()


def address_of_peer_id(peer_id: str | ID) -> str:
    """Checksummed Ethereum address of the secp256k1 key embedded in ``peer_id``.

    Raises PeerRejected when the id does not inline a secp256k1 public key
    (Ed25519 or RSA ids, hashed ids, garbage): such a peer cannot be a
    committee member.
    """
    try:
        pid = ID.from_base58(peer_id) if isinstance(peer_id, str) else peer_id
        public_key = pid.extract_public_key()
    except Exception as exc:
        raise PeerRejected(f"peer id {peer_id!s} is not a valid libp2p peer id") from exc
    if public_key is None or public_key.get_type() != KeyType.Secp256k1:
        kind = "no inline key" if public_key is None else public_key.get_type().name
        raise PeerRejected(
            f"peer id {peer_id!s} carries {kind}, expected an inline secp256k1 key "
            "(committee nodes use their Ethereum key as libp2p identity)"
        )
    try:
        uncompressed = coincurve.PublicKey(public_key.to_bytes()).format(compressed=False)
    except Exception as exc:
        raise PeerRejected(f"peer id {peer_id!s} embeds an invalid secp256k1 point") from exc
    # Ethereum address: last 20 bytes of keccak256 over the 64-byte X||Y (no 0x04 prefix).
    return to_checksum_address(keccak(uncompressed[1:])[-20:])


def observer_relay_key(private_key: bytes) -> bytes:
    """An observer relay's own key, derived from a node's signing key (the devnet writes it
    to the relay's ``observer_key_file``, so it knows each relay's peer id before it starts).

    Stable across restarts (observers keep their multiaddr), and never the signing key: the
    relay's peer id does not name a committee signer.
    """
    keypair_from_secret(private_key)  # the same check as the signing key's
    return keccak(b"quorum-relayer observer relay key" + private_key)
