"""Streaming sources: one WebSocket per venue, every venue message checked and handed on as it comes.

A source that lists kinds in ``streams`` (Coinbase's ``ticker`` channel) is read here
instead of being polled. :func:`run_stream` owns the connection: it subscribes, reads
each message with the source's ``stream_message`` (the instrument of every message is
checked against what was subscribed), puts it through the same value and time checks
as a polled answer (:meth:`feeds.base.Source.reading`) and hands the reading to its
:class:`StreamSink` (the feed cache), so the cache changes with each venue update
rather than once a poll.

What can go wrong, and what it does:

- a message for an instrument that was not subscribed, a broken value, a stale
  timestamp: refused and counted against the source's health; the stream goes on;
- the venue's own error message (a refused subscription): the connection is closed and
  made again after a pause;
- no usable message (a checked reading) for ``stream_silence`` seconds, whether the
  venue is silent or every message is refused: the stream is stale; the source is
  marked unhealthy (:class:`~feeds.errors.SourceStaleError`) and the connection made again;
- a dropped connection or one that cannot be made: made again after
  ``base * 2**(n-1)`` seconds (at most ``cap``, jittered), back to ``base`` once a
  message has been taken.

While the stream is not live (connecting, backing off, stale) the sink is told so, and
the feed cache polls those targets over REST meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Protocol

import aiohttp

from feeds.base import Source, SourceReading
from feeds.errors import (
    Origin,
    SourceConnectionError,
    SourceError,
    SourceFormatError,
    SourceStaleError,
    SourceValueError,
)
from feeds.kinds import FactorKind

__all__ = ["StreamSink", "read_message", "run_stream", "subscribed_origin"]


class StreamSink(Protocol):
    """Where a stream's outcomes go (the feed cache implements it)."""

    def stream_reading(self, reading: SourceReading) -> None:
        """A checked reading from one venue message."""

    def stream_failure(self, source: str, error: SourceError) -> None:
        """A refused message, or the connection failing (counted against the source's health)."""

    def stream_live(self, source: str, live: bool) -> None:
        """The stream delivers (True) or does not (False): connecting, backing off, stale."""


def subscribed_origin(source: Source, instruments: Sequence[str]) -> Origin:
    """The origin a stream's errors name before a message is tied to one instrument."""
    return Origin(source.name, "/".join(instruments))


def read_message(
    source: Source, text: str, instruments: Sequence[str], received_at: float
) -> tuple[SourceReading, int | None] | None:
    """One venue message as a checked reading and its sequence (None for acks, heartbeats); raises a typed error."""
    try:
        payload = json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except json.JSONDecodeError as exc:
        raise subscribed_origin(source, instruments).format_error(
            "a JSON stream message", f"{exc.msg} at column {exc.colno} ({len(text)} characters)"
        ) from None
    update = source.stream_message(payload, instruments)
    if update is None:
        return None
    if update.instrument not in instruments or update.kind not in source.streams:
        raise subscribed_origin(source, instruments).mismatch(
            f"a {'/'.join(source.streams)} update for {', '.join(instruments)}",
            f"a {update.kind} update for {update.instrument}",
        )
    reading = source.reading(update.kind, update.instrument, update.quote, fetched_at=received_at)
    return reading, update.sequence


async def run_stream(
    source: Source,
    session: aiohttp.ClientSession,
    instruments: Sequence[str],
    sink: StreamSink,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Stream ``instruments`` from ``source`` into ``sink`` until cancelled."""
    if source.stream_url is None:
        raise SourceConnectionError(
            f"{source.name}: expected a stream URL to connect to, got none; set sources.{source.name}.stream_url",
            source=source.name,
        )
    rng = rng or random.Random()
    base, cap = source.stream_backoff
    failures = 0
    while True:
        try:
            await _connection(source, session, instruments, sink, clock)
        except _Ended as ended:
            sink.stream_live(source.name, False)
            sink.stream_failure(source.name, ended.error)
            # A connection that delivered before it failed starts the pauses over.
            failures = 1 if ended.delivered else failures + 1
        await sleep(min(cap, base * 2 ** (failures - 1)) * rng.uniform(0.5, 1.0))


class _Ended(Exception):
    """A connection ended with ``error``, having ``delivered`` a reading or not."""

    def __init__(self, error: SourceError, delivered: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.delivered = delivered


async def _connection(
    source: Source,
    session: aiohttp.ClientSession,
    instruments: Sequence[str],
    sink: StreamSink,
    clock: Callable[[], float],
) -> None:
    """One connection, from subscribing until it fails; always ends by raising :class:`_Ended`."""
    name, url = source.name, source.stream_url
    origin = subscribed_origin(source, instruments)
    delivered = False
    newest: dict[tuple[FactorKind, str], int] = {}
    try:
        async with asyncio.timeout(source.timeout):
            ws = await session.ws_connect(str(url), max_msg_size=source.max_stream_message_bytes, autoping=True)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Ended(SourceConnectionError(
            f"{name} {origin.instrument}: expected a WebSocket connection to {url} within {source.timeout:g}s, "
            f"got {type(exc).__name__}: {exc}; the venue's stream is unreachable — retrying with back-off",
            source=name, instrument=origin.instrument,
        ), False) from exc
    loop = asyncio.get_running_loop()
    silence = source.stream_silence
    # Only a reading moves the deadline: acks, heartbeats and refused messages keep no value fresh.
    deadline = loop.time() + silence
    try:
        for message in source.stream_subscribe(instruments):
            await ws.send_json(message)
        while True:
            try:
                msg = await ws.receive(timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise _Ended(SourceStaleError(
                    f"{name} {origin.instrument}: expected a usable stream message at least every {silence:g}s, "
                    f"got none for {silence:g}s; the stream is stuck, misrouted or the venue stopped publishing "
                    f"— reconnecting, and the source is polled meanwhile",
                    source=name, instrument=origin.instrument,
                ), delivered) from None
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise _Ended(_closed(source, origin, msg), delivered)
            try:
                taken = read_message(source, msg.data, instruments, clock())
            except (SourceFormatError, SourceValueError, SourceStaleError) as exc:
                # This message is refused (another instrument, a broken value); the next may be fine.
                sink.stream_failure(name, exc)
                continue
            except SourceError as exc:
                # The venue's own error message: this connection will not deliver.
                raise _Ended(exc, delivered) from None
            if taken is None:
                continue
            reading, sequence = taken
            if sequence is not None:
                key = (reading.kind, reading.instrument)
                if sequence <= newest.get(key, -1):
                    continue
                newest[key] = sequence
            deadline = loop.time() + silence
            if not delivered:
                delivered = True
                sink.stream_live(name, True)
            sink.stream_reading(reading)
    finally:
        await ws.close()


def _closed(source: Source, origin: Origin, msg: aiohttp.WSMessage) -> SourceError:
    if msg.type == aiohttp.WSMsgType.BINARY:
        return origin.format_error("a text (JSON) stream message", f"a binary frame of {len(msg.data)} bytes")
    detail = f"{msg.type.name}" + (f" ({msg.extra})" if msg.extra else "")
    return SourceConnectionError(
        f"{source.name} {origin.instrument}: expected the stream to stay open, got {detail}; the venue closed "
        f"it or the network dropped it — reconnecting with back-off",
        source=source.name, instrument=origin.instrument,
    )
