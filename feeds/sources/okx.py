"""OKX v5: spot ticker, 1-minute candles, order book, perpetual funding and open interest.

Every answer is an envelope ``{"code": "0", "msg": "", "data": [...]}``; a non-"0"
code is the venue refusing (often inside HTTP 200), e.g.
``{"code": "51001", "msg": "Instrument ID does not exist", "data": []}``; numbers and
timestamps (unix ms) are strings. The codes of OKX's v5 error table a public
market-data call can meet map to the typed errors of an HTTP status: 50011 (rate
limit reached) and 50061 (sub-account rate limit) are a rate limit; 50001 (service
temporarily unavailable), 50004 (endpoint request timeout), 50005 (API offline or
unavailable), 50013 (system busy) and 50026 (system error) say the venue is down;
51001 (instrument ID does not exist) is an unknown instrument.

The body names the instrument (``instId``, ``instType``) on the ticker, funding and
open-interest answers, and each is checked: ``BTC-USDT`` (spot) and
``BTC-USDT-SWAP`` (linear perpetual) are different markets. Candles and books name
none.

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
from feeds.http import Refusal, VenueSays
from feeds.kinds import RV_RETURNS, FactorKind

_REFUSALS: Mapping[str, Refusal] = {
    "50011": Refusal.RATE_LIMITED,
    "50061": Refusal.RATE_LIMITED,
    "50001": Refusal.UNAVAILABLE,
    "50004": Refusal.UNAVAILABLE,
    "50005": Refusal.UNAVAILABLE,
    "50013": Refusal.UNAVAILABLE,
    "50026": Refusal.UNAVAILABLE,
    "51001": Refusal.UNKNOWN_INSTRUMENT,
}
# OKX counts public market-data requests per 2-second window.
_RATE_LIMIT_WINDOW = 2.0


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
        # A non-"0" code was raised as the venue's error before extraction.
        body.at("code")
        data = body.array("data")
        if not data:
            raise body.error("a non-empty data array", "an empty one")
        return data

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        body = self.body(payload, instrument)
        self._data(body)
        body.expect(self.symbol(instrument), "data", 0, "instId")
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
        body.expect("SWAP", "data", 0, "instType")
        body.expect(self.symbol(instrument) + "-SWAP", "data", 0, "instId")
        field = {FactorKind.FUNDING_RATE: "fundingRate", FactorKind.OPEN_INTEREST: "oiUsd"}[kind]
        return VenueQuote(price=body.decimal("data", 0, field), observed_at=ts)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "msg" in payload:
            return f"code {payload.get('code')}: {payload['msg'] or 'no message'}"
        return None

    def venue_says(self, payload: object) -> VenueSays | None:
        if not isinstance(payload, dict) or "code" not in payload or payload["code"] == "0":
            return None
        code = str(payload["code"])
        refusal = _REFUSALS.get(code, Refusal.OTHER)
        return VenueSays(refusal, f"error code {code} ({payload.get('msg') or 'no message'})",
                         _RATE_LIMIT_WINDOW if refusal == Refusal.RATE_LIMITED else None)
