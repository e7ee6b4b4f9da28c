"""Kraken spot: GET /0/public/Ticker?pair=XBTUSD.

Kraken answers HTTP 200 even for errors and puts them in the ``error`` list
("EQuery:Unknown asset pair", "EAPI:Rate limit exceeded", "EService:Unavailable").
The result is keyed by Kraken's canonical pair name (XXBTZUSD for XBTUSD), not
by the name we asked for. ``c`` is the last trade ``[price, lot volume]``; the
ticker has no timestamp, so the fetch time stands in. Documented body::

    {"error": [], "result": {"XXBTZUSD": {"a": ["64000.2", "1", "1.000"],
     "b": ["64000.1", "2", "2.000"], "c": ["64000.10000", "0.001"], ...}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.errors import SourceHTTPError

# Query pair -> key Kraken uses in ``result`` for it.
_RESULT_KEYS: Mapping[str, str] = {"XBTUSD": "XXBTZUSD", "ETHUSD": "XETHZUSD"}


class KrakenSpot(Source):
    name: ClassVar[str] = "kraken"
    default_url: ClassVar[str] = "https://api.kraken.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "XBTUSD", "ETH-USD": "ETHUSD"}

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return "/0/public/Ticker", {"pair": self.symbol(instrument)}

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        errors = self.field(payload, instrument, "error")
        if not isinstance(errors, list):
            raise self.format_error(instrument, "JSON object with an error list", repr(errors))
        if errors:
            raise self._venue_refused(errors, instrument)
        pair = self.symbol(instrument)
        result = self.field(payload, instrument, "result")
        # Newer pairs are keyed by their plain name; accept either spelling of *this*
        # pair, never some other entry that happens to be the only one.
        key = _RESULT_KEYS.get(pair, pair)
        if isinstance(result, dict) and key not in result and pair in result:
            key = pair
        raw = self.field(payload, instrument, "result", key, "c", 0)
        return VenueQuote(price=self.decimal(raw, instrument, "result", key, "c", 0))

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and isinstance(payload.get("error"), list):
            return "; ".join(map(str, payload["error"])) or None
        return None

    def _venue_refused(self, errors: list[object], instrument: str) -> SourceHTTPError:
        text = "; ".join(map(str, errors))
        if "Rate limit" in text or "Too many requests" in text:
            hint = "the venue is rate limiting us — lower the poll rate for this source"
        elif text.startswith("EQuery"):
            hint = f"the pair mapping is wrong — check KrakenSpot.symbols for {instrument}"
        else:
            hint = "the venue is failing; it is retried next poll and the feed uses the other sources"
        return SourceHTTPError(
            f"kraken {instrument}: expected an empty error list, got the venue's errors "
            f"[{text}]; {hint}",
            source=self.name,
            instrument=instrument,
            # Kraken reports these inside an HTTP 200.
            status=200,
        )
