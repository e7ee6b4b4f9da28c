"""HTTP for venue adapters: one GET with a timeout and a body cap, and what its answer means.

Everything a source does on the wire goes through :func:`get` (the caller's shared
``aiohttp.ClientSession``, a total timeout, no redirects, a capped body) and
:func:`json_body` (a non-200 status becomes a typed error that says what the venue
said, a 200 body becomes JSON without any float). No venue parses bytes itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime

import aiohttp

from feeds.errors import Origin, SourceConnectionError, SourceHTTPError, SourceRateLimited, SourceTimeout

__all__ = ["RawResponse", "describe_body", "get", "json_body", "parse_retry_after", "status_error"]


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
) -> RawResponse:
    """One GET; a slow, unreachable or oversized answer is a typed error naming the setting to change."""
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
            body = await _read_capped(response, origin, max_body_bytes)
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


async def _read_capped(response: aiohttp.ClientResponse, origin: Origin, cap: int) -> bytes:
    if response.content_length is not None and response.content_length > cap:
        raise origin.format_error(f"a ticker body of at most {cap} bytes", f"Content-Length {response.content_length}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > cap:
            raise origin.format_error(f"a ticker body of at most {cap} bytes", f"more than {cap}")
        chunks.append(chunk)
    return b"".join(chunks)


def _loads(text: str) -> object:
    # parse_float=Decimal: a JSON number never passes through a binary float.
    # NaN/Infinity tokens become Decimal so the value check names them.
    return json.loads(text, parse_float=Decimal, parse_constant=Decimal)


def json_body(raw: RawResponse, origin: Origin, venue_error: Callable[[object], str | None]) -> object:
    """The decoded JSON of a 200 answer; any other status, or a body that is not JSON, raises."""
    if raw.status != 200:
        raise status_error(raw, origin, venue_error)
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


def status_error(
    raw: RawResponse, origin: Origin, venue_error: Callable[[object], str | None]
) -> SourceHTTPError:
    """A non-200 answer as a typed error: rate limited, failing, redirected or refused."""
    name, status = origin.source, raw.status
    said = ""
    try:
        venue_text = venue_error(_loads(raw.body.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError):
        venue_text = None
    if venue_text:
        said = f" (venue says: {venue_text})"
    elif raw.body.strip():
        said = f" ({describe_body(raw.body, raw.content_type)})"
    if status in (418, 429):
        hint = "the venue is rate limiting us — lower the poll rate for this source"
        if raw.retry_after:
            hint += f" (Retry-After: {raw.retry_after})"
    elif status >= 500:
        hint = "the venue is failing; it is retried next poll and the feed uses the other sources"
    elif 300 <= status < 400:
        hint = f"redirects are not followed — check sources.{name}.url"
    else:
        hint = f"check the instrument mapping and sources.{name}.url"
    message = f"{name} {origin.instrument}: expected HTTP 200, got {status}{said}; {hint}"
    if status in (418, 429):
        return SourceRateLimited(
            message,
            source=name,
            instrument=origin.instrument,
            status=status,
            retry_after=parse_retry_after(raw.retry_after),
        )
    return SourceHTTPError(message, source=name, instrument=origin.instrument, status=status)
