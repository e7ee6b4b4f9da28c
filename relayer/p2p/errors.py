"""The p2p package's exception tree: everything it raises derives from P2PError."""

from __future__ import annotations


class P2PError(Exception):
    """Root of every error raised by relayer.p2p."""


class P2PStartError(P2PError):
    """The libp2p host could not be brought up (bad key, port in use, timeout)."""


class PeerRejected(P2PError):
    """A peer is not acceptable: not in the committee, or its id carries no secp256k1 key."""


class MessageTooLarge(P2PError):
    """A message exceeds the configured gossip size limit."""


class MessageRejected(P2PError):
    """A message failed the size or shape check; ``reason`` is the short label counted per peer.

    Raised by the message-opening callable a host is given, when the bytes are not a
    message the application accepts; the host drops the message and counts the reason.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
