"""The node's HTTP API, on the node's own asyncio loop, bound to loopback by default.

    GET /            dashboard (relayer/static/dashboard.html)
    GET /healthz     200 while the process serves requests
    GET /readyz      200 once the node follows the chain and (as a member) has a quorum of peers
    GET /metrics     Prometheus text format
    GET /api/status  node, committee, peers, epoch/round, sources, transmission counters
    GET /api/feeds   latest on-chain value per feed, with its attested report and signatures, the
                     realized vol of its landed values, and the margin the deployed RiskGate sets
                     (or that no RiskGate is configured)
    GET /api/margins the RiskGate's markets and the margins it sets now, or that there is none
    GET /api/rounds  recent rounds: latency, signers, landed or not
    GET /api/history per-feed (observed_at, value) points for charts
    GET /api/events  server-sent events: `attested` and `landed` as they happen

Everything is read through `relayer.metrics.Telemetry`; the API never touches the node, the
engine or the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relayer.metrics import Telemetry

log = logging.getLogger(__name__)

DASHBOARD = Path(__file__).with_name("static") / "dashboard.html"
_TELEMETRY = web.AppKey("telemetry", Telemetry)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(DASHBOARD, headers={"Cache-Control": "no-store"})


async def _healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def _readyz(request: web.Request) -> web.Response:
    ready = request.app[_TELEMETRY].ready()
    return _json({"ready": ready}, status=200 if ready else 503)


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


async def _rounds(request: web.Request) -> web.Response:
    return _json({"rounds": request.app[_TELEMETRY].rounds_view()})


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
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        telemetry.unsubscribe(queue)
    return response


def build_app(telemetry: Telemetry) -> web.Application:
    app = web.Application()
    app[_TELEMETRY] = telemetry
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/api/feeds", _feeds)
    app.router.add_get("/api/margins", _margins)
    app.router.add_get("/api/rounds", _rounds)
    app.router.add_get("/api/history", _history)
    app.router.add_get("/api/events", _events)
    return app


class ApiServer:
    def __init__(self, telemetry: Telemetry, host: str, port: int) -> None:
        self.app = build_app(telemetry)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []  # the bound port when 0 was asked
        port = sockets[0].getsockname()[1] if sockets else self.port
        self.url = f"http://{self.host}:{port}"
        log.info("API, dashboard and /metrics on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
