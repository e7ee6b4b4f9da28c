"""Binance USD-M futures: perpetual funding rate and open interest.

- Funding: ``GET /fapi/v1/premiumIndex?symbol=BTCUSDT``; ``lastFundingRate`` is the
  rate of the current 8-hour funding period, a string fraction::

      {"symbol": "BTCUSDT", "markPrice": "64010.10000000", "indexPrice": "64005.2",
       "lastFundingRate": "0.00010000", "nextFundingTime": 1700006400000,
       "interestRate": "0.00010000", "time": 1700000000123}

- Open interest: ``GET /fapi/v1/openInterest?symbol=BTCUSDT`` gives contracts in the
  base asset (``{"openInterest": "10659.509", "symbol": "BTCUSDT", "time": ...}``);
  times ``markPrice`` from premiumIndex it is USD notional. Two GETs, one reading.

Errors: ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 400.

Both answers echo ``symbol`` and it is checked: USD-M linear perpetuals are
``BTCUSDT``, COIN-M inverse ones ``BTCUSD_PERP``, so the symbol also tells the market type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Context
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.errors import SourceValueError
from feeds.http import VenueSays
from feeds.kinds import FactorKind
from feeds.sources.binance import binance_says


class BinanceFutures(Source):
    name: ClassVar[str] = "binance-futures"
    default_url: ClassVar[str] = "https://fapi.binance.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTCUSDT", "ETH-USD": "ETHUSDT"}
    factors: ClassVar[frozenset[FactorKind]] = frozenset({FactorKind.FUNDING_RATE, FactorKind.OPEN_INTEREST})

    def plan(self, kind: FactorKind, instrument: str) -> Sequence[tuple[str, Mapping[str, str]]]:
        symbol = self.symbol(instrument)
        if kind == FactorKind.FUNDING_RATE:
            return [("/fapi/v1/premiumIndex", {"symbol": symbol})]
        if kind == FactorKind.OPEN_INTEREST:
            return [("/fapi/v1/openInterest", {"symbol": symbol}), ("/fapi/v1/premiumIndex", {"symbol": symbol})]
        return super().plan(kind, instrument)

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        bodies = [self.body(payload, instrument) for payload in payloads]
        symbol = self.symbol(instrument)
        for body in bodies:
            body.expect(symbol, "symbol")
        if kind == FactorKind.FUNDING_RATE:
            premium = bodies[0]
            return VenueQuote(price=premium.decimal("lastFundingRate"), observed_at=premium.epoch_millis("time"))
        if kind == FactorKind.OPEN_INTEREST:
            oi_body, premium = bodies
            contracts = oi_body.decimal("openInterest")
            mark = premium.decimal("markPrice")
            if not mark.is_finite() or mark <= 0:
                # A broken mark would turn a good OI into a wrong USD notional; say it is
                # the mark that is broken, not the open interest.
                raise SourceValueError(
                    f"{self.name} {instrument}: expected a positive finite markPrice for {symbol} to value "
                    f"open interest in USD, got {mark}; the venue published a broken mark price — the "
                    f"feed uses the other sources",
                    source=self.name,
                    instrument=instrument,
                )
            observed = oi_body.epoch_millis("time")
            if not contracts.is_finite():
                return VenueQuote(price=contracts, observed_at=observed)
            return VenueQuote(price=Context(prec=50).multiply(contracts, mark), observed_at=observed)
        return super().extract_factor(kind, payloads, instrument, fetched_at)

    def venue_says(self, payload: object) -> VenueSays | None:
        return binance_says(payload)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "msg" in payload:
            return f"code {payload.get('code')}: {payload['msg']}"
        return None
