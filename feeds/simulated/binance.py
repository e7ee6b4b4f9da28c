"""Simulated Binance spot: the 24hr and price tickers, 1-minute klines and the order book.

Serves what :mod:`feeds.sources.binance` reads, in Binance's documented shapes:
numbers as strings, unix milliseconds, ``{"code": -1121, "msg": "Invalid symbol."}``
with HTTP 400 for an unknown symbol.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

from feeds.simulated.venue import Handler, SimulatedVenue, VenueRefusal, usdt_pair


class SimulatedBinance(SimulatedVenue):
    name: ClassVar[str] = "binance"
    default_noise_bps: ClassVar[int] = 3
    default_latency_ms: ClassVar[float] = 1.0
    book_scale: ClassVar[Decimal] = Decimal("1.3")

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [
            ("/api/v3/ticker/24hr", self.ticker_24hr),
            ("/api/v3/ticker/price", self.ticker_price),
            ("/api/v3/klines", self.klines),
            ("/api/v3/depth", self.depth),
        ]

    def error_body(self, status: int) -> object:
        if status == 429:
            return {"code": -1003, "msg": "Too many requests."}
        return {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}

    def _instrument(self, request: web.Request) -> tuple[str, str]:
        symbol = request.query.get("symbol", "")
        return symbol, self.lookup(symbol, usdt_pair, VenueRefusal({"code": -1121, "msg": "Invalid symbol."}, 400))

    async def ticker_24hr(self, request: web.Request) -> object:
        symbol, instrument = self._instrument(request)
        now = self.now()
        last = self.num(self.price(instrument, self.value_time(now)), "0.01", 8)
        close_ms = int(self.stamp(now) * 1000)
        return {
            "symbol": symbol, "priceChange": "0.00000000", "priceChangePercent": "0.000",
            "weightedAvgPrice": last, "prevClosePrice": last, "lastPrice": last, "lastQty": "0.00100000",
            "bidPrice": last, "bidQty": "1.50000000", "askPrice": last, "askQty": "0.75000000",
            "openPrice": last, "highPrice": last, "lowPrice": last, "volume": "12345.67800000",
            "quoteVolume": "790123456.78000000", "openTime": close_ms - 86_400_000, "closeTime": close_ms,
            "firstId": 3_000_000_000, "lastId": 3_001_000_000, "count": 1_000_001,
        }

    async def ticker_price(self, request: web.Request) -> object:
        symbol, instrument = self._instrument(request)
        return {"symbol": symbol, "price": self.num(self.price(instrument, self.value_time(self.now())), "0.01", 8)}

    async def klines(self, request: web.Request) -> object:
        _, instrument = self._instrument(request)
        limit = min(int(request.query.get("limit", "500")), 1000)
        return [
            [opened * 1000, close, close, close, close, "12.50000000", opened * 1000 + 59_999,
             "800000.00000000", 1000, "6.25000000", "400000.00000000", "0"]
            for opened, close in self.candles(instrument, limit)
        ]

    async def depth(self, request: web.Request) -> object:
        _, instrument = self._instrument(request)
        limit = min(int(request.query.get("limit", "100")), 5000)
        bids, asks = self.book(instrument)
        return {"lastUpdateId": int(self.now() * 10), "bids": bids[:limit], "asks": asks[:limit]}
