"""P2PHost: the relayer's libp2p gossip endpoint, bridged from trio to asyncio.

py-libp2p is trio-only and the node is asyncio, so each P2PHost runs one trio
event loop in its own thread (measured in the notes as the arrangement that
works). Crossing the boundary:

- asyncio -> trio: ``TrioToken.run_sync_soon`` (never blocks the caller);
- trio -> asyncio: ``loop.call_soon_threadsafe`` (messages, call results).

Threading rule: libp2p objects and ``dropped`` are only mutated in the trio
thread. The asyncio side only reads them (atomic dict/set copies under the GIL)
or swaps immutable values (the committee ``frozenset``).

Admission control, in order: Noise authenticates the peer id; the committee gate
closes any connection whose id does not map to a committee address; the topic
validator drops messages that are oversized, not from a committee address, or
not from a secp256k1 identity. Each drop is counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar, cast

import trio
from multiaddr import Multiaddr  # type: ignore[import-untyped]
from eth_utils.address import to_checksum_address
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.subscription import TrioSubscriptionAPI
from libp2p.tools.anyio_service import background_trio_service

from relayer.p2p.errors import MessageTooLarge, P2PError, P2PStartError, PeerRejected
from relayer.p2p.identity import address_of_peer_id, keypair_from_secret
from relayer.p2p.stack import (
    DIAL_TIMEOUT_S,
    RPC_ENVELOPE_OVERHEAD,
    CommitteeGossipSub,
    CommitteePubsub,
    apply_process_tuning,
    build_gossipsub,
    build_host,
)

logger = logging.getLogger(__name__)

# py-libp2p's Yamux answers every stream read with a WINDOW_UPDATE frame by default
# (PY_YAMUX_RELEASE_ON_READ=1); go-yamux batches them until half the window is used. Round
# messages are small, so batching removes about one encrypted frame per message: measured
# on the devnet at n=7, 4 rounds/s, 14.5% -> 11.5% CPU per follower and 26% -> 19.5% for
# the leader. An operator may still set the variable either way.
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")

T = TypeVar("T")

DEFAULT_TOPIC = "quorum-relayer/v1"

START_TIMEOUT_S = 10.0
# Budget for the orderly part of stop(): disconnecting every peer.
STOP_GRACE_S = 2.0
# After this the whole trio run is cancelled, whatever is still pending.
STOP_HARD_S = 4.0
# Publishes waiting for the trio thread; a full queue means the host is wedged.
PUBLISH_QUEUE_SIZE = 4096
WAIT_POLL_S = 0.01

# Drop reasons counted in P2PHost.dropped.
NOT_IN_COMMITTEE = "not_in_committee"
OVERSIZED = "oversized"
INVALID = "invalid"
INVALID_SENDER = "invalid_sender"
PUBLISH_QUEUE_FULL = "publish_queue_full"
PUBLISH_FAILED = "publish_failed"
DIRECT_QUEUE_FULL = "direct_queue_full"
DIRECT_SEND_FAILED = "direct_send_failed"

# Direct messages: one long-lived stream per peer and direction, frames of a 4-byte
# big-endian length and the payload. A message crosses one hop once, where gossip
# delivers it up to D times (direct plus mesh forwards), each costing Noise and Yamux
# CPU in Python: on a small, fully connected committee direct sends are the cheap path.
DIRECT_PROTOCOL = "/quorum-relayer/direct/1.0.0"
DIRECT_QUEUE_SIZE = 1024
_FRAME_HEADER = 4

_State = Literal["new", "starting", "running", "stopping", "stopped"]


@functools.lru_cache(maxsize=4096)
def _address_or_none(peer_id_bytes: bytes) -> str | None:
    """Committee address of a raw peer id, cached: it is checked per message."""
    try:
        return address_of_peer_id(ID(peer_id_bytes))
    except PeerRejected:
        return None


def _normalize_addresses(addresses: Iterable[str] | None) -> frozenset[str] | None:
    if addresses is None:
        return None
    normalized: set[str] = set()
    for address in addresses:
        try:
            normalized.add(to_checksum_address(address))
        except Exception as exc:
            raise ValueError(
                f"allowed address {address!r} is not a 20-byte hex Ethereum address"
            ) from exc
    return frozenset(normalized)


def _listen_multiaddr(listen_host: str, listen_port: int) -> Multiaddr:
    family = "ip6" if ":" in listen_host else "ip4"
    return Multiaddr(f"/{family}/{listen_host}/tcp/{listen_port}")


def _check_port_free(listen_host: str, listen_port: int) -> None:
    """Fail start() when the port is taken, which py-libp2p would not notice.

    Its TCP listener sets SO_REUSEPORT (for hole punching), so a second node on
    the same port binds fine and the kernel splits inbound connections between
    the two. A probe bind without SO_REUSEPORT fails against any listener.
    """
    family = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR still fails against a live listener on Linux, but lets a
    # restarted node reclaim its port while old connections sit in TIME_WAIT.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((listen_host, listen_port))
    except OSError as exc:
        raise P2PStartError(
            f"p2p host failed to start: cannot listen on {listen_host}:{listen_port}: {exc.strerror}; "
            "another process (or relayer) holds the port, pick another listen port"
        ) from exc
    finally:
        probe.close()


class _CommitteeGate(INotifee):
    """Network notifee that hands every new connection to the committee check.

    py-libp2p's connection gate filters by IP only; peer ids are known once the
    Noise handshake is done, which is when ``connected`` fires.
    """

    def __init__(self, on_connected: Callable[[ID], None]) -> None:
        self._on_connected = on_connected

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        try:
            self._on_connected(conn.muxed_conn.peer_id)
        except Exception:
            logger.exception("committee gate failed on a new connection")
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        await trio.lowlevel.checkpoint()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()


class P2PHost:
    """A libp2p host running in its own trio thread, bridged to the caller's asyncio loop."""

    peer_id: str
    address: str
    listen_addrs: list[str]
    dropped: Counter[tuple[str, str]]

    def __init__(
        self,
        private_key: bytes,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        topic: str = DEFAULT_TOPIC,
        max_message_size: int = 1 << 20,
        allowed_addresses: Iterable[str] | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
        validator: Callable[[str, bytes], str | None] | None = None,
    ) -> None:
        if max_message_size <= 0:
            raise ValueError(f"max_message_size must be positive, got {max_message_size}")
        self._key_pair = keypair_from_secret(private_key)
        self._id = ID.from_pubkey(self._key_pair.public_key)
        self._id_bytes = self._id.to_bytes()
        self.peer_id = self._id.to_base58()
        self.address = address_of_peer_id(self._id)
        self.listen_addrs = []
        self.topic = topic
        self.max_message_size = max_message_size
        # (address, or peer id when it has none, reason) -> count; written by the trio thread only.
        self.dropped = Counter()
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._listen = _listen_multiaddr(listen_host, listen_port)
        self._allowed = _normalize_addresses(allowed_addresses)
        self._on_message = on_message
        # Application check run in the topic validator (trio thread): returns a drop
        # reason, or None to accept. A message it refuses is neither delivered nor forwarded.
        self._validator = validator
        self._traffic = {"published_msgs": 0, "published_bytes": 0, "received_msgs": 0, "received_bytes": 0}

        self._state: _State = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None

        # Trio-thread objects, set while the thread runs.
        self._token: trio.lowlevel.TrioToken | None = None
        self._host: IHost | None = None
        self._swarm: Swarm | None = None
        self._pubsub: CommitteePubsub | None = None
        self._aux: trio.Nursery | None = None
        self._direct_out: dict[ID, trio.MemorySendChannel[bytes]] = {}
        self._stop_requested: trio.Event | None = None
        self._publish_send: trio.MemorySendChannel[bytes] | None = None

    # ------------------------------------------------------------------ asyncio API

    async def start(self) -> None:
        """Start the trio thread, listen, run gossipsub and subscribe to the topic.

        Returns once the host is ready to connect and publish; raises
        P2PStartError with the reason otherwise.
        """
        if self._state != "new":
            raise P2PStartError(f"host {self.peer_id} was already started (state {self._state})")
        if self._listen_port != 0:
            _check_port_free(self._listen_host, self._listen_port)
        self._state = "starting"
        loop = asyncio.get_running_loop()
        self._loop = loop
        apply_process_tuning()
        started: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(started,),
            name=f"p2p-{self.peer_id[-8:]}",
            daemon=True,  # a wedged trio thread must not keep the process alive
        )
        self._thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(started), START_TIMEOUT_S)
        except TimeoutError:
            await self.stop()
            raise P2PStartError(
                f"p2p host did not come up within {START_TIMEOUT_S} s on {self._listen}"
            ) from None
        except BaseException:
            await self.stop()
            raise
        self._state = "running"

    async def connect(self, multiaddr: str) -> None:
        """Dial a peer given its full multiaddr (``.../tcp/PORT/p2p/<peer id>``).

        Raises PeerRejected without dialing when the peer is not in the committee,
        P2PError when the address is malformed or the dial fails.
        """
        self._require_running("connect")
        try:
            info = info_from_p2p_addr(Multiaddr(multiaddr))
        except Exception as exc:
            raise P2PError(
                f"cannot dial {multiaddr!r}: expected a multiaddr like "
                "/ip4/127.0.0.1/tcp/4001/p2p/16Uiu2..., with the peer id"
            ) from exc
        if info.peer_id == self._id:
            raise P2PError(f"cannot dial {multiaddr!r}: that is this host's own peer id")
        address = address_of_peer_id(info.peer_id)
        if not self._address_allowed(address):
            raise PeerRejected(
                f"refusing to dial {info.peer_id}: its address {address} is not in the committee"
            )
        try:
            await self._run_in_trio(functools.partial(self._dial, info), DIAL_TIMEOUT_S + 1.0)
        except P2PError:
            raise
        except Exception as exc:
            raise P2PError(
                f"could not connect to {multiaddr}: {type(exc).__name__}: {exc}; "
                "check the peer is running and the address and peer id are right"
            ) from exc

    def publish(self, data: bytes) -> None:
        """Queue ``data`` for gossip on the topic. Thread-safe and non-blocking.

        Raises MessageTooLarge above max_message_size, P2PError if not running.
        """
        if len(data) > self.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes exceeds the {self.max_message_size}-byte "
                "gossip limit; split it or raise max_message_size on every node"
            )
        self._require_running("publish")
        if not self._call_soon_in_trio(self._enqueue_publish, bytes(data)):
            raise P2PError("cannot publish: the p2p host has stopped")
        self._traffic["published_msgs"] += 1
        self._traffic["published_bytes"] += len(data)

    def send(self, address: str, data: bytes) -> None:
        """Queue ``data`` for one committee peer over its direct stream. Thread-safe, non-blocking.

        The receiver runs the same checks as the gossip topic validator before delivery.
        """
        self._check_outbound(data)
        if not self._call_soon_in_trio(self._enqueue_direct, [address.lower()], bytes(data)):
            raise P2PError("cannot send: the p2p host has stopped")
        self._traffic["published_msgs"] += 1
        self._traffic["published_bytes"] += len(data)

    def send_all(self, data: bytes) -> None:
        """Queue ``data`` for every connected committee peer over direct streams."""
        self._check_outbound(data)
        if not self._call_soon_in_trio(self._enqueue_direct, None, bytes(data)):
            raise P2PError("cannot send: the p2p host has stopped")
        self._traffic["published_msgs"] += 1
        self._traffic["published_bytes"] += len(data)

    def _check_outbound(self, data: bytes) -> None:
        if len(data) > self.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes exceeds the {self.max_message_size}-byte "
                "limit; split it or raise max_message_size on every node"
            )
        self._require_running("send")

    def traffic(self) -> dict[str, int]:
        """Messages and bytes this node published and had delivered to it (gossip payloads)."""
        return dict(self._traffic)

    def set_allowed(self, addresses: Iterable[str] | None) -> None:
        """Replace the committee; peers no longer in it are disconnected at once."""
        self._allowed = _normalize_addresses(addresses)
        if self._state in ("starting", "running"):
            self._call_soon_in_trio(self._enforce_committee)

    def connected_peers(self) -> list[str]:
        """Peer ids of connected committee peers."""
        return [str(peer) for peer in self._connected_ids()]

    async def wait_for_peers(self, n: int, timeout: float) -> None:
        """Wait until at least ``n`` committee peers are connected and subscribed
        to the topic, so that a publish reaches each of them directly.

        Raises P2PError on timeout, naming how many were ready.
        """
        self._require_running("wait_for_peers")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ready = self._ready_ids()
            if len(ready) >= n:
                return
            if loop.time() >= deadline:
                raise P2PError(
                    f"only {len(ready)} of {n} peers connected and subscribed to "
                    f"{self.topic!r} after {timeout} s ({len(self._connected_ids())} connected); "
                    "check the peers are started and dialed"
                )
            await asyncio.sleep(WAIT_POLL_S)

    async def stop(self) -> None:
        """Disconnect every peer, leave gossipsub and pubsub, end the thread.

        Idempotent and bounded: after STOP_HARD_S the trio run is cancelled.
        """
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        first = self._state != "stopping"
        # Set before reading _stop_requested: if the trio side has not created
        # the event yet, it sees "stopping" right after creating it.
        self._state = "stopping"
        stop_requested = self._stop_requested
        if first and stop_requested is not None:
            self._call_soon_in_trio(stop_requested.set)
        stopped = self._stopped
        if stopped is not None:
            try:
                await asyncio.wait_for(asyncio.shield(stopped), STOP_HARD_S + 2.0)
            except TimeoutError:
                logger.error("p2p host %s: trio thread did not end in time", self.peer_id)
        thread = self._thread
        if thread is not None:
            # The thread signalled its end just before returning: this join is short.
            thread.join(timeout=1.0)
            if thread.is_alive():
                logger.error("p2p host %s: thread %s still alive", self.peer_id, thread.name)
        self._state = "stopped"

    # ------------------------------------------------------------------ bridge helpers

    def _require_running(self, what: str) -> None:
        if self._state != "running":
            raise P2PError(f"cannot {what}: p2p host is {self._state}, call start() first")

    def _call_soon_in_trio(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Schedule a sync callable on the trio thread; False if it has ended."""
        token = self._token
        if token is None:
            return False

        def guarded() -> None:
            # An exception escaping a run_sync_soon callback crashes the trio run.
            try:
                fn(*args)
            except Exception:
                logger.exception("p2p callback %r failed", fn)

        try:
            token.run_sync_soon(guarded)
        except trio.RunFinishedError:
            return False
        return True

    def _call_soon_in_asyncio(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            # The asyncio loop is closed: the node is gone, nothing to deliver to.
            pass

    async def _run_in_trio(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run an async trio function from asyncio and await its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(cast(T, result))

        async def runner() -> None:
            try:
                result = await fn()
            except trio.Cancelled:
                self._call_soon_in_asyncio(settle, None, P2PError("p2p host is stopping"))
                raise
            except Exception as exc:
                self._call_soon_in_asyncio(settle, None, exc)
            else:
                self._call_soon_in_asyncio(settle, result, None)

        def spawn() -> None:
            aux = self._aux
            if aux is None:
                self._call_soon_in_asyncio(settle, None, P2PError("p2p host is not running"))
                return
            aux.start_soon(runner)

        if not self._call_soon_in_trio(spawn):
            raise P2PError("p2p host has stopped")
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise P2PError(f"p2p operation timed out after {timeout} s") from None

    # ------------------------------------------------------------------ committee

    def _address_allowed(self, address: str) -> bool:
        allowed = self._allowed
        return allowed is None or address == self.address or address in allowed

    def _peer_allowed(self, peer_id: ID) -> bool:
        address = _address_or_none(peer_id.to_bytes())
        return address is not None and self._address_allowed(address)

    def _drop(self, peer_id: ID, reason: str) -> None:
        """Count a drop (trio thread only), keyed by address when the id has one."""
        address = _address_or_none(peer_id.to_bytes())
        self.dropped[(address or peer_id.to_base58(), reason)] += 1

    def _connected_ids(self) -> list[ID]:
        swarm = self._swarm
        if swarm is None or self._state != "running":
            return []
        # dict.items() copied in one C call: consistent even while trio mutates it.
        return [peer for peer, conns in list(swarm.connections.items()) if conns and self._peer_allowed(peer)]

    def _ready_ids(self) -> list[ID]:
        pubsub = self._pubsub
        if pubsub is None:
            return []
        with_stream = set(pubsub.peers)
        subscribed = set(pubsub.peer_topics.get(self.topic, ()))
        return [peer for peer in self._connected_ids() if peer in with_stream and peer in subscribed]

    # ------------------------------------------------------------------ trio thread

    def _thread_main(self, started: asyncio.Future[None]) -> None:
        try:
            trio.run(self._trio_main, started)
        except BaseException as exc:
            logger.exception("p2p host %s: trio run ended with an error", self.peer_id)
            self._report_started(started, exc)
        finally:
            self._token = None
            self._call_soon_in_asyncio(self._mark_stopped)

    def _mark_stopped(self) -> None:
        """Runs on the asyncio loop once the trio thread is about to return."""
        if self._state == "running":
            # Nobody called stop(): the host died; make every later call say so.
            logger.error("p2p host %s stopped unexpectedly; see the errors above", self.peer_id)
            self._state = "stopped"
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def _report_started(self, started: asyncio.Future[None], error: BaseException | None) -> None:
        def settle() -> None:
            if started.done():
                return
            if error is None:
                started.set_result(None)
            else:
                reason = f"{type(error).__name__}: {error}"
                started.set_exception(
                    P2PStartError(f"p2p host failed to start on {self._listen}: {reason}")
                )

        self._call_soon_in_asyncio(settle)

    async def _trio_main(self, started: asyncio.Future[None]) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop_requested = trio.Event()
        if self._state == "stopping":  # stop() arrived before the token existed
            self._stop_requested.set()
        try:
            async with trio.open_nursery() as watchdog:
                watchdog.start_soon(self._hard_stop_watchdog, watchdog.cancel_scope)
                await self._run_node(started)
                watchdog.cancel_scope.cancel()
        except Exception as exc:
            logger.exception("p2p host %s failed", self.peer_id)
            self._report_started(started, exc)
        finally:
            self._aux = None
            self._host = None
            self._swarm = None
            self._pubsub = None
        # Reached after a hard-stop cancellation too: start() must not wait forever.
        self._report_started(started, P2PStartError("stopped before it was ready"))

    async def _hard_stop_watchdog(self, scope: trio.CancelScope) -> None:
        assert self._stop_requested is not None
        await self._stop_requested.wait()
        await trio.sleep(STOP_HARD_S)
        logger.warning("p2p host %s: orderly stop overran %s s, cancelling", self.peer_id, STOP_HARD_S)
        scope.cancel()

    async def _run_node(self, started: asyncio.Future[None]) -> None:
        assert self._stop_requested is not None
        host = build_host(self._key_pair, [self._listen])
        gossipsub: CommitteeGossipSub = build_gossipsub()
        pubsub = CommitteePubsub(
            host,
            gossipsub,
            max_rpc_size=self.max_message_size + RPC_ENVELOPE_OVERHEAD,
            on_invalid=self._drop,
        )
        try:
            self._host = host
            self._swarm = cast(Swarm, host.get_network())
            self._pubsub = pubsub
            host.get_network().register_notifee(_CommitteeGate(self._on_connected))
            await self._serve(host, gossipsub, pubsub, started)
        finally:
            # Pubsub's seen-message cache sweeps in a plain thread that nothing
            # in py-libp2p stops: one leaked thread per host otherwise.
            pubsub.seen_messages.stop()

    async def _serve(
        self,
        host: IHost,
        gossipsub: CommitteeGossipSub,
        pubsub: CommitteePubsub,
        started: asyncio.Future[None],
    ) -> None:
        assert self._stop_requested is not None
        publish_send, publish_receive = trio.open_memory_channel[bytes](PUBLISH_QUEUE_SIZE)
        # Nesting = teardown order: our loops end first (after every peer is
        # disconnected), then gossipsub, then pubsub, then the network; the aux
        # nursery (gate closes, bridged calls) outlives the host so the gate
        # works from the first inbound connection on.
        async with trio.open_nursery() as aux:
            self._aux = aux
            host.set_stream_handler(DIRECT_PROTOCOL, self._direct_handler)  # type: ignore[arg-type]
            async with host.run([self._listen]):
                async with background_trio_service(pubsub):
                    async with background_trio_service(gossipsub):
                        await pubsub.wait_until_ready()
                        pubsub.set_topic_validator(self.topic, self._validate, False)
                        subscription = await pubsub.subscribe(self.topic)
                        async with trio.open_nursery() as loops:
                            loops.start_soon(
                                self._deliver_loop, cast(TrioSubscriptionAPI, subscription)
                            )
                            loops.start_soon(self._publish_loop, publish_receive)
                            self._publish_send = publish_send
                            self.listen_addrs = [str(addr) for addr in host.get_addrs()]
                            self._report_started(started, None)
                            await self._stop_requested.wait()
                            self._publish_send = None
                            for channel in self._direct_out.values():
                                channel.close()
                            self._direct_out.clear()
                            with trio.move_on_after(STOP_GRACE_S):
                                await self._disconnect_all()
                            loops.cancel_scope.cancel()
            aux.cancel_scope.cancel()

    async def _disconnect_all(self) -> None:
        host = self._host
        swarm = self._swarm
        if host is None or swarm is None:
            return
        async with trio.open_nursery() as nursery:
            for peer in list(swarm.connections):
                nursery.start_soon(self._close_peer, peer)

    async def _close_peer(self, peer_id: ID) -> None:
        host = self._host
        if host is None:
            return
        try:
            with trio.move_on_after(STOP_GRACE_S):
                await host.disconnect(peer_id)
        except Exception as exc:
            logger.debug("closing connection to %s failed: %r", peer_id, exc)

    def _on_connected(self, peer_id: ID) -> None:
        if not self._peer_allowed(peer_id):
            self._reject(peer_id)

    def _enforce_committee(self) -> None:
        swarm = self._swarm
        if swarm is None:
            return
        for peer_id in list(swarm.connections):
            if not self._peer_allowed(peer_id):
                self._reject(peer_id)

    def _reject(self, peer_id: ID) -> None:
        """Close a non-committee peer's connection (trio thread)."""
        self._drop(peer_id, NOT_IN_COMMITTEE)
        logger.info("closing connection to %s: not in the committee", peer_id)
        host = self._host
        if host is not None:
            try:
                # Otherwise the swarm's auto-connector would dial it again later.
                host.get_peerstore().clear_addrs(peer_id)
            except Exception:
                logger.debug("could not forget addresses of %s", peer_id, exc_info=True)
        aux = self._aux
        if aux is not None:
            aux.start_soon(self._close_peer, peer_id)

    def _enqueue_direct(self, addresses: list[str] | None, data: bytes) -> None:
        """Trio thread: hand a frame to each target peer's sender (None = all connected)."""
        for peer_id in self._connected_ids():
            address = _address_or_none(peer_id.to_bytes())
            if address is None or (addresses is not None and address.lower() not in addresses):
                continue
            channel = self._direct_out.get(peer_id)
            if channel is None:
                aux = self._aux
                if aux is None:
                    return
                channel, receive = trio.open_memory_channel[bytes](DIRECT_QUEUE_SIZE)
                self._direct_out[peer_id] = channel
                aux.start_soon(self._direct_sender, peer_id, receive)
            try:
                channel.send_nowait(data)
            except trio.WouldBlock:
                self._drop(peer_id, DIRECT_QUEUE_FULL)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._direct_out.pop(peer_id, None)
                self._drop(peer_id, DIRECT_SEND_FAILED)

    async def _direct_sender(self, peer_id: ID, frames: trio.MemoryReceiveChannel[bytes]) -> None:
        """Trio thread: owns our outbound stream to one peer; reopens it after a failure."""
        stream: INetStream | None = None
        try:
            async with frames:
                async for data in frames:
                    host = self._host
                    if host is None:
                        return
                    try:
                        if stream is None:
                            with trio.fail_after(DIAL_TIMEOUT_S):
                                stream = await host.new_stream(peer_id, [DIRECT_PROTOCOL])  # type: ignore[list-item]
                        with trio.fail_after(DIAL_TIMEOUT_S):
                            await stream.write(len(data).to_bytes(_FRAME_HEADER, "big") + data)
                    except Exception as exc:
                        self._drop(peer_id, DIRECT_SEND_FAILED)
                        logger.debug("direct send to %s failed: %r", peer_id, exc)
                        if stream is not None:
                            await _quietly_reset(stream)
                        stream = None
        finally:
            # A later send finds this channel broken and starts a fresh sender.
            if stream is not None:
                await _quietly_reset(stream)

    async def _direct_handler(self, stream: INetStream) -> None:
        """Trio thread: one peer's inbound direct stream; the same checks as the topic validator."""
        try:
            peer_id = stream.muxed_conn.peer_id
            address = _address_or_none(peer_id.to_bytes())
            if address is None:
                self._drop(peer_id, INVALID_SENDER)
                await _quietly_reset(stream)
                return
            while True:
                header = await _read_exactly(stream, _FRAME_HEADER)
                size = int.from_bytes(header, "big")
                if size > self.max_message_size:
                    # The frame cannot be skipped safely without reading it: end the stream.
                    self._drop(peer_id, OVERSIZED)
                    await _quietly_reset(stream)
                    return
                data = await _read_exactly(stream, size)
                if not self._address_allowed(address):
                    self._drop(peer_id, NOT_IN_COMMITTEE)
                    await _quietly_reset(stream)
                    return
                if self._validator is not None:
                    reason = self._validator(address, data)
                    if reason is not None:
                        self._drop(peer_id, reason)
                        continue
                self._traffic["received_msgs"] += 1
                self._traffic["received_bytes"] += size
                self._call_soon_in_asyncio(self._dispatch, address, data)
        except Exception as exc:  # EOF, reset, closed connection: the peer reopens when it needs to
            logger.debug("direct stream ended: %r", exc)

    async def _dial(self, info: PeerInfo) -> None:
        host = self._host
        if host is None:
            raise P2PError("p2p host is not running")
        # The swarm refuses for 60 s to redial a peer whose addresses all failed once. A
        # committee peer that was still starting must be redialed at once, so an explicit
        # dial clears that negative cache entry first.
        negative_cache = getattr(host.get_network(), "_negative_peer_cache", None)
        if negative_cache is not None:
            negative_cache.evict(str(info.peer_id))
        with trio.fail_after(DIAL_TIMEOUT_S):
            await host.connect(info)

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Topic validator: runs before delivery and before forwarding."""
        try:
            if msg.from_id == self._id_bytes:
                return True  # our own publish; its size was checked in publish()
            source = ID(msg.from_id)
            address = _address_or_none(msg.from_id)
            if address is None:
                self._drop(source, INVALID_SENDER)
                return False
            if len(msg.data) > self.max_message_size:
                self._drop(source, OVERSIZED)
                return False
            if not self._address_allowed(address):
                self._drop(source, NOT_IN_COMMITTEE)
                return False
            if self._validator is not None:
                reason = self._validator(address, bytes(msg.data))
                if reason is not None:
                    self._drop(source, reason)
                    return False
            return True
        except Exception:
            logger.exception("gossip validator failed on a message from %s", forwarder)
            self._drop(forwarder, INVALID)
            return False

    async def _deliver_loop(self, subscription: TrioSubscriptionAPI) -> None:
        while True:
            try:
                msg = await subscription.get()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            try:
                if msg.from_id == self._id_bytes:
                    continue  # pubsub hands our own publishes back; callers must not see them
                address = _address_or_none(msg.from_id)
                if address is None:
                    continue  # cannot happen past the validator; never deliver without a sender
                self._traffic["received_msgs"] += 1
                self._traffic["received_bytes"] += len(msg.data)
                self._call_soon_in_asyncio(self._dispatch, address, bytes(msg.data))
            except Exception:
                logger.exception("failed to hand a gossip message to asyncio")

    def _dispatch(self, sender_address: str, data: bytes) -> None:
        """Runs on the asyncio loop thread."""
        callback = self._on_message
        if callback is None:
            return
        try:
            callback(sender_address, data)
        except Exception:
            logger.exception("on_message handler failed for a message from %s", sender_address)

    def _enqueue_publish(self, data: bytes) -> None:
        send = self._publish_send
        if send is None:
            return  # stopping
        try:
            send.send_nowait(data)
        except trio.WouldBlock:
            self._drop(self._id, PUBLISH_QUEUE_FULL)
            logger.warning("publish queue full (%d): message dropped", PUBLISH_QUEUE_SIZE)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def _publish_loop(self, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        async for data in receive:
            try:
                await pubsub.publish(self.topic, data)
            except Exception:
                logger.exception("gossip publish failed")
                self._drop(self._id, PUBLISH_FAILED)


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    """Read exactly n bytes; a stream read may return fewer. Raises on EOF or reset."""
    chunks: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = await stream.read(remaining)
        if not chunk:
            raise EOFError(f"stream ended with {remaining} of {n} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def _quietly_reset(stream: INetStream) -> None:
    try:
        with trio.move_on_after(1.0):
            await stream.reset()
    except Exception:
        pass
