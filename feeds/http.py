"""HTTP for venue adapters: one GET with a timeout and a body cap, and what its answer means.

Everything a source does on the wire goes through :func:`get` (the caller's shared
``aiohttp.ClientSession``, a total timeout, no redirects, a body read as a stream
that stops at the endpoint's cap) and :func:`json_body` (a non-200 status becomes a
typed error that says what the venue said, a 200 body becomes JSON without any
float). No venue parses bytes itself.

A venue's own error code means the same thing whether it comes with an HTTP error
status or inside a 200 (Kraken, OKX and Bybit do the latter): the source reads it
into a :class:`VenueSays`, and :func:`status_error` / :func:`refused_in_body` turn
it into the same typed error an HTTP status would give (rate limited, unavailable,
unknown instrument), so the poller's back-off and health treat both alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from enum import StrEnum

import aiohttp

from feeds.errors import (
    Origin,
    SourceBodyTooLarge,
    SourceConnectionError,
    SourceHTTPError,
    SourceRateLimited,
    SourceTimeout,
    SourceUnavailable,
    SourceUnknownInstrument,
)

__all__ = [
    "RawResponse",
    "Refusal",
    "VenueSays",
    "describe_body",
    "get",
    "json_body",
    "parse_retry_after",
    "refused_in_body",
    "status_error",
]


class Refusal(StrEnum):
    """What a venue's own error code means for us, whatever HTTP status came with it."""

    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class VenueSays:
    """A venue's error read from its body by the source: its meaning and its own words.

    ``retry_after`` is how long to leave the venue alone when it rate limits without a
    Retry-After header (its documented window), in seconds.
    """

    refusal: Refusal
    text: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RawResponse:
    """One HTTP answer as received, before any parsing (what parser tests feed in)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    retry_after: str | None = None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 3600))
    try:
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


async def get(
    session: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    *,
    origin: Origin,
    timeout: float,
    max_body_bytes: int,
    endpoint: str | None = None,
) -> RawResponse:
    """One GET; a slow, unreachable or oversized answer is a typed error naming the setting to change.

    ``endpoint`` names the endpoint in the error when its body passes ``max_body_bytes``.
    """
    name = origin.source
    try:
        async with session.get(
            url,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
            # A redirect from a price API is never expected; following it would
            # let whoever controls the redirect target choose our price.
            allow_redirects=False,
            headers={"Accept": "application/json"},
        ) as response:
            body = await _read_capped(response, origin, max_body_bytes, endpoint or url)
            return RawResponse(
                body=body,
                status=response.status,
                content_type=response.content_type,
                retry_after=response.headers.get("Retry-After"),
            )
    except TimeoutError as exc:
        raise SourceTimeout(
            f"{name} {origin.instrument}: expected a response from {url} within "
            f"{timeout:g}s, got none; the venue is slow or unreachable — it is "
            f"retried next poll; check sources.{name}.url or raise "
            f"sources.{name}.timeout",
            source=name,
            instrument=origin.instrument,
        ) from exc
    except aiohttp.ClientError as exc:
        raise SourceConnectionError(
            f"{name} {origin.instrument}: expected an HTTP response from {url}, got "
            f"{type(exc).__name__}: {exc}; the venue is unreachable — check network "
            f"and sources.{name}.url",
            source=name,
            instrument=origin.instrument,
        ) from exc


def _too_large(origin: Origin, endpoint: str, cap: int, got: str) -> SourceBodyTooLarge:
    return SourceBodyTooLarge(
        f"{origin.source} {origin.instrument}: expected a body of at most {cap} bytes "
        f"({cap / 1024:g} KiB) from {endpoint}, got {got}; the read stopped at the cap — if the "
        f"venue's answer really is this big, raise that endpoint's cap in "
        f"{origin.source}'s body_caps or ask the venue for less (a depth limit)",
        source=origin.source,
        instrument=origin.instrument,
        endpoint=endpoint,
        cap=cap,
    )


async def _read_capped(response: aiohttp.ClientResponse, origin: Origin, cap: int, endpoint: str) -> bytes:
    if response.content_length is not None and response.content_length > cap:
        raise _too_large(origin, endpoint, cap, f"Content-Length {response.content_length}")
    chunks: list[bytes] = []
    size = 0
    # A stream, never read whole first: an endless or huge body costs at most cap
    # bytes of memory before it is refused.
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            raise _too_large(origin, endpoint, cap, f"more than {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _loads(text: str) -> object:
    # parse_float=Decimal: a JSON number never passes through a binary float.
    # NaN/Infinity tokens become Decimal so the value check names them.
    return json.loads(text, parse_float=Decimal, parse_constant=Decimal)


VenueReader = Callable[[object], VenueSays | None]


def json_body(
    raw: RawResponse,
    origin: Origin,
    venue_error: Callable[[object], str | None],
    venue_says: VenueReader | None = None,
) -> object:
    """The decoded JSON of a 200 answer; any other status, or a body that is not JSON, raises."""
    if raw.status != 200:
        raise status_error(raw, origin, venue_error, venue_says)
    body, content_type = raw.body, raw.content_type
    expected = "a JSON ticker body"
    if content_type == "text/html":
        # An HTML 200 is a captive portal, CDN error page or maintenance page.
        raise origin.format_error(expected, describe_body(body, content_type))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise origin.format_error(
            expected, f"bytes that are not UTF-8 ({content_type}, {len(body)} bytes)"
        ) from None
    try:
        return _loads(text)
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
        raise origin.format_error(expected, got) from None


_RATE_LIMIT_HINT = "the venue is rate limiting us — lower the poll rate for this source"
_FAILING_HINT = "the venue is failing; it is retried next poll and the feed uses the other sources"


def _unknown_hint(origin: Origin) -> str:
    return (
        f"the venue does not list it: the symbol mapping is wrong or the market was delisted — "
        f"check {origin.source}'s symbols for {origin.instrument}"
    )


def status_error(
    raw: RawResponse,
    origin: Origin,
    venue_error: Callable[[object], str | None],
    venue_says: VenueReader | None = None,
) -> SourceHTTPError:
    """A non-200 answer as a typed error: rate limited, unavailable, unknown instrument, redirected or refused."""
    name, status = origin.source, raw.status
    said = ""
    try:
        payload = _loads(raw.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        venue_text, says = None, None
    else:
        venue_text = venue_error(payload)
        says = venue_says(payload) if venue_says is not None else None
    if venue_text:
        said = f" (venue says: {venue_text})"
    elif raw.body.strip():
        said = f" ({describe_body(raw.body, raw.content_type)})"
    refusal = says.refusal if says is not None else Refusal.OTHER
    if status in (418, 429) or refusal == Refusal.RATE_LIMITED:
        hint = _RATE_LIMIT_HINT
        if raw.retry_after:
            hint += f" (Retry-After: {raw.retry_after})"
        retry_after = parse_retry_after(raw.retry_after)
        if retry_after is None and says is not None:
            retry_after = says.retry_after
        return SourceRateLimited(
            f"{name} {origin.instrument}: expected HTTP 200, got {status}{said}; {hint}",
            retry_after=retry_after,
            source=name, instrument=origin.instrument, status=status,
        )
    if status >= 500 or refusal == Refusal.UNAVAILABLE:
        return SourceUnavailable(
            f"{name} {origin.instrument}: expected HTTP 200, got {status}{said}; {_FAILING_HINT}",
            source=name, instrument=origin.instrument, status=status,
        )
    if 300 <= status < 400:
        hint = f"redirects are not followed — check sources.{name}.url"
    elif refusal == Refusal.UNKNOWN_INSTRUMENT:
        return SourceUnknownInstrument(
            f"{name} {origin.instrument}: expected HTTP 200, got {status}{said}; {_unknown_hint(origin)}",
            source=name, instrument=origin.instrument, status=status,
        )
    else:
        hint = f"check the instrument mapping and sources.{name}.url"
    message = f"{name} {origin.instrument}: expected HTTP 200, got {status}{said}; {hint}"
    return SourceHTTPError(message, source=name, instrument=origin.instrument, status=status)


def refused_in_body(says: VenueSays, origin: Origin) -> SourceHTTPError:
    """A venue error reported inside an HTTP 200, as the same typed error its HTTP status would give."""
    name, instrument = origin.source, origin.instrument
    head = f"{name} {instrument}: expected an answer without an error, got the venue's {says.text} inside HTTP 200"
    if says.refusal == Refusal.RATE_LIMITED:
        pause = f"; it is left alone for {says.retry_after:g}s" if says.retry_after else ""
        return SourceRateLimited(
            f"{head}; {_RATE_LIMIT_HINT}{pause}",
            source=name, instrument=instrument, status=200, retry_after=says.retry_after,
        )
    if says.refusal == Refusal.UNAVAILABLE:
        return SourceUnavailable(f"{head}; {_FAILING_HINT}", source=name, instrument=instrument, status=200)
    if says.refusal == Refusal.UNKNOWN_INSTRUMENT:
        return SourceUnknownInstrument(
            f"{head}; {_unknown_hint(origin)}", source=name, instrument=instrument, status=200
        )
    return SourceHTTPError(
        f"{head}; check the instrument mapping and sources.{name}.url", source=name, instrument=instrument, status=200
    )
