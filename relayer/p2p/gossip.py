"""Gossip on one topic: gossipsub tuned for a committee, its validator, publishing and delivery.

Everything here runs in the host's trio thread. py-libp2p 0.8.1 defaults are unsafe
or wrong for a small authenticated committee (see /work/shared/notes/libp2p.md);
each override below says which default it replaces.

A message is checked once, in the validator, before it is delivered or forwarded:
its forwarder must have passed the committee gate, its author must be a member, and
it must pass the message check (``Admission.check``), which opens it. The opened
value is delivered with the message, not looked up again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import ValidationError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.tools.anyio_service import background_trio_service

from relayer.p2p.admission import INVALID, Admission, Deliver
from relayer.p2p.errors import MessageRejected

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TOPIC = "quorum-relayer/v1"

# Gossipsub mesh for committees of up to ~7 nodes (notes: degree 3, low 2, high 6).
MESH_DEGREE = 3
MESH_DEGREE_LOW = 2
MESH_DEGREE_HIGH = 6
HEARTBEAT_INTERVAL_S = 1

# Room for the pubsub envelope around a payload (from, seqno, signature, key,
# topic, signed peer record) so a max-size payload still fits one RPC frame.
RPC_ENVELOPE_OVERHEAD = 64 * 1024

# Publishes waiting for the trio thread; a full queue means the host is wedged.
PUBLISH_QUEUE_SIZE = 4096

# Drop reasons counted by this transport, besides the admission ones.
PUBLISH_QUEUE_FULL = "publish_queue_full"
PUBLISH_FAILED = "publish_failed"


@dataclass(frozen=True, slots=True)
class _Accepted(Generic[T]):
    """A message the validator passed, with what it opened; None for our own publishes."""

    address: str | None
    data: bytes
    opened: T | None


class _SizedQueues(dict[ID, RpcQueue]):
    """Pubsub's per-peer outbound queues, with our RPC size limit.

    Pubsub creates each RpcQueue with the 1 MiB default, which would drop a
    max-size payload plus its envelope. Adjusting on insertion leaves no window
    in which a queue exists with the wrong limit.
    """

    def __init__(self, max_rpc_size: int) -> None:
        super().__init__()
        self._max_rpc_size = max_rpc_size

    def __setitem__(self, peer_id: ID, queue: RpcQueue) -> None:
        queue.max_message_size = self._max_rpc_size
        super().__setitem__(peer_id, queue)


class CommitteePubsub(Pubsub, Generic[T]):
    """Pubsub that validates with our check, delivers with the opened value, and contains failures.

    ``push_msg`` runs, in one task: ``validate_msg``, marking seen, ``notify_subscriptions``,
    forwarding. Both hooks are overridden: ``validate_msg`` asks ``validate`` and keeps
    its verdict, ``notify_subscriptions`` hands that verdict to ``deliver`` instead of a
    subscription channel. Nothing between the two awaits, so no other message can
    come between them; the verdict is still matched to its message by identity.

    py-libp2p runs push_msg for every inbound message as a service task: an exception
    escaping it (e.g. a malformed ``key`` field) cancels the whole pubsub service.
    Same for the stream handler, which only catches stream errors. Both are wrapped
    so a bad peer costs one message, never the host.
    """

    def __init__(
        self,
        host: IHost,
        router: GossipSub,
        *,
        max_rpc_size: int,
        validate: Callable[[ID, rpc_pb2.Message], _Accepted[T] | None],
        deliver: Callable[[rpc_pb2.Message, _Accepted[T]], None],
        on_invalid: Callable[[ID, str], None],
    ) -> None:
        super().__init__(
            host,
            router,
            strict_signing=True,  # `from` is authenticated: sender = committee address
            max_inbound_rpc_size=max_rpc_size,
        )
        self.peer_queues = _SizedQueues(max_rpc_size)
        self._validate = validate
        self._deliver = deliver
        self._on_invalid = on_invalid
        self._verdict: tuple[rpc_pb2.Message, _Accepted[T]] | None = None

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        # No await in here: the verdict must reach notify_subscriptions untouched.
        accepted = self._validate(msg_forwarder, msg)
        if accepted is None:
            self._verdict = None
            raise ValidationError("refused by the committee validator")
        self._verdict = (msg, accepted)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        verdict, self._verdict = self._verdict, None
        if verdict is None or verdict[0] is not publish_message:
            # Only if py-libp2p ever awaits between validating and notifying.
            logger.error("gossip message delivered without its validator verdict: dropped")
            return
        self._deliver(publish_message, verdict[1])

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:
            logger.warning("dropping malformed gossip message from %s: %r", msg_forwarder, exc)
            self._on_invalid(msg_forwarder, INVALID)

    async def stream_handler(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except Exception as exc:
            peer_id = stream.muxed_conn.peer_id
            logger.warning("pubsub stream from %s failed: %r", peer_id, exc)
            self._on_invalid(peer_id, INVALID)
            try:
                await stream.reset()
            except Exception:
                pass
            try:
                self._handle_dead_peer(peer_id)
            except Exception:
                logger.debug("cleanup after failed pubsub stream raised", exc_info=True)


class CommitteeGossipSub(GossipSub):
    """Gossipsub v1.1 with flood publishing of our own messages.

    go-libp2p publishes a node's own messages to every subscribed peer, not only
    its mesh (``floodPublish``); py-libp2p does not. In a committee of a handful
    of nodes that turns a 2-3 hop delivery into a direct one, which the round
    latency depends on. Forwarded messages still follow the mesh.
    """

    def _get_peers_to_send(
        self,
        topic_ids: Iterable[str],
        msg_forwarder: ID,
        origin: ID,
        msg_id: bytes | None = None,
    ) -> Iterator[ID]:
        topics = list(topic_ids)
        peers = set(super()._get_peers_to_send(topics, msg_forwarder, origin, msg_id))
        pubsub = self.pubsub
        if pubsub is not None and origin == msg_forwarder == pubsub.my_id:
            for topic in topics:
                peers.update(
                    peer for peer in pubsub.peer_topics.get(topic, ()) if self._is_gossipsub_peer(peer)
                )
            peers.discard(origin)
        yield from peers


def build_gossipsub(
    router: type[CommitteeGossipSub] = CommitteeGossipSub,
    *,
    mesh: tuple[int, int, int] = (MESH_DEGREE, MESH_DEGREE_LOW, MESH_DEGREE_HIGH),
) -> CommitteeGossipSub:
    """Gossipsub tuned for a small committee (notes: defaults section); ``mesh`` is (D, D_low, D_high)."""
    degree, degree_low, degree_high = mesh
    return router(
        # v1.2 sends an IDONTWANT per message to every mesh peer: half the throughput.
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=degree,
        degree_low=degree_low,
        degree_high=degree_high,
        heartbeat_interval=HEARTBEAT_INTERVAL_S,
        # Adaptive logic stretched a 1 s heartbeat to 30 s after ~34 s.
        adaptive_gossip_enabled=False,
        # Caps each peer and our own publishes at 10 msg/s; the committee gate and
        # the topic validator are the real admission control.
        spam_protection_enabled=False,
        # IP diversity is meaningless when only authenticated committee members
        # may connect (and on loopback every peer shares one IP).
        eclipse_protection_enabled=False,
        # Never learn and dial peers from PRUNE peer exchange: the committee is fixed.
        do_px=False,
    )


class Gossip(Generic[T]):
    """The gossip transport of one host (trio thread): publish, validate, deliver."""

    def __init__(self, host: IHost, admission: Admission[T], *, topic: str, deliver: Deliver[T]) -> None:
        self.topic = topic
        self._own_id_bytes = host.get_id().to_bytes()
        self._admission = admission
        self._deliver = deliver
        self.router = build_gossipsub()
        self.pubsub: CommitteePubsub[T] = CommitteePubsub(
            host,
            self.router,
            max_rpc_size=admission.max_message_size + RPC_ENVELOPE_OVERHEAD,
            validate=self._validate,
            deliver=self._deliver_accepted,
            on_invalid=admission.drop,
        )
        self._publish_send: trio.MemorySendChannel[bytes] | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Pubsub and gossipsub up, subscribed, publishing; torn down in reverse on exit."""
        publish_send, publish_receive = trio.open_memory_channel[bytes](PUBLISH_QUEUE_SIZE)
        try:
            async with background_trio_service(self.pubsub):
                async with background_trio_service(self.router):
                    await self.pubsub.wait_until_ready()
                    # Announces the topic to peers; messages reach us through
                    # notify_subscriptions, never through the subscription channel.
                    await self.pubsub.subscribe(self.topic)
                    async with trio.open_nursery() as loops:
                        loops.start_soon(self._publish_loop, publish_receive)
                        self._publish_send = publish_send
                        try:
                            yield
                        finally:
                            self._publish_send = None
                            loops.cancel_scope.cancel()
        finally:
            # Pubsub's seen-message cache sweeps in a plain thread that nothing
            # in py-libp2p stops: one leaked thread per host otherwise.
            self.pubsub.seen_messages.stop()

    def publish(self, data: bytes) -> None:
        """Queue one of our messages for the topic (trio thread)."""
        send = self._publish_send
        if send is None:
            return  # stopping
        try:
            send.send_nowait(data)
        except trio.WouldBlock:
            self._admission.drop(self.pubsub.my_id, PUBLISH_QUEUE_FULL)
            logger.warning("publish queue full (%d): message dropped", PUBLISH_QUEUE_SIZE)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def subscribed_peers(self) -> set[ID]:
        """Peers with a pubsub stream that announced our topic (any thread: copies)."""
        with_stream = set(self.pubsub.peers)
        return {peer for peer in self.pubsub.peer_topics.get(self.topic, ()) if peer in with_stream}

    async def _publish_loop(self, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        async for data in receive:
            try:
                await self.pubsub.publish(self.topic, data)
            except Exception:
                logger.exception("gossip publish failed")
                self._admission.drop(self.pubsub.my_id, PUBLISH_FAILED)

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> _Accepted[T] | None:
        """Runs before delivery and before forwarding; None refuses (counted where refused)."""
        try:
            if msg.from_id == self._own_id_bytes:
                return _Accepted(None, b"", None)  # our own publish; its size was checked at publish
            admission = self._admission
            if admission.admit(forwarder) is None:
                return None  # refused at the door, counted there
            author = ID(msg.from_id)
            address = admission.author_address(author)
            if address is None:
                return None
            data = bytes(msg.data)
            return _Accepted(address, data, admission.check(author, address, data))
        except MessageRejected:
            return None
        except Exception:
            logger.exception("gossip validator failed on a message from %s", forwarder)
            self._admission.drop(forwarder, INVALID)
            return None

    def _deliver_accepted(self, _msg: rpc_pb2.Message, accepted: _Accepted[T]) -> None:
        if accepted.address is None:
            return  # pubsub hands our own publishes back; callers must not see them
        try:
            self._deliver(accepted.address, accepted.data, accepted.opened)
        except Exception:
            logger.exception("failed to deliver a gossip message from %s", accepted.address)
