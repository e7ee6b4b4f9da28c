"""The observer relay: a libp2p host apart from the consensus host (run in a process of its
own by ``relayer/relay.py``, `relayer relay`), that publishes attested reports on one
read-only topic to peers outside the committee.

Why a separate host and not observers admitted by the consensus host: the consensus
host keeps one rule (committee members only, ``admission.py``), and an observer shares
nothing with the round protocol: not a connection, a gossip mesh, a stream handler, a
queue or the trio thread. No code path leads from an observer's bytes to the round
protocol's message check; a flooding observer spends the relay's thread and is cut off.

What the relay does with an observer:

- connects it when the optional allow-list of peer ids names it (empty: anyone), it is
  not serving a ban, and fewer than ``max_observers`` are connected;
- sends it every report the node publishes (flood-published to each subscribed peer);
- takes nothing from it: any message an observer publishes is refused by the topic
  validator (counted ``observer_publish``), never delivered, never forwarded;
- meters every byte it sends on its pubsub streams against a per-peer token bucket;
  an observer over budget is disconnected and banned for ``ban_s`` (``rate_limited``).

Reports need no trust in the relay: each is the API's JSON form of an attested report
(``relayer.reports.report_json``), which a subscriber verifies against the on-chain
committee (``relayer.client``, ``scripts/observer.mjs``).

Threading as in ``host.py``: libp2p objects and counters change only in the relay's trio
thread; the asyncio side reads copies. This module imports no asyncio.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork
from libp2p.crypto.keys import KeyPair
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from relayer.p2p.admission import QuietNotifee
from relayer.p2p.bridge import StopRequested, TrioThread
from relayer.p2p.errors import MessageTooLarge, P2PError
from relayer.p2p.gossip import (
    PUBLISH_QUEUE_SIZE,
    RPC_ENVELOPE_OVERHEAD,
    CommitteeGossipSub,
    CommitteePubsub,
    _Accepted,
    build_gossipsub,
)
from relayer.p2p.identity import keypair_from_secret
from relayer.p2p.stack import apply_process_tuning, build_host

logger = logging.getLogger(__name__)

REPORTS_TOPIC = "quorum-relayer/reports/v1"

# Reasons counted per observer peer id in ``ObserverRelay.dropped``.
OBSERVER_PUBLISH = "observer_publish"
# Not a violation: an observer subscribed to several relays passes one relay's report on to
# another before the PRUNE reaches it (gossip does). Dropped, counted apart from a publish.
OBSERVER_FORWARD = "observer_forward"
RATE_LIMITED = "rate_limited"
NOT_ALLOWED = "not_allowed"
TOO_MANY_OBSERVERS = "too_many_observers"
BANNED = "banned"
PUBLISH_FAILED = "publish_failed"

# Largest RPC frame read from an observer: subscriptions and gossip control are small.
MAX_INBOUND_RPC = 64 * 1024
START_TIMEOUT_S = 10.0
STOP_GRACE_S = 2.0
# Bans and refused connections remembered at most; the oldest go first. Bounds what strangers cost.
_BANS_MAX = 4096


@dataclass(frozen=True, slots=True)
class ObserverLimits:
    """What one observer may cost the relay.

    An observer only subscribes and keeps its gossip state (a few hundred bytes a
    second at most); the bucket holds ``burst_bytes`` and refills at ``bytes_per_s``.
    """

    max_observers: int = 128
    bytes_per_s: float = 16 * 1024
    burst_bytes: float = 64 * 1024
    ban_s: float = 60.0
    max_message_size: int = 1 << 20

    def __post_init__(self) -> None:
        if self.max_observers < 1 or self.bytes_per_s <= 0 or self.burst_bytes <= 0 or self.ban_s < 0:
            raise ValueError(
                f"observer limits must be positive (ban_s may be 0), got {self}; check the observer_* settings"
            )


class RateLimited(P2PError):
    """An observer sent more than its byte budget; it is disconnected and banned."""


class NotAdmitted(P2PError):
    """A pubsub stream from a peer the relay's gate refused (counted at the gate)."""


class ByteBuckets:
    """One token bucket per peer over inbound bytes, on an injectable monotonic clock."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[ID, tuple[float, float]] = {}  # peer -> (tokens, at)

    def charge(self, peer: ID, n: int) -> bool:
        """Take ``n`` bytes from the peer's bucket; False when it had fewer (it then stays empty)."""
        now = self._clock()
        tokens, at = self._buckets.get(peer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate) - n
        self._buckets[peer] = (max(tokens, 0.0), now)
        return tokens >= 0

    def forget(self, peer: ID) -> None:
        self._buckets.pop(peer, None)


class _MeteredStream:
    """A pubsub stream whose reads are charged to the peer's bucket; everything else passes through."""

    def __init__(
        self, stream: INetStream, peer: ID, buckets: ByteBuckets, admit: Callable[[ID, object], bool]
    ) -> None:
        self._stream = stream
        self._peer = peer
        self._buckets = buckets
        self._admit = admit

    async def read(self, n: int | None = None) -> bytes:
        # The stream may open before the gate has judged the connection: judged here then.
        if not self._admit(self._peer, self._stream.muxed_conn):
            raise NotAdmitted(f"{self._peer} was refused by the observer gate")
        data = await self._stream.read(n)
        if not self._buckets.charge(self._peer, len(data)):
            raise RateLimited(f"observer {self._peer} sent more than its byte budget")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class RelayRouter(CommitteeGossipSub):
    """Gossipsub for the relay: its own reports flood to every subscribed observer, and no
    observer ever forwards to it.

    The relay keeps an empty mesh (D = 0) and answers every GRAFT with a PRUNE, so it is in
    no observer's mesh and observers do not forward what they receive (another relay's
    reports, over and over) back to it; it ignores IHAVE, so it never asks an observer for
    anything. Measured before this: an observer connected to two relays relayed each one's
    reports to the other, and honest observers hit the byte budget.
    """

    async def handle_graft(self, graft_msg: rpc_pb2.ControlGraft, sender_peer_id: ID) -> None:
        await self.emit_prune(graft_msg.topicID, sender_peer_id, False, False)

    async def handle_ihave(self, ihave_msg: rpc_pb2.ControlIHave, sender_peer_id: ID) -> None:
        await trio.lowlevel.checkpoint()


class ObserverPubsub(CommitteePubsub[None]):
    """Pubsub for the relay: every inbound byte metered, an observer over budget cut off."""

    def __init__(self, host: IHost, router: RelayRouter, relay: _RelayRuntime) -> None:
        super().__init__(
            host,
            router,
            # Outbound frames carry reports; inbound, an observer has nothing big to say.
            max_rpc_size=relay.limits.max_message_size + RPC_ENVELOPE_OVERHEAD,
            validate=relay.validate,
            deliver=lambda _msg, _accepted: None,
            on_invalid=relay.count,
        )
        self.max_inbound_rpc_size = MAX_INBOUND_RPC
        self._relay = relay

    def handle_subscription(self, origin_id: ID, sub_message: rpc_pb2.RPC.SubOpts) -> None:
        super().handle_subscription(origin_id, sub_message)
        if sub_message.subscribe and sub_message.topicid == self._relay.topic:
            self._relay.prune_early(origin_id)

    async def continuously_read_stream(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        metered = _MeteredStream(stream, peer, self._relay.buckets, self._relay.admit_reader)
        try:
            await super().continuously_read_stream(cast(INetStream, metered))
        except (RateLimited, NotAdmitted) as exc:
            if isinstance(exc, RateLimited):
                self._relay.rate_limited(peer, stream.muxed_conn)
            try:
                await stream.reset()
            except Exception:
                pass
            self._handle_dead_peer(peer)


class _RelayGate(QuietNotifee):
    """Judges each new connection: allow-list, bans, the observer cap."""

    def __init__(self, relay: _RelayRuntime) -> None:
        self._relay = relay

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        try:
            self._relay.judge(conn.muxed_conn.peer_id, conn.muxed_conn)
        except Exception:
            logger.exception("observer gate failed on a new connection")
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        try:
            peer = conn.muxed_conn.peer_id
            if not network.connections.get(peer):
                self._relay.release(peer)
        except Exception:
            logger.debug("observer gate failed on a closed connection", exc_info=True)
        await trio.lowlevel.checkpoint()


class _RelayRuntime:
    """The relay's libp2p objects and rules (trio thread, but for the read-only methods)."""

    def __init__(
        self,
        key_pair: KeyPair,
        listen: Multiaddr,
        *,
        topic: str,
        allowed: frozenset[ID] | None,
        limits: ObserverLimits,
        dropped: Counter[tuple[str, str]],
        clock: Callable[[], float],
    ) -> None:
        self.topic = topic
        self.limits = limits
        self.dropped = dropped
        self.allowed = allowed
        self._clock = clock
        self.buckets = ByteBuckets(limits.bytes_per_s, limits.burst_bytes, clock)
        self.host = build_host(key_pair, [listen])
        self.swarm = cast(Swarm, self.host.get_network())
        self.own_id_bytes = self.host.get_id().to_bytes()
        self.router = cast(RelayRouter, build_gossipsub(RelayRouter, mesh=(0, 0, 0)))
        self.pubsub = ObserverPubsub(self.host, self.router, self)
        self.admitted: set[ID] = set()
        self.bans: dict[ID, float] = {}  # peer -> banned until (clock)
        # Refused peers -> the connection refused (its id), so that one is counted once.
        self._refused_on: dict[ID, int] = {}
        self.published = 0
        self.listen_addrs: list[str] = []
        self._listen = listen
        self._aux: trio.Nursery | None = None
        self._publish_send: trio.MemorySendChannel[bytes] | None = None

    async def serve(self, ready: Callable[[], None], stop_requested: StopRequested) -> None:
        send, receive = trio.open_memory_channel[bytes](PUBLISH_QUEUE_SIZE)
        async with trio.open_nursery() as aux:
            self._aux = aux
            self.swarm.register_notifee(_RelayGate(self))
            async with self.host.run([self._listen]):
                try:
                    async with self._pubsub_running():
                        aux.start_soon(self._publish_loop, receive)
                        self._publish_send = send
                        self.listen_addrs = [str(a) for a in self.host.get_addrs()]
                        ready()
                        await stop_requested.wait()
                        self._publish_send = None
                        with trio.move_on_after(STOP_GRACE_S):
                            async with trio.open_nursery() as closing:
                                for peer in list(self.swarm.connections):
                                    closing.start_soon(self._close, peer)
                finally:
                    self.pubsub.seen_messages.stop()
            aux.cancel_scope.cancel()
        self._aux = None

    @asynccontextmanager
    async def _pubsub_running(self) -> AsyncIterator[None]:
        async with background_trio_service(self.pubsub):
            async with background_trio_service(self.router):
                await self.pubsub.wait_until_ready()
                # Subscribed so that observers' gossipsub treats the relay as a topic peer;
                # RelayRouter keeps it out of their meshes.
                await self.pubsub.subscribe(self.topic)
                yield

    # ------------------------------------------------------------------ rules (trio thread)

    def count(self, peer: ID, reason: str) -> None:
        self.dropped[(peer.to_base58(), reason)] += 1

    def judge(self, peer: ID, connection: object) -> None:
        """A new connection (or a stream that beat its event): admitted, or counted and closed."""
        if peer in self.admitted or self._refused_on.get(peer) == id(connection):
            return
        banned_until = self.bans.get(peer)
        if banned_until is not None and self._clock() < banned_until:
            self._refuse(peer, connection, BANNED)
        elif self.allowed is not None and peer not in self.allowed:
            self._refuse(peer, connection, NOT_ALLOWED)
        elif len(self.admitted) >= self.limits.max_observers:
            self._refuse(peer, connection, TOO_MANY_OBSERVERS)
        else:
            self.bans.pop(peer, None)
            self._refused_on.pop(peer, None)
            self.admitted.add(peer)

    def release(self, peer: ID) -> None:
        self.admitted.discard(peer)
        self.buckets.forget(peer)

    def admit_reader(self, peer: ID, connection: object) -> bool:
        if peer not in self.admitted:
            self.judge(peer, connection)
        return peer in self.admitted

    def prune_early(self, peer: ID) -> None:
        """A PRUNE with back-off as soon as an observer subscribes, before its first heartbeat
        grafts the relay: an observer that grafted it would, until the answering PRUNE came,
        forward other relays' reports to it (refused, and counted against an honest peer)."""
        aux = self._aux
        if aux is not None and peer in self.admitted:
            aux.start_soon(self._prune, peer)

    async def _prune(self, peer: ID) -> None:
        try:
            await self.router.emit_prune(self.topic, peer, False, False)
        except Exception as exc:
            logger.debug("early PRUNE to %s failed: %r", peer, exc)

    def rate_limited(self, peer: ID, connection: object) -> None:
        if peer not in self.admitted:
            return  # refused at the gate (counted there), or already cut off
        self.count(peer, RATE_LIMITED)
        logger.warning("observer %s exceeded its byte budget: disconnected, banned for %g s", peer,
                       self.limits.ban_s)
        self.bans[peer] = self._clock() + self.limits.ban_s
        while len(self.bans) > _BANS_MAX:
            del self.bans[next(iter(self.bans))]
        self._refuse(peer, connection, None)

    def validate(self, forwarder: ID, msg: rpc_pb2.Message) -> _Accepted[None] | None:
        """Our own publishes pass; anything an observer sends is refused and counted: as a
        publish when the observer authored it, as a forward when another peer did (another
        relay's report, gossiped on by an honest observer)."""
        if msg.from_id == self.own_id_bytes:
            return _Accepted(None, b"", None)
        self.count(forwarder, OBSERVER_PUBLISH if msg.from_id == forwarder.to_bytes() else OBSERVER_FORWARD)
        return None

    def _refuse(self, peer: ID, connection: object, reason: str | None) -> None:
        if reason is not None:
            self.count(peer, reason)
        self.release(peer)
        # An id, not the object: a closed connection must not be kept alive by this memory.
        self._refused_on.pop(peer, None)
        self._refused_on[peer] = id(connection)
        while len(self._refused_on) > _BANS_MAX:
            del self._refused_on[next(iter(self._refused_on))]
        try:
            self.host.get_peerstore().clear_addrs(peer)
        except Exception:
            logger.debug("could not forget addresses of %s", peer, exc_info=True)
        aux = self._aux
        if aux is not None:
            aux.start_soon(self._close, peer)

    async def _close(self, peer: ID) -> None:
        try:
            with trio.move_on_after(STOP_GRACE_S):
                await self.host.disconnect(peer)
        except Exception as exc:
            logger.debug("closing connection to %s failed: %r", peer, exc)

    # ------------------------------------------------------------------ publishing (trio thread)

    def publish(self, data: bytes) -> None:
        send = self._publish_send
        if send is None:
            return
        try:
            send.send_nowait(data)
        except trio.WouldBlock:
            self.count(self.host.get_id(), PUBLISH_FAILED)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def _publish_loop(self, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        async for data in receive:
            try:
                await self.pubsub.publish(self.topic, data)
                self.published += 1
            except Exception:
                logger.exception("observer relay publish failed")
                self.count(self.host.get_id(), PUBLISH_FAILED)

    # ------------------------------------------------------------------ reads (any thread)

    def subscribed_observers(self) -> list[ID]:
        with_stream = set(self.pubsub.peers)
        return [p for p in list(self.pubsub.peer_topics.get(self.topic, ())) if p in with_stream and p in self.admitted]


class ObserverRelay:
    """The relay as the asyncio side sees it: start, publish, stop, and its counters.

    ``private_key`` is the relay's own secp256k1 key (``observer_key_file``; a devnet
    derives one with ``identity.observer_relay_key``), so observers never learn a signing
    key's peer id from the relay. ``allowed_peer_ids`` None or empty admits any peer id.
    """

    def __init__(
        self,
        private_key: bytes,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        topic: str = REPORTS_TOPIC,
        allowed_peer_ids: Iterable[str] | None = None,
        limits: ObserverLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key_pair = keypair_from_secret(private_key)
        self.peer_id = ID.from_pubkey(self._key_pair.public_key).to_base58()
        family = "ip6" if ":" in listen_host else "ip4"
        self._listen = Multiaddr(f"/{family}/{listen_host}/tcp/{listen_port}")
        self.topic = topic
        self.limits = limits or ObserverLimits()
        ids = list(allowed_peer_ids or ())
        try:
            self._allowed = frozenset(ID.from_base58(p) for p in ids) if ids else None
        except Exception as exc:
            raise ValueError(f"observer_peers must be base58 peer ids (12D3Koo..., 16Uiu2...), got {ids!r}") from exc
        self._clock = clock
        self.dropped: Counter[tuple[str, str]] = Counter()
        self.listen_addrs: list[str] = []
        self._thread = TrioThread(label=f"observer relay on {self._listen}",
                                  thread_name=f"p2p-observers-{self.peer_id[-8:]}")
        self._runtime: _RelayRuntime | None = None

    async def start(self) -> None:
        apply_process_tuning()
        await self._thread.start(self._serve, START_TIMEOUT_S)
        runtime = self._runtime
        if runtime is not None:
            # Full multiaddrs, with the relay's peer id, as observers dial them.
            self.listen_addrs = [a if "/p2p/" in a else f"{a}/p2p/{self.peer_id}" for a in runtime.listen_addrs]

    async def stop(self) -> None:
        await self._thread.stop()

    async def _serve(self, ready: Callable[[], None], stop_requested: StopRequested) -> None:
        runtime = _RelayRuntime(self._key_pair, self._listen, topic=self.topic, allowed=self._allowed,
                                limits=self.limits, dropped=self.dropped, clock=self._clock)
        self._runtime = runtime
        try:
            await runtime.serve(ready, stop_requested)
        finally:
            self._runtime = None

    def publish(self, data: bytes) -> None:
        """Queue one report for every subscribed observer. Thread-safe, non-blocking.

        Raises MessageTooLarge above the relay's message limit, P2PError if not running.
        """
        if len(data) > self.limits.max_message_size:
            raise MessageTooLarge(
                f"report of {len(data)} bytes exceeds the observer relay's {self.limits.max_message_size}-byte "
                "limit; raise max_message_bytes"
            )
        self._thread.require_running("publish to observers")
        runtime = self._runtime
        if runtime is None or not self._thread.call_soon(runtime.publish, bytes(data)):
            raise P2PError("cannot publish to observers: the observer relay has stopped")

    # ------------------------------------------------------------------ reads (any thread)

    def observers(self) -> list[str]:
        """Peer ids of admitted observers subscribed to the reports topic."""
        runtime = self._runtime
        return [] if runtime is None else [str(p) for p in runtime.subscribed_observers()]

    def stats(self) -> dict[str, int]:
        """Reports published, observers connected and subscribed, and drops by reason."""
        runtime = self._runtime
        by_reason: Counter[str] = Counter()
        for (_peer, reason), n in list(self.dropped.items()):
            by_reason[reason] += n
        return {
            "published": 0 if runtime is None else runtime.published,
            "connected": 0 if runtime is None else len(runtime.admitted),
            "subscribed": len(self.observers()),
            **{f"dropped_{reason}": n for reason, n in sorted(by_reason.items())},
        }
