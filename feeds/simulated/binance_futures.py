"""Simulated Binance USD-M futures: the premium index (mark price, funding) and open interest.

Serves what :mod:`feeds.sources.binance_futures` reads: ``/fapi/v1/premiumIndex`` and
``/fapi/v1/openInterest`` (contracts in the base asset), numbers as strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

from feeds.market import CTX
from feeds.simulated.venue import Handler, SimulatedVenue, VenueRefusal, fmt, usdt_pair


class SimulatedBinanceFutures(SimulatedVenue):
    name: ClassVar[str] = "binance-futures"
    default_noise_bps: ClassVar[int] = 3
    default_latency_ms: ClassVar[float] = 1.0
    open_interest_share: ClassVar[Decimal] = Decimal("0.30")

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [
            ("/fapi/v1/premiumIndex", self.premium_index),
            ("/fapi/v1/openInterest", self.open_interest_route),
        ]

    def error_body(self, status: int) -> object:
        if status == 429:
            return {"code": -1003, "msg": "Too many requests."}
        return {"code": -1001, "msg": "Internal error."}

    def _instrument(self, request: web.Request) -> tuple[str, str]:
        symbol = request.query.get("symbol", "")
        return symbol, self.lookup(symbol, usdt_pair, VenueRefusal({"code": -1121, "msg": "Invalid symbol."}, 400))

    async def premium_index(self, request: web.Request) -> object:
        symbol, instrument = self._instrument(request)
        now = self.now()
        t = self.value_time(now)
        mark = self.price(instrument, t)
        return {
            "symbol": symbol, "markPrice": fmt(mark, "0.01", 8), "indexPrice": fmt(mark, "0.01", 8),
            "estimatedSettlePrice": fmt(mark, "0.01", 8),
            "lastFundingRate": self.num(self.funding(instrument, t), "1e-8", 8),
            "interestRate": "0.00010000", "nextFundingTime": (math.floor(now / 28800) + 1) * 28_800_000,
            "time": int(self.stamp(now) * 1000),
        }

    async def open_interest_route(self, request: web.Request) -> object:
        symbol, instrument = self._instrument(request)
        now = self.now()
        t = self.value_time(now)
        contracts = CTX.divide(self.open_interest(instrument, t), self.price(instrument, t))
        return {"openInterest": self.num(contracts, "0.001", 3), "symbol": symbol, "time": int(self.stamp(now) * 1000)}
