"""P2PHost: the relayer's libp2p endpoint as the asyncio side sees it.

A facade over the parts of this package: ``bridge`` (the trio thread and the
crossings to and from asyncio), ``runtime`` (the libp2p stack served in that thread),
``admission`` (the committee gate, the message check, drop counters), ``gossip`` and
``direct`` (the two transports).

Admission control, in order: Noise authenticates the peer id; the committee gate
closes any connection whose id does not map to a committee address; every inbound
message, on either transport, passes one size check and the application's opening
callable, whose result is delivered with it: ``on_message(sender, data, opened)``.
Each drop is counted in ``dropped``.

Threading rule: libp2p objects and ``dropped`` are only mutated in the trio thread.
The asyncio side only reads them (atomic dict/set copies under the GIL) or swaps
immutable values (the committee ``frozenset``). This module imports no trio.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from relayer.p2p.admission import Admission, MessageOpener
from relayer.p2p.bridge import StopRequested, TrioThread
from relayer.p2p.errors import P2PError, P2PStartError, PeerRejected
from relayer.p2p.gossip import DEFAULT_TOPIC
from relayer.p2p.identity import address_of_peer_id, keypair_from_secret
from relayer.p2p.runtime import Runtime
from relayer.p2p.stack import DIAL_TIMEOUT_S, accept_failures, apply_process_tuning

logger = logging.getLogger(__name__)

# py-libp2p's Yamux answers every stream read with a WINDOW_UPDATE frame by default
# (PY_YAMUX_RELEASE_ON_READ=1); go-yamux batches them until half the window is used. Round
# messages are small, so batching removes about one encrypted frame per message: measured
# on the devnet at n=7, 4 rounds/s, 14.5% -> 11.5% CPU per follower and 26% -> 19.5% for
# the leader. An operator may still set the variable either way.
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")

T = TypeVar("T")

START_TIMEOUT_S = 10.0
WAIT_POLL_S = 0.01

# Called on the asyncio loop for every accepted message: (sender address, bytes, opened).
OnMessage = Callable[[str, bytes, T | None], None]


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


class P2PHost(Generic[T]):
    """A libp2p host running in its own trio thread, bridged to the caller's asyncio loop.

    ``open_message`` checks and opens every inbound message (in the trio thread, on both
    transports): it returns the opened value, delivered as ``on_message``'s third
    argument, or raises ``MessageRejected`` with the reason to count. Without it any
    message within ``max_message_size`` is accepted and delivered with None.
    """

    peer_id: str
    address: str
    listen_addrs: list[str]

    def __init__(
        self,
        private_key: bytes,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        topic: str = DEFAULT_TOPIC,
        max_message_size: int = 1 << 20,
        allowed_addresses: Iterable[str] | None = None,
        on_message: OnMessage[T] | None = None,
        open_message: MessageOpener[T] | None = None,
    ) -> None:
        self._key_pair = keypair_from_secret(private_key)
        self._id = ID.from_pubkey(self._key_pair.public_key)
        self.peer_id = self._id.to_base58()
        self.address = address_of_peer_id(self._id)
        self.listen_addrs = []
        self.topic = topic
        self._admission: Admission[T] = Admission(
            self.address,
            allowed=allowed_addresses,
            max_message_size=max_message_size,
            open_message=open_message,
        )
        self.max_message_size = max_message_size
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._listen = _listen_multiaddr(listen_host, listen_port)
        self._on_message = on_message
        self._traffic = {"published_msgs": 0, "published_bytes": 0, "received_msgs": 0, "received_bytes": 0}
        self._thread = TrioThread(label=f"p2p host on {self._listen}", thread_name=f"p2p-{self.peer_id[-8:]}")
        # Set by the trio thread while it serves.
        self._runtime: Runtime[T] | None = None

    @property
    def dropped(self) -> Counter[tuple[str, str]]:
        """(address, or peer id when it has none; reason) -> messages or connections refused."""
        return self._admission.dropped

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the trio thread, listen, run gossipsub and subscribe to the topic.

        Returns once the host is ready to connect and publish; raises
        P2PStartError with the reason otherwise.
        """
        if self._thread.state == "new" and self._listen_port != 0:
            _check_port_free(self._listen_host, self._listen_port)
        apply_process_tuning()
        await self._thread.start(self._serve, START_TIMEOUT_S)
        runtime = self._runtime
        if runtime is not None:
            self.listen_addrs = list(runtime.listen_addrs)

    async def stop(self) -> None:
        """Disconnect every peer, leave gossipsub and pubsub, end the thread.

        Idempotent and bounded (see ``bridge.STOP_HARD_S``).
        """
        await self._thread.stop()

    async def _serve(self, ready: Callable[[], None], stop_requested: StopRequested) -> None:
        """Trio thread: build the stack there (py-libp2p objects belong to their loop) and serve it."""
        runtime = Runtime(self._key_pair, self._listen, self._admission, topic=self.topic, deliver=self._deliver)
        self._runtime = runtime
        try:
            await runtime.serve(ready, stop_requested)
        finally:
            self._runtime = None

    # ------------------------------------------------------------------ peers

    async def connect(self, multiaddr: str) -> None:
        """Dial a peer given its full multiaddr (``.../tcp/PORT/p2p/<peer id>``).

        Raises PeerRejected without dialing when the peer is not in the committee,
        P2PError when the address is malformed or the dial fails.
        """
        self._thread.require_running("connect")
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
        if not self._admission.allows(address):
            raise PeerRejected(
                f"refusing to dial {info.peer_id}: its address {address} is not in the committee"
            )
        runtime = self._runtime
        if runtime is None:
            raise P2PError("cannot connect: p2p host is not running")
        try:
            await self._thread.run(functools.partial(runtime.dial, info), DIAL_TIMEOUT_S + 1.0)
        except P2PError:
            raise
        except Exception as exc:
            raise P2PError(
                f"could not connect to {multiaddr}: {type(exc).__name__}: {exc}; "
                "check the peer is running and the address and peer id are right"
            ) from exc

    def set_allowed(self, addresses: Iterable[str] | None) -> None:
        """Replace the committee; peers no longer in it are disconnected at once."""
        self._admission.set_allowed(addresses)
        runtime = self._runtime
        if runtime is not None:
            self._thread.call_soon(runtime.enforce_committee)

    def connected_peers(self) -> list[str]:
        """Peer ids of connected committee peers."""
        return [str(peer) for peer in self._connected_ids()]

    async def wait_for_peers(self, n: int, timeout: float) -> None:
        """Wait until at least ``n`` committee peers are connected and subscribed
        to the topic, so that a publish reaches each of them directly.

        Raises P2PError on timeout, naming how many were ready.
        """
        self._thread.require_running("wait_for_peers")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            runtime = self._runtime if self._thread.running else None
            ready = [] if runtime is None else runtime.ready_ids()
            if len(ready) >= n:
                return
            if loop.time() >= deadline:
                raise P2PError(
                    f"only {len(ready)} of {n} peers connected and subscribed to "
                    f"{self.topic!r} after {timeout} s ({len(self._connected_ids())} connected); "
                    "check the peers are started and dialed"
                )
            await asyncio.sleep(WAIT_POLL_S)

    def _connected_ids(self) -> list[ID]:
        runtime = self._runtime
        if runtime is None or not self._thread.running:
            return []
        return runtime.connected_ids()

    # ------------------------------------------------------------------ messages

    def publish(self, data: bytes) -> None:
        """Queue ``data`` for gossip on the topic. Thread-safe and non-blocking.

        Raises MessageTooLarge above max_message_size, P2PError if not running.
        """
        self._admission.check_outbound(data)
        self._thread.require_running("publish")
        runtime = self._runtime
        if runtime is None or not self._thread.call_soon(runtime.publish, bytes(data)):
            raise P2PError("cannot publish: the p2p host has stopped")
        self._count_sent(data)

    def send(self, address: str, data: bytes) -> None:
        """Queue ``data`` for one committee peer over its direct stream. Thread-safe, non-blocking.

        The receiver runs the same message check as for gossip before delivery.
        """
        self._send(frozenset([address.lower()]), data)

    def send_all(self, data: bytes) -> None:
        """Queue ``data`` for every connected committee peer over direct streams."""
        self._send(None, data)

    def _send(self, addresses: frozenset[str] | None, data: bytes) -> None:
        self._admission.check_outbound(data)
        self._thread.require_running("send")
        runtime = self._runtime
        if runtime is None or not self._thread.call_soon(runtime.send, addresses, bytes(data)):
            raise P2PError("cannot send: the p2p host has stopped")
        self._count_sent(data)

    def _count_sent(self, data: bytes) -> None:
        self._traffic["published_msgs"] += 1
        self._traffic["published_bytes"] += len(data)

    @property
    def accept_failures(self) -> dict[str, int]:
        """accept() calls of this process's p2p listeners that found no descriptor, by errno name."""
        return dict(accept_failures.failures)

    def traffic(self) -> dict[str, int]:
        """Messages and bytes this node sent and had delivered to it (payloads, both transports)."""
        return dict(self._traffic)

    def _deliver(self, sender_address: str, data: bytes, opened: T | None) -> None:
        """Trio thread: an accepted message, from either transport, crosses to asyncio."""
        self._traffic["received_msgs"] += 1
        self._traffic["received_bytes"] += len(data)
        self._thread.to_asyncio(self._dispatch, sender_address, data, opened)

    def _dispatch(self, sender_address: str, data: bytes, opened: T | None) -> None:
        """Runs on the asyncio loop thread."""
        callback = self._on_message
        if callback is None:
            return
        try:
            callback(sender_address, data, opened)
        except Exception:
            logger.exception("on_message handler failed for a message from %s", sender_address)
