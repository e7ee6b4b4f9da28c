"""Coinbase Exchange spot: GET /products/BTC-USD/ticker.

Documented body (numbers are strings, ``time`` is RFC 3339 of the last trade)::

    {"ask": "64000.2", "bid": "64000.1", "volume": "1234.5", "trade_id": 123,
     "price": "64000.1", "size": "0.01", "time": "2024-01-01T00:00:00.123456Z"}

Errors come as ``{"message": "NotFound"}`` with a 4xx/5xx status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from feeds.base import Source, VenueQuote


class CoinbaseSpot(Source):
    name: ClassVar[str] = "coinbase"
    default_url: ClassVar[str] = "https://api.exchange.coinbase.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTC-USD", "ETH-USD": "ETH-USD"}

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return f"/products/{self.symbol(instrument)}/ticker", {}

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        price = self.decimal(self.field(payload, instrument, "price"), instrument, "price")
        observed = self.iso_time(self.field(payload, instrument, "time"), instrument, "time")
        return VenueQuote(price=price, observed_at=observed)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and isinstance(payload.get("message"), str):
            return str(payload["message"])
        return None
