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
from feeds.body import Body
from feeds.computed import book_depth, realized_vol
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

    def _data(self, body: Body) -> list[object]:
        code = body.at("code")
        if code != "0":
            instrument = body.origin.instrument
            raise SourceHTTPError(
                f"okx {instrument}: expected code \"0\", got the venue's error code {code!r} "
                f"({self.venue_error(body.payload)}); check OkxSource.symbols for {instrument} — "
                f"the feed uses the other sources",
                source=self.name,
                instrument=instrument,
                status=200,
            )
        data = body.array("data")
        if not data:
            raise body.error("a non-empty data array", "an empty one")
        return data

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        body = self.body(payload, instrument)
        self._data(body)
        symbol = self.symbol(instrument)
        echoed = body.at("data", 0, "instId")
        if echoed != symbol:
            raise body.error(f"instId {symbol!r}", f"instId {echoed!r}")
        return VenueQuote(price=body.decimal("data", 0, "last"), observed_at=body.epoch_millis("data", 0, "ts"))

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        if kind == FactorKind.SPOT:
            return super().extract_factor(kind, payloads, instrument, fetched_at)
        body = self.body(payloads[0], instrument)
        self._data(body)
        if kind == FactorKind.REALIZED_VOL:
            return VenueQuote(*realized_vol(body.candles("data", time_unit="ms"), body.origin, fetched_at))
        ts = body.epoch_millis("data", 0, "ts")
        if kind == FactorKind.DEPTH:
            depth = book_depth(body.levels("data", 0, "bids"), body.levels("data", 0, "asks"), body.origin)
            return VenueQuote(price=depth, observed_at=ts)
        field = {FactorKind.FUNDING_RATE: "fundingRate", FactorKind.OPEN_INTEREST: "oiUsd"}[kind]
        return VenueQuote(price=body.decimal("data", 0, field), observed_at=ts)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "msg" in payload:
            return f"code {payload.get('code')}: {payload['msg'] or 'no message'}"
        return None
