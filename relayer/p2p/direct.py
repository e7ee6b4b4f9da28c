"""Direct messages to committee peers: framing, per-peer sender queues, the inbound handler.

One long-lived stream per peer and direction, frames of a 4-byte big-endian length
and the payload. A message crosses one hop once, where gossip delivers it up to D
times (direct plus mesh forwards), each costing Noise and Yamux CPU in Python: on a
small, fully connected committee direct sends are the cheap path.

Runs in the host's trio thread. Inbound frames pass the same message check as
gossip (``Admission.check``) and are delivered with the value it opened; the sender
is the connection's peer, which the committee gate judged when it connected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Generic, TypeVar

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from relayer.p2p.admission import OVERSIZED, Admission, Deliver
from relayer.p2p.errors import MessageRejected

logger = logging.getLogger(__name__)

T = TypeVar("T")

DIRECT_PROTOCOL = TProtocol("/quorum-relayer/direct/1.0.0")
DIRECT_QUEUE_SIZE = 1024
SEND_TIMEOUT_S = 5.0
_FRAME_HEADER = 4

# Drop reasons counted by this transport, besides the admission ones.
DIRECT_QUEUE_FULL = "direct_queue_full"
DIRECT_SEND_FAILED = "direct_send_failed"


class Direct(Generic[T]):
    """The direct-stream transport of one host (trio thread)."""

    def __init__(self, host: IHost, admission: Admission[T], *, deliver: Deliver[T]) -> None:
        self._host = host
        self._admission = admission
        self._deliver = deliver
        self._senders: dict[ID, trio.MemorySendChannel[bytes]] = {}
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """Serve inbound streams; run senders in ``nursery``, which must outlive the host's network."""
        self._nursery = nursery
        self._host.set_stream_handler(DIRECT_PROTOCOL, self._handler)

    def close(self) -> None:
        """Stop sending: every sender ends once its queue is closed."""
        self._nursery = None
        for channel in self._senders.values():
            channel.close()
        self._senders.clear()

    def send(self, peers: Iterable[ID], data: bytes) -> None:
        """Queue one frame for each peer's sender, starting senders as needed."""
        for peer_id in peers:
            channel = self._senders.get(peer_id)
            if channel is None:
                nursery = self._nursery
                if nursery is None:
                    return  # stopping
                channel, receive = trio.open_memory_channel[bytes](DIRECT_QUEUE_SIZE)
                self._senders[peer_id] = channel
                nursery.start_soon(self._sender, peer_id, receive)
            try:
                channel.send_nowait(data)
            except trio.WouldBlock:
                self._admission.drop(peer_id, DIRECT_QUEUE_FULL)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._senders.pop(peer_id, None)
                self._admission.drop(peer_id, DIRECT_SEND_FAILED)

    async def _sender(self, peer_id: ID, frames: trio.MemoryReceiveChannel[bytes]) -> None:
        """Owns our outbound stream to one peer; reopens it after a failure."""
        stream: INetStream | None = None
        try:
            async with frames:
                async for data in frames:
                    try:
                        if stream is None:
                            with trio.fail_after(SEND_TIMEOUT_S):
                                stream = await self._host.new_stream(peer_id, [DIRECT_PROTOCOL])
                        with trio.fail_after(SEND_TIMEOUT_S):
                            await stream.write(len(data).to_bytes(_FRAME_HEADER, "big") + data)
                    except Exception as exc:
                        self._admission.drop(peer_id, DIRECT_SEND_FAILED)
                        logger.debug("direct send to %s failed: %r", peer_id, exc)
                        if stream is not None:
                            await _quietly_reset(stream)
                        stream = None
        finally:
            # A later send finds this channel broken and starts a fresh sender.
            if stream is not None:
                await _quietly_reset(stream)

    async def _handler(self, stream: INetStream) -> None:
        """One peer's inbound direct stream."""
        admission = self._admission
        try:
            peer_id = stream.muxed_conn.peer_id
            # Normally judged already, when it connected; a stream may beat that event.
            address = admission.admit(peer_id, stream.muxed_conn)
            if address is None:
                await _quietly_reset(stream)
                return
            while True:
                header = await _read_exactly(stream, _FRAME_HEADER)
                size = int.from_bytes(header, "big")
                if size > admission.max_message_size:
                    # The frame cannot be skipped safely without reading it: end the stream.
                    admission.drop(peer_id, OVERSIZED)
                    await _quietly_reset(stream)
                    return
                data = await _read_exactly(stream, size)
                if not admission.is_admitted(peer_id):
                    # Left the committee since it connected; the gate counted that and closes it.
                    await _quietly_reset(stream)
                    return
                try:
                    opened = admission.check(peer_id, address, data)
                except MessageRejected:
                    continue
                self._deliver(address, data, opened)
        except Exception as exc:  # EOF, reset, closed connection: the peer reopens when it needs to
            logger.debug("direct stream ended: %r", exc)


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
