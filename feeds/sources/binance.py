"""Binance spot: GET /api/v3/ticker/24hr?symbol=BTCUSDT.

The 24hr ticker rather than /api/v3/ticker/price because it carries
``closeTime`` (unix ms of the last update), which lets us reject a frozen
ticker; ``/ticker/price`` has no timestamp at all. Binance quotes against USDT,
so "BTC-USD" maps to BTCUSDT; the USDT basis (a few bps) is left to the
cross-venue median. Documented body (numbers are strings)::

    {"symbol": "BTCUSDT", "lastPrice": "64000.12000000", "closeTime": 1700000000123, ...}

Errors come as ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from feeds.base import Source, VenueQuote


class BinanceSpot(Source):
    name: ClassVar[str] = "binance"
    default_url: ClassVar[str] = "https://api.binance.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTCUSDT", "ETH-USD": "ETHUSDT"}

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return "/api/v3/ticker/24hr", {"symbol": self.symbol(instrument)}

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        symbol = self.symbol(instrument)
        echoed = self.field(payload, instrument, "symbol")
        if echoed != symbol:
            # A ticker for another market is worse than none: it is a wrong price.
            raise self.format_error(
                instrument, f"JSON object with symbol {symbol!r}", f"symbol {echoed!r}"
            )
        price = self.decimal(self.field(payload, instrument, "lastPrice"), instrument, "lastPrice")
        observed = self.epoch_millis(
            self.field(payload, instrument, "closeTime"), instrument, "closeTime"
        )
        return VenueQuote(price=price, observed_at=observed)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "msg" in payload:
            return f"code {payload.get('code')}: {payload['msg']}"
        return None
