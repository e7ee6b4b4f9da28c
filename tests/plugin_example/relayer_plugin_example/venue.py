"""ExampleExchange simulated: its one price route, quoting the shared simulated market.

Registered in ``relayer.simulated_venues`` under the source's name, so the venue
simulator, ``relayer sources try examplex`` and ``relayer devnet`` serve it offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from aiohttp import web

from feeds.simulated.venue import Handler, SimulatedVenue, VenueRefusal


class SimulatedExampleExchange(SimulatedVenue):
    name: ClassVar[str] = "examplex"
    default_noise_bps: ClassVar[int] = 2
    default_latency_ms: ClassVar[float] = 1.0

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [("/api/price", self.price_route)]

    def error_body(self, status: int) -> object:
        return {"error": "slow down" if status == 429 else "unavailable"}

    async def price_route(self, request: web.Request) -> object:
        market = request.query.get("market", "")
        instrument = self.lookup(market, lambda i: i, VenueRefusal({"error": "unknown market"}, 404))
        now = self.now()
        return {
            "market": market,
            "price": self.num(self.price(instrument, self.value_time(now)), "0.1", 1),
            "ts": int(self.stamp(now) * 1000),
        }
