"""Simulated venues speaking the real Binance (spot and USD-M), Coinbase, Kraken, OKX,
Bybit and Deribit REST formats, all from one seeded market.

For offline runs, the devnet and tests. One :class:`MarketModel` gives deterministic
"true" risk factors per instrument as a function of (seed, instrument, time) only, so
separate processes with the same seed agree on them: a price with volatility regimes
(calm, normal, stressed, switching every 10 minutes) and jumps (ramped over 10 s), a
perpetual funding rate that can turn negative, open interest, an implied-vol index
and book liquidity that thins in stressed regimes. Each venue quotes the market with
its own small deterministic noise and latency, in its own JSON shape. Faults can be
switched per venue, in process (:meth:`VenueSimulator.set_fault`) or over HTTP
(``POST /sim/fault``): timeout, http429 (with Retry-After), http500, garbage (an HTML
error page; ``html`` is the same), truncated JSON, nan, negative, zero, stale
timestamps and a frozen value (fresh timestamps, unchanging value).

Run standalone: ``python -m feeds.simulator --port 8700 --seed 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from functools import lru_cache

from aiohttp import web

from feeds.errors import SimulatorConfigError

__all__ = ["FAULTS", "VENUES", "SPOT_VENUES", "MarketModel", "VenueSimulator", "main"]

VENUES: tuple[str, ...] = ("binance", "binance-futures", "coinbase", "kraken", "okx", "bybit", "deribit")
# The venues that quote spot (Binance USD-M and Deribit serve derivatives factors only).
SPOT_VENUES: tuple[str, ...] = ("binance", "coinbase", "kraken", "okx", "bybit")
FAULTS: tuple[str, ...] = (
    "garbage", "timeout", "http500", "nan", "truncated", "stale",
    "http429", "negative", "zero", "frozen", "html",
)
RETRY_AFTER_SECONDS = 2
DEFAULT_BASE_PRICES: Mapping[str, Decimal] = {"BTC-USD": Decimal(64000), "ETH-USD": Decimal(3200)}
DEFAULT_NOISE_BPS: Mapping[str, int] = {
    "binance": 3, "binance-futures": 3, "coinbase": 2, "kraken": 4, "okx": 3, "bybit": 3, "deribit": 4,
}
# Simulated one-way latency per venue, milliseconds (plus up to 50% deterministic jitter).
DEFAULT_LATENCY_MS: Mapping[str, float] = {
    "binance": 1, "binance-futures": 1, "coinbase": 3, "kraken": 5, "okx": 2, "bybit": 2, "deribit": 4,
}
# Share of the market's open interest held on each derivatives venue.
_OI_SHARE: Mapping[str, Decimal] = {
    "binance-futures": Decimal("0.30"), "okx": Decimal("0.22"), "bybit": Decimal("0.25"), "deribit": Decimal("0.12"),
}
# Relative book liquidity per spot venue (1 = the market's reference depth).
_BOOK_SCALE: Mapping[str, Decimal] = {
    "binance": Decimal("1.3"), "coinbase": Decimal("0.9"), "kraken": Decimal("0.6"), "okx": Decimal("1.0"),
    "bybit": Decimal("0.8"),
}
_TOTAL_OI_USD: Mapping[str, Decimal] = {"BTC-USD": Decimal("12e9"), "ETH-USD": Decimal("6e9")}
_BASE_IV: Mapping[str, Decimal] = {"BTC-USD": Decimal("0.55"), "ETH-USD": Decimal("0.70")}
# USD resting per 1-bp level at the reference venue in a normal regime.
_USD_PER_LEVEL: Mapping[str, Decimal] = {"BTC-USD": Decimal(400_000), "ETH-USD": Decimal(200_000)}

# Wide enough that the interpolation of a float time (about 40 significant digits
# when written in decimal) is computed without rounding before the final quantize.
_CTX = Context(prec=80, rounding=ROUND_HALF_EVEN)
# Knot spacings (seconds) of the layered walk. Each layer moves at most
# 2 * amplitude / spacing per second; amplitude = 0.00002 * spacing caps that at
# 0.004 % per layer, 0.016 % per second in total, and the whole walk within about
# +-1.2 % of the base price (so "BTC at 64000" stays recognisable).
_LAYERS: tuple[tuple[int, Decimal], ...] = tuple(
    (spacing, Decimal("0.00002") * spacing) for spacing in (1, 8, 64, 512)
)
# Volatility regimes: the fast layers (1 s and 8 s) are scaled by the regime's factor.
_REGIME_SECONDS = 600
_REGIMES: Mapping[str, Decimal] = {"calm": Decimal("0.5"), "normal": Decimal(1), "stressed": Decimal(2)}
# Jumps: in a quarter of the 300 s slots, a jump of 15-35 bps ramps in over 10 s and
# decays linearly to zero by the slot's end (so the level stays near its base).
_JUMP_SLOT = 300
_JUMP_RAMP = 10
_HOW_LONG_A_TIMEOUT_HANGS = 30.0
_STALE_BY = 120.0


def _unit(*parts: object) -> Decimal:
    """A deterministic pseudo-random Decimal in [-1, 1] (hashlib: Python's hash() is salted)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return Decimal(int.from_bytes(digest, "big") % 2_000_001 - 1_000_000) / 1_000_000


class MarketModel:
    """One seeded, smooth price process per instrument; a pure function of (seed, instrument, t)."""

    def __init__(self, seed: int, base_prices: Mapping[str, Decimal] | None = None) -> None:
        self.seed = seed
        self.base_prices: dict[str, Decimal] = dict(base_prices or DEFAULT_BASE_PRICES)
        for instrument, price in self.base_prices.items():
            if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
                raise SimulatorConfigError(
                    f"expected a positive Decimal base price for {instrument}, got {price!r}"
                )

    @property
    def instruments(self) -> list[str]:
        return sorted(self.base_prices)

    def true_price(self, instrument: str, t: float) -> Decimal:
        """Base price times (1 + a sum of linearly interpolated seeded random layers), 8 dp."""
        try:
            base = self.base_prices[instrument]
        except KeyError:
            raise SimulatorConfigError(
                f"expected an instrument of this market ({', '.join(self.instruments)}), got "
                f"{instrument!r}; pass it in base_prices"
            ) from None
        if not math.isfinite(t):
            raise SimulatorConfigError(f"expected a finite time, got {t!r}")
        return _true_price(self.seed, base, instrument, t)

    def regime(self, t: float) -> str:
        """calm, normal or stressed; one regime per 10-minute slot, seeded."""
        return _regime_name(self.seed, t)

    def _check(self, instrument: str) -> None:
        self.true_price(instrument, 0.0)

    def funding_rate(self, instrument: str, t: float) -> Decimal:
        """Per 8 h: 1 bp baseline plus a slow walk of +-4 bps, so it turns negative at times."""
        self._check(instrument)
        walk = _walk(self.seed, ("funding", instrument), t, ((600, Decimal(1)), (3600, Decimal(1))))
        return _CTX.add(Decimal("0.0001"), _CTX.multiply(Decimal("0.0002"), walk)).quantize(Decimal("1e-10"), context=_CTX)

    def open_interest_usd(self, instrument: str, t: float) -> Decimal:
        """The whole market's open interest in USD: a base level +-10 % slowly."""
        self._check(instrument)
        walk = _walk(self.seed, ("oi", instrument), t, ((900, Decimal("0.05")), (7200, Decimal("0.05"))))
        return _CTX.multiply(_TOTAL_OI_USD.get(instrument, Decimal("1e9")), _CTX.add(1, walk))

    def implied_vol(self, instrument: str, t: float) -> Decimal:
        """Annualized implied vol (fraction): higher in stressed regimes, lower in calm ones."""
        self._check(instrument)
        regime = {"calm": Decimal("0.85"), "normal": Decimal(1), "stressed": Decimal("1.4")}[self.regime(t)]
        walk = _walk(self.seed, ("iv", instrument), t, ((300, Decimal("0.05")),))
        base = _BASE_IV.get(instrument, Decimal("0.6"))
        return _CTX.multiply(_CTX.multiply(base, regime), _CTX.add(1, walk)).quantize(Decimal("1e-4"), context=_CTX)

    def usd_per_level(self, instrument: str, t: float) -> Decimal:
        """Resting USD per 1-bp book level at the reference venue; thinner when stressed."""
        self._check(instrument)
        factor = {"calm": Decimal("1.2"), "normal": Decimal(1), "stressed": Decimal("0.5")}[self.regime(t)]
        return _CTX.multiply(_USD_PER_LEVEL.get(instrument, Decimal(100_000)), factor)


def _walk(seed: int, key: object, t: float, layers: Sequence[tuple[int, Decimal]]) -> Decimal:
    """Sum of linearly interpolated seeded layers, each in [-amplitude, amplitude]."""
    when = Decimal(t)
    offset = Decimal(0)
    for spacing, amplitude in layers:
        position = _CTX.divide(when, spacing)
        knot = int(position.to_integral_value(rounding=ROUND_FLOOR))
        fraction = _CTX.subtract(position, knot)
        left = _unit(seed, key, spacing, knot)
        right = _unit(seed, key, spacing, knot + 1)
        level = _CTX.add(left, _CTX.multiply(_CTX.subtract(right, left), fraction))
        offset = _CTX.add(offset, _CTX.multiply(amplitude, level))
    return offset


def _jump(seed: int, instrument: str, t: float) -> Decimal:
    slot = math.floor(t / _JUMP_SLOT)
    if _unit(seed, "jump", instrument, slot) <= Decimal("0.5"):
        return Decimal(0)
    start = slot * _JUMP_SLOT + 30 + int(abs(_unit(seed, "jump-at", instrument, slot)) * 200)
    size = _CTX.add(Decimal("0.0015"), _CTX.multiply(Decimal("0.002"), abs(_unit(seed, "jump-size", instrument, slot))))
    if _unit(seed, "jump-sign", instrument, slot) < 0:
        size = -size
    if t < start:
        return Decimal(0)
    end = (slot + 1) * _JUMP_SLOT
    elapsed = Decimal(t - start)
    if elapsed < _JUMP_RAMP:
        return _CTX.multiply(size, _CTX.divide(elapsed, _JUMP_RAMP))
    decay = _CTX.divide(Decimal(end - t), Decimal(end - start - _JUMP_RAMP))
    return _CTX.multiply(size, max(Decimal(0), decay))


@lru_cache(maxsize=4096)
def _true_price(seed: int, base: Decimal, instrument: str, t: float) -> Decimal:
    regime = _REGIMES[_regime_name(seed, t)]
    fast = _walk(seed, instrument, t, _LAYERS[:2])
    slow = _walk(seed, instrument, t, _LAYERS[2:])
    offset = _CTX.add(_CTX.add(slow, _CTX.multiply(regime, fast)), _jump(seed, instrument, t))
    price = _CTX.multiply(base, _CTX.add(1, offset))
    return price.quantize(Decimal("1e-8"), context=_CTX)


def _regime_name(seed: int, t: float) -> str:
    u = _unit(seed, "regime", math.floor(t / _REGIME_SECONDS))
    return "calm" if u < Decimal("-0.4") else "stressed" if u > Decimal("0.6") else "normal"


def _binance_symbol(instrument: str) -> str:
    base, quote = instrument.split("-")
    # Binance, OKX and Bybit list dollar pairs against USDT.
    return base + ("USDT" if quote == "USD" else quote)


def _okx_inst(instrument: str) -> str:
    base, quote = instrument.split("-")
    return f"{base}-{'USDT' if quote == 'USD' else quote}"


def _kraken_pair(instrument: str) -> tuple[str, str]:
    """(query pair, result key): Kraken calls BTC XBT and keys old pairs as XXBTZUSD."""
    base, quote = instrument.split("-")
    base = "XBT" if base == "BTC" else base
    pair = base + quote
    if base in ("XBT", "ETH") and quote in ("USD", "EUR"):
        return pair, f"X{base}Z{quote}"
    return pair, pair


def _fmt(price: Decimal, tick: str, places: int) -> str:
    """Round to the venue's tick, then print with the venue's number of decimals."""
    return f"{price.quantize(Decimal(tick), context=_CTX):.{places}f}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Bad(Exception):
    """A lookup failed: answer with this venue-shaped error body and status."""

    def __init__(self, body: object, status: int) -> None:
        self.body = body
        self.status = status


Handler = Callable[[web.Request], Awaitable[object]]


class VenueSimulator:
    """An aiohttp app serving every venue under /{venue}/... plus /sim controls."""

    def __init__(
        self,
        model: MarketModel,
        *,
        venues: Sequence[str] = VENUES,
        noise_bps: Mapping[str, int] | None = None,
        latency_ms: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unknown = [venue for venue in venues if venue not in VENUES]
        if unknown:
            raise SimulatorConfigError(
                f"expected venues among {', '.join(VENUES)}, got {', '.join(unknown)}"
            )
        self.model = model
        self.venues = tuple(venues)
        self.noise_bps = {venue: DEFAULT_NOISE_BPS[venue] for venue in self.venues}
        self.noise_bps.update(noise_bps or {})
        self.latency_ms = {venue: DEFAULT_LATENCY_MS[venue] for venue in self.venues}
        self.latency_ms.update(latency_ms or {})
        self._clock = clock
        self._faults: dict[str, str | None] = {venue: None for venue in self.venues}
        self._books: dict[tuple[str, str, float], tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]] = {}
        self._book_texts: dict[tuple[str, str, float, str | None], tuple[list[list[str]], list[list[str]]]] = {}
        self._frozen_at: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        # Set on stop so a "timeout" fault lets go at once instead of after 30 s.
        self._stopping = asyncio.Event()
        self.requests: dict[str, int] = {venue: 0 for venue in self.venues}

    # ---- control -------------------------------------------------------------------

    def set_fault(self, venue: str, fault: str | None) -> None:
        if venue not in self._faults:
            raise SimulatorConfigError(
                f"expected a simulated venue ({', '.join(self.venues)}), got {venue!r}"
            )
        if fault is not None and fault not in FAULTS:
            raise SimulatorConfigError(
                f"expected a fault among {', '.join(FAULTS)} or null, got {fault!r}"
            )
        if fault == "frozen" and self._faults[venue] != "frozen":
            self._frozen_at[venue] = self._clock()
        self._faults[venue] = fault

    def faults(self) -> dict[str, str | None]:
        return dict(self._faults)

    def venue_price(self, venue: str, instrument: str, t: float) -> Decimal:
        """The true price with this venue's deterministic noise (changes once per second)."""
        noise = _unit(self.model.seed, "venue", venue, instrument, math.floor(t))
        factor = _CTX.add(1, _CTX.multiply(noise, Decimal(self.noise_bps[venue]) / 10_000))
        return _CTX.multiply(self.model.true_price(instrument, t), factor)

    def venue_funding(self, venue: str, instrument: str, t: float) -> Decimal:
        """The market's funding rate plus this venue's offset of at most 0.2 bp."""
        noise = _unit(self.model.seed, "funding", venue, instrument, math.floor(t / 10))
        return _CTX.add(self.model.funding_rate(instrument, t), _CTX.multiply(noise, Decimal("0.00002")))

    def venue_open_interest(self, venue: str, instrument: str, t: float) -> Decimal:
        return _CTX.multiply(self.model.open_interest_usd(instrument, t), _OI_SHARE.get(venue, Decimal("0.1")))

    def venue_book(self, venue: str, instrument: str, t: float) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids, asks) best first: 100 levels a side, one per bp from 0.5 bp off mid.

        Like a venue's book snapshot, it changes once a second (and is built once per second).
        """
        t = float(math.floor(t))
        key = (venue, instrument, t)
        cached = self._books.get(key)
        if cached is None:
            if len(self._books) > 256:
                self._books.clear()
            cached = self._books[key] = self._build_book(venue, instrument, t)
        return cached

    def _build_book(
        self, venue: str, instrument: str, t: float
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        mid = self.venue_price(venue, instrument, t)
        usd = _CTX.multiply(self.model.usd_per_level(instrument, t), _BOOK_SCALE.get(venue, Decimal(1)))
        bids, asks = [], []
        for level in range(100):
            offset = _CTX.divide(Decimal(level) + Decimal("0.5"), 10_000)
            wiggle = _CTX.add(1, _CTX.multiply(Decimal("0.3"), _unit(self.model.seed, "book", venue, instrument, level, math.floor(t))))
            for side, sign in ((bids, -1), (asks, 1)):
                price = _CTX.multiply(mid, _CTX.add(1, sign * offset)).quantize(Decimal("0.01"), context=_CTX)
                size = _CTX.divide(_CTX.multiply(usd, wiggle), price).quantize(Decimal("1e-6"), context=_CTX)
                side.append((price, size))
        return bids, asks

    def _candle_closes(self, venue: str, instrument: str, now: float, count: int) -> list[tuple[int, Decimal]]:
        """(open time, close) of the last ``count`` 1-minute candles, oldest first; the last is live."""
        current = math.floor(now / 60) * 60
        out = []
        for k in range(count - 1, -1, -1):
            opened = current - 60 * k
            close_at = now if k == 0 else opened + 59
            out.append((opened, self.venue_price(venue, instrument, close_at)))
        return out

    # ---- server --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/sim/truth", self._truth)
        app.router.add_get("/sim/fault", self._get_faults)
        app.router.add_post("/sim/fault", self._post_fault)
        routes: dict[str, list[tuple[str, Handler, object]]] = {
            "binance": [
                ("/api/v3/ticker/24hr", self._binance_24hr, None),
                ("/api/v3/ticker/price", self._binance_price, None),
                ("/api/v3/klines", self._binance_klines, None),
                ("/api/v3/depth", self._binance_depth, None),
            ],
            "binance-futures": [
                ("/fapi/v1/premiumIndex", self._binance_premium, None),
                ("/fapi/v1/openInterest", self._binance_open_interest, None),
            ],
            "coinbase": [
                ("/products/{product_id}/ticker", self._coinbase_ticker, None),
                ("/products/{product_id}/candles", self._coinbase_candles, None),
                ("/products/{product_id}/book", self._coinbase_book, None),
            ],
            "kraken": [
                ("/0/public/Ticker", self._kraken_ticker, None),
                ("/0/public/OHLC", self._kraken_ohlc, None),
                ("/0/public/Depth", self._kraken_depth, None),
            ],
            "okx": [
                ("/api/v5/market/ticker", self._okx_ticker, None),
                ("/api/v5/market/candles", self._okx_candles, None),
                ("/api/v5/market/books", self._okx_books, None),
                ("/api/v5/public/funding-rate", self._okx_funding, None),
                ("/api/v5/public/open-interest", self._okx_open_interest, None),
            ],
            "bybit": [
                ("/v5/market/tickers", self._bybit_tickers, None),
                ("/v5/market/kline", self._bybit_kline, None),
                ("/v5/market/orderbook", self._bybit_orderbook, None),
            ],
            "deribit": [
                ("/api/v2/public/get_volatility_index_data", self._deribit_dvol, None),
                ("/api/v2/public/ticker", self._deribit_ticker, None),
            ],
        }
        for venue in self.venues:
            for path, handler, _ in routes[venue]:
                app.router.add_get(f"/{venue}{path}", self._wrap(venue, handler))
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            raise SimulatorConfigError(f"expected a stopped simulator, got one serving {self._base_url}")
        self._stopping.clear()
        # handler_cancellation: a client that gives up (its timeout) ends the
        # "timeout" fault's sleep instead of leaving it running.
        runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        self._runner = runner
        self._base_url = f"http://{bound_host}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._base_url = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise SimulatorConfigError("expected a started simulator, got a stopped one; await start() first")
        return self._base_url

    def venue_url(self, venue: str) -> str:
        if venue not in self.venues:
            raise SimulatorConfigError(
                f"expected a simulated venue ({', '.join(self.venues)}), got {venue!r}"
            )
        return f"{self.base_url}/{venue}"

    # ---- fault plumbing ------------------------------------------------------------

    _ERROR_BODIES: Mapping[str, Callable[[int], object]] = {
        "binance": lambda s: {"code": -1003 if s == 429 else -1001,
                              "msg": "Too many requests." if s == 429 else "Internal error; unable to process your request. Please try again."},
        "binance-futures": lambda s: {"code": -1003 if s == 429 else -1001,
                                      "msg": "Too many requests." if s == 429 else "Internal error."},
        "coinbase": lambda s: {"message": "Public rate limit exceeded" if s == 429 else "Internal server error"},
        "kraken": lambda s: {"error": ["EAPI:Rate limit exceeded" if s == 429 else "EService:Unavailable"]},
        "okx": lambda s: {"code": "50011" if s == 429 else "50001",
                          "msg": "Too Many Requests" if s == 429 else "Service temporarily unavailable", "data": []},
        "bybit": lambda s: {"retCode": 10006 if s == 429 else 10016,
                            "retMsg": "Too many visits!" if s == 429 else "Internal server error.", "result": {}},
        "deribit": lambda s: {"jsonrpc": "2.0", "error": {"code": 10028 if s == 429 else 11097,
                                                          "message": "too_many_requests" if s == 429 else "internal_server_error"}},
    }

    def _wrap(self, venue: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            self.requests[venue] += 1
            latency = self.latency_ms[venue]
            if latency > 0:
                jitter = 1 + abs(float(_unit(self.model.seed, "latency", venue, self.requests[venue]))) / 2
                await asyncio.sleep(latency * jitter / 1000)
            fault = self._faults[venue]
            errors = self._ERROR_BODIES[venue]
            if fault in ("garbage", "html"):
                html = (
                    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
                    "<h1>502 Bad Gateway</h1><p>The upstream server is temporarily unavailable."
                    "</p></body></html>"
                )
                return web.Response(status=200, text=html, content_type="text/html")
            if fault == "timeout":
                try:
                    await asyncio.wait_for(self._stopping.wait(), _HOW_LONG_A_TIMEOUT_HANGS)
                except TimeoutError:
                    pass
                return web.json_response(errors(504), status=504)
            if fault == "http500":
                return web.json_response(errors(500), status=500)
            if fault == "http429":
                return web.json_response(errors(429), status=429, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            try:
                payload = await handler(request)
                status = 200
            except _Bad as bad:
                payload, status = bad.body, bad.status
            body = json.dumps(payload).encode()
            if fault == "truncated":
                # What a connection cut mid-body looks like after a proxy re-frames it.
                body = body[: len(body) // 2]
            return web.Response(status=status, body=body, content_type="application/json")

        return serve

    def _now(self) -> float:
        return self._clock()

    def _stamp(self, venue: str, t: float) -> float:
        """The timestamp the venue publishes: two minutes old under the stale fault."""
        return t - _STALE_BY if self._faults[venue] == "stale" else t

    def _value_time(self, venue: str, t: float) -> float:
        """The market time a value is taken at: frozen at the fault's start under "frozen"."""
        return self._frozen_at.get(venue, t) if self._faults[venue] == "frozen" else t

    def _num(self, venue: str, value: Decimal, tick: str, places: int) -> str:
        """A value as the venue prints it, broken as the value faults say."""
        fault = self._faults[venue]
        if fault == "nan":
            return "NaN"
        if fault == "zero":
            return _fmt(Decimal(0), tick, places)
        if fault == "negative":
            return _fmt(-(abs(value) + 1), tick, places)
        return _fmt(value, tick, places)

    def _instrument_for(self, symbol: str, to_symbol: Callable[[str], str]) -> str | None:
        for instrument in self.model.instruments:
            if to_symbol(instrument) == symbol:
                return instrument
        return None

    def _lookup(self, symbol: str, to_symbol: Callable[[str], str], bad: _Bad) -> str:
        instrument = self._instrument_for(symbol, to_symbol)
        if instrument is None:
            raise bad
        return instrument

    def _candles(self, venue: str, instrument: str, count: int) -> list[tuple[int, str]]:
        now = self._now()
        rows = self._candle_closes(venue, instrument, self._value_time(venue, now), count)
        shift = int(now - self._stamp(venue, now)) + int(self._value_time(venue, now) - now)
        out = []
        for i, (opened, close) in enumerate(rows):
            text = _fmt(close, "0.01", 2)
            if i == len(rows) - 1:  # value faults hit the live candle
                text = self._num(venue, close, "0.01", 2)
            out.append((opened - shift if shift else opened, text))
        return out

    def _book(self, venue: str, instrument: str) -> tuple[list[list[str]], list[list[str]]]:
        t = self._value_time(venue, self._now())
        fault = self._faults[venue]
        key = (venue, instrument, float(math.floor(t)), fault)
        cached = self._book_texts.get(key)
        if cached is None:
            if len(self._book_texts) > 256:
                self._book_texts.clear()
            cached = self._book_texts[key] = self._format_book(*self.venue_book(venue, instrument, t), fault)
        return cached

    def _format_book(
        self, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], fault: str | None
    ) -> tuple[list[list[str]], list[list[str]]]:

        def size(value: Decimal) -> str:
            if fault == "zero":
                return "0.000000"
            if fault == "negative":
                return _fmt(-value, "1e-6", 6)
            return _fmt(value, "1e-6", 6)

        def price(value: Decimal, first: bool) -> str:
            return "NaN" if fault == "nan" and first else _fmt(value, "0.01", 2)

        return (
            [[price(p, i == 0), size(q)] for i, (p, q) in enumerate(bids)],
            [[price(p, i == 0), size(q)] for i, (p, q) in enumerate(asks)],
        )

    # ---- Binance spot --------------------------------------------------------------

    def _binance_instrument(self, request: web.Request) -> tuple[str, str]:
        symbol = request.query.get("symbol", "")
        return symbol, self._lookup(symbol, _binance_symbol, _Bad({"code": -1121, "msg": "Invalid symbol."}, 400))

    async def _binance_24hr(self, request: web.Request) -> object:
        symbol, instrument = self._binance_instrument(request)
        now = self._now()
        last = self._num("binance", self.venue_price("binance", instrument, self._value_time("binance", now)), "0.01", 8)
        close_ms = int(self._stamp("binance", now) * 1000)
        return {
            "symbol": symbol, "priceChange": "0.00000000", "priceChangePercent": "0.000",
            "weightedAvgPrice": last, "prevClosePrice": last, "lastPrice": last, "lastQty": "0.00100000",
            "bidPrice": last, "bidQty": "1.50000000", "askPrice": last, "askQty": "0.75000000",
            "openPrice": last, "highPrice": last, "lowPrice": last, "volume": "12345.67800000",
            "quoteVolume": "790123456.78000000", "openTime": close_ms - 86_400_000, "closeTime": close_ms,
            "firstId": 3_000_000_000, "lastId": 3_001_000_000, "count": 1_000_001,
        }

    async def _binance_price(self, request: web.Request) -> object:
        symbol, instrument = self._binance_instrument(request)
        now = self._now()
        return {"symbol": symbol,
                "price": self._num("binance", self.venue_price("binance", instrument, self._value_time("binance", now)), "0.01", 8)}

    async def _binance_klines(self, request: web.Request) -> object:
        _, instrument = self._binance_instrument(request)
        limit = min(int(request.query.get("limit", "500")), 1000)
        rows = []
        for opened, close in self._candles("binance", instrument, limit):
            rows.append([opened * 1000, close, close, close, close, "12.50000000", opened * 1000 + 59_999,
                         "800000.00000000", 1000, "6.25000000", "400000.00000000", "0"])
        return rows

    async def _binance_depth(self, request: web.Request) -> object:
        _, instrument = self._binance_instrument(request)
        limit = min(int(request.query.get("limit", "100")), 5000)
        bids, asks = self._book("binance", instrument)
        return {"lastUpdateId": int(self._now() * 10), "bids": bids[:limit], "asks": asks[:limit]}

    # ---- Binance USD-M futures -----------------------------------------------------

    def _futures_instrument(self, request: web.Request) -> tuple[str, str]:
        symbol = request.query.get("symbol", "")
        return symbol, self._lookup(symbol, _binance_symbol, _Bad({"code": -1121, "msg": "Invalid symbol."}, 400))

    async def _binance_premium(self, request: web.Request) -> object:
        symbol, instrument = self._futures_instrument(request)
        venue = "binance-futures"
        now = self._now()
        t = self._value_time(venue, now)
        mark = self.venue_price(venue, instrument, t)
        stamp = int(self._stamp(venue, now) * 1000)
        return {
            "symbol": symbol, "markPrice": _fmt(mark, "0.01", 8), "indexPrice": _fmt(mark, "0.01", 8),
            "estimatedSettlePrice": _fmt(mark, "0.01", 8),
            "lastFundingRate": self._num(venue, self.venue_funding(venue, instrument, t), "1e-8", 8),
            "interestRate": "0.00010000", "nextFundingTime": (math.floor(now / 28800) + 1) * 28_800_000,
            "time": stamp,
        }

    async def _binance_open_interest(self, request: web.Request) -> object:
        symbol, instrument = self._futures_instrument(request)
        venue = "binance-futures"
        now = self._now()
        t = self._value_time(venue, now)
        contracts = _CTX.divide(self.venue_open_interest(venue, instrument, t), self.venue_price(venue, instrument, t))
        return {"openInterest": self._num(venue, contracts, "0.001", 3), "symbol": symbol,
                "time": int(self._stamp(venue, now) * 1000)}

    # ---- Coinbase ------------------------------------------------------------------

    def _coinbase_instrument(self, request: web.Request) -> str:
        product = request.match_info["product_id"]
        if product not in self.model.base_prices:
            raise _Bad({"message": "NotFound"}, 404)
        return product

    async def _coinbase_ticker(self, request: web.Request) -> object:
        product = self._coinbase_instrument(request)
        now = self._now()
        last = self._num("coinbase", self.venue_price("coinbase", product, self._value_time("coinbase", now)), "0.01", 2)
        stamp = self._stamp("coinbase", now)
        return {"ask": last, "bid": last, "volume": "12345.67890123", "trade_id": int(stamp * 10),
                "price": last, "size": "0.00123456", "time": _iso(stamp)}

    async def _coinbase_candles(self, request: web.Request) -> object:
        product = self._coinbase_instrument(request)
        rows = []
        # Newest first; numbers, not strings (as Coinbase documents).
        for opened, close in reversed(self._candles("coinbase", product, 61)):
            number = float(close)
            rows.append([opened, number, number, number, number, 12.5])
        return rows

    async def _coinbase_book(self, request: web.Request) -> object:
        product = self._coinbase_instrument(request)
        bids, asks = self._book("coinbase", product)
        now = self._now()
        return {"bids": [b + [3] for b in bids], "asks": [a + [2] for a in asks], "sequence": int(now * 100),
                "auction_mode": False, "auction": None, "time": _iso(self._stamp("coinbase", now))}

    # ---- Kraken --------------------------------------------------------------------

    def _kraken_instrument(self, request: web.Request) -> tuple[str, str]:
        pair = request.query.get("pair", "")
        instrument = self._instrument_for(pair, lambda i: _kraken_pair(i)[0])
        if instrument is None:
            raise _Bad({"error": ["EQuery:Unknown asset pair"]}, 200)
        return instrument, _kraken_pair(instrument)[1]

    async def _kraken_ticker(self, request: web.Request) -> object:
        instrument, key = self._kraken_instrument(request)
        now = self._now()
        last = self._num("kraken", self.venue_price("kraken", instrument, self._value_time("kraken", now)), "0.1", 5)
        ticker = {
            "a": [last, "1", "1.000"], "b": [last, "2", "2.000"], "c": [last, "0.00100000"],
            "v": ["1234.56789012", "2345.67890123"], "p": [last, last], "t": [12345, 23456],
            "l": [last, last], "h": [last, last], "o": last,
        }
        return {"error": [], "result": {key: ticker}}

    async def _kraken_ohlc(self, request: web.Request) -> object:
        instrument, key = self._kraken_instrument(request)
        rows = [[opened, close, close, close, close, close, "12.50000000", 100]
                for opened, close in self._candles("kraken", instrument, 62)]
        return {"error": [], "result": {key: rows, "last": rows[-2][0]}}

    async def _kraken_depth(self, request: web.Request) -> object:
        instrument, key = self._kraken_instrument(request)
        count = min(int(request.query.get("count", "100")), 500)
        bids, asks = self._book("kraken", instrument)
        stamp = int(self._stamp("kraken", self._now()))
        return {"error": [], "result": {key: {"asks": [a + [stamp] for a in asks[:count]],
                                              "bids": [b + [stamp] for b in bids[:count]]}}}

    # ---- OKX -----------------------------------------------------------------------

    def _okx_instrument(self, request: web.Request, swap: bool = False) -> tuple[str, str]:
        inst = request.query.get("instId", "")
        to = (lambda i: _okx_inst(i) + "-SWAP") if swap else _okx_inst
        bad = _Bad({"code": "51001", "msg": "Instrument ID does not exist", "data": []}, 200)
        return inst, self._lookup(inst, to, bad)

    def _okx(self, data: list[object]) -> object:
        return {"code": "0", "msg": "", "data": data}

    async def _okx_ticker(self, request: web.Request) -> object:
        inst, instrument = self._okx_instrument(request)
        now = self._now()
        last = self._num("okx", self.venue_price("okx", instrument, self._value_time("okx", now)), "0.1", 1)
        ts = str(int(self._stamp("okx", now) * 1000))
        return self._okx([{"instType": "SPOT", "instId": inst, "last": last, "lastSz": "0.01", "askPx": last,
                           "askSz": "1", "bidPx": last, "bidSz": "1", "open24h": last, "high24h": last,
                           "low24h": last, "volCcy24h": "1000000", "vol24h": "15", "ts": ts,
                           "sodUtc0": last, "sodUtc8": last}])

    async def _okx_candles(self, request: web.Request) -> object:
        _, instrument = self._okx_instrument(request)
        limit = min(int(request.query.get("limit", "100")), 300)
        rows = self._candles("okx", instrument, limit)
        last = len(rows) - 1
        return self._okx([[str(opened * 1000), c, c, c, c, "12.5", "12.5", "800000", "0" if i == last else "1"]
                          for i, (opened, c) in reversed(list(enumerate(rows)))])

    async def _okx_books(self, request: web.Request) -> object:
        _, instrument = self._okx_instrument(request)
        size = min(int(request.query.get("sz", "1")), 400)
        bids, asks = self._book("okx", instrument)
        ts = str(int(self._stamp("okx", self._now()) * 1000))
        return self._okx([{"asks": [a + ["0", "4"] for a in asks[:size]],
                           "bids": [b + ["0", "4"] for b in bids[:size]], "ts": ts, "seqId": 1}])

    async def _okx_funding(self, request: web.Request) -> object:
        inst, instrument = self._okx_instrument(request, swap=True)
        now = self._now()
        rate = self._num("okx", self.venue_funding("okx", instrument, self._value_time("okx", now)), "1e-10", 10)
        return self._okx([{"instType": "SWAP", "instId": inst, "fundingRate": rate, "nextFundingRate": "",
                           "fundingTime": str((math.floor(now / 28800) + 1) * 28_800_000),
                           "method": "current_period", "ts": str(int(self._stamp("okx", now) * 1000))}])

    async def _okx_open_interest(self, request: web.Request) -> object:
        inst, instrument = self._okx_instrument(request, swap=True)
        now = self._now()
        t = self._value_time("okx", now)
        usd = self.venue_open_interest("okx", instrument, t)
        ccy = _CTX.divide(usd, self.venue_price("okx", instrument, t))
        return self._okx([{"instType": "SWAP", "instId": inst, "oi": _fmt(ccy * 100, "1", 0),
                           "oiCcy": _fmt(ccy, "0.01", 2), "oiUsd": self._num("okx", usd, "0.01", 2),
                           "ts": str(int(self._stamp("okx", now) * 1000))}])

    # ---- Bybit ---------------------------------------------------------------------

    def _bybit_instrument(self, request: web.Request) -> tuple[str, str, str]:
        category = request.query.get("category", "")
        symbol = request.query.get("symbol", "")
        if category not in ("spot", "linear"):
            raise _Bad({"retCode": 10001, "retMsg": "Illegal category", "result": {}, "retExtInfo": {}, "time": 0}, 200)
        bad = _Bad({"retCode": 10001, "retMsg": "Not supported symbols", "result": {}, "retExtInfo": {},
                    "time": int(self._now() * 1000)}, 200)
        return category, symbol, self._lookup(symbol, _binance_symbol, bad)

    def _bybit(self, result: object, now: float) -> object:
        return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                "time": int(self._stamp("bybit", now) * 1000)}

    async def _bybit_tickers(self, request: web.Request) -> object:
        category, symbol, instrument = self._bybit_instrument(request)
        now = self._now()
        t = self._value_time("bybit", now)
        price = self.venue_price("bybit", instrument, t)
        if category == "spot":
            last = self._num("bybit", price, "0.01", 2)
            item = {"symbol": symbol, "bid1Price": last, "bid1Size": "1", "ask1Price": last, "ask1Size": "1",
                    "lastPrice": last, "prevPrice24h": last, "price24hPcnt": "0", "highPrice24h": last,
                    "lowPrice24h": last, "turnover24h": "800000000", "volume24h": "12500", "usdIndexPrice": last}
        else:
            usd = self.venue_open_interest("bybit", instrument, t)
            item = {"symbol": symbol, "lastPrice": _fmt(price, "0.01", 2), "indexPrice": _fmt(price, "0.01", 2),
                    "markPrice": _fmt(price, "0.01", 2), "prevPrice24h": _fmt(price, "0.01", 2),
                    "openInterest": _fmt(_CTX.divide(usd, price), "0.001", 3),
                    "openInterestValue": self._num("bybit", usd, "0.01", 2),
                    "fundingRate": self._num("bybit", self.venue_funding("bybit", instrument, t), "1e-8", 8),
                    "nextFundingTime": str((math.floor(now / 28800) + 1) * 28_800_000),
                    "turnover24h": "5000000000", "volume24h": "80000"}
        return self._bybit({"category": category, "list": [item]}, now)

    async def _bybit_kline(self, request: web.Request) -> object:
        category, symbol, instrument = self._bybit_instrument(request)
        limit = min(int(request.query.get("limit", "200")), 1000)
        rows = [[str(opened * 1000), c, c, c, c, "12.5", "800000"] for opened, c in reversed(self._candles("bybit", instrument, limit))]
        return self._bybit({"symbol": symbol, "category": category, "list": rows}, self._now())

    async def _bybit_orderbook(self, request: web.Request) -> object:
        _, symbol, instrument = self._bybit_instrument(request)
        limit = min(int(request.query.get("limit", "1")), 200)
        bids, asks = self._book("bybit", instrument)
        now = self._now()
        return self._bybit({"s": symbol, "b": bids[:limit], "a": asks[:limit],
                            "ts": int(self._stamp("bybit", now) * 1000), "u": int(now * 10), "seq": int(now * 100),
                            "cts": int(now * 1000)}, now)

    # ---- Deribit -------------------------------------------------------------------

    def _deribit_rpc(self, result: object) -> object:
        return {"jsonrpc": "2.0", "result": result, "usIn": 1, "usOut": 2, "usDiff": 1, "testnet": False}

    def _deribit_bad(self) -> _Bad:
        return _Bad({"jsonrpc": "2.0", "error": {"message": "Invalid params", "data": {"reason": "wrong format",
                                                                                         "param": "currency"},
                                                 "code": -32602}, "testnet": False}, 400)

    async def _deribit_dvol(self, request: web.Request) -> object:
        currency = request.query.get("currency", "")
        instrument = self._instrument_for(currency, lambda i: i.split("-")[0])
        if instrument is None:
            raise self._deribit_bad()
        now = self._now()
        t = self._value_time("deribit", now)
        rows = []
        for k in range(4, -1, -1):
            minute = (math.floor(t / 60) - k) * 60
            at = t if k == 0 else minute + 59
            iv = _CTX.multiply(self.model.implied_vol(instrument, at), 100)
            text = self._num("deribit", iv, "0.01", 2) if k == 0 else _fmt(iv, "0.01", 2)
            number = float(text)
            stamp = int(self._stamp("deribit", minute if k else now) * 1000) if k else int(self._stamp("deribit", now) * 1000)
            rows.append([stamp, number, number, number, number])
        return self._deribit_rpc({"data": rows, "continuation": None})

    async def _deribit_ticker(self, request: web.Request) -> object:
        name = request.query.get("instrument_name", "")
        instrument = self._instrument_for(name, lambda i: i.split("-")[0] + "-PERPETUAL")
        if instrument is None:
            raise self._deribit_bad()
        now = self._now()
        t = self._value_time("deribit", now)
        price = self.venue_price("deribit", instrument, t)
        funding = float(self._num("deribit", self.venue_funding("deribit", instrument, t), "1e-8", 8))
        oi = float(self._num("deribit", self.venue_open_interest("deribit", instrument, t), "10", 0))
        mark = float(_fmt(price, "0.5", 1))
        return self._deribit_rpc({
            "timestamp": int(self._stamp("deribit", now) * 1000), "state": "open", "instrument_name": name,
            "index_price": mark, "mark_price": mark, "last_price": mark, "best_bid_price": mark,
            "best_ask_price": mark, "open_interest": oi, "funding_8h": funding, "current_funding": funding,
            "settlement_price": mark, "min_price": mark * 0.97, "max_price": mark * 1.03,
            "stats": {"volume": 12345.6, "price_change": 0.5, "low": mark, "high": mark},
        })

    # ---- /sim control endpoints ----------------------------------------------------

    async def _truth(self, request: web.Request) -> web.Response:
        instrument = request.query.get("instrument", "")
        raw_t = request.query.get("t")
        try:
            t = self._clock() if raw_t is None else float(raw_t)
            price = self.model.true_price(instrument, t)
        except (ValueError, SimulatorConfigError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"instrument": instrument, "price": str(price), "t": t})

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults())

    async def _post_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response(
                {"error": 'expected a JSON body {"venue": ..., "fault": ...}'}, status=400
            )
        if not isinstance(body, dict) or not isinstance(body.get("venue"), str):
            return web.json_response(
                {"error": f'expected a JSON object {{"venue": str, "fault": str|null}}, got {body!r}'},
                status=400,
            )
        try:
            self.set_fault(body["venue"], body.get("fault"))
        except SimulatorConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.faults())


async def _serve(host: str, port: int, seed: int) -> None:
    simulator = VenueSimulator(MarketModel(seed))
    base_url = await simulator.start(host, port)
    print(f"simulator listening on {base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feeds.simulator",
        description="Serve simulated Binance (spot, USD-M), Coinbase, Kraken, OKX, Bybit and Deribit APIs on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
