"""Simulated Deribit v2: the DVOL implied-volatility index and the perpetual ticker.

Serves what :mod:`feeds.sources.deribit` reads, as JSON-RPC over HTTP GET with JSON
numbers; bad parameters are a JSON-RPC error with HTTP 400.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

from feeds.market import CTX
from feeds.simulated.venue import Handler, SimulatedVenue, VenueRefusal, fmt


def _currency(instrument: str) -> str:
    return instrument.split("-")[0]


def _perpetual(instrument: str) -> str:
    return _currency(instrument) + "-PERPETUAL"


class SimulatedDeribit(SimulatedVenue):
    name: ClassVar[str] = "deribit"
    default_noise_bps: ClassVar[int] = 4
    default_latency_ms: ClassVar[float] = 4.0
    open_interest_share: ClassVar[Decimal] = Decimal("0.12")

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [
            ("/api/v2/public/get_volatility_index_data", self.dvol),
            ("/api/v2/public/ticker", self.ticker),
        ]

    def error_body(self, status: int) -> object:
        if status == 429:
            return {"jsonrpc": "2.0", "error": {"code": 10028, "message": "too_many_requests"}}
        return {"jsonrpc": "2.0", "error": {"code": 11097, "message": "internal_server_error"}}

    @staticmethod
    def _rpc(result: object) -> object:
        return {"jsonrpc": "2.0", "result": result, "usIn": 1, "usOut": 2, "usDiff": 1, "testnet": False}

    @staticmethod
    def _invalid_params() -> VenueRefusal:
        return VenueRefusal({"jsonrpc": "2.0", "error": {"message": "Invalid params",
                                                         "data": {"reason": "wrong format", "param": "currency"},
                                                         "code": -32602}, "testnet": False}, 400)

    async def dvol(self, request: web.Request) -> object:
        instrument = self.lookup(request.query.get("currency", ""), _currency, self._invalid_params())
        now = self.now()
        t = self.value_time(now)
        rows = []
        # As Deribit stamps them: every row at its minute's open, the newest being the
        # minute still running, whose close is the index now.
        for k in range(4, -1, -1):
            minute = (math.floor(now / 60) - k) * 60
            at = t if k == 0 else self.value_time(minute + 59.999)
            iv = CTX.multiply(self.model.implied_vol(instrument, at), 100)
            text = self.num(iv, "0.01", 2) if k == 0 else fmt(iv, "0.01", 2)
            number = float(text)
            rows.append([int(self.stamp(minute) * 1000), number, number, number, number])
        return self._rpc({"data": rows, "continuation": None})

    async def ticker(self, request: web.Request) -> object:
        name = request.query.get("instrument_name", "")
        instrument = self.lookup(name, _perpetual, self._invalid_params())
        now = self.now()
        t = self.value_time(now)
        price = self.price(instrument, t)
        funding = float(self.num(self.funding(instrument, t), "1e-8", 8))
        oi = float(self.num(self.open_interest(instrument, t), "10", 0))
        mark = float(fmt(price, "0.5", 1))
        return self._rpc({
            "timestamp": int(self.stamp(now) * 1000), "state": "open", "instrument_name": name,
            "index_price": mark, "mark_price": mark, "last_price": mark, "best_bid_price": mark,
            "best_ask_price": mark, "open_interest": oi, "funding_8h": funding, "current_funding": funding,
            "settlement_price": mark, "min_price": mark * 0.97, "max_price": mark * 1.03,
            "stats": {"volume": 12345.6, "price_change": 0.5, "low": mark, "high": mark},
        })
