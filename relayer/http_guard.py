"""The HTTP API's listening socket and the bounds on what a client may hold there.

aiohttp parses and answers requests; this module decides which connections it gets and for
how long:

- **Accepting.** Its own accept loop instead of `loop.create_server`, so that an accept()
  failing for lack of file descriptors (EMFILE/ENFILE, or ENOBUFS/ENOMEM) is handled here:
  counted, logged once per window (relayer.logs.RepeatFilter) and retried every
  ``accept_retry_s`` while the waiting clients stay in the kernel's backlog. The node stays
  up; it accepts again as soon as descriptors are free.
- **A connection cap.** At most ``max_connections`` connections are held. One more is
  accepted, answered ``503`` with ``Connection: close`` and closed at once, rather than left
  unaccepted: a connection left in the backlog still holds a kernel slot, its client waits
  blind until its own timeout, and a full backlog drops new clients' SYNs, the legitimate
  ones' included. Closing at once frees the descriptor and tells the client now.
- **Timeouts.** A connection must deliver a request's complete headers within
  ``header_timeout_s`` of being accepted (or of its previous response); a request must be
  handled (its body read, its answer produced) within ``body_timeout_s``. Streams (server-sent
  events) are exempt from the body timeout, count against the connection cap and have a
  smaller cap of their own, ``max_streams``. Deadlines are checked by one sweep over the open
  connections every ``sweep_s`` against an injectable clock, not by a timer per connection.

Everything is counted in `GuardStats` and exported by `GuardCollector` as ``relayer_api_*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from relayer.logs import REPEAT_WINDOW_S, RepeatFilter
from relayer.supervise import supervised

__all__ = ["ApiLimits", "ConnectionGuard", "GuardCollector", "GuardStats", "guard_middleware"]

log = logging.getLogger(__name__)
# The guard's warnings are rate-limited here as well as by the node's log handler, so a
# server embedded without `setup_logging` (tests, tools) cannot storm either.
log.addFilter(RepeatFilter())

# accept() failures that mean "no resources now, try later", as asyncio's own server treats them.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_REFUSAL_BODY = b"too many connections to this node's API; retry in a moment\n"
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY))


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_connections: int = 256
    max_streams: int = 32
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or not 1 <= self.max_streams <= self.max_connections:
            raise ValueError(f"API limits need 1 <= max_streams <= max_connections, got max_streams="
                             f"{self.max_streams}, max_connections={self.max_connections}; lower api_max_streams")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError(f"API timeouts must be positive, got header {self.header_timeout_s} s and body "
                             f"{self.body_timeout_s} s")


@dataclass(slots=True)
class GuardStats:
    open: int = 0
    streams: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # why -> connections or streams refused
    closed: dict[str, int] = field(default_factory=dict)  # which deadline -> connections closed for it
    accept_failures: dict[str, int] = field(default_factory=dict)  # errno name -> failed accept() calls
    accept_failing_since: float | None = None  # by the guard's clock; None while accept() works
    sweeps: int = 0

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class GuardCollector(Collector):
    """``relayer_api_*``: open connections and streams, refusals, closes, failed accepts."""

    def __init__(self, stats: GuardStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.stats
        yield GaugeMetricFamily("relayer_api_connections_open", "Connections the API holds", value=s.open)
        yield GaugeMetricFamily("relayer_api_streams_open", "Event streams the API serves", value=s.streams)
        yield GaugeMetricFamily("relayer_api_accept_failing", "1 while accept() fails for lack of resources "
                                "(file descriptors)", value=0 if s.accept_failing_since is None else 1)
        for name, doc, label, table in (
                ("relayer_api_refused", "Connections (connection_cap) or streams (stream_cap) refused at a cap",
                 "reason", s.refused),
                ("relayer_api_closed", "Connections closed at a deadline (header_timeout, body_timeout, idle)",
                 "reason", s.closed),
                ("relayer_api_accept_failures", "accept() calls that failed for lack of resources, by errno",
                 "error", s.accept_failures)):
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, n in sorted(table.items()):
                family.add_metric([key], n)
            yield family


class _GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard's deadline in front of it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.deadline: float | None = None
        self.phase = "header_timeout"  # which deadline runs: header_timeout, body_timeout or idle
        self.in_request = False

    # asyncio.Protocol, passed on to aiohttp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.guard._opened(self)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.in_request and self.phase == "idle":
            self.phase = "header_timeout"  # a next request has begun: its headers are now due
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard._lost(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # the request's life, told by guard_middleware

    def request_started(self, stream: bool) -> None:
        self.in_request = True
        self.phase = "body_timeout"
        self.deadline = None if stream else self.guard.clock() + self.guard.limits.body_timeout_s

    def request_ended(self) -> None:
        self.in_request = False
        self.phase = "idle"
        self.deadline = self.guard.clock() + self.guard.limits.header_timeout_s

    def expire(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        # Nothing left to send (a stalled header phase, an idle keep-alive): close politely.
        # Mid-answer, or with an answer the client does not read: drop it, or the descriptor
        # would wait on a client that never drains its socket.
        if self.in_request or transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()


class ConnectionGuard:
    """Accepts the API's connections for an aiohttp `web.Server` within `ApiLimits`.

    Its accept loop and its deadline sweep are supervised (relayer.supervise): give the node's
    ``failed``/``failures`` so a failure of either shows in its readiness and counts."""

    def __init__(self, limits: ApiLimits, *, clock: Callable[[], float] = time.monotonic,
                 sweep_s: float | None = None, accept_retry_s: float = 1.0,
                 failed: MutableMapping[str, str] | None = None, failures: Counter[str] | None = None) -> None:
        self.limits = limits
        self.failed: MutableMapping[str, str] = failed if failed is not None else {}
        self.failures: Counter[str] = failures if failures is not None else Counter()
        self.clock = clock
        self.sweep_s = sweep_s if sweep_s is not None else min(1.0, limits.header_timeout_s / 4,
                                                              limits.body_timeout_s / 4)
        self.accept_retry_s = accept_retry_s
        self.stats = GuardStats()
        self._connections: set[_GuardedConnection] = set()
        self._sock: socket.socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._recovered_logged_at: float | None = None

    async def start(self, server: web.Server, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port) and serve; the bound address."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._tasks = [
            asyncio.create_task(supervised(name, run, failed=self.failed, failures=self.failures), name=name)
            for name, run in (("api_accept", lambda: self._accept_forever(server)),
                              ("api_deadlines", self._sweep_forever))]
        bound = sock.getsockname()
        return str(bound[0]), int(bound[1])

    async def stop(self) -> None:
        """Stop accepting; the open connections are aiohttp's to shut down."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def sweep(self) -> None:
        """Close every connection whose deadline has passed."""
        now = self.clock()
        for conn in [c for c in self._connections if c.deadline is not None and now >= c.deadline]:
            self.stats.count(self.stats.closed, conn.phase)
            if conn.phase != "idle":
                log.warning("an API connection missed its %s (api_%s_s): closed it; a slow or stalled client, "
                            "or a client holding connections open on purpose", conn.phase.replace("_", " "),
                            conn.phase)
            conn.deadline = None
            conn.expire()
        self.stats.sweeps += 1

    def admit_stream(self) -> bool:
        if self.stats.streams >= self.limits.max_streams:
            self.stats.count(self.stats.refused, "stream_cap")
            log.warning("API stream cap reached (%d streams): refusing more with 503; raise api_max_streams if "
                        "these subscribers are legitimate", self.limits.max_streams)
            return False
        return True

    # -- connections ------------------------------------------------------------------

    def _opened(self, conn: _GuardedConnection) -> None:
        conn.deadline = self.clock() + self.limits.header_timeout_s
        self._connections.add(conn)
        self.stats.open = len(self._connections)

    def _lost(self, conn: _GuardedConnection) -> None:
        self._connections.discard(conn)
        self.stats.open = len(self._connections)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            self.sweep()

    async def _accept_forever(self, server: web.Server) -> None:
        loop = asyncio.get_running_loop()
        sock = self._sock
        assert sock is not None
        while True:
            try:
                client, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._accept_failed(exc)
                    await asyncio.sleep(self.accept_retry_s)
                # Otherwise the client left before it was taken (ECONNABORTED and the like).
                continue
            self._accept_works()
            if len(self._connections) >= self.limits.max_connections:
                self._refuse(client)
                continue
            try:
                await loop.connect_accepted_socket(lambda: _GuardedConnection(self, server()), client)
            except OSError:
                client.close()

    def _refuse(self, client: socket.socket) -> None:
        self.stats.count(self.stats.refused, "connection_cap")
        log.warning("API connection cap reached (%d open): new connections are answered 503 and closed; "
                    "raise api_max_connections if the clients are legitimate, else find who holds them",
                    self.limits.max_connections)
        with contextlib.suppress(OSError):
            client.send(_REFUSAL)
        client.close()

    def _accept_failed(self, exc: OSError) -> None:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.stats.count(self.stats.accept_failures, name)
        if self.stats.accept_failing_since is None:
            self.stats.accept_failing_since = self.clock()
        log.warning("the API cannot accept connections: %s (%s); the node keeps running and retries every %g s; "
                    "raise the open-files limit (ulimit -n) or find what holds the descriptors",
                    exc.strerror, name, self.accept_retry_s)

    def _accept_works(self) -> None:
        since = self.stats.accept_failing_since
        if since is None:
            return
        self.stats.accept_failing_since = None
        now = self.clock()
        # Once per log window, so descriptors hovering at the limit cannot turn this into a storm.
        if self._recovered_logged_at is None or now - self._recovered_logged_at >= REPEAT_WINDOW_S:
            self._recovered_logged_at = now
            log.info("the API accepts connections again after %.0f s without (%d failed accept() calls so far)",
                     now - since, sum(self.stats.accept_failures.values()))


def guard_middleware(streams: frozenset[str]) -> Middleware:
    """Tells each request's start and end to its connection's guard; ``streams`` are the
    paths served as long-lived streams (no body timeout, the stream cap). A request on a
    connection no guard accepted (aiohttp's own test server) passes through untouched."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        conn = transport.get_protocol() if transport is not None else None
        if not isinstance(conn, _GuardedConnection):
            return await handler(request)
        stream = request.path in streams
        if stream:
            if not conn.guard.admit_stream():
                return web.json_response(
                    {"error": f"{conn.guard.limits.max_streams} event streams are served already; poll the "
                              "non-stream endpoints or ask another node"}, status=503)
            conn.guard.stats.streams += 1
        conn.request_started(stream)
        try:
            return await handler(request)
        finally:
            if stream:
                conn.guard.stats.streams -= 1
            conn.request_ended()

    return guard
