"""Simulated venues speaking the real Binance, Coinbase and Kraken ticker formats.

For offline runs, the devnet and tests. One :class:`MarketModel` gives a
deterministic "true" price per instrument as a function of (seed, instrument,
time) only, so separate processes with the same seed agree on it; each venue
quotes that price with its own small deterministic noise, in its own JSON shape.
Faults can be switched per venue, in process (:meth:`VenueSimulator.set_fault`)
or over HTTP (``POST /sim/fault``), to see what a node does with a bad venue.

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
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal

from aiohttp import web

from feeds.errors import SimulatorConfigError

__all__ = ["FAULTS", "VENUES", "MarketModel", "VenueSimulator", "main"]

VENUES: tuple[str, ...] = ("binance", "coinbase", "kraken")
FAULTS: tuple[str, ...] = ("garbage", "timeout", "http500", "nan", "truncated", "stale")
DEFAULT_BASE_PRICES: Mapping[str, Decimal] = {"BTC-USD": Decimal(64000), "ETH-USD": Decimal(3200)}
DEFAULT_NOISE_BPS: Mapping[str, int] = {"binance": 3, "coinbase": 2, "kraken": 4}

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
        when = Decimal(t)
        offset = Decimal(0)
        for spacing, amplitude in _LAYERS:
            position = _CTX.divide(when, spacing)
            knot = int(position.to_integral_value(rounding=ROUND_FLOOR))
            fraction = _CTX.subtract(position, knot)
            left = _unit(self.seed, instrument, spacing, knot)
            right = _unit(self.seed, instrument, spacing, knot + 1)
            level = _CTX.add(left, _CTX.multiply(_CTX.subtract(right, left), fraction))
            offset = _CTX.add(offset, _CTX.multiply(amplitude, level))
        price = _CTX.multiply(base, _CTX.add(1, offset))
        return price.quantize(Decimal("1e-8"), context=_CTX)


def _binance_symbol(instrument: str) -> str:
    base, quote = instrument.split("-")
    # Binance lists dollar pairs against USDT.
    return base + ("USDT" if quote == "USD" else quote)


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


class VenueSimulator:
    """An aiohttp app with /binance, /coinbase, /kraken ticker routes and /sim controls."""

    def __init__(
        self,
        model: MarketModel,
        *,
        venues: Sequence[str] = VENUES,
        noise_bps: Mapping[str, int] | None = None,
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
        self._clock = clock
        self._faults: dict[str, str | None] = {venue: None for venue in self.venues}
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        # Set on stop so a "timeout" fault lets go at once instead of after 30 s.
        self._stopping = asyncio.Event()

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
        self._faults[venue] = fault

    def faults(self) -> dict[str, str | None]:
        return dict(self._faults)

    def venue_price(self, venue: str, instrument: str, t: float) -> Decimal:
        """The true price with this venue's deterministic noise (changes once per second)."""
        noise = _unit(self.model.seed, "venue", venue, instrument, math.floor(t))
        factor = _CTX.add(1, _CTX.multiply(noise, Decimal(self.noise_bps[venue]) / 10_000))
        return _CTX.multiply(self.model.true_price(instrument, t), factor)

    # ---- server --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/sim/truth", self._truth)
        app.router.add_get("/sim/fault", self._get_faults)
        app.router.add_post("/sim/fault", self._post_fault)
        if "binance" in self.venues:
            app.router.add_get("/binance/api/v3/ticker/24hr", self._binance_24hr)
            app.router.add_get("/binance/api/v3/ticker/price", self._binance_price)
        if "coinbase" in self.venues:
            app.router.add_get("/coinbase/products/{product_id}/ticker", self._coinbase_ticker)
        if "kraken" in self.venues:
            app.router.add_get("/kraken/0/public/Ticker", self._kraken_ticker)
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

    async def _fault_response(self, venue: str, error_body: object) -> web.StreamResponse | None:
        fault = self._faults[venue]
        if fault == "garbage":
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
            return web.json_response(error_body, status=504)
        if fault == "http500":
            return web.json_response(error_body, status=500)
        return None

    def _json(self, venue: str, payload: object, status: int = 200) -> web.Response:
        body = json.dumps(payload).encode()
        if self._faults[venue] == "truncated":
            # What a connection cut mid-body looks like after a proxy re-frames it.
            body = body[: len(body) // 2]
        return web.Response(status=status, body=body, content_type="application/json")

    def _quote(self, venue: str, instrument: str) -> tuple[float, Decimal | None]:
        """(timestamp to publish, price) — price None for the "nan" fault."""
        now = self._clock()
        price = None if self._faults[venue] == "nan" else self.venue_price(venue, instrument, now)
        stamp = now - _STALE_BY if self._faults[venue] == "stale" else now
        return stamp, price

    # ---- venues --------------------------------------------------------------------

    def _instrument_for(self, symbol: str, to_symbol: Callable[[str], str]) -> str | None:
        for instrument in self.model.instruments:
            if to_symbol(instrument) == symbol:
                return instrument
        return None

    async def _binance_lookup(self, request: web.Request) -> tuple[str, str] | web.StreamResponse:
        fault = await self._fault_response(
            "binance",
            {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."},
        )
        if fault is not None:
            return fault
        symbol = request.query.get("symbol", "")
        instrument = self._instrument_for(symbol, _binance_symbol)
        if instrument is None:
            return self._json("binance", {"code": -1121, "msg": "Invalid symbol."}, status=400)
        return symbol, instrument

    async def _binance_24hr(self, request: web.Request) -> web.StreamResponse:
        found = await self._binance_lookup(request)
        if isinstance(found, web.StreamResponse):
            return found
        symbol, instrument = found
        stamp, price = self._quote("binance", instrument)
        last = "NaN" if price is None else _fmt(price, "0.01", 8)
        close_ms = int(stamp * 1000)
        payload = {
            "symbol": symbol,
            "priceChange": "0.00000000",
            "priceChangePercent": "0.000",
            "weightedAvgPrice": last,
            "prevClosePrice": last,
            "lastPrice": last,
            "lastQty": "0.00100000",
            "bidPrice": last,
            "bidQty": "1.50000000",
            "askPrice": last,
            "askQty": "0.75000000",
            "openPrice": last,
            "highPrice": last,
            "lowPrice": last,
            "volume": "12345.67800000",
            "quoteVolume": "790123456.78000000",
            "openTime": close_ms - 86_400_000,
            "closeTime": close_ms,
            "firstId": 3_000_000_000,
            "lastId": 3_001_000_000,
            "count": 1_000_001,
        }
        return self._json("binance", payload)

    async def _binance_price(self, request: web.Request) -> web.StreamResponse:
        found = await self._binance_lookup(request)
        if isinstance(found, web.StreamResponse):
            return found
        symbol, instrument = found
        _, price = self._quote("binance", instrument)
        return self._json(
            "binance", {"symbol": symbol, "price": "NaN" if price is None else _fmt(price, "0.01", 8)}
        )

    async def _coinbase_ticker(self, request: web.Request) -> web.StreamResponse:
        fault = await self._fault_response("coinbase", {"message": "Internal server error"})
        if fault is not None:
            return fault
        product = request.match_info["product_id"]
        if product not in self.model.base_prices:
            return self._json("coinbase", {"message": "NotFound"}, status=404)
        stamp, price = self._quote("coinbase", product)
        last = "NaN" if price is None else _fmt(price, "0.01", 2)
        when = datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        payload = {
            "ask": last,
            "bid": last,
            "volume": "12345.67890123",
            "trade_id": int(stamp * 10),
            "price": last,
            "size": "0.00123456",
            "time": when,
        }
        return self._json("coinbase", payload)

    async def _kraken_ticker(self, request: web.Request) -> web.StreamResponse:
        fault = await self._fault_response("kraken", {"error": ["EService:Unavailable"]})
        if fault is not None:
            return fault
        pair = request.query.get("pair", "")
        instrument = self._instrument_for(pair, lambda i: _kraken_pair(i)[0])
        if instrument is None:
            return self._json("kraken", {"error": ["EQuery:Unknown asset pair"]})
        _, key = _kraken_pair(instrument)
        _, price = self._quote("kraken", instrument)
        last = "NaN" if price is None else _fmt(price, "0.1", 5)
        ticker = {
            "a": [last, "1", "1.000"],
            "b": [last, "2", "2.000"],
            "c": [last, "0.00100000"],
            "v": ["1234.56789012", "2345.67890123"],
            "p": [last, last],
            "t": [12345, 23456],
            "l": [last, last],
            "h": [last, last],
            "o": last,
        }
        return self._json("kraken", {"error": [], "result": {key: ticker}})

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
        description="Serve simulated Binance/Coinbase/Kraken ticker APIs on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
