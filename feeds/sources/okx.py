"""OKX v5: spot ticker, 1-minute candles, order book, perpetual funding and open interest.

Every answer is an envelope ``{"code": "0", "msg": "", "data": [...]}``; a non-"0"
code is the venue refusing (often inside HTTP 200), e.g.
``{"code": "51001", "msg": "Instrument ID does not exist", "data": []}``; numbers and
timestamps (unix ms) are strings.

- Spot: ``GET /api/v5/market/ticker?instId=BTC-USDT`` -> ``data[0].last``, ``data[0].ts``.
- Realized vol: ``GET /api/v5/market/candles?instId=BTC-USDT&bar=1m&limit=61``, newest
  first: ``[["ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm"], ...]``.
- Depth: ``GET /api/v5/market/books?instId=BTC-USDT&sz=100`` ->
  ``data[0] = {"asks": [["px", "sz", "0", "orders"]], "bids": [...], "ts": "..."}``.
- Funding: ``GET /api/v5/public/funding-rate?instId=BTC-USDT-SWAP`` ->
  ``data[0].fundingRate`` (per 8 h period), ``data[0].ts``.
- Open interest: ``GET /api/v5/public/open-interest?instType=SWAP&instId=BTC-USDT-SWAP``
  -> ``data[0].oiUsd`` (USD notional), ``data[0].ts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.errors import SourceHTTPError
from feeds.kinds import RV_RETURNS, FactorKind


class OkxSource(Source):
    name: ClassVar[str] = "okx"
    default_url: ClassVar[str] = "https://www.okx.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTC-USDT", "ETH-USD": "ETH-USDT"}
    factors: ClassVar[frozenset[FactorKind]] = frozenset(
        {FactorKind.SPOT, FactorKind.REALIZED_VOL, FactorKind.DEPTH, FactorKind.FUNDING_RATE, FactorKind.OPEN_INTEREST}
    )

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return "/api/v5/market/ticker", {"instId": self.symbol(instrument)}

    def plan(self, kind: FactorKind, instrument: str) -> Sequence[tuple[str, Mapping[str, str]]]:
        spot = self.symbol(instrument)
        swap = spot + "-SWAP"
        if kind == FactorKind.REALIZED_VOL:
            return [("/api/v5/market/candles", {"instId": spot, "bar": "1m", "limit": str(RV_RETURNS + 1)})]
        if kind == FactorKind.DEPTH:
            return [("/api/v5/market/books", {"instId": spot, "sz": "100"})]
        if kind == FactorKind.FUNDING_RATE:
            return [("/api/v5/public/funding-rate", {"instId": swap})]
        if kind == FactorKind.OPEN_INTEREST:
            return [("/api/v5/public/open-interest", {"instType": "SWAP", "instId": swap})]
        return super().plan(kind, instrument)

    def _data(self, payload: object, instrument: str) -> list[object]:
        code = self.field(payload, instrument, "code")
        if code != "0":
            raise SourceHTTPError(
                f"okx {instrument}: expected code \"0\", got the venue's error code {code!r} "
                f"({self.venue_error(payload)}); check OkxSource.symbols for {instrument} — "
                f"the feed uses the other sources",
                source=self.name,
                instrument=instrument,
                status=200,
            )
        data = self.array(payload, instrument, "data")
        if not data:
            raise self.format_error(instrument, "a non-empty data array", "an empty one")
        return data

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        self._data(payload, instrument)
        echoed = self.field(payload, instrument, "data", 0, "instId")
        if echoed != self.symbol(instrument):
            raise self.format_error(instrument, f"instId {self.symbol(instrument)!r}", f"instId {echoed!r}")
        price = self.decimal(self.field(payload, instrument, "data", 0, "last"), instrument, "data", 0, "last")
        observed = self.epoch_millis(self.field(payload, instrument, "data", 0, "ts"), instrument, "data", 0, "ts")
        return VenueQuote(price=price, observed_at=observed)

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        payload = payloads[0]
        if kind == FactorKind.SPOT:
            return super().extract_factor(kind, payloads, instrument, fetched_at)
        data = self._data(payload, instrument)
        if kind == FactorKind.REALIZED_VOL:
            candles = []
            for i, _ in enumerate(data):
                opened = self.epoch_millis(self.field(payload, instrument, "data", i, 0), instrument, "data", i, 0)
                close = self.decimal(self.field(payload, instrument, "data", i, 4), instrument, "data", i, 4)
                candles.append((opened, close))
            return self.realized_vol(candles, instrument, fetched_at)
        ts = self.epoch_millis(self.field(payload, instrument, "data", 0, "ts"), instrument, "data", 0, "ts")
        if kind == FactorKind.DEPTH:
            bids = self.levels(payload, instrument, "data", 0, "bids")
            asks = self.levels(payload, instrument, "data", 0, "asks")
            return VenueQuote(price=self.book_depth(bids, asks, instrument), observed_at=ts)
        field = {FactorKind.FUNDING_RATE: "fundingRate", FactorKind.OPEN_INTEREST: "oiUsd"}[kind]
        value = self.decimal(self.field(payload, instrument, "data", 0, field), instrument, "data", 0, field)
        return VenueQuote(price=value, observed_at=ts)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "msg" in payload:
            return f"code {payload.get('code')}: {payload['msg'] or 'no message'}"
        return None
