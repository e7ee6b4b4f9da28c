"""The node's HTTP API, on the node's own asyncio loop, bound to loopback by default.

    GET /            dashboard (relayer/static/dashboard.html)
    GET /healthz     200 while the process serves requests
    GET /readyz      200 when the node can do its job; else 503 and every reason (relayer.health)
    GET /metrics     Prometheus text format
    GET /api/status  node, committee, peers, epoch/round, sources, transmission counters
    GET /api/feeds   latest on-chain value per feed, with its attested report and signatures, why
                     it was in or left out of the latest attested report, the
                     realized vol of its landed values, and the margin the deployed RiskGate sets
                     (or that no RiskGate is configured)
    GET /api/margins the RiskGate's markets and the margins it sets now, or that there is none
    GET /api/rounds  recent rounds: latency, signers, landed or not, why each feed is in the
                     report (first_value, deviation with its bps against the threshold,
                     heartbeat with the on-chain age, every_round) and the feeds skipped
    GET /api/inclusions  per feed: why it was in or left out of the latest attested report,
                     and the counts by reason (as relayer_feed_inclusions_total)
    GET /api/history per-feed (observed_at, value) points for charts
    GET /api/events  server-sent events: `attested` and `landed` as they happen (a client that
                     leaves is let go at once: aiohttp cancels the handler of a closed connection)
    GET /api/subscriptions  per feed: the effective promise (deviation, heartbeat), the catalog
                     default, the floors, who asked for what, the latest local median's
                     deviation from the latest on-chain value against the threshold, and the
                     time left to the heartbeat
    GET /api/reports/latest           the last attested report that carries a feed (pull path)
    GET /api/reports/{epoch}/{round}  one attested report (``?config_digest=0x..``); 404 with
                     what is kept when unknown
    GET /api/reports/stream           server-sent events `report` as reports are attested

Connections are accepted and bounded by `relayer.http_guard` (`ApiLimits`: a connection
cap, header and body timeouts, a stream cap for the two event streams, and a node that
stays up when it runs out of file descriptors).

Everything is read through `relayer.metrics.Telemetry` (attested reports through its
`relayer.reports.ReportBook`, which reads the store) and, for subscriptions, the
`SubscriptionsBoard` the node tells; the API never touches the node or the engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggregation.trigger import BPS, Promise, trigger_reason
from relayer.chain.feed_view import FeedViewSnapshot
from relayer.chain.subscriptions import PromiseSet
from relayer.http_guard import ApiLimits, ConnectionGuard, GuardCollector, guard_middleware
from relayer.metrics import Telemetry
from relayer.reports import missed_frame

log = logging.getLogger(__name__)

DASHBOARD = Path(__file__).with_name("static") / "dashboard.html"
_TELEMETRY = web.AppKey("telemetry", Telemetry)
# Served as long-lived streams: no body timeout, and the guard's stream cap.
STREAM_PATHS = frozenset({"/api/events", "/api/reports/stream"})
NO_REGISTRY = ("no SubscriptionRegistry configured: the catalog defaults are the promises; set "
               "subscription_registry_address to follow subscribers")


@dataclass(frozen=True, slots=True)
class ServedFeedInfo:
    feed_id: str
    feed_key: bytes  # the on-chain bytes32 id
    index: int
    decimals: int


@dataclass(frozen=True, slots=True)
class SubscriptionsSnapshot:
    """What the node knows of its promises at one moment, as it tells it."""

    at: float
    registry: str | None
    feeds: tuple[ServedFeedInfo, ...]
    promises: PromiseSet
    promises_block: int | None
    onchain: FeedViewSnapshot | None
    local: Mapping[int, tuple[int, int]]  # feed index -> (latest local median, its observation time)


class SubscriptionsBoard:
    """Holds the latest snapshot the node told; builds `/api/subscriptions` from it."""

    def __init__(self) -> None:
        self.snapshot: SubscriptionsSnapshot | None = None

    def update(self, snapshot: SubscriptionsSnapshot) -> None:
        self.snapshot = snapshot

    def view(self, now: float | None = None) -> dict[str, Any]:
        snap = self.snapshot
        if snap is None:
            return {"ready": False, "registry": None, "message": "the node has not read its promises yet",
                    "feeds": []}
        return subscriptions_view(snap, time.time() if now is None else now)


_BOARD = web.AppKey("subscriptions", SubscriptionsBoard)


def _promise(p: Promise) -> dict[str, int]:
    return {"deviation_bps": p.deviation_bps, "heartbeat_s": p.heartbeat_s}


def subscriptions_view(snap: SubscriptionsSnapshot, now: float) -> dict[str, Any]:
    """Per feed the promise and where it comes from, and how close the feed is to triggering.

    The deviation is the node's latest local median (its own observation, the value it would
    bring to a round) against the latest on-chain value; the heartbeat is counted from the
    on-chain observation time."""
    feeds: list[dict[str, Any]] = []
    ps = snap.promises
    for feed in snap.feeds:
        promise = ps.promises[feed.feed_key]
        floors = ps.floors[feed.feed_key]
        onchain = snap.onchain.feeds.get(feed.index) if snap.onchain is not None else None
        landed = onchain.latest if onchain is not None else None
        local = snap.local.get(feed.index)
        entry: dict[str, Any] = {
            "feed_id": feed.feed_id, "index": feed.index, "decimals": feed.decimals,
            "promise": _promise(promise), "default": _promise(ps.defaults[feed.feed_key]),
            "floors": {"deviation_bps": floors.min_deviation_bps, "heartbeat_s": floors.min_heartbeat_s},
            "subscribers": [{"subscriber": s.subscriber, "deviation_bps": s.deviation_bps, "heartbeat_s": s.heartbeat}
                            for s in ps.subscribers_of(feed.feed_key)],
            "onchain": None if landed is None else {
                "value": landed.value, "observed_at": landed.observed_at,
                "previous": None if onchain is None or onchain.previous is None else {
                    "value": onchain.previous.value, "observed_at": onchain.previous.observed_at},
            },
            "local": None if local is None else {"value": local[0], "observed_at": local[1]},
            "deviation": None, "heartbeat_left_s": None, "would_trigger": None,
        }
        if landed is not None:
            entry["heartbeat_left_s"] = round(landed.observed_at + promise.heartbeat_s - now, 1)
            if local is not None:
                reference = max(abs(landed.value), promise.min_reference)
                moved = abs(local[0] - landed.value)
                entry["deviation"] = {
                    "bps": round(moved * BPS / reference, 2) if reference else None,
                    "threshold_bps": promise.deviation_bps,
                    "reached": moved * BPS >= promise.deviation_bps * reference if reference else moved != 0,
                }
        if local is not None:
            reason = trigger_reason(local[0], local[1], landed, promise)
            entry["would_trigger"] = None if reason is None else str(reason)
        feeds.append(entry)
    return {
        "ready": True, "registry": snap.registry, "message": None if snap.registry else NO_REGISTRY,
        "at": snap.at, "promises_block": snap.promises_block,
        "onchain_block": snap.onchain.block if snap.onchain is not None else None,
        "deviation_of": "latest local median against the latest on-chain value",
        "feeds": feeds,
    }


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(DASHBOARD, headers={"Cache-Control": "no-store"})


async def _healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def _readyz(request: web.Request) -> web.Response:
    readiness = request.app[_TELEMETRY].readiness()
    return _json(readiness.public(), status=200 if readiness.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_TELEMETRY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _status(request: web.Request) -> web.Response:
    return _json(request.app[_TELEMETRY].status())


async def _feeds(request: web.Request) -> web.Response:
    telemetry = request.app[_TELEMETRY]
    return _json({"feeds": telemetry.feed_view(), "risk_gate": telemetry.risk_gate_view()})


async def _margins(request: web.Request) -> web.Response:
    return _json(request.app[_TELEMETRY].risk_gate_view())


async def _subscriptions(request: web.Request) -> web.Response:
    return _json(request.app[_BOARD].view())


async def _rounds(request: web.Request) -> web.Response:
    return _json({"rounds": request.app[_TELEMETRY].rounds_view()})


async def _inclusions(request: web.Request) -> web.Response:
    return _json(request.app[_TELEMETRY].inclusions_view())


async def _history(request: web.Request) -> web.Response:
    return _json({"history": request.app[_TELEMETRY].history_view()})


async def _events(request: web.Request) -> web.StreamResponse:
    telemetry = request.app[_TELEMETRY]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    queue = telemetry.subscribe()
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            data = json.dumps(event, default=str)
            await response.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        pass
    finally:
        telemetry.unsubscribe(queue)
    return response


async def _report_latest(request: web.Request) -> web.Response:
    report = request.app[_TELEMETRY].reports.latest()
    if report is None:
        return _json({"error": "no attested report that carries a feed is kept on this node yet; "
                               "wait for a round, or ask another node"}, status=404)
    return _json(report)


async def _report_at(request: web.Request) -> web.Response:
    book = request.app[_TELEMETRY].reports
    epoch, round_ = int(request.match_info["epoch"]), int(request.match_info["round"])
    digest = request.query.get("config_digest")
    if digest is not None:
        digest = digest.lower()
        if len(digest) != 66 or not digest.startswith("0x") or any(c not in "0123456789abcdef" for c in digest[2:]):
            return _json({"error": f"config_digest must be 0x and 64 hex digits, got {digest!r}"}, status=400)
    report = book.at(epoch, round_, digest)
    if report is None:
        return _json(book.not_found(epoch, round_, digest), status=404)
    return _json(report)


async def _report_stream(request: web.Request) -> web.StreamResponse:
    book = request.app[_TELEMETRY].reports
    sub = book.subscribe()
    if sub is None:
        return _json({"error": f"{book.max_clients} report streams are served already; poll /api/reports/latest "
                               "or ask another node"}, status=503)
    try:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        await response.write(b": connected\n\n")
        idle = 0
        while True:
            # A second at a time, so a client that went away frees its place within a second.
            missed, frames = await sub.take(timeout=1)
            if not frames:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                idle += 1
                if idle >= 15:
                    await response.write(b": keep-alive\n\n")
                    idle = 0
                continue
            idle = 0
            if missed:
                await response.write(missed_frame(missed))
            for frame in frames:
                await response.write(frame)
    except ConnectionResetError:
        pass
    finally:
        book.unsubscribe(sub)
    return response


def build_app(telemetry: Telemetry, board: SubscriptionsBoard | None = None) -> web.Application:
    app = web.Application(middlewares=[guard_middleware(STREAM_PATHS)])
    app[_TELEMETRY] = telemetry
    app[_BOARD] = board if board is not None else SubscriptionsBoard()
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/api/feeds", _feeds)
    app.router.add_get("/api/margins", _margins)
    app.router.add_get("/api/rounds", _rounds)
    app.router.add_get("/api/history", _history)
    app.router.add_get("/api/inclusions", _inclusions)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/subscriptions", _subscriptions)
    app.router.add_get("/api/reports/latest", _report_latest)
    app.router.add_get("/api/reports/stream", _report_stream)
    app.router.add_get(r"/api/reports/{epoch:\d+}/{round:\d+}", _report_at)
    return app


class ApiServer:
    def __init__(self, telemetry: Telemetry, host: str, port: int, board: SubscriptionsBoard | None = None,
                 guard: ConnectionGuard | None = None) -> None:
        self.app = build_app(telemetry, board)
        self.host, self.port = host, port
        self.guard = guard if guard is not None else ConnectionGuard(ApiLimits())
        self._registry = telemetry.registry
        self._collector = GuardCollector(self.guard.stats)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    async def start(self) -> None:
        # handler_cancellation: a client that closes its connection cancels its handler, so an
        # event stream lets go of a departed client at once, not at its next keep-alive write.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        assert self._runner.server is not None
        try:
            _, port = await self.guard.start(self._runner.server, self.host, self.port)
        except OSError:
            await self._runner.cleanup()
            raise
        self._registry.register(self._collector)
        self.url = f"http://{self.host}:{port}"
        log.info("API, dashboard and /metrics on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self.guard.stop()
            self._registry.unregister(self._collector)
            await self._runner.cleanup()
            self._runner = None
