"""The committee gate and the message check, on real hosts on 127.0.0.1, over both transports.

A non-member is refused once, at the door, whatever it then tries; a malformed or
oversized message is dropped and counted with its reason, on gossip and on direct
streams alike; and what the opening callable returned is what on_message receives,
opened once per message.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import pytest

from relayer.p2p.admission import NOT_IN_COMMITTEE, OVERSIZED
from relayer.p2p.errors import MessageRejected, P2PError, PeerRejected
from tests.relayer.p2p import hosts
from tests.relayer.p2p.hosts import READY_TIMEOUT, MakeNode, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class JsonOpener:
    """An opening callable: a JSON object, or MessageRejected("malformed"). Remembers its work."""

    def __init__(self) -> None:
        self.calls: Counter[bytes] = Counter()
        self.returned: list[dict[str, object]] = []
        self.threads: set[int] = set()

    def __call__(self, sender: str, data: bytes) -> dict[str, object]:
        self.calls[data] += 1
        self.threads.add(threading.get_ident())
        try:
            value = json.loads(data)
        except ValueError:
            raise MessageRejected("malformed", "not JSON") from None
        if not isinstance(value, dict):
            raise MessageRejected("malformed", f"expected an object, got {type(value).__name__}")
        value["from"] = sender
        self.returned.append(value)
        return value


async def test_the_bridge_carries_messages_both_ways_and_stops_cleanly(make_node: MakeNode) -> None:
    keys = hosts.keys(2)
    committee = [hosts.address(k) for k in keys]
    a, b = [await make_node(k, allowed=committee) for k in keys]
    await a.host.connect(b.host.listen_addrs[0])  # an asyncio caller awaiting a trio coroutine
    await asyncio.gather(a.host.wait_for_peers(1, READY_TIMEOUT), b.host.wait_for_peers(1, READY_TIMEOUT))

    a.host.publish(b"gossip a->b")
    b.host.publish(b"gossip b->a")
    a.host.send(committee[1], b"direct a->b")
    b.host.send_all(b"direct b->a")
    await wait_until(lambda: len(a.inbox.messages) == 2 and len(b.inbox.messages) == 2, what="two each way")

    assert sorted(b.inbox.from_(committee[0])) == [b"direct a->b", b"gossip a->b"]
    assert sorted(a.inbox.from_(committee[1])) == [b"direct b->a", b"gossip b->a"]
    loop_thread = threading.get_ident()
    assert a.inbox.threads == b.inbox.threads == {loop_thread}
    await asyncio.gather(a.host.stop(), b.host.stop())
    assert hosts.p2p_threads() == []
    with pytest.raises(P2PError, match="call start"):
        a.host.send_all(b"after stop")
    with pytest.raises(P2PError, match="call start"):
        await a.host.connect(b.host.listen_addrs[0])


async def test_a_non_member_is_refused_once_at_the_door(make_node: MakeNode) -> None:
    keys = hosts.keys(2)
    committee = [hosts.address(k) for k in keys]
    opener = JsonOpener()
    a = await make_node(keys[0], allowed=committee, open_message=opener)
    b = await make_node(keys[1], allowed=committee)
    outsider = await make_node()  # allows anyone, so it tries both transports on a
    await a.host.connect(b.host.listen_addrs[0])
    await a.host.wait_for_peers(1, READY_TIMEOUT)

    try:
        await outsider.host.connect(a.host.listen_addrs[0])
    except P2PError:
        pass  # closed before the dial finished: just as good
    for i in range(10):
        try:
            outsider.host.send_all(json.dumps({"direct": i}).encode())
            outsider.host.publish(json.dumps({"gossip": i}).encode())
        except P2PError:
            pass
        await asyncio.sleep(0.02)
    await wait_until(lambda: outsider.host.peer_id not in hosts.raw_connections(a.host), what="connection closed")
    await asyncio.sleep(0.3)  # room for anything the outsider sent before the close

    refusals = {key: n for key, n in a.host.dropped.items() if key[0] == outsider.host.address}
    assert set(refusals) == {(outsider.host.address, NOT_IN_COMMITTEE)}
    # Once per connection, not once per message (it sent 20): py-libp2p's dialer may open a
    # second connection when the first is closed mid-handshake, and each is judged once.
    assert 1 <= refusals[(outsider.host.address, NOT_IN_COMMITTEE)] <= 2
    assert a.inbox.messages == []
    assert opener.calls == Counter(), "nothing from a refused peer reaches the message check"
    assert a.host.connected_peers() == [b.host.peer_id]
    with pytest.raises(PeerRejected, match="not in the committee"):
        await a.host.connect(outsider.host.listen_addrs[0])


async def test_malformed_and_oversized_messages_are_dropped_with_their_reason_on_both_transports(
    make_node: MakeNode,
) -> None:
    keys = hosts.keys(2)
    committee = [hosts.address(k) for k in keys]
    opener = JsonOpener()
    receiver = await make_node(keys[0], allowed=committee, open_message=opener, max_message_size=1000)
    sender = await make_node(keys[1], allowed=committee, max_message_size=100_000)
    await receiver.host.connect(sender.host.listen_addrs[0])
    await asyncio.gather(receiver.host.wait_for_peers(1, READY_TIMEOUT), sender.host.wait_for_peers(1, READY_TIMEOUT))
    oversized = json.dumps({"pad": "x" * 5000}).encode()

    sender.host.publish(b'{"via": "gossip"}')
    sender.host.publish(b"gossip: not json")
    sender.host.publish(oversized)
    sender.host.send(committee[0], b'{"via": "direct"}')
    sender.host.send(committee[0], b"[1, 2]")
    # Last on the stream: an oversized frame cannot be skipped, so the receiver resets it.
    sender.host.send(committee[0], oversized)
    who = sender.host.address
    await wait_until(
        lambda: receiver.host.dropped[(who, OVERSIZED)] == 2 and len(receiver.inbox.messages) == 2,
        what="two deliveries and two oversized drops",
    )
    await asyncio.sleep(0.2)  # room for a duplicate delivery to show up

    assert {key: n for key, n in receiver.host.dropped.items()} == {(who, "malformed"): 2, (who, OVERSIZED): 2}
    assert sorted(receiver.inbox.messages) == [(who, b'{"via": "direct"}'), (who, b'{"via": "gossip"}')]
    # The very objects the check returned reach on_message, with their message.
    assert sorted(map(id, receiver.inbox.opened)) == sorted(map(id, opener.returned))
    for (_, data), opened in zip(receiver.inbox.messages, receiver.inbox.opened):
        assert opened == {**json.loads(data), "from": who}
    # Each message within the size limit was opened exactly once; oversized ones never.
    assert opener.calls == Counter({b'{"via": "gossip"}': 1, b"gossip: not json": 1, b'{"via": "direct"}': 1, b"[1, 2]": 1})
    assert threading.get_ident() not in opener.threads, "the check runs in the p2p thread, not the loop"
