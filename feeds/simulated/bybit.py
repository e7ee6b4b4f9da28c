"""Simulated Bybit v5: spot and linear tickers, 1-minute klines and the order book.

Serves what :mod:`feeds.sources.bybit` reads. Every answer is the envelope
``{"retCode": 0, "retMsg": "OK", "result": {...}, "retExtInfo": {}, "time": ms}``; a
bad category or symbol is a non-zero ``retCode`` inside HTTP 200; numbers are strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

from feeds.market import CTX
from feeds.simulated.venue import Handler, SimulatedVenue, VenueRefusal, fmt, usdt_pair


class SimulatedBybit(SimulatedVenue):
    name: ClassVar[str] = "bybit"
    default_noise_bps: ClassVar[int] = 3
    default_latency_ms: ClassVar[float] = 2.0
    errors_in_body: ClassVar[bool] = True
    open_interest_share: ClassVar[Decimal] = Decimal("0.25")
    book_scale: ClassVar[Decimal] = Decimal("0.8")

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [
            ("/v5/market/tickers", self.tickers),
            ("/v5/market/kline", self.kline),
            ("/v5/market/orderbook", self.orderbook),
        ]

    def error_body(self, status: int) -> object:
        if status == 429:
            return {"retCode": 10006, "retMsg": "Too many visits!", "result": {}}
        return {"retCode": 10016, "retMsg": "Internal server error.", "result": {}}

    def _instrument(self, request: web.Request) -> tuple[str, str, str]:
        category = request.query.get("category", "")
        symbol = request.query.get("symbol", "")
        if category not in ("spot", "linear"):
            raise VenueRefusal({"retCode": 10001, "retMsg": "Illegal category", "result": {}, "retExtInfo": {},
                                "time": 0}, 200)
        refusal = VenueRefusal({"retCode": 10001, "retMsg": "Not supported symbols", "result": {}, "retExtInfo": {},
                                "time": int(self.now() * 1000)}, 200)
        return category, symbol, self.lookup(symbol, usdt_pair, refusal)

    def _envelope(self, result: object, now: float) -> object:
        return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                "time": int(self.stamp(now) * 1000)}

    async def tickers(self, request: web.Request) -> object:
        category, symbol, instrument = self._instrument(request)
        now = self.now()
        t = self.value_time(now)
        price = self.price(instrument, t)
        if category == "spot":
            last = self.num(price, "0.01", 2)
            item = {"symbol": symbol, "bid1Price": last, "bid1Size": "1", "ask1Price": last, "ask1Size": "1",
                    "lastPrice": last, "prevPrice24h": last, "price24hPcnt": "0", "highPrice24h": last,
                    "lowPrice24h": last, "turnover24h": "800000000", "volume24h": "12500", "usdIndexPrice": last}
        else:
            usd = self.open_interest(instrument, t)
            item = {"symbol": symbol, "lastPrice": fmt(price, "0.01", 2), "indexPrice": fmt(price, "0.01", 2),
                    "markPrice": fmt(price, "0.01", 2), "prevPrice24h": fmt(price, "0.01", 2),
                    "openInterest": fmt(CTX.divide(usd, price), "0.001", 3),
                    "openInterestValue": self.num(usd, "0.01", 2),
                    "fundingRate": self.num(self.funding(instrument, t), "1e-8", 8),
                    "nextFundingTime": str((math.floor(now / 28800) + 1) * 28_800_000),
                    "turnover24h": "5000000000", "volume24h": "80000"}
        return self._envelope({"category": category, "list": [item]}, now)

    async def kline(self, request: web.Request) -> object:
        category, symbol, instrument = self._instrument(request)
        limit = min(int(request.query.get("limit", "200")), 1000)
        rows = [[str(opened * 1000), c, c, c, c, "12.5", "800000"]
                for opened, c in reversed(self.candles(instrument, limit))]
        return self._envelope({"symbol": symbol, "category": category, "list": rows}, self.now())

    async def orderbook(self, request: web.Request) -> object:
        _, symbol, instrument = self._instrument(request)
        limit = min(int(request.query.get("limit", "1")), 200)
        bids, asks = self.book(instrument)
        now = self.now()
        return self._envelope({"s": symbol, "b": bids[:limit], "a": asks[:limit],
                               "ts": int(self.stamp(now) * 1000), "u": int(now * 10), "seq": int(now * 100),
                               "cts": int(now * 1000)}, now)
