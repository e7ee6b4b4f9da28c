"""The exception tree of ``relayer.client``: everything raised here is a ``ClientError``.

A refusal of a report is a :class:`ReportRejected` whose ``reason`` is the name of the error
``QuorumOracle.verifyReport`` reverts with for the same report at the same block, so the SDK's
verdict and the contract's can be compared by name; the subclass says the cause in the
subscriber's terms (tampered, replaced committee, below threshold, wrong chain, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ClientError(Exception):
    """Root of every error raised by the subscriber SDK."""


class MalformedReport(ClientError):
    """A node answered something that is not a report in the API's form."""


@dataclass(frozen=True, slots=True)
class NodeFailure:
    """Why one node URL gave no usable answer."""

    url: str
    error: str
    not_found: bool = False  # the node answered, and does not keep what was asked


class NodesUnavailable(ClientError):
    """No node URL gave a usable answer; ``failures`` lists each URL and what went wrong."""

    def __init__(self, what: str, failures: Sequence[NodeFailure]) -> None:
        self.failures = tuple(failures)
        listed = "; ".join(f"{f.url}: {f.error}" for f in self.failures) or "no node URL was given"
        super().__init__(f"{what}: every node failed ({listed}); check the URLs, or add another node")


class ReportNotFound(NodesUnavailable):
    """No node served the report, and at least one answered that it does not keep it (older
    than its retention, or never attested there); ``failures`` says what each URL did."""


class ChainUnavailable(ClientError):
    """The chain could not be read (RPC down, wrong oracle address); nothing was judged."""


class UnsupportedScheme(ClientError):
    """The oracle's committee signs with a scheme this SDK cannot check."""


class ReportRejected(ClientError):
    """The report is refused. ``reason`` is the contract's error name for it (``verifyReport``
    reverts with the same), ``error_args`` its arguments as far as the SDK knows them."""

    def __init__(self, message: str, *, reason: str, error_args: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.error_args = error_args


class OraclePaused(ReportRejected):
    """The oracle is paused: it verifies and stores nothing (``Paused``)."""


class ReplacedCommittee(ReportRejected):
    """Signed under another config digest than the oracle's: a replaced committee, or another
    oracle's (``ConfigDigestMismatch``)."""


class UnknownSigner(ReportRejected):
    """A signer index outside the committee (``UnknownSigner``)."""


class BelowThreshold(ReportRejected):
    """Fewer signatures than the committee's threshold (``InsufficientSignatures``)."""


class MalformedSignatures(ReportRejected):
    """The signatures are not in the form the committee's scheme takes: a signer bitmask or
    per-member signatures under scheme 0x0002 (``MalformedSchnorrSignature``), a Schnorr
    signature under scheme 0x0001 (``SignatureCountMismatch``)."""


class TamperedReport(ReportRejected):
    """The signatures do not hold: a member's does not recover to the member at its index
    (``SignerMismatch``, scheme 0x0001), or the one Schnorr signature does not verify under
    the group key (``InvalidSchnorrSignature``, scheme 0x0002). The report was changed after
    signing, or not signed by this committee."""


class WrongChain(TamperedReport):
    """The committee signed this report, for another chain id or oracle contract than the one
    asked (the contract says ``SignerMismatch``, or ``InvalidSchnorrSignature`` under scheme
    0x0002: the domain is inside the signed digest)."""


class FeedRejected(ReportRejected):
    """One feed of the report fails the per-feed checks (``InvalidUpdates``, ``UnknownFeed``,
    ``ValueOutOfBounds``, ``ObservationInFuture``, ``ObservationExpired``); ``feed_index`` names it."""

    def __init__(self, message: str, *, reason: str, feed_index: int | None,
                 error_args: tuple[object, ...] = ()) -> None:
        super().__init__(message, reason=reason, error_args=error_args)
        self.feed_index = feed_index


class ActionRefused(ClientError):
    """The report was good, and the vault refused the action brought with it; ``reason`` is
    the vault's error (``InsufficientMargin``, ``CoolingDown``, ``ActionLimitReached``,
    ``ActionNotAllowed``, RiskGate's and the token's under their own names), ``error_args``
    its arguments. Nothing was sent."""

    def __init__(self, message: str, *, reason: str | None, error_args: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.error_args = error_args


_BY_REASON: dict[str, type[ReportRejected]] = {
    "Paused": OraclePaused,
    "ConfigDigestMismatch": ReplacedCommittee,
    "UnknownSigner": UnknownSigner,
    "InsufficientSignatures": BelowThreshold,
    "SignerMismatch": TamperedReport,
    "InvalidSchnorrSignature": TamperedReport,
    "SignatureCountMismatch": MalformedSignatures,
    "MalformedSchnorrSignature": MalformedSignatures,
}
FEED_REASONS = ("InvalidUpdates", "UnknownFeed", "ValueOutOfBounds", "ObservationInFuture", "ObservationExpired")


def rejection(reason: str, message: str, error_args: tuple[object, ...] = ()) -> ReportRejected:
    """The typed refusal for a contract error name (e.g. from a ``submit`` that reverted)."""
    if reason in FEED_REASONS:
        index = error_args[0] if error_args and isinstance(error_args[0], int) else None
        return FeedRejected(message, reason=reason, feed_index=index, error_args=error_args)
    return _BY_REASON.get(reason, ReportRejected)(message, reason=reason, error_args=error_args)
