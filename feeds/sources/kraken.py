"""Kraken: ticker (spot), 1-minute OHLC (realized vol) and the order book (depth).

Spot: GET /0/public/Ticker?pair=XBTUSD.

Kraken answers HTTP 200 even for errors and puts them in the ``error`` list as
``<E|W><category>:<message>`` (Kraken's "API error messages" page); the ones a public
market-data call can meet are mapped to the typed errors of an HTTP status:
``EAPI:Rate limit exceeded``, ``EGeneral:Too many requests`` and ``EService:Throttled``
are a rate limit, ``EService:Unavailable``, ``EService:Busy``,
``EService:Deadline elapsed`` and ``EGeneral:Internal error`` say the venue is down,
``EQuery:Unknown asset pair`` is an unknown instrument. ``W...`` entries are warnings.
The result is keyed by Kraken's canonical pair name (XXBTZUSD for XBTUSD), not
by the name we asked for. ``c`` is the last trade ``[price, lot volume]``; the
ticker has no timestamp, so the fetch time stands in. Documented body::

    {"error": [], "result": {"XXBTZUSD": {"a": ["64000.2", "1", "1.000"],
     "b": ["64000.1", "2", "2.000"], "c": ["64000.10000", "0.001"], ...}}}

Realized vol: GET /0/public/OHLC?pair=XBTUSD&interval=1&since=T, oldest first (Kraken
sends up to 720 rows, about 55 KB, when it ignores ``since``; the cap allows it)::

    {"error": [], "result": {"XXBTZUSD": [[1700000000, "open", "high", "low", "close",
     "vwap", "volume", 12], ...], "last": 1700003600}}

Depth: GET /0/public/Depth?pair=XBTUSD&count=100 (100 levels a side, about 8 KB)::

    {"error": [], "result": {"XXBTZUSD": {"asks": [["64000.2", "1.000", 1700000000]],
     "bids": [["64000.1", "2.000", 1700000000]]}}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from feeds.base import Source, VenueQuote
from feeds.body import Body
from feeds.computed import book_depth, realized_vol
from feeds.http import Refusal, VenueSays
from feeds.kinds import RV_CANDLE_SECONDS, RV_RETURNS, FactorKind

# Query pair -> key Kraken uses in ``result`` for it.
_RESULT_KEYS: Mapping[str, str] = {"XBTUSD": "XXBTZUSD", "ETHUSD": "XETHZUSD"}
# Kraken's documented error strings a public call can meet, by what they mean.
_REFUSALS: Mapping[str, Refusal] = {
    "EAPI:Rate limit exceeded": Refusal.RATE_LIMITED,
    "EGeneral:Too many requests": Refusal.RATE_LIMITED,
    "EService:Throttled": Refusal.RATE_LIMITED,
    "EService:Unavailable": Refusal.UNAVAILABLE,
    "EService:Busy": Refusal.UNAVAILABLE,
    "EService:Deadline elapsed": Refusal.UNAVAILABLE,
    "EGeneral:Internal error": Refusal.UNAVAILABLE,
    "EQuery:Unknown asset pair": Refusal.UNKNOWN_INSTRUMENT,
}
# Kraken names no reset time; its public counter decays within seconds.
_RATE_LIMIT_PAUSE = 5.0


class KrakenSpot(Source):
    name: ClassVar[str] = "kraken"
    default_url: ClassVar[str] = "https://api.kraken.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "XBTUSD", "ETH-USD": "ETHUSD"}
    factors: ClassVar[frozenset[FactorKind]] = frozenset(
        {FactorKind.SPOT, FactorKind.REALIZED_VOL, FactorKind.DEPTH}
    )
    body_caps: ClassVar[Mapping[FactorKind, int]] = {FactorKind.REALIZED_VOL: 256 * 1024}

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return "/0/public/Ticker", {"pair": self.symbol(instrument)}

    def plan(self, kind: FactorKind, instrument: str) -> Sequence[tuple[str, Mapping[str, str]]]:
        pair = self.symbol(instrument)
        if kind == FactorKind.REALIZED_VOL:
            since = int(self.now()) - (RV_RETURNS + 2) * RV_CANDLE_SECONDS
            return [("/0/public/OHLC", {"pair": pair, "interval": "1", "since": str(since)})]
        if kind == FactorKind.DEPTH:
            return [("/0/public/Depth", {"pair": pair, "count": "100"})]
        return super().plan(kind, instrument)

    def _result_key(self, body: Body) -> str:
        errors = body.at("error")
        if not isinstance(errors, list):
            raise body.error("JSON object with an error list", repr(errors))
        pair = self.symbol(body.origin.instrument)
        result = body.at("result")
        # Newer pairs are keyed by their plain name; accept either spelling of *this*
        # pair, never some other entry that happens to be the only one.
        key = _RESULT_KEYS.get(pair, pair)
        if isinstance(result, dict) and key not in result:
            if pair in result:
                return pair
            others = sorted(str(k) for k in result if k != "last")
            if others:
                raise body.origin.mismatch(f"pair {pair} (result key {key})", f"result keys {', '.join(others)}")
        return key

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        body = self.body(payload, instrument)
        return VenueQuote(price=body.decimal("result", self._result_key(body), "c", 0))

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        body = self.body(payloads[0], instrument)
        if kind == FactorKind.REALIZED_VOL:
            candles = body.candles("result", self._result_key(body), time_unit="s")
            return VenueQuote(*realized_vol(candles, body.origin, fetched_at))
        if kind == FactorKind.DEPTH:
            key = self._result_key(body)
            depth = book_depth(body.levels("result", key, "bids"), body.levels("result", key, "asks"), body.origin)
            return VenueQuote(price=depth)
        return super().extract_factor(kind, payloads, instrument, fetched_at)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and isinstance(payload.get("error"), list):
            return "; ".join(map(str, payload["error"])) or None
        return None

    def venue_says(self, payload: object) -> VenueSays | None:
        if not isinstance(payload, dict) or not isinstance(payload.get("error"), list):
            return None
        errors = [str(e) for e in payload["error"] if str(e).startswith("E")]
        if not errors:
            return None
        # "<category>:<message>[:<extra info>]": the first two parts name the error.
        refusals = {_REFUSALS.get(":".join(e.split(":")[:2]), Refusal.OTHER) for e in errors}
        # The most actionable meaning wins when Kraken lists several.
        for refusal in (Refusal.RATE_LIMITED, Refusal.UNAVAILABLE, Refusal.UNKNOWN_INSTRUMENT):
            if refusal in refusals:
                break
        else:
            refusal = Refusal.OTHER
        return VenueSays(refusal, f"errors [{'; '.join(errors)}]",
                         _RATE_LIMIT_PAUSE if refusal == Refusal.RATE_LIMITED else None)
