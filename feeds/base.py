"""The source contract: what a venue adapter must do and what it hands back.

A venue adapter (one file under ``feeds/sources/``) only says where to GET and
where the price and timestamp sit in the venue's JSON. This module owns
everything every venue needs the same way, so no adapter can forget it: the
timeout on the request, the body size cap, JSON decoding without floats, the
schema walk with error messages naming the exact field, and the price and
freshness checks. A source raises a typed :mod:`feeds.errors` error; it never
returns a placeholder.
"""

from __future__ import annotations

import abc
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import ClassVar

import aiohttp
from pydantic import BaseModel, Field, model_validator

from feeds.errors import (
    FeedsConfigError,
    SourceConnectionError,
    SourceRateLimited,
    SourceFormatError,
    SourceHTTPError,
    SourceStaleError,
    SourceTimeout,
    SourceValueError,
    UnknownInstrumentError,
    UnsupportedFactorError,
)
from aggregation.volatility import annualized_realized_vol, depth_within_band
from feeds.kinds import DEPTH_BAND_BPS, KINDS, RV_CANDLE_SECONDS, RV_RETURNS, FactorKind

__all__ = ["SourceReading", "Source", "VenueQuote", "RawResponse", "FactorKind"]

# A plain decimal number as venues write them ("64000.12000000", "1e-5").
# Decimal() alone also takes "1_000" and surrounding whitespace, which no venue
# documents; accepting them would hide a broken or spoofed response.
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NON_FINITE_TEXT = re.compile(r"[+-]?(nan|snan|inf|infinity)", re.IGNORECASE)

PathPart = str | int


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
class RawResponse:
    """One HTTP answer as received, before any parsing (what parser tests feed in)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    retry_after: str | None = None


def _path_text(path: Sequence[PathPart]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    return f"number {value}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 3600))
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min(3600.0, when.timestamp() - time.time()))


def describe_body(body: bytes, content_type: str) -> str:
    """Say in a few words what a body that failed to parse actually was."""
    size = f"{content_type}, {len(body)} bytes"
    stripped = body.lstrip()
    if not stripped:
        return f"an empty body ({size})"
    head = stripped[:64].lower()
    if content_type == "text/html" or head.startswith((b"<!doctype html", b"<html", b"<")):
        return f"HTML page ({size})"
    snippet = body[:60].decode("utf-8", errors="replace")
    return f"non-JSON text ({size}: {snippet!r})"


class Source(abc.ABC):
    """A venue adapter. Subclasses set the class variables and implement two methods."""

    name: ClassVar[str]
    default_url: ClassVar[str]
    # instrument ("BTC-USD") -> the venue's symbol as used in the request.
    symbols: ClassVar[Mapping[str, str]]
    # A venue timestamp older than this means the venue's feed stopped updating.
    max_staleness: ClassVar[float] = 60.0
    # Venue clocks run a little ahead of ours; more than this is a clock fault.
    max_clock_skew: ClassVar[float] = 5.0
    # Sanity bounds: outside them the value is absurd for any listed asset.
    min_price: ClassVar[Decimal] = Decimal("1e-12")
    max_price: ClassVar[Decimal] = Decimal("1e12")
    # A ticker body is a few hundred bytes; a huge body is an attack or a wrong URL.
    max_body_bytes: ClassVar[int] = 64 * 1024

    def __init__(self, base_url: str | None = None, timeout: float = 2.0) -> None:
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
        FactorKind.IMPLIED_VOL: (Decimal("1e-6"), Decimal(20)),
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
        """Find price and timestamp in a decoded 200 spot body; use ``field``/``decimal``."""
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
        steps = self.plan(kind, instrument)
        started = time.monotonic()
        responses = [await self._get(session, path, params, instrument) for path, params in steps]
        latency_ms = (time.monotonic() - started) * 1000.0
        return self.parse_responses(
            responses, kind=kind, instrument=instrument, fetched_at=time.time(), latency_ms=latency_ms
        )

    async def _get(
        self, session: aiohttp.ClientSession, path: str, params: Mapping[str, str], instrument: str
    ) -> RawResponse:
        url = self.base_url + path
        try:
            async with session.get(
                url,
                params=params,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # A redirect from a price API is never expected; following it would
                # let whoever controls the redirect target choose our price.
                allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as response:
                body = await self._read_capped(response, instrument)
                return RawResponse(
                    body=body,
                    status=response.status,
                    content_type=response.content_type,
                    retry_after=response.headers.get("Retry-After"),
                )
        except TimeoutError as exc:
            raise SourceTimeout(
                f"{self.name} {instrument}: expected a response from {url} within "
                f"{self.timeout:g}s, got none; the venue is slow or unreachable — it is "
                f"retried next poll; check sources.{self.name}.url or raise "
                f"sources.{self.name}.timeout",
                source=self.name,
                instrument=instrument,
            ) from exc
        except aiohttp.ClientError as exc:
            raise SourceConnectionError(
                f"{self.name} {instrument}: expected an HTTP response from {url}, got "
                f"{type(exc).__name__}: {exc}; the venue is unreachable — check network "
                f"and sources.{self.name}.url",
                source=self.name,
                instrument=instrument,
            ) from exc

    async def _read_capped(self, response: aiohttp.ClientResponse, instrument: str) -> bytes:
        cap = self.max_body_bytes
        if response.content_length is not None and response.content_length > cap:
            raise self.format_error(
                instrument,
                f"a ticker body of at most {cap} bytes",
                f"Content-Length {response.content_length}",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(16 * 1024):
            size += len(chunk)
            if size > cap:
                raise self.format_error(
                    instrument, f"a ticker body of at most {cap} bytes", f"more than {cap}"
                )
            chunks.append(chunk)
        return b"".join(chunks)

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
        symbol = self.symbol(instrument)
        if kind not in self.factors:
            raise self.unsupported(kind, instrument)
        payloads = []
        for raw in responses:
            if raw.status != 200:
                raise self._status_error(raw.body, raw.status, raw.content_type, instrument, raw.retry_after)
            payloads.append(self._decode(raw.body, raw.content_type, instrument))
        quote = self.extract_factor(kind, payloads, instrument, fetched_at)
        if kind == FactorKind.SPOT:
            value = self._checked_price(quote.price, instrument, symbol)
        else:
            value = self._checked_value(kind, quote.price, instrument, symbol)
        observed_at = self._checked_time(quote.observed_at, fetched_at, instrument, symbol)
        return SourceReading(
            source=self.name,
            instrument=instrument,
            price=value,
            observed_at=observed_at,
            fetched_at=fetched_at,
            latency_ms=latency_ms,
            kind=kind,
        )

    def _decode(self, body: bytes, content_type: str, instrument: str) -> object:
        expected = "a JSON ticker body"
        if content_type == "text/html":
            # An HTML 200 is a captive portal, CDN error page or maintenance page.
            raise self.format_error(instrument, expected, describe_body(body, content_type))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise self.format_error(
                instrument, expected, f"bytes that are not UTF-8 ({content_type}, {len(body)} bytes)"
            ) from None
        try:
            # parse_float=Decimal: a JSON number never passes through a binary float.
            # NaN/Infinity tokens become Decimal so the value check names them.
            return json.loads(text, parse_float=Decimal, parse_constant=Decimal)
        except json.JSONDecodeError as exc:
            stripped = text.lstrip()
            failed_at_start = exc.pos == len(text) - len(stripped)
            if failed_at_start and not stripped.startswith(("{", "[")):
                # Not JSON at all (empty, HTML, plain text): say what it is instead.
                got = describe_body(body, content_type)
            elif exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
                # The parser ran off the end (an open string reports where it began).
                got = f"truncated JSON ({content_type}, {len(body)} bytes, ends mid-document)"
            else:
                got = (
                    f"invalid JSON ({content_type}, {len(body)} bytes: {exc.msg} at line "
                    f"{exc.lineno} column {exc.colno})"
                )
            raise self.format_error(instrument, expected, got) from None

    def _status_error(
        self,
        body: bytes,
        status: int,
        content_type: str,
        instrument: str,
        retry_after: str | None,
    ) -> SourceHTTPError:
        said = ""
        try:
            venue_text = self.venue_error(
                json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=Decimal)
            )
        except (UnicodeDecodeError, json.JSONDecodeError):
            venue_text = None
        if venue_text:
            said = f" (venue says: {venue_text})"
        elif body.strip():
            said = f" ({describe_body(body, content_type)})"
        if status in (418, 429):
            hint = "the venue is rate limiting us — lower the poll rate for this source"
            if retry_after:
                hint += f" (Retry-After: {retry_after})"
        elif status >= 500:
            hint = "the venue is failing; it is retried next poll and the feed uses the other sources"
        elif 300 <= status < 400:
            hint = f"redirects are not followed — check sources.{self.name}.url"
        else:
            hint = f"check the instrument mapping and sources.{self.name}.url"
        message = f"{self.name} {instrument}: expected HTTP 200, got {status}{said}; {hint}"
        if status in (418, 429):
            return SourceRateLimited(
                message,
                source=self.name,
                instrument=instrument,
                status=status,
                retry_after=parse_retry_after(retry_after),
            )
        return SourceHTTPError(message, source=self.name, instrument=instrument, status=status)

    def format_error(self, instrument: str, expected: str, got: str) -> SourceFormatError:
        return SourceFormatError(
            f"{self.name} {instrument}: expected {expected}, got {got}; the venue may be "
            f"down or the URL wrong — check sources.{self.name}.url",
            source=self.name,
            instrument=instrument,
        )

    # ---- helpers for venue adapters -------------------------------------------------

    def field(self, payload: object, instrument: str, *path: PathPart) -> object:
        """Walk ``path`` in a decoded body; a missing step names the whole path."""
        node = payload
        for depth, part in enumerate(path):
            where = _path_text(path[:depth]) if depth else "top level"
            if isinstance(part, int):
                if not isinstance(node, list):
                    got = f"{_json_kind(node)} at {where}"
                elif part >= len(node):
                    got = f"array of {len(node)} at {where}"
                else:
                    node = node[part]
                    continue
            else:
                if not isinstance(node, dict):
                    got = f"{_json_kind(node)} at {where}"
                elif part not in node:
                    keys = ", ".join(sorted(map(str, node))[:8]) or "none"
                    got = f"object without {part!r} at {where} (keys: {keys})"
                else:
                    node = node[part]
                    continue
            raise self.format_error(
                instrument, f"JSON object with {_path_text(path)}", got
            )
        return node

    def decimal(self, value: object, instrument: str, *path: PathPart) -> Decimal:
        """A price field as Decimal: decimal strings (what venues send) or exact JSON numbers."""
        where = _path_text(path)
        if isinstance(value, bool):
            pass
        elif isinstance(value, Decimal):
            return value
        elif isinstance(value, int):
            return Decimal(value)
        elif isinstance(value, str):
            if _DECIMAL_TEXT.fullmatch(value) or _NON_FINITE_TEXT.fullmatch(value):
                try:
                    # The value check reports NaN/inf with its own error type.
                    return Decimal(value)
                except InvalidOperation:  # pragma: no cover - regex admits only valid text
                    pass
        raise self.format_error(
            instrument, f"a decimal number at {where}", f"{_json_kind(value)}"
        )

    def array(self, payload: object, instrument: str, *path: PathPart) -> list[object]:
        """A JSON array at ``path`` (the field must exist and be an array)."""
        value = self.field(payload, instrument, *path)
        if not isinstance(value, list):
            raise self.format_error(instrument, f"an array at {_path_text(path)}", _json_kind(value))
        return value

    def levels(self, payload: object, instrument: str, *path: PathPart) -> list[tuple[Decimal, Decimal]]:
        """Book levels ``[[price, size, ...], ...]`` at ``path`` as (price, size) Decimals."""
        out = []
        for index, _ in enumerate(self.array(payload, instrument, *path)):
            price = self.decimal(self.field(payload, instrument, *path, index, 0), instrument, *path, index, 0)
            size = self.decimal(self.field(payload, instrument, *path, index, 1), instrument, *path, index, 1)
            out.append((price, size))
        return out

    def epoch_millis(self, value: object, instrument: str, *path: PathPart) -> float:
        """A unix timestamp in milliseconds (Binance style; OKX sends it as a string) as seconds."""
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value / 1000.0
        raise self.format_error(
            instrument,
            f"a positive integer of unix milliseconds at {_path_text(path)}",
            _json_kind(value),
        )

    def iso_time(self, value: object, instrument: str, *path: PathPart) -> float:
        """An RFC 3339 UTC timestamp (Coinbase style) as unix seconds."""
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if parsed.tzinfo is not None:
                    return parsed.astimezone(timezone.utc).timestamp()
        raise self.format_error(
            instrument,
            f"an RFC 3339 timestamp with a UTC offset at {_path_text(path)}",
            _json_kind(value),
        )

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
        else:
            return value
        raise SourceValueError(
            f"{self.name} {instrument}: expected a finite {kind} for {symbol} in "
            f"{KINDS[kind].unit}, got {problem}; the venue published a broken value — the "
            f"feed uses the other sources",
            source=self.name,
            instrument=instrument,
        )

    # ---- shared computations for venue adapters -------------------------------------

    def realized_vol(
        self, candles: Sequence[tuple[float, Decimal]], instrument: str, fetched_at: float
    ) -> VenueQuote:
        """Annualized realized vol from (open time, close) candles in any order.

        Uses the newest ``RV_RETURNS + 1`` closes of ``RV_CANDLE_SECONDS`` candles;
        fewer, gaps, duplicates or a non-positive close are errors, never a guess.
        observed_at is the close time of the newest candle (clamped to fetch time).
        """
        need = RV_RETURNS + 1
        ordered = sorted(candles, key=lambda c: c[0])
        if len({t for t, _ in ordered}) != len(ordered):
            raise self.format_error(instrument, "candles with distinct open times", "duplicate open times")
        window = ordered[-need:]
        if len(window) < need:
            raise self.format_error(
                instrument, f"at least {need} candles of {RV_CANDLE_SECONDS}s", f"{len(window)} candles"
            )
        for (t0, _), (t1, _) in zip(window, window[1:]):
            if abs((t1 - t0) - RV_CANDLE_SECONDS) > 1e-6:
                raise self.format_error(
                    instrument,
                    f"consecutive {RV_CANDLE_SECONDS}s candles",
                    f"a gap of {t1 - t0:g}s after open time {t0:.0f}",
                )
        closes = [close for _, close in window]
        for close in closes:
            if not close.is_finite() or close <= 0:
                raise SourceValueError(
                    f"{self.name} {instrument}: expected positive finite candle closes, got "
                    f"{close}; the venue published a broken candle — the feed uses the other sources",
                    source=self.name,
                    instrument=instrument,
                )
        vol = annualized_realized_vol(closes, RV_CANDLE_SECONDS)
        # The newest candle is usually still open: its close time is in the future.
        return VenueQuote(price=vol, observed_at=min(window[-1][0] + RV_CANDLE_SECONDS, fetched_at))

    def book_depth(
        self,
        bids: Sequence[tuple[Decimal, Decimal]],
        asks: Sequence[tuple[Decimal, Decimal]],
        instrument: str,
        *,
        contract_value: Decimal = Decimal(1),
        inverse: bool = False,
    ) -> Decimal:
        """USD notional of levels within +-DEPTH_BAND_BPS of mid (pure; see kinds)."""
        for price, size in [*bids, *asks]:
            if not price.is_finite() or not size.is_finite() or price <= 0 or size < 0:
                raise SourceValueError(
                    f"{self.name} {instrument}: expected positive finite book levels, got "
                    f"price {price} size {size}; the venue published a broken book — the "
                    f"feed uses the other sources",
                    source=self.name,
                    instrument=instrument,
                )
        if not bids or not asks:
            raise SourceValueError(
                f"{self.name} {instrument}: expected bids and asks, got {len(bids)} bids and "
                f"{len(asks)} asks; the book is one-sided — the feed uses the other sources",
                source=self.name,
                instrument=instrument,
            )
        best_bid = max(p for p, _ in bids)
        best_ask = min(p for p, _ in asks)
        if best_bid >= best_ask:
            raise SourceValueError(
                f"{self.name} {instrument}: expected best bid below best ask, got bid "
                f"{best_bid} >= ask {best_ask}; the book is crossed — the feed uses the other sources",
                source=self.name,
                instrument=instrument,
            )
        return depth_within_band(bids, asks, DEPTH_BAND_BPS, contract_value=contract_value, inverse=inverse)

    def _checked_time(
        self, observed_at: float | None, fetched_at: float, instrument: str, symbol: str
    ) -> float:
        if observed_at is None:
            return fetched_at
        age = fetched_at - observed_at
        try:
            stamp = datetime.fromtimestamp(observed_at, timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            # A timestamp past year 9999 still has to end as a typed error, not a crash.
            stamp = f"unix time {observed_at:g}"
        if age > self.max_staleness:
            raise SourceStaleError(
                f"{self.name} {instrument}: expected a venue timestamp at most "
                f"{self.max_staleness:g}s old, got {stamp} ({age:.1f}s old); the venue's "
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
