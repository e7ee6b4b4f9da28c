"""How old the cached spot value is when a round observes it: polling the REST ticker vs streaming the ticker channel.

Runs the simulated Coinbase on loopback and one feed cache per row: either polled every
``--poll`` seconds (the node's default poll interval is 1 s) or fed by the WebSocket
ticker channel, whose simulated venue publishes every ``--stream-interval`` seconds per
product. An observer reads the cache at random moments (as rounds do) and records the
age of the value it finds: now minus the value's observation time (the venue's own
timestamp). Prints one table.

    .venv/bin/python bench/stream_freshness.py [--seconds 20] [--poll 1.0] [--stream-interval 0.1 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feeds.market import MarketModel  # noqa: E402
from feeds.poller import FeedCache  # noqa: E402
from feeds.registry import make_source  # noqa: E402
from feeds.simulated.coinbase import SimulatedCoinbase  # noqa: E402
from feeds.simulator import VenueSimulator  # noqa: E402

INSTRUMENT = "BTC-USD"


async def observe(cache: FeedCache, seconds: float, rng: random.Random) -> list[float]:
    """Ages (s) of the cached value at random moments, about 10 a second."""
    ages: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(rng.uniform(0.0, 0.2))
        now = time.time()
        readings = cache.readings(INSTRUMENT, now=now)
        if readings:
            ages.append(now - readings[0].observed_at)
    return ages


async def run_row(sim: VenueSimulator, mode: str, seconds: float, poll: float, rng: random.Random) -> list[float]:
    stream_url = sim.stream_url("coinbase") if mode == "stream" else ""
    source = make_source("coinbase", base_url=sim.venue_url("coinbase"), timeout=2.0, stream_url=stream_url)
    cache = FeedCache({"coinbase": source}, [INSTRUMENT])
    async with aiohttp.ClientSession() as session:
        if mode == "stream":
            worker = asyncio.create_task(cache.run_streams(session))
        else:
            async def poller() -> None:
                while True:
                    await cache.poll_once(session)
                    await asyncio.sleep(poll)

            worker = asyncio.create_task(poller())
        await asyncio.sleep(1.0)  # the first value in
        try:
            return await observe(cache, seconds, rng)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    sim = VenueSimulator(MarketModel(1), venues=["coinbase"])
    await sim.start()
    venue = sim.venue("coinbase")
    assert isinstance(venue, SimulatedCoinbase)
    rows: list[tuple[str, str, list[float]]] = []
    try:
        rng = random.Random(args.seed)
        rows.append((f"poll REST ticker every {args.poll:g} s", f"{args.poll:g} s (per poll)",
                     await run_row(sim, "poll", args.seconds, args.poll, rng)))
        for interval in args.stream_interval:
            venue.stream_interval = interval
            rows.append(("stream ticker channel", f"{interval:g} s (per message)",
                         await run_row(sim, "stream", args.seconds, args.poll, rng)))
    finally:
        await sim.stop()
    print(f"{'cache fed by':<30} {'venue update every':<20} {'samples':>7} {'mean ms':>8} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'max ms':>7}")
    for label, cadence, ages in rows:
        ms = [a * 1000 for a in ages]
        print(f"{label:<30} {cadence:<20} {len(ms):>7} {statistics.fmean(ms):>8.0f} {quantile(ms, 0.5):>7.0f} "
              f"{quantile(ms, 0.95):>7.0f} {max(ms):>7.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="observation time per row")
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval of the polled row (s)")
    parser.add_argument("--stream-interval", type=float, nargs="+", default=[0.1, 0.5],
                        help="seconds between two simulated ticker messages, one row each")
    parser.add_argument("--seed", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
