"""The venue simulator's server: every simulated venue on one port, with a fault switch.

For offline runs, the devnet and tests. The simulated venues are discovered in the
``relayer.simulated_venues`` entry-point group (one file each under
``feeds/simulated/``, or shipped by a plugin package) and all quote one seeded
:class:`~feeds.market.MarketModel`. This module owns what is the same for every
venue: routing (``/{venue}/...``), the simulated latency, the transport faults and
the server's lifecycle. Faults are switched per venue, in process
(:meth:`VenueSimulator.set_fault`) or over HTTP (``POST /sim/fault``): timeout,
http429 (with Retry-After), http500, garbage (an HTML error page; ``html`` is the
same), truncated JSON, the venue's own refusals (rate_limited, unavailable: in an
HTTP 200 body for the venues that report errors there, else as HTTP 429 / 503), and
the value faults the venue applies itself: nan, negative, zero, stale timestamps and
a frozen value (fresh timestamps, unchanging value).

A market scenario (``--scenario calm|vol-spike|crash|venue-outage``, feeds/scenarios.py)
runs on the model from the simulator's start; its venue outages are transport faults of
this server, switched by the scenario's clock (a fault set by hand takes precedence).

Run standalone: ``python -m feeds.simulator --port 8700 --seed 1 [--scenario crash]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal

from aiohttp import web

from feeds.errors import SimulatorConfigError
from feeds.market import MarketModel, unit
from feeds.scenarios import SCENARIOS, ScenarioClock, scenario_named
from feeds.registry import load_simulated_venues
from feeds.simulated.venue import FAULTS, Handler, SimulatedVenue, VenueRefusal

__all__ = ["FAULTS", "MarketModel", "VenueSimulator", "describe_schedule", "main", "simulated_venue_names"]

RETRY_AFTER_SECONDS = 2
_HOW_LONG_A_TIMEOUT_HANGS = 30.0
_BAD_GATEWAY_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    "<h1>502 Bad Gateway</h1><p>The upstream server is temporarily unavailable."
    "</p></body></html>"
)


def simulated_venue_names() -> list[str]:
    """The names of every installed simulated venue, sorted."""
    return list(load_simulated_venues())


class VenueSimulator:
    """An aiohttp app serving every simulated venue under /{venue}/... plus /sim controls."""

    def __init__(
        self,
        model: MarketModel,
        *,
        venues: Sequence[str] | None = None,
        noise_bps: Mapping[str, int] | None = None,
        latency_ms: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        installed = load_simulated_venues()
        chosen = list(installed) if venues is None else list(venues)
        unknown = [venue for venue in chosen if venue not in installed]
        if unknown:
            raise SimulatorConfigError(
                f"expected venues among {', '.join(installed)}, got {', '.join(unknown)}; "
                f"install the package that simulates them"
            )
        self.model = model
        self._clock = clock
        self._venues: dict[str, SimulatedVenue] = {
            name: installed[name](
                model, clock, noise_bps=(noise_bps or {}).get(name), latency_ms=(latency_ms or {}).get(name)
            )
            for name in chosen
        }
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        # Set on stop so a "timeout" fault lets go at once instead of after 30 s.
        self._stopping = asyncio.Event()

    @property
    def venues(self) -> tuple[str, ...]:
        return tuple(self._venues)

    @property
    def noise_bps(self) -> dict[str, int]:
        return {name: venue.noise_bps for name, venue in self._venues.items()}

    @property
    def latency_ms(self) -> dict[str, float]:
        return {name: venue.latency_ms for name, venue in self._venues.items()}

    @property
    def requests(self) -> dict[str, int]:
        return {name: venue.requests for name, venue in self._venues.items()}

    def venue(self, name: str) -> SimulatedVenue:
        """The simulated venue serving ``name``."""
        try:
            return self._venues[name]
        except KeyError:
            raise SimulatorConfigError(
                f"expected a simulated venue ({', '.join(self._venues)}), got {name!r}"
            ) from None

    # ---- control -------------------------------------------------------------------

    def set_fault(self, venue: str, fault: str | None) -> None:
        target = self.venue(venue)
        if fault is not None and fault not in FAULTS:
            raise SimulatorConfigError(
                f"expected a fault among {', '.join(FAULTS)} or null, got {fault!r}"
            )
        target.set_fault(fault)

    def faults(self) -> dict[str, str | None]:
        return {name: venue.fault for name, venue in self._venues.items()}

    def venue_price(self, venue: str, instrument: str, t: float) -> Decimal:
        """The true price with this venue's deterministic noise (changes once per second)."""
        return self.venue(venue).price(instrument, t)

    def venue_funding(self, venue: str, instrument: str, t: float) -> Decimal:
        return self.venue(venue).funding(instrument, t)

    def venue_open_interest(self, venue: str, instrument: str, t: float) -> Decimal:
        return self.venue(venue).open_interest(instrument, t)

    # ---- server --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/sim/truth", self._truth)
        app.router.add_get("/sim/fault", self._get_faults)
        app.router.add_post("/sim/fault", self._post_fault)
        for name, venue in self._venues.items():
            for path, handler in venue.routes():
                app.router.add_get(f"/{name}{path}", self._wrap(venue, handler))
            for path, stream in venue.stream_routes():
                app.router.add_get(f"/{name}{path}", stream)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            raise SimulatorConfigError(f"expected a stopped simulator, got one serving {self._base_url}")
        self._stopping.clear()
        # handler_cancellation: a client that gives up (its timeout) ends the
        # "timeout" fault's sleep instead of leaving it running.
        runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        self._runner = runner
        self._base_url = f"http://{bound_host}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        self._stopping.set()
        for venue in self._venues.values():
            await venue.drop_streams()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._base_url = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise SimulatorConfigError("expected a started simulator, got a stopped one; await start() first")
        return self._base_url

    def venue_url(self, venue: str) -> str:
        self.venue(venue)
        return f"{self.base_url}/{venue}"

    def stream_url(self, venue: str) -> str:
        """The WebSocket URL of the venue's stream (its first stream route)."""
        routes = self.venue(venue).stream_routes()
        if not routes:
            raise SimulatorConfigError(f"expected a venue with a stream, got {venue!r}, which streams nothing")
        return self.venue_url(venue).replace("http://", "ws://", 1) + routes[0][0]

    # ---- transport faults ----------------------------------------------------------

    def _wrap(self, venue: SimulatedVenue, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            venue.requests += 1
            latency = venue.latency_ms
            if latency > 0:
                jitter = 1 + abs(float(unit(self.model.seed, "latency", venue.name, venue.requests))) / 2
                await asyncio.sleep(latency * jitter / 1000)
            fault = venue.fault
            if fault is None and self.model.scenario is not None:
                fault = self.model.scenario.fault(venue.name, self._clock())
            if fault in ("garbage", "html"):
                return web.Response(status=200, text=_BAD_GATEWAY_PAGE, content_type="text/html")
            if fault == "timeout":
                try:
                    await asyncio.wait_for(self._stopping.wait(), _HOW_LONG_A_TIMEOUT_HANGS)
                except TimeoutError:
                    pass
                return web.json_response(venue.error_body(504), status=504)
            if fault == "http500":
                return web.json_response(venue.error_body(500), status=500)
            if fault in ("rate_limited", "unavailable"):
                status = 429 if fault == "rate_limited" else 503
                return web.json_response(venue.error_body(status), status=200 if venue.errors_in_body else status)
            if fault == "http429":
                return web.json_response(
                    venue.error_body(429), status=429, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
                )
            try:
                payload = await handler(request)
                status = 200
            except VenueRefusal as refusal:
                payload, status = refusal.body, refusal.status
            body = json.dumps(payload).encode()
            if fault == "truncated":
                # What a connection cut mid-body looks like after a proxy re-frames it.
                body = body[: len(body) // 2]
            return web.Response(status=status, body=body, content_type="application/json")

        return serve

    # ---- /sim control endpoints ----------------------------------------------------

    async def _truth(self, request: web.Request) -> web.Response:
        instrument = request.query.get("instrument", "")
        raw_t = request.query.get("t")
        try:
            t = self._clock() if raw_t is None else float(raw_t)
            price = self.model.true_price(instrument, t)
        except (ValueError, SimulatorConfigError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"instrument": instrument, "price": str(price), "t": t})

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults())

    async def _post_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response(
                {"error": 'expected a JSON body {"venue": ..., "fault": ...}'}, status=400
            )
        if not isinstance(body, dict) or not isinstance(body.get("venue"), str):
            return web.json_response(
                {"error": f'expected a JSON object {{"venue": str, "fault": str|null}}, got {body!r}'},
                status=400,
            )
        try:
            self.set_fault(body["venue"], body.get("fault"))
        except SimulatorConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.faults())


def describe_schedule(clock: ScenarioClock) -> list[str]:
    """One line per phase of a started scenario: name, offset, wall-clock start (UTC), what happens."""
    lines = []
    for phase in clock.schedule():
        at = phase["starts_at"]
        when = "" if at is None else time.strftime(" %H:%M:%S UTC", time.gmtime(at))
        lines.append(f"scenario {clock.scenario.name}: phase {phase['name']} at +{phase['offset_s']:g} s"
                     f"{when}: {phase['description']}")
    return lines


async def _serve(host: str, port: int, seed: int, scenario: str) -> None:
    clock = ScenarioClock(scenario_named(scenario), seed)
    simulator = VenueSimulator(MarketModel(seed, scenario=clock))
    base_url = await simulator.start(host, port)
    clock.start(time.time())
    print(f"simulator listening on {base_url}", flush=True)
    for line in describe_schedule(clock):
        print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feeds.simulator",
        description="Serve every installed simulated venue (relayer.simulated_venues) on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", choices=list(SCENARIOS), default="calm",
                        help="market scenario from the start (feeds/scenarios.py; default calm)")
    parser.add_argument("--list", action="store_true", help="print the installed simulated venues and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(simulated_venue_names()))
        return 0
    asyncio.run(_serve(args.host, args.port, args.seed, args.scenario))
    return 0


if __name__ == "__main__":
    sys.exit(main())
