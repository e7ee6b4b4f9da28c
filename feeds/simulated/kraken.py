"""Simulated Kraken: ticker, 1-minute OHLC and the order book.

Serves what :mod:`feeds.sources.kraken` reads. Kraken calls BTC "XBT", keys its
result by the canonical pair name (XXBTZUSD for XBTUSD) and reports errors inside
HTTP 200 in the ``error`` list.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

from feeds.simulated.venue import Handler, SimulatedVenue, VenueRefusal


def kraken_pair(instrument: str) -> tuple[str, str]:
    """(query pair, result key): Kraken calls BTC XBT and keys old pairs as XXBTZUSD."""
    base, quote = instrument.split("-")
    base = "XBT" if base == "BTC" else base
    pair = base + quote
    if base in ("XBT", "ETH") and quote in ("USD", "EUR"):
        return pair, f"X{base}Z{quote}"
    return pair, pair


class SimulatedKraken(SimulatedVenue):
    name: ClassVar[str] = "kraken"
    default_noise_bps: ClassVar[int] = 4
    default_latency_ms: ClassVar[float] = 5.0
    errors_in_body: ClassVar[bool] = True
    book_scale: ClassVar[Decimal] = Decimal("0.6")

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [
            ("/0/public/Ticker", self.ticker),
            ("/0/public/OHLC", self.ohlc),
            ("/0/public/Depth", self.depth),
        ]

    def error_body(self, status: int) -> object:
        return {"error": ["EAPI:Rate limit exceeded" if status == 429 else "EService:Unavailable"]}

    def _instrument(self, request: web.Request) -> tuple[str, str]:
        pair = request.query.get("pair", "")
        instrument = self.lookup(pair, lambda i: kraken_pair(i)[0],
                                 VenueRefusal({"error": ["EQuery:Unknown asset pair"]}, 200))
        return instrument, kraken_pair(instrument)[1]

    async def ticker(self, request: web.Request) -> object:
        instrument, key = self._instrument(request)
        last = self.num(self.price(instrument, self.value_time(self.now())), "0.1", 5)
        ticker = {
            "a": [last, "1", "1.000"], "b": [last, "2", "2.000"], "c": [last, "0.00100000"],
            "v": ["1234.56789012", "2345.67890123"], "p": [last, last], "t": [12345, 23456],
            "l": [last, last], "h": [last, last], "o": last,
        }
        return {"error": [], "result": {key: ticker}}

    async def ohlc(self, request: web.Request) -> object:
        instrument, key = self._instrument(request)
        rows = [[opened, close, close, close, close, close, "12.50000000", 100]
                for opened, close in self.candles(instrument, 62)]
        return {"error": [], "result": {key: rows, "last": rows[-2][0]}}

    async def depth(self, request: web.Request) -> object:
        instrument, key = self._instrument(request)
        count = min(int(request.query.get("count", "100")), 500)
        bids, asks = self.book(instrument)
        stamp = int(self.stamp(self.now()))
        return {"error": [], "result": {key: {"asks": [a + [stamp] for a in asks[:count]],
                                              "bids": [b + [stamp] for b in bids[:count]]}}}
