"""The libp2p stack a relayer runs: secure transport choices and gossipsub tuning.

Everything here executes inside the host's trio thread. py-libp2p 0.8.1 defaults
are unsafe or wrong for a small authenticated committee (see
/work/shared/notes/libp2p.md); each override below says which default it replaces.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import multiaddr  # type: ignore[import-untyped]
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

logger = logging.getLogger(__name__)

# Default 32: a burst of a few dozen messages between two drains would be
# dropped with only a warning. The drain task empties it continuously.
SUBSCRIPTION_CHANNEL_SIZE = 4096

# Gossipsub mesh for committees of up to ~7 nodes (notes: degree 3, low 2, high 6).
MESH_DEGREE = 3
MESH_DEGREE_LOW = 2
MESH_DEGREE_HIGH = 6
HEARTBEAT_INTERVAL_S = 1

# Room for the pubsub envelope around a payload (from, seqno, signature, key,
# topic, signed peer record) so a max-size payload still fits one RPC frame.
RPC_ENVELOPE_OVERHEAD = 64 * 1024

DIAL_TIMEOUT_S = 5.0

_tuning_lock = threading.Lock()
_tuned = False


def apply_process_tuning() -> None:
    """Process-wide py-libp2p settings that are module globals, not parameters.

    Idempotent and thread-safe: several hosts in one process share them.
    """
    global _tuned
    with _tuning_lock:
        if _tuned:
            return
        # Read by Pubsub.subscribe() when it opens the channel.
        pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = SUBSCRIPTION_CHANNEL_SIZE
        # The swarm waits this long after starting each address's dial even when
        # there is a single address, so every connect() cost ~250 ms. We dial one
        # TCP address per peer; starting the fallbacks at once costs nothing.
        from libp2p.network import swarm as swarm_module

        if hasattr(swarm_module, "_HAPPY_EYEBALLS_DELAY"):
            swarm_module._HAPPY_EYEBALLS_DELAY = 0.0
        _tuned = True
    quiet_libp2p_loggers()


def quiet_libp2p_loggers() -> None:
    """libp2p loggers at WARNING, flowing into the node's own log handlers.

    py-libp2p pins its auto-connector logger at INFO (a line every 10 s) and
    detaches the "libp2p" logger from the root, so its warnings would bypass the
    node's handlers. Left alone when LIBP2P_DEBUG asks for libp2p's own logging.
    Called at every start(): modules imported lazily create loggers late.
    """
    if os.environ.get("LIBP2P_DEBUG"):
        return
    root = logging.getLogger("libp2p")
    root.setLevel(logging.WARNING)
    root.propagate = True
    for name, existing in list(logging.root.manager.loggerDict.items()):
        if name.startswith("libp2p.") and isinstance(existing, logging.Logger):
            if logging.NOTSET < existing.level < logging.WARNING:
                existing.setLevel(logging.WARNING)


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


class CommitteePubsub(Pubsub):
    """Pubsub that contains its own failures.

    py-libp2p runs push_msg for every inbound message as a service task: an
    exception escaping it (e.g. a malformed ``key`` field) cancels the whole
    pubsub service. Same for the stream handler, which only catches stream
    errors. Both are wrapped so a bad peer costs one message, never the host.
    """

    def __init__(
        self,
        host: IHost,
        router: GossipSub,
        *,
        max_rpc_size: int,
        on_invalid: Callable[[ID, str], None],
    ) -> None:
        super().__init__(
            host,
            router,
            strict_signing=True,  # `from` is authenticated: sender = committee address
            max_inbound_rpc_size=max_rpc_size,
        )
        self.peer_queues = _SizedQueues(max_rpc_size)
        self._on_invalid = on_invalid

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:
            logger.warning("dropping malformed gossip message from %s: %r", msg_forwarder, exc)
            self._on_invalid(msg_forwarder, "invalid")

    async def stream_handler(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except Exception as exc:
            peer_id = stream.muxed_conn.peer_id
            logger.warning("pubsub stream from %s failed: %r", peer_id, exc)
            self._on_invalid(peer_id, "invalid")
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


def build_host(key_pair: KeyPair, listen_addrs: Sequence[multiaddr.Multiaddr]) -> IHost:
    """A host offering Noise only and Yamux only.

    The default security options include /plaintext/2.0.0, which accepts an
    unauthenticated dialer; the default muxers fall back to Mplex.
    """
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    connection_config = ConnectionConfig(
        dial_timeout=DIAL_TIMEOUT_S,
        inbound_upgrade_timeout=DIAL_TIMEOUT_S,
        outbound_upgrade_timeout=DIAL_TIMEOUT_S,
        max_connections_per_peer=1,
        # A committee is small; nothing to prune, and the gate closes strangers.
        max_connections=300,
        high_watermark=300,
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=listen_addrs,
        connection_config=connection_config,
        enable_mDNS=False,
        enable_upnp=False,
    )
    # new_host() does not forward a retry policy; the default retries a dead
    # peer 3 times with backoff, so a failed connect() would take seconds.
    network = host.get_network()
    if hasattr(network, "retry_config"):
        network.retry_config = RetryConfig(max_retries=1, initial_delay=0.05, max_delay=0.5)
    return host


def build_gossipsub() -> CommitteeGossipSub:
    """Gossipsub tuned for a small committee (notes: defaults section)."""
    return CommitteeGossipSub(
        # v1.2 sends an IDONTWANT per message to every mesh peer: half the throughput.
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=MESH_DEGREE,
        degree_low=MESH_DEGREE_LOW,
        degree_high=MESH_DEGREE_HIGH,
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
