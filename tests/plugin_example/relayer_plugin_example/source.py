"""ExampleExchange: GET /api/price?market=BTC-USD -> {"market": "BTC-USD", "price": "64000.5", "ts": 1700000000123}.

Errors: ``{"error": "unknown market"}`` with HTTP 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.kinds import FactorKind


class ExampleExchange(Source):
    name: ClassVar[str] = "examplex"
    default_url: ClassVar[str] = "https://api.example.invalid"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTC-USD"}
    factors: ClassVar[frozenset[FactorKind]] = frozenset({FactorKind.SPOT})

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return "/api/price", {"market": self.symbol(instrument)}

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        body = self.body(payload, instrument)
        # A price for another market is worse than none: refused with SourceInstrumentMismatch.
        body.expect(self.symbol(instrument), "market")
        return VenueQuote(price=body.decimal("price"), observed_at=body.epoch_millis("ts"))

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            return str(payload["error"])
        return None
