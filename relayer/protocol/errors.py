"""Errors of the round protocol: every one names what was expected and what came."""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of the round protocol's errors."""


class InvalidMessage(ProtocolError):
    """A wire message failed validation; `reason` is the short label counted per peer."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ReportMismatch(ProtocolError):
    """The leader's proposal does not match what this node recomputes from the same observations."""


class EquivocationRefused(ProtocolError):
    """Signing this would conflict with something already signed for the same or a later round."""
