"""The exception tree of ``relayer.chain``: everything raised here is a ``ChainError``."""

from __future__ import annotations


class ChainError(Exception):
    """Root of every error raised by the chain package."""


class CodecError(ChainError):
    """A report, update word or signature does not have the expected encoding."""


class RpcError(ChainError):
    """The JSON-RPC endpoint failed, timed out or answered something unusable."""


class ContractRevert(ChainError):
    """A contract call reverted; ``reason`` is the custom error name when the ABI knows it.

    ``args`` of the custom error are decoded too (``error_args``), and ``data`` keeps the raw
    revert data so an unknown selector can still be looked up by hand.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str | None,
        error_args: tuple[object, ...] = (),
        data: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.error_args = error_args
        self.data = data


class TransmitError(ContractRevert):
    """``transmit`` reverted (in the static call, or on-chain); ``reason`` e.g. ``"StaleRound"``."""


class VaultRevert(ContractRevert):
    """A ``MarginVault`` action reverted; ``reason`` names the refusal, e.g. ``"FeedStale"``,
    ``"CoolingDown"``, ``"ActionLimitReached"`` (RiskGate's and the token's errors pass through)."""


class ReportRefused(ContractRevert):
    """``verifyReport`` or ``submit`` refused a report; ``reason`` is the contract's error,
    e.g. ``"ConfigDigestMismatch"`` (another or a replaced committee) or ``"SignerMismatch"``."""
