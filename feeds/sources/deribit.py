"""Deribit v2: the DVOL implied-volatility index, perpetual funding and open interest.

JSON-RPC over HTTP GET; numbers are JSON numbers (read exactly as Decimal, never float).
Errors: ``{"jsonrpc": "2.0", "error": {"message": "Invalid params", "code": -32602}}``
with HTTP 400. Deribit is not a spot source: its index price is itself an average of
other venues, and counting it would count those venues twice.

- Implied vol: ``GET /api/v2/public/get_volatility_index_data?currency=BTC&resolution=60
  &start_timestamp=MS&end_timestamp=MS`` -> ``result.data = [[ts_ms, open, high, low,
  close], ...]``; the newest close, in percent, divided by 100. Each row is stamped
  with its minute's *open*; its close is true at the minute's end, so that is the
  observation time (the fetch time for the minute still running, whose close is the
  index now). A closed minute is up to 60 s old when read, so implied vol has a
  staleness limit of 120 s: one minute plus the venue's delay, not two missed minutes.
- Funding: ``GET /api/v2/public/ticker?instrument_name=BTC-PERPETUAL`` ->
  ``result.funding_8h`` (fraction per 8 h), ``result.timestamp`` (ms).
- Open interest: same ticker -> ``result.open_interest``; perpetuals are inverse
  contracts and Deribit states their open interest in USD.

The ticker echoes ``instrument_name`` and it is checked: ``BTC-PERPETUAL`` is the
inverse perpetual, ``BTC_USDC-PERPETUAL`` the linear one. The DVOL answer names no
currency. JSON-RPC error codes from Deribit's error table map to the typed errors of
an HTTP status: 10028 (too_many_requests) is a rate limit; 11051
(system_maintenance), 11094 (internal_server_error) and 13028
(temporarily_unavailable) say the venue is down; 10020
(invalid_or_unsupported_instrument) is an unknown instrument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.http import Refusal, VenueSays
from feeds.kinds import FactorKind

# Seconds per DVOL row asked for (resolution=60): one-minute rows.
_DVOL_RESOLUTION = 60

_REFUSALS: Mapping[int, Refusal] = {
    10028: Refusal.RATE_LIMITED,
    11051: Refusal.UNAVAILABLE,
    11094: Refusal.UNAVAILABLE,
    13028: Refusal.UNAVAILABLE,
    10020: Refusal.UNKNOWN_INSTRUMENT,
}


class DeribitSource(Source):
    name: ClassVar[str] = "deribit"
    default_url: ClassVar[str] = "https://www.deribit.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTC", "ETH-USD": "ETH"}
    factors: ClassVar[frozenset[FactorKind]] = frozenset(
        {FactorKind.IMPLIED_VOL, FactorKind.FUNDING_RATE, FactorKind.OPEN_INTEREST}
    )
    staleness: ClassVar[Mapping[FactorKind, float]] = {FactorKind.IMPLIED_VOL: 2.0 * _DVOL_RESOLUTION}

    def plan(self, kind: FactorKind, instrument: str) -> Sequence[tuple[str, Mapping[str, str]]]:
        currency = self.symbol(instrument)
        if kind == FactorKind.IMPLIED_VOL:
            end = int(self.now() * 1000)
            return [("/api/v2/public/get_volatility_index_data",
                     {"currency": currency, "resolution": str(_DVOL_RESOLUTION), "start_timestamp": str(end - 300_000),
                      "end_timestamp": str(end)})]
        if kind in (FactorKind.FUNDING_RATE, FactorKind.OPEN_INTEREST):
            return [("/api/v2/public/ticker", {"instrument_name": f"{currency}-PERPETUAL"})]
        return super().plan(kind, instrument)

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        body = self.body(payloads[0], instrument)
        if kind == FactorKind.IMPLIED_VOL:
            data = body.array("result", "data")
            if not data:
                raise body.error("at least one DVOL candle in result.data", "none")
            # Newest by timestamp, whatever order the venue sent.
            stamps = [body.epoch_millis("result", "data", i, 0) for i in range(len(data))]
            newest = max(range(len(data)), key=lambda i: stamps[i])
            close = body.decimal("result", "data", newest, 4)
            value = close.scaleb(-2) if close.is_finite() else close
            # Stamped at the minute's open; the close is true at its end (or now).
            return VenueQuote(price=value, observed_at=min(stamps[newest] + _DVOL_RESOLUTION, fetched_at))
        body.expect(f"{self.symbol(instrument)}-PERPETUAL", "result", "instrument_name")
        field = {FactorKind.FUNDING_RATE: "funding_8h", FactorKind.OPEN_INTEREST: "open_interest"}[kind]
        return VenueQuote(price=body.decimal("result", field), observed_at=body.epoch_millis("result", "timestamp"))

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            error = payload["error"]
            return f"code {error.get('code')}: {error.get('message')}"
        return None

    def venue_says(self, payload: object) -> VenueSays | None:
        if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
            return None
        code = payload["error"].get("code")
        refusal = _REFUSALS.get(code, Refusal.OTHER) if isinstance(code, int) else Refusal.OTHER
        return VenueSays(refusal, f"error code {code} ({payload['error'].get('message')})")
