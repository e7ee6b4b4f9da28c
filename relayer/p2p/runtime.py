"""The trio side of one host: the libp2p stack, the committee gate and both transports, in order.

``Runtime.serve`` is what the bridge runs in the host's thread. It brings the parts up
in an order that leaves no gap (the gate is registered before the first inbound
connection can arrive) and tears them down in the order py-libp2p needs (every peer
disconnected before the gossip services leave, or they raise "Nursery is closed to
new arrivals"). Every method but the read-only ones runs in the trio thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar, cast

import trio
from libp2p.crypto.keys import KeyPair
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from relayer.p2p.admission import Admission, Deliver, GateNotifee
from relayer.p2p.bridge import StopRequested
from relayer.p2p.direct import Direct
from relayer.p2p.errors import P2PError
from relayer.p2p.gossip import Gossip
from relayer.p2p.stack import DIAL_TIMEOUT_S, build_host

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Budget for the orderly part of a stop: disconnecting every peer.
STOP_GRACE_S = 2.0


class Runtime(Generic[T]):
    """One host's libp2p objects and what runs on them."""

    def __init__(
        self,
        key_pair: KeyPair,
        listen: Multiaddr,
        admission: Admission[T],
        *,
        topic: str,
        deliver: Deliver[T],
    ) -> None:
        self._listen = listen
        self.admission = admission
        self.host = build_host(key_pair, [listen])
        self.swarm = cast(Swarm, self.host.get_network())
        self.gossip = Gossip(self.host, admission, topic=topic, deliver=deliver)
        self.direct = Direct(self.host, admission, deliver=deliver)
        self.listen_addrs: list[str] = []
        self._aux: trio.Nursery | None = None

    async def serve(self, ready: Callable[[], None], stop_requested: StopRequested) -> None:
        # The aux nursery (gate closes, direct senders) outlives the network, so the
        # gate works from the first inbound connection on.
        async with trio.open_nursery() as aux:
            self._aux = aux
            self.swarm.register_notifee(GateNotifee(self.admission, self._refuse))
            self.direct.start(aux)
            async with self.host.run([self._listen]):
                async with self.gossip.running():
                    self.listen_addrs = [str(addr) for addr in self.host.get_addrs()]
                    ready()
                    await stop_requested.wait()
                    self.direct.close()
                    with trio.move_on_after(STOP_GRACE_S):
                        await self._disconnect_all()
            aux.cancel_scope.cancel()
        self._aux = None

    # ------------------------------------------------------------------ reads (any thread)

    def connected_ids(self) -> list[ID]:
        """Connected peers the gate admitted."""
        # dict.items() copied in one C call: consistent even while trio mutates it.
        return [
            peer
            for peer, conns in list(self.swarm.connections.items())
            if conns and self.admission.is_admitted(peer)
        ]

    def ready_ids(self) -> list[ID]:
        """Admitted peers that also subscribed to the topic over a pubsub stream."""
        subscribed = self.gossip.subscribed_peers()
        return [peer for peer in self.connected_ids() if peer in subscribed]

    # ------------------------------------------------------------------ trio thread

    def publish(self, data: bytes) -> None:
        self.gossip.publish(data)

    def send(self, addresses: frozenset[str] | None, data: bytes) -> None:
        """Direct frames to the connected peers with these (lower-case) addresses; None = all."""
        targets = []
        for peer_id in self.connected_ids():
            address = self.admission.admitted_address(peer_id)
            if address is not None and (addresses is None or address.lower() in addresses):
                targets.append(peer_id)
        self.direct.send(targets, data)

    def enforce_committee(self) -> None:
        """After a committee change: close every connection the gate now refuses."""
        for peer_id in self.admission.rejudge():
            self._refuse(peer_id)

    async def dial(self, info: PeerInfo) -> None:
        if self._aux is None:
            raise P2PError("p2p host is not running")
        # The swarm refuses for 60 s to redial a peer whose addresses all failed once. A
        # committee peer that was still starting must be redialed at once, so an explicit
        # dial clears that negative cache entry first.
        negative_cache = getattr(self.swarm, "_negative_peer_cache", None)
        if negative_cache is not None:
            negative_cache.evict(str(info.peer_id))
        with trio.fail_after(DIAL_TIMEOUT_S):
            await self.host.connect(info)

    def _refuse(self, peer_id: ID) -> None:
        """Close a refused peer's connection (the gate counted the refusal)."""
        logger.info("closing connection to %s: not in the committee", peer_id)
        try:
            # Otherwise the swarm's auto-connector would dial it again later.
            self.host.get_peerstore().clear_addrs(peer_id)
        except Exception:
            logger.debug("could not forget addresses of %s", peer_id, exc_info=True)
        aux = self._aux
        if aux is not None:
            aux.start_soon(self._close_peer, peer_id)

    async def _disconnect_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for peer in list(self.swarm.connections):
                nursery.start_soon(self._close_peer, peer)

    async def _close_peer(self, peer_id: ID) -> None:
        try:
            with trio.move_on_after(STOP_GRACE_S):
                await self.host.disconnect(peer_id)
        except Exception as exc:
            logger.debug("closing connection to %s failed: %r", peer_id, exc)
