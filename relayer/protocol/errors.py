"""Errors of the round protocol: every one names what was expected and what came."""

from __future__ import annotations

import logging


class ProtocolError(Exception):
    """Root of the round protocol's errors."""


class Dropped(ProtocolError):
    """A message the node will not act on; `reason` is the short label counted per peer."""

    log_level = logging.WARNING

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidMessage(Dropped):
    """A wire message failed validation (logged at WARNING)."""


class Ignored(Dropped):
    """A valid message this node has no use for (stale epoch, not for it, late, duplicate).

    Logged at DEBUG only: honest peers send these too.
    """

    log_level = logging.DEBUG


class ReportMismatch(ProtocolError):
    """The leader's proposal does not match what this node recomputes from the same observations."""


class EquivocationRefused(ProtocolError):
    """Signing this would conflict with something already signed for the same or a later round."""


class SignatureRejected(ProtocolError):
    """A report signature does not verify for the committee member it is attributed to."""


class SchemeMismatch(ProtocolError):
    """The committee's config digest names a signature scheme this node's signer does not speak."""
