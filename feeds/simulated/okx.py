"""Simulated OKX v5: spot ticker, 1-minute candles, order book, swap funding and open interest.

Serves what :mod:`feeds.sources.okx` reads. Every answer is the envelope
``{"code": "0", "msg": "", "data": [...]}``; an unknown instrument is code "51001"
inside HTTP 200; numbers and unix-millisecond timestamps are strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

from feeds.market import CTX
from feeds.simulated.venue import Handler, SimulatedVenue, VenueRefusal, fmt, usdt_pair


def okx_spot(instrument: str) -> str:
    return usdt_pair(instrument, "-")


def okx_swap(instrument: str) -> str:
    return usdt_pair(instrument, "-") + "-SWAP"


class SimulatedOkx(SimulatedVenue):
    name: ClassVar[str] = "okx"
    default_noise_bps: ClassVar[int] = 3
    default_latency_ms: ClassVar[float] = 2.0
    errors_in_body: ClassVar[bool] = True
    open_interest_share: ClassVar[Decimal] = Decimal("0.22")
    book_scale: ClassVar[Decimal] = Decimal("1.0")

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [
            ("/api/v5/market/ticker", self.ticker),
            ("/api/v5/market/candles", self.candles_route),
            ("/api/v5/market/books", self.books),
            ("/api/v5/public/funding-rate", self.funding_rate),
            ("/api/v5/public/open-interest", self.open_interest_route),
        ]

    def error_body(self, status: int) -> object:
        if status == 429:
            return {"code": "50011", "msg": "Too Many Requests", "data": []}
        return {"code": "50001", "msg": "Service temporarily unavailable", "data": []}

    def _instrument(self, request: web.Request, swap: bool = False) -> tuple[str, str]:
        inst = request.query.get("instId", "")
        refusal = VenueRefusal({"code": "51001", "msg": "Instrument ID does not exist", "data": []}, 200)
        return inst, self.lookup(inst, okx_swap if swap else okx_spot, refusal)

    @staticmethod
    def _envelope(data: list[object]) -> object:
        return {"code": "0", "msg": "", "data": data}

    def _ts(self, now: float) -> str:
        return str(int(self.stamp(now) * 1000))

    async def ticker(self, request: web.Request) -> object:
        inst, instrument = self._instrument(request)
        now = self.now()
        last = self.num(self.price(instrument, self.value_time(now)), "0.1", 1)
        return self._envelope([{"instType": "SPOT", "instId": inst, "last": last, "lastSz": "0.01", "askPx": last,
                                "askSz": "1", "bidPx": last, "bidSz": "1", "open24h": last, "high24h": last,
                                "low24h": last, "volCcy24h": "1000000", "vol24h": "15", "ts": self._ts(now),
                                "sodUtc0": last, "sodUtc8": last}])

    async def candles_route(self, request: web.Request) -> object:
        _, instrument = self._instrument(request)
        limit = min(int(request.query.get("limit", "100")), 300)
        rows = self.candles(instrument, limit)
        last = len(rows) - 1
        return self._envelope([
            [str(opened * 1000), c, c, c, c, "12.5", "12.5", "800000", "0" if i == last else "1"]
            for i, (opened, c) in reversed(list(enumerate(rows)))
        ])

    async def books(self, request: web.Request) -> object:
        _, instrument = self._instrument(request)
        size = min(int(request.query.get("sz", "1")), 400)
        bids, asks = self.book(instrument)
        return self._envelope([{"asks": [a + ["0", "4"] for a in asks[:size]],
                                "bids": [b + ["0", "4"] for b in bids[:size]], "ts": self._ts(self.now()),
                                "seqId": 1}])

    async def funding_rate(self, request: web.Request) -> object:
        inst, instrument = self._instrument(request, swap=True)
        now = self.now()
        rate = self.num(self.funding(instrument, self.value_time(now)), "1e-10", 10)
        return self._envelope([{"instType": "SWAP", "instId": inst, "fundingRate": rate, "nextFundingRate": "",
                                "fundingTime": str((math.floor(now / 28800) + 1) * 28_800_000),
                                "method": "current_period", "ts": self._ts(now)}])

    async def open_interest_route(self, request: web.Request) -> object:
        inst, instrument = self._instrument(request, swap=True)
        now = self.now()
        t = self.value_time(now)
        usd = self.open_interest(instrument, t)
        ccy = CTX.divide(usd, self.price(instrument, t))
        return self._envelope([{"instType": "SWAP", "instId": inst, "oi": fmt(ccy * 100, "1", 0),
                                "oiCcy": fmt(ccy, "0.01", 2), "oiUsd": self.num(usd, "0.01", 2),
                                "ts": self._ts(now)}])
