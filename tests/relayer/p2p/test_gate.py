"""Admission without sockets: the committee gate's once-per-connection decisions and the message check."""

from __future__ import annotations

import os

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair as create_ed25519_key_pair
from libp2p.peer.id import ID

from relayer.p2p.admission import INVALID, INVALID_SENDER, NOT_IN_COMMITTEE, OVERSIZED, Admission, MessageOpener
from relayer.p2p.errors import MessageRejected, MessageTooLarge
from relayer.p2p.identity import address_of_peer_id, keypair_from_secret

pytestmark = pytest.mark.unit


def _peer() -> tuple[ID, str]:
    peer_id = ID.from_pubkey(keypair_from_secret(os.urandom(32)).public_key)
    return peer_id, address_of_peer_id(peer_id)


class _Connection:
    """Stands for a muxed connection: the gate only tells connections apart."""


def _admission(
    allowed: list[str] | None, *, max_message_size: int = 100, open_message: MessageOpener[object] | None = None
) -> Admission[object]:
    _, own_address = _peer()
    return Admission(own_address, allowed=allowed, max_message_size=max_message_size, open_message=open_message)


def test_a_refused_connection_is_counted_once_and_a_new_one_judged_again() -> None:
    member, member_address = _peer()
    stranger, stranger_address = _peer()
    gate = _admission([member_address])
    first, second = _Connection(), _Connection()

    assert gate.admit(member, _Connection()) == member_address
    assert gate.is_admitted(member)
    assert gate.admit(stranger, first) is None
    assert gate.admit(stranger, first) is None  # a stream on the same connection
    assert gate.admit(stranger) is None  # a gossip message it forwarded
    assert gate.dropped == {(stranger_address, NOT_IN_COMMITTEE): 1}
    gate.release(stranger)  # closed; what was read before the close may still come
    assert gate.admit(stranger) is None
    assert gate.dropped[(stranger_address, NOT_IN_COMMITTEE)] == 1

    assert gate.admit(stranger, second) is None  # it dialed again: a new connection
    assert gate.dropped[(stranger_address, NOT_IN_COMMITTEE)] == 2
    assert not gate.is_admitted(stranger)


def test_a_first_message_before_the_connection_event_is_judged_then_reused() -> None:
    stranger, stranger_address = _peer()
    gate = _admission([])
    connection = _Connection()

    assert gate.admit(stranger) is None  # its gossip beat the connection event
    assert gate.admit(stranger, connection) is None  # the event itself
    assert gate.admit(stranger, connection) is None
    assert gate.dropped == {(stranger_address, NOT_IN_COMMITTEE): 1}


def test_a_committee_change_refuses_the_admitted_peers_it_removes() -> None:
    (a, a_address), (b, b_address) = _peer(), _peer()
    gate = _admission([a_address, b_address])
    assert gate.admit(a, _Connection()) == a_address
    assert gate.admit(b, _Connection()) == b_address

    gate.set_allowed([a_address])

    assert gate.rejudge() == [b]
    assert gate.rejudge() == []
    assert not gate.is_admitted(b) and gate.is_admitted(a)
    assert gate.dropped == {(b_address, NOT_IN_COMMITTEE): 1}
    gate.set_allowed([a_address, b_address])
    assert gate.admit(b, _Connection()) == b_address  # back in, on its next connection


def test_a_gossip_author_is_judged_by_the_same_rule() -> None:
    (member, member_address), (stranger, stranger_address) = _peer(), _peer()
    ed25519_id = ID.from_pubkey(create_ed25519_key_pair().public_key)
    gate = _admission([member_address])

    assert gate.author_address(member) == member_address
    assert gate.author_address(stranger) is None
    assert gate.author_address(ed25519_id) is None
    assert gate.dropped == {(stranger_address, NOT_IN_COMMITTEE): 1, (ed25519_id.to_base58(), INVALID_SENDER): 1}


def test_the_message_check_counts_its_reason_and_returns_the_opened_value() -> None:
    peer, address = _peer()
    opened = object()

    def open_message(sender: str, data: bytes) -> object:
        if data == b"boom":
            raise RuntimeError("a bug in the opener")
        if data != b"good":
            raise MessageRejected("malformed", "not good")
        assert sender == address
        return opened

    gate = _admission(None, max_message_size=10, open_message=open_message)

    assert gate.check(peer, address, b"good") is opened
    for data, reason in ((b"bad", "malformed"), (b"x" * 11, OVERSIZED), (b"boom", INVALID)):
        with pytest.raises(MessageRejected) as rejected:
            gate.check(peer, address, data)
        assert rejected.value.reason == reason
    assert gate.dropped == {(address, "malformed"): 1, (address, OVERSIZED): 1, (address, INVALID): 1}
    assert _admission(None).check(peer, address, b"anything") is None  # no opener: accepted as is
    with pytest.raises(MessageTooLarge, match="11 bytes exceeds the 10-byte limit"):
        gate.check_outbound(b"x" * 11)
