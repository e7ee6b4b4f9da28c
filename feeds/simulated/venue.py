"""The simulated-venue contract: one venue quoting the shared market in its own format.

A simulated venue (one file under ``feeds/simulated/``, or in a plugin package)
subclasses :class:`SimulatedVenue`, says which routes it serves and what its error
bodies look like, and answers each route from the market with the helpers here. The
helpers apply the venue's noise and the value faults the same way for every venue,
so a venue file holds only what is that venue's own: its symbols, its JSON shapes,
its number formats. It is registered in the ``relayer.simulated_venues`` entry-point
group under the same name as its source in ``relayer.sources``.

Routing, latency, the transport faults (timeout, HTTP errors, HTML, truncation) and
the server's lifecycle belong to :mod:`feeds.simulator`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

from feeds.market import CTX, MarketModel, unit
from feeds.scenarios import CANDLE_SECONDS

__all__ = [
    "BookLevels",
    "BookText",
    "FAULTS",
    "Handler",
    "SimulatedVenue",
    "StreamHandler",
    "VenueRefusal",
    "fmt",
    "iso",
    "usdt_pair",
]

FAULTS: tuple[str, ...] = (
    "garbage", "timeout", "http500", "nan", "truncated", "stale",
    "http429", "negative", "zero", "frozen", "html",
    # The venue refusing the way it does: in an HTTP 200 body for venues that report
    # errors there (errors_in_body), else with HTTP 429 / 503 and no Retry-After.
    "rate_limited", "unavailable",
)
# How far behind a venue's published timestamps are under the "stale" fault: beyond
# every source's staleness limit (Deribit's DVOL allows 120 s).
STALE_BY = 300.0

Handler = Callable[[web.Request], Awaitable[object]]
# A WebSocket route: the handler owns the connection and returns it when done.
StreamHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BookLevels = tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]
BookText = tuple[list[list[str]], list[list[str]]]


class VenueRefusal(Exception):
    """A lookup failed: the server answers with this venue-shaped error body and status."""

    def __init__(self, body: object, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.body = body
        self.status = status


def fmt(value: Decimal, tick: str, places: int) -> str:
    """Round to the venue's tick, then print with the venue's number of decimals."""
    return f"{value.quantize(Decimal(tick), context=CTX):.{places}f}"


def iso(t: float) -> str:
    """RFC 3339 UTC with microseconds, as Coinbase prints times."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def usdt_pair(instrument: str, separator: str = "") -> str:
    """"BTC-USD" -> "BTCUSDT" (or "BTC-USDT"): most venues list dollar pairs against USDT."""
    base, quote = instrument.split("-")
    return base + separator + ("USDT" if quote == "USD" else quote)


class SimulatedVenue(abc.ABC):
    """One venue's API over the shared market; subclasses set ``name`` and implement two methods."""

    name: ClassVar[str]
    # Half-width of this venue's deterministic price noise around the market, in bps.
    default_noise_bps: ClassVar[int] = 3
    # Simulated one-way latency, milliseconds (plus up to 50% deterministic jitter).
    default_latency_ms: ClassVar[float] = 2.0
    # Share of the market's open interest held on this venue (derivatives venues).
    open_interest_share: ClassVar[Decimal] = Decimal("0.1")
    # Book liquidity relative to the market's reference depth (spot venues).
    book_scale: ClassVar[Decimal] = Decimal(1)
    # The venue reports its errors (rate limits included) inside an HTTP 200 body, as
    # Kraken, OKX and Bybit do; the "rate_limited" and "unavailable" faults answer so.
    errors_in_body: ClassVar[bool] = False

    def __init__(
        self,
        model: MarketModel,
        clock: Callable[[], float],
        *,
        noise_bps: int | None = None,
        latency_ms: float | None = None,
    ) -> None:
        self.model = model
        self.clock = clock
        self.noise_bps = self.default_noise_bps if noise_bps is None else noise_bps
        self.latency_ms = self.default_latency_ms if latency_ms is None else latency_ms
        self.fault: str | None = None
        self.requests = 0
        self._frozen_at = 0.0
        self._books: dict[tuple[str, float], BookLevels] = {}
        self._book_texts: dict[tuple[str, float, str | None], BookText] = {}
        # Open WebSocket connections of the venue's stream routes, and how many were made.
        self.streams_open: set[web.WebSocketResponse] = set()
        self.stream_connections = 0

    # ---- what a simulated venue implements ----------------------------------------

    @abc.abstractmethod
    def routes(self) -> Sequence[tuple[str, Handler]]:
        """(path under /{name}, handler) pairs; a handler returns the JSON body or raises VenueRefusal."""

    @abc.abstractmethod
    def error_body(self, status: int) -> object:
        """The body this venue sends with HTTP ``status`` (429, 500, 503, 504) under a transport fault."""

    def stream_routes(self) -> Sequence[tuple[str, StreamHandler]]:
        """(path under /{name}, handler) pairs of the venue's WebSocket streams; none by default."""
        return []

    async def drop_streams(self) -> None:
        """Close every open stream connection, as a venue restart or a network cut does."""
        for ws in list(self.streams_open):
            await ws.close(code=1001, message=b"going away")

    # ---- fault state (switched by the server) -------------------------------------

    def set_fault(self, fault: str | None) -> None:
        if fault == "frozen" and self.fault != "frozen":
            self._frozen_at = self.clock()
        self.fault = fault

    def now(self) -> float:
        return self.clock()

    def stamp(self, t: float) -> float:
        """The timestamp the venue publishes: two minutes old under the stale fault."""
        return t - STALE_BY if self.fault == "stale" else t

    def value_time(self, t: float) -> float:
        """The market time a value is taken at: frozen at the fault's start under "frozen"."""
        return self._frozen_at if self.fault == "frozen" else t

    def num(self, value: Decimal, tick: str, places: int) -> str:
        """A value as the venue prints it, broken as the value faults say."""
        if self.fault == "nan":
            return "NaN"
        if self.fault == "zero":
            return fmt(Decimal(0), tick, places)
        if self.fault == "negative":
            return fmt(-(abs(value) + 1), tick, places)
        return fmt(value, tick, places)

    # ---- the market as this venue quotes it ----------------------------------------

    def price(self, instrument: str, t: float, *, market_t: float | None = None) -> Decimal:
        """The true price with this venue's deterministic noise (changes once per second);
        ``market_t``: the scenario's time, when it runs on another clock (the candle history)."""
        noise = unit(self.model.seed, "venue", self.name, instrument, math.floor(t))
        factor = CTX.add(1, CTX.multiply(noise, Decimal(self.noise_bps) / 10_000))
        return CTX.multiply(self.model.true_price(instrument, t, market_t=market_t), factor)

    def funding(self, instrument: str, t: float) -> Decimal:
        """The market's funding rate plus this venue's offset of at most 0.2 bp."""
        noise = unit(self.model.seed, "funding", self.name, instrument, math.floor(t / 10))
        return CTX.add(self.model.funding_rate(instrument, t), CTX.multiply(noise, Decimal("0.00002")))

    def open_interest(self, instrument: str, t: float) -> Decimal:
        """This venue's share of the market's open interest, USD."""
        return CTX.multiply(self.model.open_interest_usd(instrument, t), self.open_interest_share)

    def book_levels(self, instrument: str, t: float) -> BookLevels:
        """(bids, asks) best first: 100 levels a side, one per bp from 0.5 bp off mid.

        Like a venue's book snapshot, it changes once a second (and is built once per second).
        """
        t = float(math.floor(t))
        key = (instrument, t)
        cached = self._books.get(key)
        if cached is None:
            if len(self._books) > 256:
                self._books.clear()
            cached = self._books[key] = self._build_book(instrument, t)
        return cached

    def _build_book(self, instrument: str, t: float) -> BookLevels:
        mid = self.price(instrument, t)
        usd = CTX.multiply(self.model.usd_per_level(instrument, t), self.book_scale)
        bids: list[tuple[Decimal, Decimal]] = []
        asks: list[tuple[Decimal, Decimal]] = []
        for level in range(100):
            offset = CTX.divide(Decimal(level) + Decimal("0.5"), 10_000)
            wiggle = CTX.add(1, CTX.multiply(
                Decimal("0.3"), unit(self.model.seed, "book", self.name, instrument, level, math.floor(t))))
            for side, sign in ((bids, -1), (asks, 1)):
                price = CTX.multiply(mid, CTX.add(1, sign * offset)).quantize(Decimal("0.01"), context=CTX)
                size = CTX.divide(CTX.multiply(usd, wiggle), price).quantize(Decimal("1e-6"), context=CTX)
                side.append((price, size))
        return bids, asks

    def book(self, instrument: str) -> BookText:
        """The current book as the venue prints it, [[price, size], ...] a side, under the value faults."""
        t = self.value_time(self.now())
        key = (instrument, float(math.floor(t)), self.fault)
        cached = self._book_texts.get(key)
        if cached is None:
            if len(self._book_texts) > 256:
                self._book_texts.clear()
            cached = self._book_texts[key] = self._format_book(*self.book_levels(instrument, t))
        return cached

    def _format_book(self, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]) -> BookText:
        fault = self.fault

        def size(value: Decimal) -> str:
            if fault == "zero":
                return "0.000000"
            if fault == "negative":
                return fmt(-value, "1e-6", 6)
            return fmt(value, "1e-6", 6)

        def price(value: Decimal, first: bool) -> str:
            return "NaN" if fault == "nan" and first else fmt(value, "0.01", 2)

        return (
            [[price(p, i == 0), size(q)] for i, (p, q) in enumerate(bids)],
            [[price(p, i == 0), size(q)] for i, (p, q) in enumerate(asks)],
        )

    def _candle_closes(self, instrument: str, now: float, count: int) -> list[tuple[int, Decimal]]:
        """(open time, close) of the last ``count`` 1-minute candles, oldest first; the last is live.

        While a market scenario runs, the candle ``k`` minutes back carries the scenario as it was
        ``k * CANDLE_SECONDS`` ago (its faster clock, feeds/scenarios.py)."""
        current = math.floor(now / 60) * 60
        scenario = self.model.scenario is not None and self.model.scenario.started_at is not None
        out = []
        for k in range(count - 1, -1, -1):
            opened = current - 60 * k
            close_at = now if k == 0 else opened + 59
            market_t = now - k * CANDLE_SECONDS if scenario else None
            out.append((opened, self.price(instrument, close_at, market_t=market_t)))
        return out

    def candles(self, instrument: str, count: int) -> list[tuple[int, str]]:
        """(open time in unix seconds, close as printed) of the last ``count`` minutes, oldest first."""
        now = self.now()
        rows = self._candle_closes(instrument, self.value_time(now), count)
        shift = int(now - self.stamp(now)) + int(self.value_time(now) - now)
        out = []
        for i, (opened, close) in enumerate(rows):
            text = fmt(close, "0.01", 2)
            if i == len(rows) - 1:  # value faults hit the live candle
                text = self.num(close, "0.01", 2)
            out.append((opened - shift if shift else opened, text))
        return out

    # ---- symbols -------------------------------------------------------------------

    def instrument_for(self, symbol: str, to_symbol: Callable[[str], str]) -> str | None:
        """The market's instrument this venue calls ``symbol``, or None."""
        for instrument in self.model.instruments:
            if to_symbol(instrument) == symbol:
                return instrument
        return None

    def lookup(self, symbol: str, to_symbol: Callable[[str], str], refusal: VenueRefusal) -> str:
        """Like :meth:`instrument_for`, but an unknown symbol is answered with ``refusal``."""
        instrument = self.instrument_for(symbol, to_symbol)
        if instrument is None:
            raise refusal
        return instrument
