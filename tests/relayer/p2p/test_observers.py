"""The observer relay on real hosts on 127.0.0.1: observers outside the committee receive
published reports; a peer off the allow-list gets nothing; a flooding observer is cut off
and banned, and neither it nor anything it sent reaches a consensus host."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from relayer.p2p.admission import NOT_IN_COMMITTEE
from relayer.p2p.identity import peer_id_of
from relayer.p2p.observers import (
    BANNED,
    NOT_ALLOWED,
    RATE_LIMITED,
    REPORTS_TOPIC,
    ObserverLimits,
    ObserverRelay,
)
from tests.relayer.p2p import hosts
from tests.relayer.p2p.hosts import MakeNode, Node, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def relays() -> AsyncIterator[list[ObserverRelay]]:
    started: list[ObserverRelay] = []
    yield started
    await asyncio.gather(*(r.stop() for r in started))


async def start_relay(relays: list[ObserverRelay], **kwargs: object) -> ObserverRelay:
    relay = ObserverRelay(os.urandom(32), **kwargs)  # type: ignore[arg-type]  # test-only passthrough
    relays.append(relay)
    await relay.start()
    return relay


async def observer(make_node: MakeNode, relay: ObserverRelay, key: bytes | None = None) -> Node:
    """A host outside any committee, subscribed to the reports topic, dialing the relay."""
    node = await make_node(key, topic=REPORTS_TOPIC)
    await node.host.connect(relay.listen_addrs[0])
    return node


def pruned_by(node: Node, *relays: ObserverRelay) -> bool:
    """Whether ``node``'s gossipsub holds a PRUNE back-off from each relay for the reports topic."""
    runtime = node.host._runtime
    if runtime is None:
        return False
    backed_off = runtime.gossip.router.back_off.get(REPORTS_TOPIC, {})
    return all(any(str(peer) == relay.peer_id for peer in backed_off) for relay in relays)


async def test_observers_receive_every_published_report(make_node: MakeNode, relays: list[ObserverRelay]) -> None:
    relay = await start_relay(relays)
    watchers = [await observer(make_node, relay) for _ in range(2)]
    await wait_until(lambda: len(relay.observers()) == 2, what="two subscribed observers")

    reports = [b'{"epoch": 0, "round": %d}' % i for i in (1, 2)]
    for report in reports:
        relay.publish(report)
    for w in watchers:
        await wait_until(lambda w=w: len(w.inbox.messages) == 2, what="both reports at each observer")  # type: ignore[misc]
        assert [data for _, data in w.inbox.messages] == reports
    assert relay.stats()["published"] == 2
    assert relay.stats()["subscribed"] == 2


async def test_a_peer_off_the_allow_list_gets_nothing(make_node: MakeNode, relays: list[ObserverRelay]) -> None:
    allowed_key, stranger_key = os.urandom(32), os.urandom(32)
    relay = await start_relay(relays, allowed_peer_ids=[peer_id_of(allowed_key)])
    allowed = await observer(make_node, relay, allowed_key)
    stranger = await make_node(stranger_key, topic=REPORTS_TOPIC)
    try:
        await stranger.host.connect(relay.listen_addrs[0])
    except Exception:
        pass  # closed during the handshake's aftermath: refused either way
    await wait_until(lambda: relay.observers() == [allowed.host.peer_id], what="only the listed observer")
    await wait_until(lambda: relay.dropped[(stranger.host.peer_id, NOT_ALLOWED)] >= 1, what="the refusal counted")

    relay.publish(b"report-1")
    relay.publish(b"report-2")
    await wait_until(lambda: len(allowed.inbox.messages) == 2, what="reports at the listed observer")
    assert stranger.inbox.messages == []
    assert stranger.host.peer_id not in relay.observers()


async def test_a_flooding_observer_is_cut_off_and_never_reaches_the_round_protocol(
    make_node: MakeNode, relays: list[ObserverRelay]
) -> None:
    # A two-member committee on its own hosts: what the round protocol would see.
    ka, kb = os.urandom(32), os.urandom(32)
    members = [hosts.address(ka), hosts.address(kb)]
    a = await make_node(ka, allowed=members)
    b = await make_node(kb, allowed=members)
    await a.host.connect(b.host.listen_addrs[0])
    await a.host.wait_for_peers(1, timeout=10)

    relay = await start_relay(relays, limits=ObserverLimits(bytes_per_s=2048, burst_bytes=16384, ban_s=60))
    honest = await observer(make_node, relay)
    flooder = await observer(make_node, relay)
    await wait_until(lambda: len(relay.observers()) == 2, what="both observers subscribed")

    # The flooder also knocks at the consensus host: refused at the door.
    try:
        await flooder.host.connect(a.host.listen_addrs[0])
    except Exception:
        pass
    await wait_until(lambda: a.host.dropped[(flooder.host.address, NOT_IN_COMMITTEE)] >= 1, what="member refusal")

    junk = os.urandom(4096)
    for _ in range(40):  # 160 KiB against a 16 KiB budget
        flooder.host.publish(junk)
        await asyncio.sleep(0)
    await wait_until(lambda: relay.dropped[(flooder.host.peer_id, RATE_LIMITED)] == 1, what="the flooder cut off")
    await wait_until(lambda: flooder.host.peer_id not in relay.observers(), what="the flooder gone")

    # Banned: a reconnect is refused and counted.
    await wait_until(lambda: relay.peer_id not in hosts.raw_connections(flooder.host), what="the flooder closed")
    try:
        await flooder.host.connect(relay.listen_addrs[0])
    except Exception:
        pass
    await wait_until(lambda: relay.dropped[(flooder.host.peer_id, BANNED)] >= 1, what="the ban enforced")

    # The honest observer is still served; nothing the flooder sent was delivered anywhere.
    relay.publish(b"after-the-flood")
    await wait_until(lambda: [d for _, d in honest.inbox.messages] == [b"after-the-flood"], what="report served")
    assert a.inbox.messages == [] and b.inbox.messages == []
    assert a.host.traffic()["received_msgs"] == 0 and b.host.traffic()["received_msgs"] == 0
    assert all(peer != flooder.host.peer_id for peer in a.host.connected_peers())


async def test_an_observer_of_two_relays_forwards_nothing_back(make_node: MakeNode, relays: list[ObserverRelay]) -> None:
    # Were a relay in observers' meshes, each observer would forward one relay's reports to the
    # other and spend its byte budget: the relays PRUNE every GRAFT and ignore IHAVE.
    first, second = await start_relay(relays), await start_relay(relays)
    watcher = await observer(make_node, first)
    await watcher.host.connect(second.listen_addrs[0])
    await wait_until(lambda: len(first.observers()) == 1 and len(second.observers()) == 1, what="subscribed twice")
    # The observer grafts each relay at its first heartbeat; until the PRUNE answering it
    # arrives (one round trip) it could forward one message: start once both were answered.
    await wait_until(lambda: pruned_by(watcher, first, second), timeout=10, what="both relays' PRUNE")
    for i in range(5):
        first.publish(b"first-%d" % i)
        second.publish(b"second-%d" % i)
    await wait_until(lambda: len(watcher.inbox.messages) == 10, what="ten reports")
    await asyncio.sleep(1.5)  # a gossip heartbeat: when IHAVE gossip would go out
    assert first.dropped == {} and second.dropped == {}
    assert first.observers() == second.observers() == [watcher.host.peer_id]
