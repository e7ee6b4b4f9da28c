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

    def _result(self, payload: object, instrument: str) -> None:
        code = self.field(payload, instrument, "retCode")
        if code != 0:
            raise SourceHTTPError(
                f"bybit {instrument}: expected retCode 0, got the venue's error {code!r} "
                f"({self.venue_error(payload)}); check BybitSource.symbols for {instrument} — "
                f"the feed uses the other sources",
                source=self.name,
                instrument=instrument,
                status=200,
            )

    def _ticker(self, payload: object, instrument: str) -> None:
        self._result(payload, instrument)
        if not self.array(payload, instrument, "result", "list"):
            raise self.format_error(instrument, "a non-empty result.list", "an empty one")
        echoed = self.field(payload, instrument, "result", "list", 0, "symbol")
        if echoed != self.symbol(instrument):
            raise self.format_error(instrument, f"symbol {self.symbol(instrument)!r}", f"symbol {echoed!r}")

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        self._ticker(payload, instrument)
        price = self.decimal(self.field(payload, instrument, "result", "list", 0, "lastPrice"),
                             instrument, "result", "list", 0, "lastPrice")
        observed = self.epoch_millis(self.field(payload, instrument, "time"), instrument, "time")
        return VenueQuote(price=price, observed_at=observed)

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        payload = payloads[0]
        if kind == FactorKind.SPOT:
            return super().extract_factor(kind, payloads, instrument, fetched_at)
        if kind == FactorKind.REALIZED_VOL:
            self._result(payload, instrument)
            candles = []
            for i, _ in enumerate(self.array(payload, instrument, "result", "list")):
                path = ("result", "list", i)
                opened = self.epoch_millis(self.field(payload, instrument, *path, 0), instrument, *path, 0)
                close = self.decimal(self.field(payload, instrument, *path, 4), instrument, *path, 4)
                candles.append((opened, close))
            return self.realized_vol(candles, instrument, fetched_at)
        if kind == FactorKind.DEPTH:
            self._result(payload, instrument)
            bids = self.levels(payload, instrument, "result", "b")
            asks = self.levels(payload, instrument, "result", "a")
            ts = self.epoch_millis(self.field(payload, instrument, "result", "ts"), instrument, "result", "ts")
            return VenueQuote(price=self.book_depth(bids, asks, instrument), observed_at=ts)
        self._ticker(payload, instrument)
        field = {FactorKind.FUNDING_RATE: "fundingRate", FactorKind.OPEN_INTEREST: "openInterestValue"}[kind]
        value = self.decimal(self.field(payload, instrument, "result", "list", 0, field),
                             instrument, "result", "list", 0, field)
        observed = self.epoch_millis(self.field(payload, instrument, "time"), instrument, "time")
        return VenueQuote(price=value, observed_at=observed)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "retMsg" in payload:
            return f"retCode {payload.get('retCode')}: {payload['retMsg']}"
        return None
