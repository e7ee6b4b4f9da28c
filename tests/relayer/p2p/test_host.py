"""P2PHost with real libp2p hosts on 127.0.0.1, several per process (one trio thread each)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from relayer.p2p.admission import NOT_IN_COMMITTEE, OVERSIZED
from relayer.p2p.errors import MessageRejected, MessageTooLarge, P2PError, P2PStartError
from relayer.p2p.host import P2PHost
from tests.relayer.p2p import hosts
from tests.relayer.p2p.hosts import READY_TIMEOUT, MakeNode, Node, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_four_hosts_deliver_every_message_to_the_other_three(make_node: MakeNode) -> None:
    keys = hosts.keys(4)
    committee = [hosts.address(k) for k in keys]
    nodes = [await make_node(k, allowed=committee) for k in keys]
    for node, address in zip(nodes, committee):
        assert node.host.address == address
        assert node.host.listen_addrs[0].startswith("/ip4/127.0.0.1/tcp/")
        assert node.host.listen_addrs[0].endswith(f"/p2p/{node.host.peer_id}")

    await hosts.connect_full_mesh(nodes)
    await asyncio.gather(*(n.host.wait_for_peers(3, READY_TIMEOUT) for n in nodes))
    assert all(len(n.host.connected_peers()) == 3 for n in nodes)

    for i, node in enumerate(nodes):
        node.host.publish(f"observation from {i}".encode())
    await wait_until(lambda: all(len(n.inbox.messages) >= 3 for n in nodes), what="3 messages at each host")
    await asyncio.sleep(0.3)  # room for a duplicate or an echo of our own message to show up

    loop_thread = threading.get_ident()
    for i, node in enumerate(nodes):
        expected = {(committee[j], f"observation from {j}".encode()) for j in range(4) if j != i}
        assert sorted(node.inbox.messages) == sorted(expected), f"host {i} got {node.inbox.messages}"
        assert node.inbox.threads == {loop_thread}, "on_message must run on the asyncio loop thread"
        assert not node.host.dropped


async def test_star_topology_relays_through_the_hub(make_node: MakeNode) -> None:
    keys = hosts.keys(4)
    committee = [hosts.address(k) for k in keys]
    hub, *leaves = [await make_node(k, allowed=committee) for k in keys]
    await asyncio.gather(*(leaf.host.connect(hub.host.listen_addrs[0]) for leaf in leaves))
    await hub.host.wait_for_peers(3, READY_TIMEOUT)

    leaves[0].host.publish(b"via the hub")

    await wait_until(
        lambda: all(n.inbox.from_(committee[1]) == [b"via the hub"] for n in [hub, *leaves[1:]]),
        what="relay to every leaf",
    )


async def test_validator_drops_outsider_messages_relayed_by_a_member(make_node: MakeNode) -> None:
    # b's committee includes the outsider, a's does not: the outsider's messages
    # reach a only through b, and a's topic validator must drop them.
    key_a, key_b, key_o = hosts.keys(3)
    a = await make_node(key_a, allowed=[hosts.address(key_a), hosts.address(key_b)])
    b = await make_node(key_b, allowed=None)
    outsider = await make_node(key_o)
    await a.host.connect(b.host.listen_addrs[0])
    await outsider.host.connect(b.host.listen_addrs[0])
    await b.host.wait_for_peers(2, READY_TIMEOUT)
    await a.host.wait_for_peers(1, READY_TIMEOUT)

    outsider.host.publish(b"forged report")
    await wait_until(lambda: b.inbox.from_(outsider.host.address) == [b"forged report"], what="b receives")
    await wait_until(
        lambda: a.host.dropped[(outsider.host.address, NOT_IN_COMMITTEE)] >= 1, what="a drops and counts"
    )
    b.host.publish(b"member report")
    await wait_until(lambda: a.inbox.from_(b.host.address) == [b"member report"], what="a still hears b")
    assert a.inbox.from_(outsider.host.address) == []


async def test_oversized_publish_raises(make_node: MakeNode) -> None:
    node = await make_node(max_message_size=1000)

    with pytest.raises(MessageTooLarge, match="1001 bytes exceeds the 1000-byte"):
        node.host.publish(b"x" * 1001)
    node.host.publish(b"x" * 1000)  # the limit itself is fine


async def test_oversized_message_from_a_peer_with_a_larger_limit_is_dropped(make_node: MakeNode) -> None:
    small = await make_node(max_message_size=1000)
    large = await make_node(max_message_size=100_000)
    await small.host.connect(large.host.listen_addrs[0])
    await large.host.wait_for_peers(1, READY_TIMEOUT)
    await small.host.wait_for_peers(1, READY_TIMEOUT)

    large.host.publish(b"y" * 5000)
    await wait_until(lambda: small.host.dropped[(large.host.address, OVERSIZED)] == 1, what="oversized drop")
    large.host.publish(b"small enough")
    await wait_until(lambda: small.inbox.messages != [], what="the next message")

    assert small.inbox.messages == [(large.host.address, b"small enough")]


async def test_set_allowed_disconnects_removed_peers(make_node: MakeNode) -> None:
    keys = hosts.keys(3)
    committee = [hosts.address(k) for k in keys]
    a, b, c = [await make_node(k, allowed=committee) for k in keys]
    await hosts.connect_full_mesh([a, b, c])
    await a.host.wait_for_peers(2, READY_TIMEOUT)

    a.host.set_allowed(committee[:2])

    await wait_until(lambda: c.host.peer_id not in hosts.raw_connections(a.host), what="c disconnected from a")
    assert a.host.connected_peers() == [b.host.peer_id]
    assert a.host.dropped[(c.host.address, NOT_IN_COMMITTEE)] >= 1
    # c still gossips to b, and b relays; a's validator must now refuse it.
    await b.host.wait_for_peers(2, READY_TIMEOUT)
    c.host.publish(b"from a removed member")
    await wait_until(lambda: b.inbox.from_(c.host.address) == [b"from a removed member"], what="b receives")
    b.host.publish(b"still here")
    await wait_until(lambda: a.inbox.from_(b.host.address) == [b"still here"], what="a hears b")
    assert a.inbox.from_(c.host.address) == []


async def test_start_on_a_busy_port_fails_with_the_reason(make_node: MakeNode) -> None:
    first = await make_node()
    port = int(first.host.listen_addrs[0].split("/tcp/")[1].split("/")[0])
    clash: P2PHost[None] = P2PHost(os.urandom(32), listen_port=port)

    with pytest.raises(P2PStartError, match="failed to start"):
        await clash.start()
    await clash.stop()


async def test_stop_is_idempotent_and_publish_after_stop_fails(make_node: MakeNode) -> None:
    node = await make_node()
    await node.host.stop()
    await node.host.stop()

    with pytest.raises(P2PError, match="call start"):
        node.host.publish(b"late")
    assert node.host.connected_peers() == []


async def test_stop_while_messages_arrive_is_clean_and_bounded(make_node: MakeNode) -> None:
    nodes = [await make_node() for _ in range(3)]
    await hosts.connect_full_mesh(nodes)
    await asyncio.gather(*(n.host.wait_for_peers(2, READY_TIMEOUT) for n in nodes))

    async def flood(node: Node) -> None:
        for i in range(200):
            try:
                node.host.publish(i.to_bytes(4, "big") * 50)
            except P2PError:
                return  # stopped under us: expected
            await asyncio.sleep(0.002)

    flooders = [asyncio.create_task(flood(n)) for n in nodes]
    await wait_until(lambda: all(n.inbox.messages for n in nodes), what="traffic flowing")
    started = time.monotonic()
    await asyncio.gather(*(n.host.stop() for n in nodes))
    elapsed = time.monotonic() - started
    await asyncio.gather(*flooders)

    assert elapsed < 3.0, f"stop took {elapsed:.2f} s under load"
    assert hosts.p2p_threads() == []


async def test_a_peer_that_was_down_can_be_dialed_as_soon_as_it_is_up(make_node: MakeNode) -> None:
    """The swarm's 60 s negative dial cache must not keep a starting committee peer out."""
    import socket

    from relayer.chain.codec import address_of
    from relayer.p2p.identity import peer_id_of

    late_key, dialer_key = os.urandom(32), os.urandom(32)
    committee = [address_of(late_key), address_of(dialer_key)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dialer = await make_node(dialer_key, allowed=committee)
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(late_key)}"
    with pytest.raises(P2PError):
        await dialer.host.connect(addr)  # nobody listens yet
    late = await make_node(late_key, allowed=committee, listen_port=port)
    await dialer.host.connect(addr)
    assert late.host.peer_id in dialer.host.connected_peers()


async def test_direct_messages_reach_one_peer_or_all_and_pass_the_validator(make_node: MakeNode) -> None:
    keys = hosts.keys(3)
    committee = [hosts.address(k) for k in keys]
    refused: list[bytes] = []

    def open_message(sender: str, data: bytes) -> None:
        if data.startswith(b"bad"):
            refused.append(data)
            raise MessageRejected("malformed", "starts with bad")

    nodes = [await make_node(k, allowed=committee, open_message=open_message) for k in keys]
    await hosts.connect_full_mesh(nodes)
    await asyncio.gather(*(n.host.wait_for_peers(2, READY_TIMEOUT) for n in nodes))
    nodes[0].host.send(committee[1], b"to one")
    nodes[0].host.send_all(b"to all")
    nodes[0].host.send_all(b"bad frame")
    nodes[2].host.send(committee[0], b"x" * 200_000)  # spans many stream reads
    await wait_until(lambda: len(nodes[1].inbox.messages) >= 2 and len(nodes[2].inbox.messages) >= 1
                     and len(nodes[0].inbox.messages) >= 1, what="direct deliveries")
    await asyncio.sleep(0.2)
    assert sorted(nodes[1].inbox.from_(committee[0])) == [b"to all", b"to one"]
    assert nodes[2].inbox.from_(committee[0]) == [b"to all"]
    assert nodes[0].inbox.from_(committee[2]) == [b"x" * 200_000]
    assert nodes[1].host.dropped[(committee[0], "malformed")] == 1
    assert nodes[2].host.dropped[(committee[0], "malformed")] == 1
    assert nodes[0].host.traffic()["published_msgs"] == 3
    with pytest.raises(MessageTooLarge):
        nodes[0].host.send_all(b"y" * (nodes[0].host.max_message_size + 1))


async def test_messages_larger_than_the_yamux_window_flow_with_batched_window_updates(make_node: MakeNode) -> None:
    """Window updates are batched (go-yamux style, PY_YAMUX_RELEASE_ON_READ=0): a stream that
    carries several times the 256 KiB initial window must still deliver everything, in order."""
    import os

    assert os.environ.get("PY_YAMUX_RELEASE_ON_READ") == "0"
    keys = hosts.keys(2)
    committee = [hosts.address(k) for k in keys]
    nodes = [await make_node(k, allowed=committee) for k in keys]
    await hosts.connect_full_mesh(nodes)
    await asyncio.gather(*(n.host.wait_for_peers(1, READY_TIMEOUT) for n in nodes))
    frames = [bytes([i]) * 900_000 for i in range(4)]  # 3.6 MB on one stream
    for frame in frames:
        nodes[0].host.send(committee[1], frame)
    await wait_until(lambda: len(nodes[1].inbox.messages) >= 4, what="four large frames")
    assert nodes[1].inbox.from_(committee[0]) == frames
