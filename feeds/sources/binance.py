"""Binance spot: ticker, 1-minute klines (realized vol) and the order book (depth).

- Spot: ``GET /api/v3/ticker/24hr?symbol=BTCUSDT``. The 24hr ticker rather than
  ``/api/v3/ticker/price`` because it carries ``closeTime`` (unix ms of the last
  update), which lets us reject a frozen ticker. Numbers are strings::

      {"symbol": "BTCUSDT", "lastPrice": "64000.12000000", "closeTime": 1700000000123, ...}

- Realized vol: ``GET /api/v3/klines?symbol=BTCUSDT&interval=1m&limit=61``, oldest
  first: ``[[openTime, "open", "high", "low", "close", "volume", closeTime, ...], ...]``.
- Depth: ``GET /api/v3/depth?symbol=BTCUSDT&limit=100``:
  ``{"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]], "asks": [...]}``
  (no timestamp: fetch time stands in).

Binance quotes against USDT, so "BTC-USD" maps to BTCUSDT; the USDT basis (a few
bps) is left to the cross-venue median. Errors come as
``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 400; 429/418 when rate limited.
The ticker echoes its symbol and it is checked; klines and the book name no
instrument. Spot and USD-M futures share symbols but not hosts, so the market type
is the base URL's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.computed import book_depth, realized_vol
from feeds.http import Refusal, VenueSays
from feeds.kinds import RV_RETURNS, FactorKind

# Binance's documented error codes (spot and futures share them), by what they mean.
# They come with an HTTP error status; the code says more than the status does.
BINANCE_REFUSALS: Mapping[int, Refusal] = {
    -1003: Refusal.RATE_LIMITED,  # TOO_MANY_REQUESTS
    -1001: Refusal.UNAVAILABLE,  # DISCONNECTED: internal error
    -1008: Refusal.UNAVAILABLE,  # SERVER_BUSY
    -1016: Refusal.UNAVAILABLE,  # SERVICE_SHUTTING_DOWN
    -1121: Refusal.UNKNOWN_INSTRUMENT,  # BAD_SYMBOL: invalid symbol
}


def binance_says(payload: object) -> VenueSays | None:
    """A Binance error body ``{"code": -1121, "msg": "Invalid symbol."}`` and what it means."""
    if not isinstance(payload, dict) or not isinstance(payload.get("code"), int) or "msg" not in payload:
        return None
    code = payload["code"]
    return VenueSays(BINANCE_REFUSALS.get(code, Refusal.OTHER), f"code {code}: {payload['msg']}")


class BinanceSpot(Source):
    name: ClassVar[str] = "binance"
    default_url: ClassVar[str] = "https://api.binance.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTCUSDT", "ETH-USD": "ETHUSDT"}
    factors: ClassVar[frozenset[FactorKind]] = frozenset(
        {FactorKind.SPOT, FactorKind.REALIZED_VOL, FactorKind.DEPTH}
    )

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return "/api/v3/ticker/24hr", {"symbol": self.symbol(instrument)}

    def plan(self, kind: FactorKind, instrument: str) -> Sequence[tuple[str, Mapping[str, str]]]:
        symbol = self.symbol(instrument)
        if kind == FactorKind.REALIZED_VOL:
            return [("/api/v3/klines", {"symbol": symbol, "interval": "1m", "limit": str(RV_RETURNS + 1)})]
        if kind == FactorKind.DEPTH:
            return [("/api/v3/depth", {"symbol": symbol, "limit": "100"})]
        return super().plan(kind, instrument)

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        body = self.body(payload, instrument)
        body.expect(self.symbol(instrument), "symbol")
        return VenueQuote(price=body.decimal("lastPrice"), observed_at=body.epoch_millis("closeTime"))

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        body = self.body(payloads[0], instrument)
        if kind == FactorKind.REALIZED_VOL:
            return VenueQuote(*realized_vol(body.candles(time_unit="ms"), body.origin, fetched_at))
        if kind == FactorKind.DEPTH:
            return VenueQuote(price=book_depth(body.levels("bids"), body.levels("asks"), body.origin))
        return super().extract_factor(kind, payloads, instrument, fetched_at)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "msg" in payload:
            return f"code {payload.get('code')}: {payload['msg']}"
        return None

    def venue_says(self, payload: object) -> VenueSays | None:
        return binance_says(payload)
