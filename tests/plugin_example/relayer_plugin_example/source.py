"""ExampleExchange: GET /api/price?market=BTC-USD -> {"market": "BTC-USD", "price": "64000.5", "ts": 1700000000123}."""

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
        price = self.decimal(self.field(payload, instrument, "price"), instrument, "price")
        observed = self.epoch_millis(self.field(payload, instrument, "ts"), instrument, "ts")
        return VenueQuote(price=price, observed_at=observed)
