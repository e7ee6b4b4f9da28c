"""The feeds package's exception tree.

Everything raised on purpose by ``feeds`` derives from :class:`FeedsError`.
Venue problems derive from :class:`SourceError`, which carries the source name
and instrument so the poller and the node can log and count per source without
parsing messages. Every message says what was expected, what came, and what to do;
:class:`Origin` writes the format error every venue raises alike.
"""

from __future__ import annotations

from dataclasses import dataclass


class FeedsError(Exception):
    """Root of every error the feeds package raises on purpose."""


class SourceError(FeedsError):
    """A source could not produce a trustworthy reading for one instrument."""

    def __init__(self, message: str, *, source: str, instrument: str = "") -> None:
        super().__init__(message)
        self.source = source
        self.instrument = instrument

    @property
    def message(self) -> str:
        return str(self)


class SourceTimeout(SourceError):
    """The venue did not answer within the source's timeout."""


class SourceHTTPError(SourceError):
    """The venue answered with a non-success status, or reported an error itself."""

    def __init__(
        self, message: str, *, source: str, instrument: str = "", status: int | None
    ) -> None:
        super().__init__(message, source=source, instrument=instrument)
        self.status = status


class SourceRateLimited(SourceHTTPError):
    """HTTP 429 (or Binance's 418): the venue asks us to slow down.

    ``retry_after`` is the venue's Retry-After in seconds when it sent one; the poller
    does not ask that venue again before then.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        instrument: str = "",
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, source=source, instrument=instrument, status=status)
        self.retry_after = retry_after


class SourceUnavailable(SourceHTTPError):
    """The venue says it is down, busy or in maintenance: an HTTP 5xx, or the same said in the body.

    Kraken (``EService:Unavailable``), OKX (``50001``) and Bybit (``10016``) say it inside
    an HTTP 200; ``status`` is then 200. Either way the poller retries it like a 5xx.
    """


class SourceUnknownInstrument(SourceHTTPError):
    """The venue says it has no such instrument (Binance ``-1121``, OKX ``51001``, Kraken ``EQuery:Unknown asset pair``).

    The source's symbol mapping is wrong or the market was delisted; unlike
    :class:`UnknownInstrumentError` (no mapping at all, caught at start) this comes from the venue.
    """


class SourceConnectionError(SourceHTTPError):
    """No HTTP exchange happened at all (refused, reset, DNS); ``status`` is None.

    A subclass of SourceHTTPError so code written against the HTTP error still
    catches it, while metrics can tell "venue down" from "venue said no".
    """

    def __init__(self, message: str, *, source: str, instrument: str = "") -> None:
        super().__init__(message, source=source, instrument=instrument, status=None)


class SourceFormatError(SourceError):
    """The body is not the documented shape: HTML, truncated JSON, missing field."""


class SourceInstrumentMismatch(SourceFormatError):
    """The body is for another instrument or market type (spot, linear, inverse) than the one asked for.

    A misrouted or cached answer for another market is worse than none: it would be a
    wrong value. ``expected`` and ``got`` say what was asked for and what the body names.
    """

    def __init__(self, message: str, *, source: str, instrument: str = "", expected: str, got: str) -> None:
        super().__init__(message, source=source, instrument=instrument)
        self.expected = expected
        self.got = got


class SourceBodyTooLarge(SourceFormatError):
    """The body of one endpoint grew past that endpoint's cap; the read stopped there."""

    def __init__(self, message: str, *, source: str, instrument: str = "", endpoint: str, cap: int) -> None:
        super().__init__(message, source=source, instrument=instrument)
        self.endpoint = endpoint
        self.cap = cap


class SourceValueError(SourceError):
    """The body has the right shape but the price is unusable: NaN, inf, <= 0, absurd."""


class SourceStaleError(SourceError):
    """The venue's own timestamp is too old (or implausibly in the future)."""


class SourceFrozenError(SourceStaleError):
    """The venue's value has not changed for longer than is plausible, though its clock moves."""


class UnsupportedFactorError(SourceError):
    """The source does not serve that risk factor (the catalog names it for a feed of that kind)."""


class FeedWithheld(FeedsError):
    """A feed cannot be served honestly this round; the message says why.

    ``reason`` is a short machine-readable tag (``too_few_sources``, ``out_of_bounds``...).
    """

    def __init__(self, message: str, *, feed_id: str, reason: str) -> None:
        super().__init__(message)
        self.feed_id = feed_id
        self.reason = reason


class CatalogError(FeedsError, ValueError):
    """The feed catalog is invalid; the message names the file and line."""


class UnknownSourceError(SourceError):
    """No source is registered under that name."""


class UnknownInstrumentError(SourceError):
    """The source has no symbol mapping for that instrument."""


class SourcePluginError(SourceError):
    """A ``relayer.sources`` entry point is broken (import fails, wrong type, wrong name)."""


class FeedsConfigError(FeedsError, ValueError):
    """A feeds object was built with settings it cannot work with (caught at start, not per poll)."""


class SimulatorConfigError(FeedsConfigError):
    """The venue simulator was asked for a venue, fault or instrument it does not have."""


class RecordingError(FeedsError):
    """A recording directory (feeds.replay) is missing, malformed or would be overwritten."""


class ReplayMiss(SourceError):
    """The source asked a replay for something the recording does not hold."""


@dataclass(frozen=True, slots=True)
class Origin:
    """The source and instrument a reading is for: what every source error names first."""

    source: str
    instrument: str

    def format_error(self, expected: str, got: str) -> SourceFormatError:
        """The body is not what the venue documents: say what was expected and what came."""
        return SourceFormatError(
            f"{self.source} {self.instrument}: expected {expected}, got {got}; the venue may be "
            f"down or the URL wrong — check sources.{self.source}.url",
            source=self.source,
            instrument=self.instrument,
        )

    def mismatch(self, expected: str, got: str) -> SourceInstrumentMismatch:
        """The body names another instrument or market type than the one asked for."""
        return SourceInstrumentMismatch(
            f"{self.source} {self.instrument}: expected a body for {expected}, got {got}; the "
            f"venue answered for another market (misrouted or cached) — check sources.{self.source}.url "
            f"and the source's symbols",
            source=self.source,
            instrument=self.instrument,
            expected=expected,
            got=got,
        )
