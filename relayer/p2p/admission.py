"""Who may talk to this host, and which messages it takes: one gate for both transports.

The committee gate maps an authenticated peer id to its Ethereum address and checks
it against the allowed set. A connection is judged once, when Noise has
authenticated it; direct streams then trust that decision, and a committee change
re-judges the connections held. Gossip is relayed, so each gossip message's author
is judged too (its forwarder already passed the gate).

The message check (size, then the application's opening callable) is the same for
gossip and direct streams; the opened value it returns travels on with the message,
so nothing is parsed or signature-recovered twice.

Every drop is counted in ``dropped`` per (address, or peer id when it has none;
reason). Threading: the trio thread writes the counters and the per-connection
decisions; the asyncio side only swaps the allowed set (an immutable frozenset) and
reads.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import trio
from eth_utils.address import to_checksum_address
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from relayer.p2p.errors import MessageRejected, MessageTooLarge, PeerRejected
from relayer.p2p.identity import address_of_peer_id

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Drop reasons counted in ``Admission.dropped`` by this package; an opening callable adds its own.
NOT_IN_COMMITTEE = "not_in_committee"
OVERSIZED = "oversized"
INVALID = "invalid"
INVALID_SENDER = "invalid_sender"

# Application check of one message, run in the trio thread by both transports:
# (sender address, bytes) -> the opened message, or MessageRejected with a reason.
MessageOpener = Callable[[str, bytes], T]
# Where both transports hand an accepted message: (sender address, bytes, opened value).
Deliver = Callable[[str, bytes, T | None], None]

# Refused peer ids remembered, so that a refused connection is counted once; bounds what strangers cost.
_REFUSED_MAX = 4096


@functools.lru_cache(maxsize=4096)
def _address_or_none(peer_id_bytes: bytes) -> str | None:
    """Committee address of a raw peer id, cached: gossip authors are looked up per message."""
    try:
        return address_of_peer_id(ID(peer_id_bytes))
    except PeerRejected:
        return None


def address_or_none(peer_id: ID) -> str | None:
    """The Ethereum address a peer id embeds, or None when it has no secp256k1 key."""
    return _address_or_none(peer_id.to_bytes())


def normalize_addresses(addresses: Iterable[str] | None) -> frozenset[str] | None:
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


class Admission(Generic[T]):
    """The committee gate, the message check, and the drop counters of one host.

    ``allowed`` None admits anyone with a secp256k1 identity (a host outside any
    committee). ``open_message`` None accepts any bytes within the size limit and
    opens them to None.
    """

    def __init__(
        self,
        own_address: str,
        *,
        allowed: Iterable[str] | None,
        max_message_size: int,
        open_message: MessageOpener[T] | None,
    ) -> None:
        if max_message_size <= 0:
            raise ValueError(f"max_message_size must be positive, got {max_message_size}")
        self.own_address = own_address
        self.max_message_size = max_message_size
        self.dropped: Counter[tuple[str, str]] = Counter()
        self._allowed = normalize_addresses(allowed)
        self._open_message = open_message
        # The gate's decision per connected peer (trio thread).
        self._admitted: dict[ID, str] = {}
        # Refused peers -> the connection refused (its id; None: not known yet).
        self._refused: dict[ID, int | None] = {}

    # ------------------------------------------------------------------ the committee

    def set_allowed(self, addresses: Iterable[str] | None) -> None:
        """Replace the committee (any thread); call ``rejudge`` in the trio thread next."""
        self._allowed = normalize_addresses(addresses)

    def allows(self, address: str) -> bool:
        allowed = self._allowed
        return allowed is None or address == self.own_address or address in allowed

    def member_address(self, peer_id: ID) -> str | None:
        """The gate's rule: the peer's address when it is a committee member, else None."""
        address = address_or_none(peer_id)
        return address if address is not None and self.allows(address) else None

    # ------------------------------------------------------------------ connections (trio thread)

    def admit(self, peer_id: ID, connection: object | None = None) -> str | None:
        """Judge a connected peer: its address if admitted, None if refused.

        Judged when its connection opens (``connection`` given), or when its first
        stream or message beats that event; an admitted peer is not judged again
        until the committee changes. A refusal is counted once per connection:
        streams and messages on a refused connection, even read before it closed,
        are refused without counting again. ``connection`` None (a gossip forwarder)
        means whichever connection the peer has.
        """
        address = self._admitted.get(peer_id)
        if address is not None:
            return address
        address = self.member_address(peer_id)
        if address is not None:
            self._refused.pop(peer_id, None)
            self._admitted[peer_id] = address
            return address
        if peer_id in self._refused:
            refused_on = self._refused[peer_id]
            if refused_on is None or connection is None or refused_on == id(connection):
                if refused_on is None and connection is not None:
                    self._refused[peer_id] = id(connection)
                return None
        self._refuse(peer_id, connection)
        return None

    def is_admitted(self, peer_id: ID) -> bool:
        """Whether the gate admitted this peer (any thread: a dict lookup, no re-check)."""
        return peer_id in self._admitted

    def admitted_address(self, peer_id: ID) -> str | None:
        return self._admitted.get(peer_id)

    def release(self, peer_id: ID) -> None:
        """The peer's last connection closed: its next one is judged afresh.

        A refusal stays remembered: messages read before the close may still arrive.
        """
        self._admitted.pop(peer_id, None)

    def rejudge(self) -> list[ID]:
        """After a committee change: the admitted peers now refused (counted), to disconnect."""
        removed = [peer for peer in list(self._admitted) if self.member_address(peer) is None]
        for peer in removed:
            del self._admitted[peer]
            self._refuse(peer, None)
        return removed

    def _refuse(self, peer_id: ID, connection: object | None) -> None:
        self.drop(peer_id, NOT_IN_COMMITTEE)
        self._refused.pop(peer_id, None)
        # Most recent last, so the oldest go first. An id, not the object: closed
        # connections must not be kept alive by this memory.
        self._refused[peer_id] = None if connection is None else id(connection)
        while len(self._refused) > _REFUSED_MAX:
            del self._refused[next(iter(self._refused))]

    def author_address(self, author: ID) -> str | None:
        """The gate applied to a gossip message's author; a refusal is counted against it."""
        address = address_or_none(author)
        if address is None:
            self.drop(author, INVALID_SENDER)
            return None
        if not self.allows(address):
            self.drop(author, NOT_IN_COMMITTEE)
            return None
        return address

    # ------------------------------------------------------------------ messages

    def check_outbound(self, data: bytes) -> None:
        """Our own message: raise MessageTooLarge above the limit every receiver enforces."""
        if len(data) > self.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes exceeds the {self.max_message_size}-byte "
                "limit; split it or raise max_message_size on every node"
            )

    def check(self, peer_id: ID, address: str, data: bytes) -> T | None:
        """Size and shape of one inbound message from ``address`` (trio thread).

        Returns the opened value; on a refusal counts it against ``peer_id`` and
        raises MessageRejected.
        """
        try:
            if len(data) > self.max_message_size:
                raise MessageRejected(OVERSIZED, f"{len(data)} bytes, limit {self.max_message_size}")
            opener = self._open_message
            return None if opener is None else opener(address, data)
        except MessageRejected as exc:
            self.drop(peer_id, exc.reason)
            logger.debug("dropped a message from %s: %s", address, exc)
            raise
        except Exception as exc:
            # A bug in the opening callable costs one message, never the transport.
            logger.exception("message check failed on a message from %s", address)
            self.drop(peer_id, INVALID)
            raise MessageRejected(INVALID, f"{type(exc).__name__}: {exc}") from exc

    def drop(self, peer_id: ID, reason: str) -> None:
        """Count a drop (trio thread only), keyed by address when the id has one."""
        address = address_or_none(peer_id)
        self.dropped[(address or peer_id.to_base58(), reason)] += 1


class QuietNotifee(INotifee):
    """A swarm notifee that ignores streams and listeners; gates override the connection events."""

    async def connected(self, network: INetwork, conn: INetConn) -> None:
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


class GateNotifee(QuietNotifee, Generic[T]):
    """Hands every new connection to the committee gate; ``on_refused`` closes it.

    py-libp2p's connection gate filters by IP only; peer ids are known once the
    Noise handshake is done, which is when ``connected`` fires.
    """

    def __init__(self, admission: Admission[T], on_refused: Callable[[ID], None]) -> None:
        self._admission = admission
        self._on_refused = on_refused

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        try:
            peer_id = conn.muxed_conn.peer_id
            if self._admission.admit(peer_id, conn.muxed_conn) is None:
                self._on_refused(peer_id)
        except Exception:
            logger.exception("committee gate failed on a new connection")
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        try:
            peer_id = conn.muxed_conn.peer_id
            if not network.connections.get(peer_id):
                self._admission.release(peer_id)
        except Exception:
            logger.debug("committee gate failed on a closed connection", exc_info=True)
        await trio.lowlevel.checkpoint()
