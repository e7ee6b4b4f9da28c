"""Everything a node sends: sealed in its own envelope, to everyone, to the leader or to one peer.

The network below is a `Wire` (publish to every peer, send to one); a node's own messages
also come back to itself through the loopback, since gossip and direct streams do not
deliver to the sender. Envelopes sealed here are remembered until they loop back, so the
engine does not parse and recover a signature it has just made.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel

from relayer.protocol.committee import Committee
from relayer.protocol.messages import Envelope, Epoch, Kind, RoundId, seal

# Own envelopes waiting for their loopback; a faulty wire may swallow some, hence a bound.
_OWN_SEALED_MAX = 64


class Wire(Protocol):
    """The transport as the protocol sees it (the p2p host)."""

    def publish(self, data: bytes) -> None:
        """To every committee peer (not to ourselves)."""

    def send(self, address: str, data: bytes) -> None:
        """To one committee peer, by signer address."""


class CallbackWire:
    """A `Wire` from two callables; without a point-to-point path, `send` publishes."""

    def __init__(self, publish: Callable[[bytes], None], send_to: Callable[[str, bytes], None] | None = None) -> None:
        self._publish = publish
        self._send_to = send_to

    def publish(self, data: bytes) -> None:
        self._publish(data)

    def send(self, address: str, data: bytes) -> None:
        if self._send_to is None:
            self._publish(data)
        else:
            self._send_to(address, data)


class Outbox(ABC):
    """What the protocol phases call to send; faults in `relayer.testing` wrap this."""

    committee: Committee

    @abstractmethod
    def seal(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel) -> bytes:
        """This node's signed envelope, encoded."""

    @abstractmethod
    def send_all(self, data: bytes, *, to_self: bool = True) -> None:
        """A sealed envelope to every peer and (unless told otherwise) to ourselves."""

    @abstractmethod
    def send_to(self, index: int, data: bytes) -> None:
        """A sealed envelope to one committee member (ourselves through the loopback)."""

    def broadcast(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel, *, to_self: bool = True) -> None:
        self.send_all(self.seal(kind, epoch, round, body), to_self=to_self)

    def to_leader(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel) -> None:
        """Messages only the leader needs (observations, co-signatures): n messages a round
        instead of n squared, and no follower spends CPU on the others'."""
        self.send_to_leader(epoch, self.seal(kind, epoch, round, body))

    def send_to_leader(self, epoch: Epoch, data: bytes) -> None:
        self.send_to(self.committee.leader(epoch), data)


class SealingOutbox(Outbox):
    def __init__(self, *, private_key: bytes, address: str, index: int, committee: Committee, wire: Wire,
                 deliver: Callable[[str, bytes], None]) -> None:
        self._key = private_key
        self.address = address
        self.index = index
        self.committee = committee
        self.wire = wire
        self._deliver = deliver
        self._own_sealed: dict[bytes, Envelope] = {}

    def seal(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel) -> bytes:
        env = seal(private_key=self._key, sender=self.address, kind=kind,
                   config_digest=self.committee.config_digest, epoch=epoch, round=round, body=body)
        data = env.encode()
        if len(self._own_sealed) >= _OWN_SEALED_MAX:
            self._own_sealed.clear()
        self._own_sealed[data] = env
        return data

    def take_own(self, data: bytes) -> Envelope | None:
        """The envelope behind bytes we sealed ourselves, once, as they loop back."""
        return self._own_sealed.pop(data, None)

    def send_all(self, data: bytes, *, to_self: bool = True) -> None:
        self.wire.publish(data)
        if to_self:
            self._loopback(data)
        else:
            self._own_sealed.pop(data, None)

    def send_to(self, index: int, data: bytes) -> None:
        if index == self.index:
            self._loopback(data)
        else:
            self.wire.send(self.committee.signers[index], data)

    def _loopback(self, data: bytes) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, self.address, data)
