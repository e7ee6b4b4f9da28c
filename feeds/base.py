"""The source contract: what a venue adapter must do and what it hands back.

A venue adapter (one file under ``feeds/sources/``) only says where to GET and
where the value and timestamp sit in the venue's JSON. :class:`Source` does the
rest the same way for every venue: the GETs through :mod:`feeds.http` (timeout,
body cap, status handling, JSON without floats), the body through the walker of
:mod:`feeds.body`, and then the value checks of this module (sign and sane range
per kind, freshness against the venue's own clock). A source raises a typed
:mod:`feeds.errors` error; it never returns a placeholder.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import ClassVar

import aiohttp
from pydantic import BaseModel, Field, model_validator

from feeds import http
from feeds.body import Body
from feeds.errors import (
    FeedsConfigError,
    Origin,
    SourceFormatError,
    SourceStaleError,
    SourceValueError,
    UnknownInstrumentError,
    UnsupportedFactorError,
)
from feeds.http import RawResponse, VenueSays
from feeds.kinds import KINDS, FactorKind

__all__ = ["Body", "SourceReading", "Source", "StreamUpdate", "VenueQuote", "RawResponse", "FactorKind"]

class SourceReading(BaseModel, frozen=True, extra="forbid"):
    """One validated value of one risk factor from one venue for one instrument.

    The field is called ``price`` for compatibility (spot was the first kind); for
    other kinds it holds that kind's value in the unit :mod:`feeds.kinds` states, and
    ``value`` is the same number under a neutral name.
    """

    source: str
    instrument: str
    # Decimal, never float: this value is scaled to an integer and signed later.
    # strict: in Python a float (or str) is refused rather than silently converted;
    # from JSON a decimal string or number is parsed exactly.
    price: Decimal = Field(allow_inf_nan=False, strict=True)
    # The venue's own timestamp when it gives one, else fetch time (unix seconds).
    observed_at: float
    fetched_at: float
    latency_ms: float
    kind: FactorKind = FactorKind.SPOT

    @model_validator(mode="after")
    def _sign_fits_the_kind(self) -> "SourceReading":
        sign = KINDS[self.kind].sign
        if (sign == "positive" and self.price <= 0) or (sign == "non_negative" and self.price < 0):
            raise ValueError(f"a {self.kind} value must be {sign.replace('_', '-')}, got {self.price}")
        return self

    @property
    def value(self) -> Decimal:
        return self.price


@dataclass(frozen=True, slots=True)
class VenueQuote:
    """What a venue adapter extracts from a body, before the shared checks."""

    price: Decimal  # the factor's value (named price for compatibility)
    observed_at: float | None = None


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """What a streaming adapter extracts from one venue message, before the shared checks.

    ``sequence`` is the venue's message counter for that instrument when it has one: an
    update older than one already taken is dropped (venues may deliver out of order).
    """

    kind: FactorKind
    instrument: str
    quote: VenueQuote
    sequence: int | None = None


class Source(abc.ABC):
    """A venue adapter. Subclasses set the class variables and implement two methods."""

    name: ClassVar[str]
    default_url: ClassVar[str]
    # instrument ("BTC-USD") -> the venue's symbol as used in the request.
    symbols: ClassVar[Mapping[str, str]]
    # A venue timestamp older than this means the venue's feed stopped updating.
    max_staleness: ClassVar[float] = 60.0
    # Per kind, where the venue's own timing needs another limit than max_staleness
    # (a value published once a minute, stamped at the minute's close).
    staleness: ClassVar[Mapping[FactorKind, float]] = {}
    # Venue clocks run a little ahead of ours; more than this is a clock fault.
    max_clock_skew: ClassVar[float] = 5.0
    # Sanity bounds: outside them the value is absurd for any listed asset.
    min_price: ClassVar[Decimal] = Decimal("1e-12")
    max_price: ClassVar[Decimal] = Decimal("1e12")
    # A ticker body is a few hundred bytes; a huge body is an attack or a wrong URL.
    # The cap of every endpoint not named in body_caps.
    max_body_bytes: ClassVar[int] = 64 * 1024
    # Per kind (one endpoint each), a cap sized for the venue's largest documented
    # answer; the body is read as a stream and refused at its cap.
    body_caps: ClassVar[Mapping[FactorKind, int]] = {}

    # ---- streaming (optional): a venue that pushes updates over a WebSocket ------------
    # The kinds this source can stream; the node then updates its cache on each venue
    # message instead of polling them (feeds.stream). Empty: poll only.
    streams: ClassVar[frozenset[FactorKind]] = frozenset()
    # The venue's WebSocket endpoint, used when the REST base URL is the default one.
    default_stream_url: ClassVar[str | None] = None
    # No message for this long (seconds) and the stream is stale: the source is marked
    # unhealthy, the connection is dropped and made again.
    stream_silence: ClassVar[float] = 10.0
    # Reconnection pause after the n-th failure in a row: base * 2**(n-1), at most cap,
    # times a jitter in [0.5, 1].
    stream_backoff: ClassVar[tuple[float, float]] = (0.5, 30.0)
    # A venue message is a ticker of a few hundred bytes.
    max_stream_message_bytes: ClassVar[int] = 64 * 1024

    def __init__(self, base_url: str | None = None, timeout: float = 2.0, stream_url: str | None = None) -> None:
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise FeedsConfigError(
                f"{self.name}: expected a positive finite timeout in seconds, got {timeout!r}; "
                f"set sources.{self.name}.timeout to e.g. 2.0"
            )
        url = (base_url or self.default_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise FeedsConfigError(
                f"{self.name}: expected an http(s) base URL, got {url!r}; "
                f"set sources.{self.name}.url to e.g. {self.default_url}"
            )
        self.base_url = url
        self.timeout = float(timeout)
        # Another REST host (a proxy, the simulator) never pairs with the venue's own stream.
        stream = stream_url if stream_url is not None else (self.default_stream_url if base_url is None else None)
        if stream and not stream.startswith(("ws://", "wss://", "http://", "https://")):
            raise FeedsConfigError(
                f"{self.name}: expected a ws(s) stream URL, got {stream!r}; set sources.{self.name}.stream_url "
                f"to e.g. {self.default_stream_url or 'wss://...'}"
            )
        self.stream_url: str | None = stream or None
        # Wall clock of this source: the time its requests name (candle windows) and
        # its readings are fetched at. Recording and replay pin it (feeds.replay).
        self.clock: Callable[[], float] = time.time

    def now(self) -> float:
        """This source's wall clock, in unix seconds."""
        return self.clock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, timeout={self.timeout})"

    # ---- what a venue adapter implements -------------------------------------------

    # The risk factors this source serves. A venue that does not offer a factor simply
    # does not list it, and is never asked for it.
    factors: ClassVar[frozenset[FactorKind]] = frozenset({FactorKind.SPOT})
    # Sanity bounds per non-spot kind (spot uses min_price/max_price): beyond them a
    # value is absurd for any listed market, whatever the venue says.
    value_bounds: ClassVar[Mapping[FactorKind, tuple[Decimal, Decimal]]] = {
        FactorKind.REALIZED_VOL: (Decimal("1e-6"), Decimal(20)),
        # An implied-vol index is quoted in percent (DVOL 55.3 = 55.3 %); read as a
        # fraction by mistake it would be 5530 %. 5 (500 %) is above any implied vol a
        # listed crypto market has printed, and below any percent quote that is
        # plausible (a DVOL under 5 % has never printed), so the mistake cannot pass.
        # 0.01 (1 %) likewise refuses a fraction divided by 100 once too often.
        FactorKind.IMPLIED_VOL: (Decimal("0.01"), Decimal(5)),
        FactorKind.FUNDING_RATE: (Decimal("-0.5"), Decimal("0.5")),
        FactorKind.OPEN_INTEREST: (Decimal(1), Decimal("1e13")),
        FactorKind.DEPTH: (Decimal(1), Decimal("1e13")),
    }

    def symbol(self, instrument: str) -> str:
        """The venue's symbol for an instrument, e.g. "BTC-USD" -> "BTCUSDT"."""
        try:
            return self.symbols[instrument]
        except KeyError:
            known = ", ".join(sorted(self.symbols))
            raise UnknownInstrumentError(
                f"{self.name} {instrument}: expected one of the instruments this source "
                f"maps ({known}), got {instrument!r}; add it to {type(self).__name__}.symbols "
                f"or remove it from this source's feeds",
                source=self.name,
                instrument=instrument,
            ) from None

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        """Path (appended to base_url) and query parameters of the spot ticker GET."""
        raise self.unsupported(FactorKind.SPOT, instrument)

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        """Find price and timestamp in a decoded 200 spot body (walk it with :meth:`body`)."""
        raise self.unsupported(FactorKind.SPOT, instrument)

    def plan(self, kind: FactorKind, instrument: str) -> Sequence[tuple[str, Mapping[str, str]]]:
        """The GETs (path, query) one reading of ``kind`` needs, in order; usually one.

        The default serves spot through ``request``; a source with more factors
        overrides this and :meth:`extract_factor`.
        """
        if kind == FactorKind.SPOT and FactorKind.SPOT in self.factors:
            return [self.request(instrument)]
        raise self.unsupported(kind, instrument)

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        """The value of ``kind`` from the decoded 200 bodies of :meth:`plan`'s GETs."""
        if kind == FactorKind.SPOT and FactorKind.SPOT in self.factors:
            return self.extract(payloads[0], instrument)
        raise self.unsupported(kind, instrument)

    def venue_error(self, payload: object) -> str | None:
        """The venue's own error text in a decoded non-200 body, if it has one."""
        return None

    def stream_subscribe(self, instruments: Sequence[str]) -> Sequence[object]:
        """The JSON messages that subscribe a fresh connection to ``instruments`` (streaming sources)."""
        raise self.unsupported("stream", ", ".join(instruments))

    def stream_message(self, payload: object, instruments: Sequence[str]) -> StreamUpdate | None:
        """One decoded venue message: an update for one of ``instruments``, or None (an ack, a heartbeat).

        Raise :class:`~feeds.errors.SourceInstrumentMismatch` for a message about an
        instrument that was not subscribed, and a typed error for the venue's own error
        messages; the stream counts them against the source's health.
        """
        raise self.unsupported("stream", ", ".join(instruments))

    def venue_says(self, payload: object) -> VenueSays | None:
        """The venue's own error code in a decoded body, and what it means; None when there is none.

        Asked of non-200 bodies and of every 200 body: a venue that reports errors
        inside an HTTP 200 (Kraken's ``error`` list, OKX's ``code``, Bybit's
        ``retCode``) maps its documented codes here to rate limited, unavailable or
        unknown instrument, and gets the same typed error an HTTP status would give.
        """
        return None

    def body_cap(self, kind: FactorKind) -> int:
        """The body cap of the endpoint(s) serving ``kind``, in bytes."""
        return self.body_caps.get(kind, self.max_body_bytes)

    def unsupported(self, kind: str, instrument: str) -> UnsupportedFactorError:
        served = ", ".join(sorted(self.factors)) or "none"
        return UnsupportedFactorError(
            f"{self.name} {instrument}: expected a factor this source serves ({served}), got "
            f"{kind!r}; remove {self.name} from that feed's sources",
            source=self.name,
            instrument=instrument,
        )

    # ---- fetch ---------------------------------------------------------------------

    async def fetch_spot(self, session: aiohttp.ClientSession, instrument: str) -> SourceReading:
        """One spot reading; raises SourceError subclasses."""
        return await self.fetch(session, FactorKind.SPOT, instrument)

    async def fetch(
        self, session: aiohttp.ClientSession, kind: FactorKind | str, instrument: str
    ) -> SourceReading:
        """The GETs of :meth:`plan`, each with a timeout, then the shared validation."""
        kind = FactorKind(kind)
        self.symbol(instrument)
        # The clock is read once: the request's time windows and the fetch time agree.
        requested_at = self.now()
        started = time.monotonic()
        steps = self.plan(kind, instrument)
        origin = self.origin(instrument)
        responses = [
            await http.get(session, self.base_url + path, params, origin=origin, timeout=self.timeout,
                           max_body_bytes=self.body_cap(kind), endpoint=path)
            for path, params in steps
        ]
        elapsed = time.monotonic() - started
        return self.parse_responses(
            responses, kind=kind, instrument=instrument, fetched_at=requested_at + elapsed, latency_ms=elapsed * 1000.0
        )

    # ---- parse (no I/O: unit-testable on recorded bodies) --------------------------

    def parse_response(
        self,
        body: bytes,
        *,
        instrument: str,
        fetched_at: float,
        status: int = 200,
        content_type: str = "application/json",
        latency_ms: float = 0.0,
        retry_after: str | None = None,
        kind: FactorKind | str = FactorKind.SPOT,
    ) -> SourceReading:
        """Turn one HTTP response into a validated reading or a typed error."""
        return self.parse_responses(
            [RawResponse(body, status, content_type, retry_after)],
            kind=kind,
            instrument=instrument,
            fetched_at=fetched_at,
            latency_ms=latency_ms,
        )

    def parse_responses(
        self,
        responses: Sequence[RawResponse],
        *,
        kind: FactorKind | str,
        instrument: str,
        fetched_at: float,
        latency_ms: float = 0.0,
    ) -> SourceReading:
        """Turn the responses to :meth:`plan`'s GETs into a validated reading or a typed error."""
        kind = FactorKind(kind)
        self.symbol(instrument)
        if kind not in self.factors:
            raise self.unsupported(kind, instrument)
        origin = self.origin(instrument)
        payloads = [http.json_body(raw, origin, self.venue_error, self.venue_says) for raw in responses]
        for payload in payloads:
            says = self.venue_says(payload)
            if says is not None:
                raise http.refused_in_body(says, origin)
        quote = self.extract_factor(kind, payloads, instrument, fetched_at)
        return self.reading(kind, instrument, quote, fetched_at=fetched_at, latency_ms=latency_ms)

    def reading(
        self, kind: FactorKind, instrument: str, quote: VenueQuote, *, fetched_at: float, latency_ms: float = 0.0
    ) -> SourceReading:
        """The shared value and time checks on an extracted quote, and the reading they allow."""
        symbol = self.symbol(instrument)
        if kind == FactorKind.SPOT:
            value = self._checked_price(quote.price, instrument, symbol)
        else:
            value = self._checked_value(kind, quote.price, instrument, symbol)
        observed_at = self._checked_time(
            quote.observed_at, fetched_at, instrument, symbol, self.staleness.get(kind, self.max_staleness)
        )
        return SourceReading(
            source=self.name,
            instrument=instrument,
            price=value,
            observed_at=observed_at,
            fetched_at=fetched_at,
            latency_ms=latency_ms,
            kind=kind,
        )

    # ---- helpers for venue adapters -------------------------------------------------

    def origin(self, instrument: str) -> Origin:
        return Origin(self.name, instrument)

    def body(self, payload: object, instrument: str) -> Body:
        """The walker over a decoded body: ``self.body(payload, instrument).decimal("price")``."""
        return Body(payload, self.origin(instrument))

    def format_error(self, instrument: str, expected: str, got: str) -> SourceFormatError:
        return self.origin(instrument).format_error(expected, got)

    # ---- shared value checks --------------------------------------------------------

    def _checked_price(self, price: Decimal, instrument: str, symbol: str) -> Decimal:
        if not price.is_finite():
            problem = f"a non-finite value ({price})"
        elif price <= 0:
            problem = f"{price}, which is not positive"
        elif price < self.min_price or price > self.max_price:
            problem = f"{price}, outside the sane range [{self.min_price}, {self.max_price}]"
        else:
            return price
        raise SourceValueError(
            f"{self.name} {instrument}: expected a positive finite price for {symbol}, got "
            f"{problem}; the venue published a broken value — the feed uses the other sources",
            source=self.name,
            instrument=instrument,
        )

    def _checked_value(self, kind: FactorKind, value: Decimal, instrument: str, symbol: str) -> Decimal:
        low, high = self.value_bounds[kind]
        sign = KINDS[kind].sign
        if not value.is_finite():
            problem = f"a non-finite value ({value})"
        elif sign == "positive" and value <= 0:
            problem = f"{value}, which is not positive"
        elif value < low or value > high:
            problem = f"{value}, outside the sane range [{low}, {high}]"
            if KINDS[kind].unit.startswith("annualized") and value > high and low <= value.scaleb(-2) <= high:
                problem += " (a percentage read as a fraction?)"
        else:
            return value
        raise SourceValueError(
            f"{self.name} {instrument}: expected a finite {kind} for {symbol} in "
            f"{KINDS[kind].unit}, got {problem}; the venue published a broken value — the "
            f"feed uses the other sources",
            source=self.name,
            instrument=instrument,
        )

    def _checked_time(
        self, observed_at: float | None, fetched_at: float, instrument: str, symbol: str, max_staleness: float
    ) -> float:
        if observed_at is None:
            return fetched_at
        age = fetched_at - observed_at
        try:
            stamp = datetime.fromtimestamp(observed_at, timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            # A timestamp past year 9999 still has to end as a typed error, not a crash.
            stamp = f"unix time {observed_at:g}"
        if age > max_staleness:
            raise SourceStaleError(
                f"{self.name} {instrument}: expected a venue timestamp at most "
                f"{max_staleness:g}s old, got {stamp} ({age:.1f}s old); the venue's "
                f"{symbol} ticker stopped updating — the feed uses the other sources",
                source=self.name,
                instrument=instrument,
            )
        if -age > self.max_clock_skew:
            raise SourceStaleError(
                f"{self.name} {instrument}: expected a venue timestamp no more than "
                f"{self.max_clock_skew:g}s ahead of our clock, got {stamp} ({-age:.1f}s "
                f"ahead); check this host's clock (NTP)",
                source=self.name,
                instrument=instrument,
            )
        # Within the allowed skew, clamp: downstream (and the contract) rely on an
        # observation time that is never after the moment we saw it.
        return min(observed_at, fetched_at)
