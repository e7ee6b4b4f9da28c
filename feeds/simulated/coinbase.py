"""Simulated Coinbase Exchange: product ticker, 1-minute candles and the level-2 book.

Serves what :mod:`feeds.sources.coinbase` reads. Products are named like our
instruments ("BTC-USD"); times are RFC 3339; candles are numbers, newest first;
errors are ``{"message": "NotFound"}`` with a 4xx status.

The level-2 book is the full aggregated book, as Coinbase serves it (no depth limit):
the 100 levels a side near mid every simulated venue has, then thousands of thin
levels from 3 % to 60 % off, several hundred KiB in all.

The WebSocket feed (``/coinbase/ws``) speaks the Exchange feed's ``ticker`` channel: a
``subscribe`` within 5 s, a ``subscriptions`` answer, then a ``ticker`` message per
product every ``stream_interval`` seconds (Coinbase sends one per match), each with its
product's own ``sequence``. An unknown product is refused with an ``error`` message and
the connection closed. Under the ``timeout`` fault the feed stays connected and silent;
``misroute`` relabels a product's messages as another product's.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import ClassVar

import aiohttp
from aiohttp import web

from feeds.market import MarketModel, unit
from feeds.simulated.venue import BookText, Handler, SimulatedVenue, StreamHandler, VenueRefusal, iso

# Levels a side beyond the near book: Coinbase's BTC-USD book has tens of thousands;
# this many makes a body of several hundred KiB.
FAR_LEVELS = 6000
_FAR_FROM, _FAR_TO = Decimal("0.03"), Decimal("0.6")


class SimulatedCoinbase(SimulatedVenue):
    name: ClassVar[str] = "coinbase"
    default_noise_bps: ClassVar[int] = 2
    default_latency_ms: ClassVar[float] = 3.0
    book_scale: ClassVar[Decimal] = Decimal("0.9")

    def routes(self) -> Sequence[tuple[str, Handler]]:
        return [
            ("/products/{product_id}/ticker", self.ticker),
            ("/products/{product_id}/candles", self.candles_route),
            ("/products/{product_id}/book", self.book_route),
        ]

    def error_body(self, status: int) -> object:
        return {"message": "Public rate limit exceeded" if status == 429 else "Internal server error"}

    def stream_routes(self) -> Sequence[tuple[str, StreamHandler]]:
        return [("/ws", self.ticker_stream)]

    def __init__(
        self,
        model: MarketModel,
        clock: Callable[[], float],
        *,
        noise_bps: int | None = None,
        latency_ms: float | None = None,
    ) -> None:
        super().__init__(model, clock, noise_bps=noise_bps, latency_ms=latency_ms)
        # Minutes before the current one (0 = the current) without trades, left out of
        # the candles; none by default.
        self.quiet_minutes: frozenset[int] = frozenset()
        self._far: dict[str, BookText] = {}
        # Seconds between two ticker messages of one product on the stream.
        self.stream_interval = 0.1
        # product -> the product_id its stream messages carry instead (a misrouted feed).
        self.misroute: dict[str, str] = {}

    def book(self, instrument: str) -> BookText:
        """The near book (moving, under the value faults) and the far levels behind it."""
        bids, asks = super().book(instrument)
        far_bids, far_asks = self._far_levels(instrument)
        return bids + far_bids, asks + far_asks

    def _far_levels(self, instrument: str) -> BookText:
        """Thin resting orders from 3 % to 60 % off the base price, printed once per instrument.

        Built around the base price, not mid: the market stays within about 1.5 % of
        it, so these never reach the near book's 1 % and cost nothing per second.
        """
        cached = self._far.get(instrument)
        if cached is None:
            base = self.model.base_prices[instrument]
            step = (_FAR_TO - _FAR_FROM) / FAR_LEVELS
            bids: list[list[str]] = []
            asks: list[list[str]] = []
            for level in range(FAR_LEVELS):
                offset = _FAR_FROM + step * level
                # A few hundred to a few thousand USD resting at each far level.
                usd = Decimal(1500) * (1 + Decimal("0.8") * unit(self.model.seed, "far", instrument, level))
                for side, sign in ((bids, -1), (asks, 1)):
                    price = (base * (1 + sign * offset)).quantize(Decimal("0.01"))
                    side.append([f"{price:.2f}", f"{(usd / price).quantize(Decimal('1e-6')):.6f}"])
            cached = self._far[instrument] = (bids, asks)
        return cached

    def _product(self, request: web.Request) -> str:
        product = request.match_info["product_id"]
        if product not in self.model.base_prices:
            raise VenueRefusal({"message": "NotFound"}, 404)
        return product

    async def ticker(self, request: web.Request) -> object:
        product = self._product(request)
        now = self.now()
        last = self.num(self.price(product, self.value_time(now)), "0.01", 2)
        stamp = self.stamp(now)
        return {"ask": last, "bid": last, "volume": "12345.67890123", "trade_id": int(stamp * 10),
                "price": last, "size": "0.00123456", "time": iso(stamp)}

    async def candles_route(self, request: web.Request) -> object:
        product = self._product(request)
        count = 300  # Coinbase's most per request, and what it sends without start and end
        try:
            start = datetime.fromisoformat(request.query["start"]).timestamp()
            end = datetime.fromisoformat(request.query["end"]).timestamp()
        except (KeyError, ValueError):
            pass
        else:
            count = max(1, min(300, int(end // 60 - start // 60) + 1))
        rows = []
        current = math.floor(self.now() / 60) * 60
        # Newest first; numbers, not strings (as Coinbase documents); a minute without
        # trades is left out, as Coinbase leaves it out.
        for opened, close in reversed(self.candles(product, count)):
            if (current - opened) // 60 in self.quiet_minutes:
                continue
            number = float(close)
            rows.append([opened, number, number, number, number, 12.5])
        return rows

    async def book_route(self, request: web.Request) -> object:
        product = self._product(request)
        bids, asks = self.book(product)
        now = self.now()
        return {"bids": [b + [3] for b in bids], "asks": [a + [2] for a in asks], "sequence": int(now * 100),
                "auction_mode": False, "auction": None, "time": iso(self.stamp(now))}

    # ---- the WebSocket feed ------------------------------------------------------------

    def ticker_message(self, product: str, sequence: int) -> dict[str, object]:
        """One ``ticker`` message of the Exchange feed for ``product``, now."""
        now = self.now()
        price = self.price(product, self.value_time(now))
        last = self.num(price, "0.01", 2)
        stamp = self.stamp(now)
        return {
            "type": "ticker", "sequence": sequence, "product_id": self.misroute.get(product, product),
            "price": last, "open_24h": last, "volume_24h": "12345.67890123", "low_24h": last, "high_24h": last,
            "volume_30d": "370370.37037037", "best_bid": last, "best_bid_size": "0.50000000", "best_ask": last,
            "best_ask_size": "0.40000000", "side": "buy", "time": iso(stamp), "trade_id": int(stamp * 10),
            "last_size": "0.00123456",
        }

    async def ticker_stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.stream_connections += 1
        self.streams_open.add(ws)
        try:
            products = await self._subscription(ws)
            sequences = dict.fromkeys(products, 0)
            while products and not ws.closed:
                if self.fault != "timeout":
                    for product in products:
                        sequences[product] += 1
                        await ws.send_json(self.ticker_message(product, sequences[product]))
                await asyncio.sleep(self.stream_interval)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            self.streams_open.discard(ws)
        return ws

    async def _subscription(self, ws: web.WebSocketResponse) -> list[str]:
        """The products of the client's ``subscribe`` to ``ticker``, acknowledged; [] (closed) when refused."""
        try:
            msg = await ws.receive(timeout=5.0)
        except TimeoutError:
            await ws.close()
            return []
        try:
            request = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else None
        except json.JSONDecodeError:
            request = None
        if not (isinstance(request, dict) and request.get("type") == "subscribe"
                and "ticker" in request.get("channels", []) and isinstance(request.get("product_ids"), list)):
            await ws.send_json({"type": "error", "message": "Failed to subscribe", "reason": "ticker channel expected"})
            await ws.close()
            return []
        products = [str(p) for p in request["product_ids"]]
        for product in products:
            if product not in self.model.base_prices:
                await ws.send_json({"type": "error", "message": "Failed to subscribe",
                                    "reason": f"{product} is not a valid product"})
                await ws.close()
                return []
        await ws.send_json({"type": "subscriptions", "channels": [{"name": "ticker", "product_ids": products}]})
        return products
