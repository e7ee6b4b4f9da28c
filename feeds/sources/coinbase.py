"""Coinbase Exchange: ticker (spot), 1-minute candles (realized vol), level-2 book (depth).

- Spot: ``GET /products/BTC-USD/ticker``; numbers are strings, ``time`` is RFC 3339::

      {"ask": "64000.2", "bid": "64000.1", "volume": "1234.5", "trade_id": 123,
       "price": "64000.1", "size": "0.01", "time": "2024-01-01T00:00:00.123456Z"}

- Realized vol: ``GET /products/BTC-USD/candles?granularity=60&start=...&end=...``,
  newest first, numbers (not strings): ``[[time, low, high, open, close, volume], ...]``.
  Coinbase leaves out the minutes without trades, so the request covers twice the 61
  minutes needed (122 rows at most, the endpoint allows 300) and a missing minute is
  filled with the previous close (its price did not move: what Binance publishes as a
  zero-volume candle), at most 6 of the 60 returns; more is a market too thin to use.
- Depth: ``GET /products/BTC-USD/book?level=2``:
  ``{"bids": [["64000.1", "0.5", 3]], "asks": [...], "sequence": 1, "time": "..."}``.
  Level 2 is the full aggregated book and the endpoint takes no depth limit (level 1
  is the best level only, level 3 every order): for BTC-USD tens of thousands of
  levels, about 30 bytes each, so from several hundred KiB to a few MiB. Its cap is
  16 MiB, the other endpoints keep the 64 KiB default (a ticker is ~200 bytes, 61
  candles ~4 KB).

None of these answers names its product, so there is no instrument to check in the
body: the product is in the path, and redirects are never followed.
Errors come as ``{"message": "NotFound"}`` with a 4xx/5xx status; an unknown product
is a 404 ``NotFound``.

Spot also streams (:mod:`feeds.stream`) from the Exchange WebSocket feed
``wss://ws-feed.exchange.coinbase.com``: a ``subscribe`` message for the ``ticker``
channel (sent within 5 s of connecting, or Coinbase disconnects), answered by a
``subscriptions`` message, then one ``ticker`` message per match::

    {"type": "ticker", "sequence": 37475248783, "product_id": "ETH-USD", "price": "1285.22",
     "open_24h": "1310.79", "volume_24h": "245532.79269678", "low_24h": "1280.52",
     "high_24h": "1313.8", "volume_30d": "9788783.60117027", "best_bid": "1285.04",
     "best_bid_size": "0.46688654", "best_ask": "1285.27", "best_ask_size": "1.56637040",
     "side": "buy", "time": "2022-10-19T23:28:22.061769Z", "trade_id": 370843401,
     "last_size": "11.4396987"}

Every ticker names its ``product_id`` and it is checked against the products
subscribed; ``time`` (the match) is the observation time, ``sequence`` orders them.
A refused subscription is ``{"type": "error", "message": "Failed to subscribe",
"reason": "BTC-USDX is not a valid product"}``; other message types are ignored, as
Coinbase asks of its clients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import ClassVar

from feeds.base import Source, StreamUpdate, VenueQuote
from feeds.body import json_kind
from feeds.computed import book_depth, realized_vol
from feeds.errors import SourceHTTPError, SourceUnknownInstrument
from feeds.http import Refusal, VenueSays
from feeds.kinds import DEPTH_BAND_BPS, RV_CANDLE_SECONDS, RV_RETURNS, FactorKind


# Minutes of candles asked for: twice what realized vol needs, as quiet minutes are left out.
_CANDLE_WINDOW = 2 * (RV_RETURNS + 1)
# Quiet minutes filled with the previous close, at most, among the 60 returns.
_MAX_QUIET_MINUTES = RV_RETURNS // 10


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CoinbaseSpot(Source):
    name: ClassVar[str] = "coinbase"
    default_url: ClassVar[str] = "https://api.exchange.coinbase.com"
    symbols: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTC-USD", "ETH-USD": "ETH-USD"}
    factors: ClassVar[frozenset[FactorKind]] = frozenset(
        {FactorKind.SPOT, FactorKind.REALIZED_VOL, FactorKind.DEPTH}
    )
    body_caps: ClassVar[Mapping[FactorKind, int]] = {FactorKind.DEPTH: 16 * 1024 * 1024}
    streams: ClassVar[frozenset[FactorKind]] = frozenset({FactorKind.SPOT})
    default_stream_url: ClassVar[str | None] = "wss://ws-feed.exchange.coinbase.com"
    # BTC-USD and ETH-USD match many times a second; ten quiet seconds is a stuck feed.
    stream_silence: ClassVar[float] = 10.0

    def request(self, instrument: str) -> tuple[str, Mapping[str, str]]:
        return f"/products/{self.symbol(instrument)}/ticker", {}

    def plan(self, kind: FactorKind, instrument: str) -> Sequence[tuple[str, Mapping[str, str]]]:
        product = self.symbol(instrument)
        if kind == FactorKind.REALIZED_VOL:
            end = self.now()
            start = end - _CANDLE_WINDOW * RV_CANDLE_SECONDS
            return [(f"/products/{product}/candles", {"granularity": str(RV_CANDLE_SECONDS),
                                                       "start": _iso(start), "end": _iso(end)})]
        if kind == FactorKind.DEPTH:
            return [(f"/products/{product}/book", {"level": "2"})]
        return super().plan(kind, instrument)

    def extract(self, payload: object, instrument: str) -> VenueQuote:
        body = self.body(payload, instrument)
        return VenueQuote(price=body.decimal("price"), observed_at=body.iso_time("time"))

    def extract_factor(
        self, kind: FactorKind, payloads: Sequence[object], instrument: str, fetched_at: float
    ) -> VenueQuote:
        body = self.body(payloads[0], instrument)
        if kind == FactorKind.REALIZED_VOL:
            candles = body.candles(time_unit="s")
            return VenueQuote(*realized_vol(candles, body.origin, fetched_at, max_quiet=_MAX_QUIET_MINUTES))
        if kind == FactorKind.DEPTH:
            # The full book: only the levels near mid are read (best first, checked).
            bids, asks = body.levels_near_mid(("bids",), ("asks",), DEPTH_BAND_BPS)
            depth = book_depth(bids, asks, body.origin)
            return VenueQuote(price=depth, observed_at=body.iso_time("time"))
        return super().extract_factor(kind, payloads, instrument, fetched_at)

    def venue_error(self, payload: object) -> str | None:
        if isinstance(payload, dict) and isinstance(payload.get("message"), str):
            return str(payload["message"])
        return None

    def venue_says(self, payload: object) -> VenueSays | None:
        message = self.venue_error(payload)
        if message is None:
            return None
        return VenueSays(Refusal.UNKNOWN_INSTRUMENT if message == "NotFound" else Refusal.OTHER, message)

    # ---- the ticker channel -------------------------------------------------------

    def stream_subscribe(self, instruments: Sequence[str]) -> Sequence[object]:
        return [{"type": "subscribe", "product_ids": [self.symbol(i) for i in instruments], "channels": ["ticker"]}]

    def stream_message(self, payload: object, instruments: Sequence[str]) -> StreamUpdate | None:
        subscribed = "/".join(instruments)
        if not isinstance(payload, dict):
            raise self.body(payload, subscribed).error("a JSON object with a type", json_kind(payload))
        kind = payload.get("type")
        if kind == "error":
            said = f"{payload.get('message')}: {payload.get('reason')}"
            head = f"{self.name} {subscribed}: expected the ticker subscription to be served, got the venue's error {said!r}"
            if "not a valid product" in said:
                raise SourceUnknownInstrument(
                    f"{head}; the venue does not list it — check {self.name}'s symbols for {subscribed}",
                    source=self.name, instrument=subscribed, status=None,
                )
            raise SourceHTTPError(f"{head}; reconnecting with back-off", source=self.name, instrument=subscribed,
                                  status=None)
        if kind != "ticker":
            return None
        products = {self.symbol(i): i for i in instruments}
        body = self.body(payload, subscribed)
        product = body.at("product_id")
        if product not in products:
            raise body.origin.mismatch(f"product_id among {', '.join(products)}", f"product_id {product!r}")
        instrument = products[str(product)]
        body = self.body(payload, instrument)
        sequence = body.at("sequence")
        return StreamUpdate(
            FactorKind.SPOT, instrument, VenueQuote(price=body.decimal("price"), observed_at=body.iso_time("time")),
            sequence=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
        )
