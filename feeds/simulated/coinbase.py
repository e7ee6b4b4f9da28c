"""Simulated Coinbase Exchange: product ticker, 1-minute candles and the level-2 book.

Serves what :mod:`feeds.sources.coinbase` reads. Products are named like our
instruments ("BTC-USD"); times are RFC 3339; candles are numbers, newest first;
errors are ``{"message": "NotFound"}`` with a 4xx status.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

from feeds.simulated.venue import Handler, SimulatedVenue, VenueRefusal, iso


class SimulatedCoinbase(SimulatedVenue):
    name: ClassVar[str] = "coinbase"
    default_noise_bps: ClassVar[int] = 2
    default_latency_ms: ClassVar[float] = 3.0
    book_scale: ClassVar[Decimal] = Decimal("0.9")

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [
            ("/products/{product_id}/ticker", self.ticker),
            ("/products/{product_id}/candles", self.candles_route),
            ("/products/{product_id}/book", self.book_route),
        ]

    def error_body(self, status: int) -> object:
        return {"message": "Public rate limit exceeded" if status == 429 else "Internal server error"}

    def _product(self, request: web.Request) -> str:
        product = request.match_info["product_id"]
        if product not in self.model.base_prices:
            raise VenueRefusal({"message": "NotFound"}, 404)
        return product

    async def ticker(self, request: web.Request) -> object:
        product = self._product(request)
        now = self.now()
        last = self.num(self.price(product, self.value_time(now)), "0.01", 2)
        stamp = self.stamp(now)
        return {"ask": last, "bid": last, "volume": "12345.67890123", "trade_id": int(stamp * 10),
                "price": last, "size": "0.00123456", "time": iso(stamp)}

    async def candles_route(self, request: web.Request) -> object:
        product = self._product(request)
        rows = []
        # Newest first; numbers, not strings (as Coinbase documents).
        for opened, close in reversed(self.candles(product, 61)):
            number = float(close)
            rows.append([opened, number, number, number, number, 12.5])
        return rows

    async def book_route(self, request: web.Request) -> object:
        product = self._product(request)
        bids, asks = self.book(product)
        now = self.now()
        return {"bids": [b + [3] for b in bids], "asks": [a + [2] for a in asks], "sequence": int(now * 100),
                "auction_mode": False, "auction": None, "time": iso(self.stamp(now))}
