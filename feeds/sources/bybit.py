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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.body import Body
from feeds.computed import book_depth, realized_vol
from feeds.errors import SourceHTTPError
from feeds.kinds import RV_RETURNS, FactorKind


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
        code = body.at("retCode")
        if code != 0:
            instrument = body.origin.instrument
            raise SourceHTTPError(
                f"bybit {instrument}: expected retCode 0, got the venue's error {code!r} "
                f"({self.venue_error(body.payload)}); check BybitSource.symbols for {instrument} — "
                f"the feed uses the other sources",
                source=self.name,
                instrument=instrument,
                status=200,
            )

    def _ticker(self, body: Body) -> None:
        self._result(body)
        if not body.array("result", "list"):
            raise body.error("a non-empty result.list", "an empty one")
        symbol = self.symbol(body.origin.instrument)
        echoed = body.at("result", "list", 0, "symbol")
        if echoed != symbol:
            raise body.error(f"symbol {symbol!r}", f"symbol {echoed!r}")

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        body = self.body(payload, instrument)
        self._ticker(body)
        return VenueQuote(price=body.decimal("result", "list", 0, "lastPrice"), observed_at=body.epoch_millis("time"))

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        if kind == FactorKind.SPOT:
            return super().extract_factor(kind, payloads, instrument, fetched_at)
        body = self.body(payloads[0], instrument)
        if kind == FactorKind.REALIZED_VOL:
            self._result(body)
            return VenueQuote(*realized_vol(body.candles("result", "list", time_unit="ms"), body.origin, fetched_at))
        if kind == FactorKind.DEPTH:
            self._result(body)
            depth = book_depth(body.levels("result", "b"), body.levels("result", "a"), body.origin)
            return VenueQuote(price=depth, observed_at=body.epoch_millis("result", "ts"))
        self._ticker(body)
        field = {FactorKind.FUNDING_RATE: "fundingRate", FactorKind.OPEN_INTEREST: "openInterestValue"}[kind]
        return VenueQuote(price=body.decimal("result", "list", 0, field), observed_at=body.epoch_millis("time"))

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "retMsg" in payload:
            return f"retCode {payload.get('retCode')}: {payload['retMsg']}"
        return None
