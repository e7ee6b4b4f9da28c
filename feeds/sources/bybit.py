"""Bybit v5: spot ticker, 1-minute klines, order book, linear-perpetual funding and open interest.

Every answer is an envelope ``{"retCode": 0, "retMsg": "OK", "result": {...},
"retExtInfo": {}, "time": 1700000000123}``; a non-zero ``retCode`` is the venue
refusing inside HTTP 200 (``{"retCode": 10001, "retMsg": "Not supported symbols"}``).
Numbers are strings.

- Spot: ``GET /v5/market/tickers?category=spot&symbol=BTCUSDT`` -> ``result.list[0].lastPrice``.
- Realized vol: ``GET /v5/market/kline?category=spot&symbol=BTCUSDT&interval=1&limit=61``,
  newest first: ``result.list = [["startTime", "open", "high", "low", "close", "volume", "turnover"], ...]``.
- Depth: ``GET /v5/market/orderbook?category=spot&symbol=BTCUSDT&limit=200`` ->
  ``result = {"s": "BTCUSDT", "b": [["price", "size"]], "a": [...], "ts": 1700000000123, "u": 1}``.
- Funding and open interest: ``GET /v5/market/tickers?category=linear&symbol=BTCUSDT`` ->
  ``result.list[0].fundingRate`` (per 8 h period) and ``.openInterestValue`` (USD notional).

Spot and linear share the symbol ``BTCUSDT``, so the market type is checked too:
tickers and klines echo ``result.category``, and every answer's symbol
(``result.list[0].symbol``, ``result.symbol``, the book's ``result.s``) is compared.

The ``retCode`` values of Bybit's v5 error page a public call can meet map to the
typed errors of an HTTP status: 10006 (too many visits, the per-second limit), 10018
(the IP limit, 600 requests per 5 s) and 10429 (system-level frequency protection)
are a rate limit; 10000 (server timeout) and 10016 (internal error, service
restarting) say the venue is down; 10001 (request parameter error, which is what
Bybit answers for an unknown symbol: "Not supported symbols") is an unknown instrument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.body import Body
from feeds.computed import book_depth, realized_vol
from feeds.http import Refusal, VenueSays
from feeds.kinds import RV_RETURNS, FactorKind

_REFUSALS: Mapping[int, Refusal] = {
    10006: Refusal.RATE_LIMITED,
    10018: Refusal.RATE_LIMITED,
    10429: Refusal.RATE_LIMITED,
    10000: Refusal.UNAVAILABLE,
    10016: Refusal.UNAVAILABLE,
    10001: Refusal.UNKNOWN_INSTRUMENT,
}
# Bybit's IP limit counts requests per 5-second window.
_RATE_LIMIT_WINDOW = 5.0


class BybitSource(Source):
    name: ClassVar[str] = "bybit"
    default_url: ClassVar[str] = "https://api.bybit.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTCUSDT", "ETH-USD": "ETHUSDT"}
    factors: ClassVar[frozenset[FactorKind]] = frozenset(
        {FactorKind.SPOT, FactorKind.REALIZED_VOL, FactorKind.DEPTH, FactorKind.FUNDING_RATE, FactorKind.OPEN_INTEREST}
    )

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return "/v5/market/tickers", {"category": "spot", "symbol": self.symbol(instrument)}

    def plan(self, kind: FactorKind, instrument: str) -> Sequence[tuple[str, Mapping[str, str]]]:
        symbol = self.symbol(instrument)
        if kind == FactorKind.REALIZED_VOL:
            return [("/v5/market/kline", {"category": "spot", "symbol": symbol, "interval": "1",
                                          "limit": str(RV_RETURNS + 1)})]
        if kind == FactorKind.DEPTH:
            return [("/v5/market/orderbook", {"category": "spot", "symbol": symbol, "limit": "200"})]
        if kind in (FactorKind.FUNDING_RATE, FactorKind.OPEN_INTEREST):
            return [("/v5/market/tickers", {"category": "linear", "symbol": symbol})]
        return super().plan(kind, instrument)

    def _result(self, body: Body) -> None:
        # A non-zero retCode was raised as the venue's error before extraction.
        body.at("retCode")

    def _ticker(self, body: Body, category: str) -> None:
        self._result(body)
        body.expect(category, "result", "category")
        if not body.array("result", "list"):
            raise body.error("a non-empty result.list", "an empty one")
        body.expect(self.symbol(body.origin.instrument), "result", "list", 0, "symbol")

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        body = self.body(payload, instrument)
        self._ticker(body, "spot")
        return VenueQuote(price=body.decimal("result", "list", 0, "lastPrice"), observed_at=body.epoch_millis("time"))

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        if kind == FactorKind.SPOT:
            return super().extract_factor(kind, payloads, instrument, fetched_at)
        body = self.body(payloads[0], instrument)
        symbol = self.symbol(instrument)
        if kind == FactorKind.REALIZED_VOL:
            self._result(body)
            body.expect("spot", "result", "category")
            body.expect(symbol, "result", "symbol")
            return VenueQuote(*realized_vol(body.candles("result", "list", time_unit="ms"), body.origin, fetched_at))
        if kind == FactorKind.DEPTH:
            self._result(body)
            body.expect(symbol, "result", "s")
            depth = book_depth(body.levels("result", "b"), body.levels("result", "a"), body.origin)
            return VenueQuote(price=depth, observed_at=body.epoch_millis("result", "ts"))
        self._ticker(body, "linear")
        field = {FactorKind.FUNDING_RATE: "fundingRate", FactorKind.OPEN_INTEREST: "openInterestValue"}[kind]
        return VenueQuote(price=body.decimal("result", "list", 0, field), observed_at=body.epoch_millis("time"))

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "retMsg" in payload:
            return f"retCode {payload.get('retCode')}: {payload['retMsg']}"
        return None

    def venue_says(self, payload: object) -> VenueSays | None:
        if not isinstance(payload, dict) or "retCode" not in payload or payload["retCode"] == 0:
            return None
        code = payload["retCode"]
        refusal = _REFUSALS.get(code, Refusal.OTHER) if isinstance(code, int) else Refusal.OTHER
        return VenueSays(refusal, f"retCode {code}: {payload.get('retMsg')}",
                         _RATE_LIMIT_WINDOW if refusal == Refusal.RATE_LIMITED else None)
