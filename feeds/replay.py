"""Record a venue's real answers once, replay them offline: the recording format, the recorder and the replay.

A recording is a directory: ``index.json`` (what was asked, when, and what came back)
and one body file per answer, the bytes exactly as received. The index is pretty
printed with a stable key order so a re-recording diffs line by line::

    {
      "format": "relayer-recording/1",
      "source": "binance",
      "instrument": "BTC-USD",
      "base_url": "https://api.binance.com",
      "exchanges": [
        {
          "kind": "spot",
          "requested_at": 1700000000.123,
          "request": {"method": "GET", "path": "/api/v3/ticker/24hr", "query": {"symbol": "BTCUSDT"}},
          "response": {"status": 200, "headers": {"Content-Type": "application/json;charset=UTF-8"},
                       "body": "00-spot-24hr.json", "received_at": 1700000000.201}
        }
      ]
    }

**Recording** (:func:`record`) puts a loopback proxy between the source and the venue:
the source asks the proxy exactly what it would ask the venue, the proxy forwards it
and keeps the answer (status, headers but the transport's own, body, receive time).
The source's clock is pinned for each fetch, and that time is kept as
``requested_at``.

**Replaying** (:class:`Replay`) serves the recording from a loopback aiohttp server:
each request gets its recorded status, headers and body; a request that was not
recorded gets a 404 naming what was asked and what was recorded, and raises
:class:`ReplayMiss`. Time is handled in two steps. During the fetch the source's
clock is pinned to the recorded ``requested_at``, so it asks exactly what it asked
then (candle windows included) and its own staleness and clock-skew checks judge the
bodies at the moment they were received, as they were judged live. The reading that
comes out is then moved forward by (replay time - its fetch time): ``observed_at``
and ``fetched_at`` shift alike, so the reading's age at receipt is the recorded one
and the cache's ``max_age`` judges it as if it had just been received.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from feeds.base import Source, SourceReading
from feeds.errors import RecordingError, ReplayMiss, SourceConnectionError, SourceError
from feeds.kinds import FactorKind
from feeds.registry import make_source

__all__ = [
    "FORMAT",
    "INDEX",
    "Exchange",
    "Recording",
    "RecordingError",
    "Replay",
    "ReplayMiss",
    "record",
]

FORMAT = "relayer-recording/1"
INDEX = "index.json"
# The transport's own headers: they describe the connection, not the venue's answer,
# and would be wrong for the replayed body (aiohttp has already decompressed it).
_TRANSPORT_HEADERS = frozenset({
    "connection", "content-encoding", "content-length", "keep-alive", "set-cookie", "transfer-encoding",
})
# The most the recorder keeps of one answer; the source's own cap applies after it.
_RECORD_CAP = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the source made and the venue's answer to it."""

    kind: FactorKind
    requested_at: float
    method: str
    path: str
    query: Mapping[str, str]
    status: int
    headers: Mapping[str, str]
    body_file: str
    received_at: float

    def request_line(self) -> str:
        return f"{self.method} {_target(self.path, self.query)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "requested_at": self.requested_at,
            "request": {"method": self.method, "path": self.path, "query": dict(self.query)},
            "response": {"status": self.status, "headers": dict(self.headers), "body": self.body_file,
                         "received_at": self.received_at},
        }


def _target(path: str, query: Mapping[str, str]) -> str:
    return str(URL.build(path=path, query=dict(query))) if query else path


@dataclass(slots=True)
class Recording:
    """A recording directory in memory: the index and the bodies."""

    source: str
    instrument: str
    base_url: str
    exchanges: list[Exchange] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)

    @property
    def kinds(self) -> list[FactorKind]:
        """The kinds recorded, in the order they were recorded."""
        return list(dict.fromkeys(e.kind for e in self.exchanges))

    def requested_at(self, kind: FactorKind) -> float:
        for exchange in self.exchanges:
            if exchange.kind == kind:
                return exchange.requested_at
        recorded = ", ".join(self.kinds) or "none"
        raise RecordingError(
            f"recording of {self.source} {self.instrument}: expected an exchange for {kind}, got only "
            f"{recorded}; record that kind (relayer sources record ... --kind {kind})"
        )

    def add(self, exchange: Exchange, body: bytes) -> None:
        self.exchanges.append(exchange)
        self.bodies[exchange.body_file] = body

    def save(self, directory: Path, *, force: bool = False) -> None:
        index = directory / INDEX
        if index.exists() and not force:
            raise RecordingError(
                f"expected an empty directory to record into, got {directory} holding a recording; "
                f"choose another --out or pass --force to replace it"
            )
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("[0-9][0-9]-*"):
            stale.unlink()
        for name, body in self.bodies.items():
            (directory / name).write_bytes(body)
        document = {"format": FORMAT, "source": self.source, "instrument": self.instrument,
                    "base_url": self.base_url, "exchanges": [e.to_json() for e in self.exchanges]}
        index.write_text(json.dumps(document, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "Recording":
        index = directory / INDEX
        try:
            document = json.loads(index.read_text())
        except FileNotFoundError:
            raise RecordingError(
                f"expected a recording at {index}, got no such file; record one with "
                f"`relayer sources record NAME --instrument X --url BASE --out {directory}`"
            ) from None
        except json.JSONDecodeError as exc:
            raise RecordingError(f"expected JSON in {index}, got {exc.msg} at line {exc.lineno}") from None
        try:
            if document["format"] != FORMAT:
                raise RecordingError(f"{index}: expected format {FORMAT!r}, got {document['format']!r}")
            recording = cls(str(document["source"]), str(document["instrument"]), str(document["base_url"]))
            for entry in document["exchanges"]:
                request, response = entry["request"], entry["response"]
                exchange = Exchange(
                    kind=FactorKind(entry["kind"]), requested_at=float(entry["requested_at"]),
                    method=str(request["method"]), path=str(request["path"]),
                    query={str(k): str(v) for k, v in request["query"].items()},
                    status=int(response["status"]), headers={str(k): str(v) for k, v in response["headers"].items()},
                    body_file=str(response["body"]), received_at=float(response["received_at"]),
                )
                recording.add(exchange, (directory / exchange.body_file).read_bytes())
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordingError(
                f"{index}: expected the {FORMAT} layout (see feeds/replay.py), got {type(exc).__name__}: {exc}"
            ) from None
        except FileNotFoundError as exc:
            raise RecordingError(f"{index}: names body file {exc.filename}, which is missing") from None
        return recording


class _Loopback:
    """An aiohttp app on a free loopback port; subclasses add one catch-all handler."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def _body_name(index: int, kind: FactorKind, path: str, content_type: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", path.rstrip("/").rsplit("/", 1)[-1]).strip("-") or "root"
    extension = "json" if "json" in content_type else "html" if "html" in content_type else "txt"
    return f"{index:02d}-{kind}-{slug}.{extension}"


class _Recorder(_Loopback):
    """A loopback proxy to ``base_url`` that keeps every exchange it forwards."""

    def __init__(self, recording: Recording, session: aiohttp.ClientSession, timeout: float) -> None:
        super().__init__()
        self.recording = recording
        self._session = session
        self._timeout = timeout
        self.kind = FactorKind.SPOT
        self.requested_at = 0.0
        self.failure: str | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        upstream = URL(self.recording.base_url.rstrip("/") + request.rel_url.raw_path_qs, encoded=True)
        try:
            status, headers, body, received_at = await self._forward(request.method, upstream,
                                                                     request.headers.get("Accept"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Nothing was exchanged with the venue, so nothing is recorded.
            self.failure = f"{request.method} {upstream}: {type(exc).__name__}: {exc}"
            return web.Response(status=502, text=f"recorder: no answer from {self.failure}\n")
        exchange = Exchange(
            kind=self.kind, requested_at=self.requested_at, method=request.method, path=request.path,
            query=dict(request.query), status=status, headers=headers,
            body_file=_body_name(len(self.recording.exchanges), self.kind, request.path,
                                 next((v for k, v in headers.items() if k.lower() == "content-type"), "")),
            received_at=received_at,
        )
        self.recording.add(exchange, body)
        return web.Response(status=status, body=body, headers=headers)

    async def _forward(self, method: str, upstream: URL, accept: str | None) -> tuple[int, dict[str, str], bytes, float]:
        async with self._session.request(
            method, upstream, allow_redirects=False, headers={"Accept": accept or "application/json"},
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > _RECORD_CAP:
                    break
            headers = {k: v for k, v in response.headers.items() if k.lower() not in _TRANSPORT_HEADERS}
            return response.status, headers, b"".join(chunks), time.time()


def _pinned(at: float) -> Callable[[], float]:
    return lambda: at


async def record(
    name: str,
    instrument: str,
    base_url: str,
    kinds: Sequence[FactorKind] | None = None,
    *,
    timeout: float = 10.0,
) -> tuple[Recording, list[tuple[FactorKind, SourceReading | SourceError]]]:
    """Fetch every kind once from ``base_url`` through a recording proxy; the recording and what the source made of it.

    A venue that could not be reached leaves that kind out of the recording; its
    outcome is a :class:`~feeds.errors.SourceConnectionError` naming the request.
    """
    source = make_source(name, base_url=base_url, timeout=timeout)
    source.symbol(instrument)
    wanted = list(kinds) if kinds else sorted(source.factors)
    recording = Recording(source.name, instrument, base_url.rstrip("/"))
    outcomes: list[tuple[FactorKind, SourceReading | SourceError]] = []
    async with aiohttp.ClientSession() as upstream, aiohttp.ClientSession() as session:
        recorder = _Recorder(recording, upstream, timeout)
        source.base_url = await recorder.start()
        try:
            for kind in wanted:
                recorder.kind, recorder.requested_at, recorder.failure = kind, time.time(), None
                source.clock = _pinned(recorder.requested_at)
                outcome: SourceReading | SourceError
                try:
                    outcome = await source.fetch(session, kind, instrument)
                except SourceError as exc:
                    outcome = exc
                if recorder.failure is not None:
                    outcome = SourceConnectionError(
                        f"{name} {instrument}: expected an answer from the venue, got none for "
                        f"{recorder.failure}; check --url and this machine's network",
                        source=name, instrument=instrument,
                    )
                outcomes.append((kind, outcome))
        finally:
            await recorder.stop()
    return recording, outcomes


class _ReplayServer(_Loopback):
    """Answers each recorded request with its recorded status, headers and body."""

    def __init__(self, recording: Recording) -> None:
        super().__init__()
        self.recording = recording
        # The kind being replayed: two kinds may make the same request (Binance's
        # premiumIndex serves funding and open interest) with bodies of different times.
        self.kind: FactorKind | None = None
        self.misses: list[str] = []

    def find(self, method: str, path: str, query: Mapping[str, str]) -> Exchange | None:
        matches = [e for e in self.recording.exchanges
                   if (e.method, e.path, dict(e.query)) == (method, path, dict(query))]
        for exchange in matches:
            if exchange.kind == self.kind:
                return exchange
        return matches[0] if matches else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange = self.find(request.method, request.path, dict(request.query))
        if exchange is None:
            asked = f"{request.method} {_target(request.path, request.query)}"
            recorded = "; ".join(f"{e.kind} {e.request_line()}" for e in self.recording.exchanges) or "nothing"
            miss = f"expected a recorded request, got {asked}; recorded: {recorded}"
            self.misses.append(miss)
            return web.Response(status=404, text=f"replay: {miss}\n", content_type="text/plain")
        return web.Response(status=exchange.status, body=self.recording.bodies[exchange.body_file],
                            headers=dict(exchange.headers))


class Replay:
    """A recording served on loopback and the source that reads it; ``async with Replay.open(dir)``."""

    def __init__(self, recording: Recording, *, clock: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        self.recording = recording
        self.clock = clock
        self.server = _ReplayServer(recording)
        self.source: Source = make_source(recording.source, base_url="http://127.0.0.1", timeout=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def open(cls, directory: Path | str, *, clock: Callable[[], float] = time.time) -> "Replay":
        return cls(Recording.load(Path(directory)), clock=clock)

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> "Replay":
        self.source.base_url = await self.server.start()
        self._session = aiohttp.ClientSession()
        return self

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        await self.server.stop()

    async def __aenter__(self) -> "Replay":
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def fetch(self, kind: FactorKind | str, instrument: str | None = None) -> SourceReading:
        """The source's reading of ``kind`` from the recording, moved to now (see the module docstring)."""
        if self._session is None:
            raise RecordingError("expected a started replay, got a stopped one; use `async with Replay.open(dir)`")
        kind = FactorKind(kind)
        instrument = instrument or self.recording.instrument
        self.source.clock = _pinned(self.recording.requested_at(kind))
        self.server.kind = kind
        missed = len(self.server.misses)
        try:
            reading = await self.source.fetch(self._session, kind, instrument)
        except SourceError as exc:
            if len(self.server.misses) > missed:
                raise ReplayMiss(
                    f"{self.source.name} {instrument} {kind}: {self.server.misses[missed]}; record again, or "
                    f"the adapter now asks something else than when it was recorded",
                    source=self.source.name, instrument=instrument,
                ) from exc
            raise
        shift = self.clock() - reading.fetched_at
        return reading.model_copy(update={"observed_at": reading.observed_at + shift,
                                          "fetched_at": reading.fetched_at + shift})
