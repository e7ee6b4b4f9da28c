"""A separately installed package adds a source through the entry-point group, with no edit here.

The package in tests/plugin_example (a source and its simulated venue) is installed
with pip into a scratch directory (not the shared venv), and a fresh interpreter with
that directory on its path lists both and serves a feed from the source against the
package's own simulated venue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.feeds.plugin_install import install_by_hand, pip_install

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    if pip_install(tmp_path_factory.mktemp("build"), "--target", str(target)) == "by hand":
        install_by_hand(target)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(REPO)])}


def test_the_installed_source_is_listed(installed: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "feeds.cli", "sources", "list", "--json"],
                         capture_output=True, text=True, env=installed, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in map(json.loads, out.stdout.splitlines())}
    assert rows["examplex"]["factors"] == ["spot"]
    assert rows["examplex"]["class"] == "relayer_plugin_example.source.ExampleExchange"
    assert {"binance", "okx", "deribit"} <= set(rows)


def test_the_installed_simulated_venue_is_listed(installed: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "feeds.simulator", "--list"],
                         capture_output=True, text=True, env=installed, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert {"examplex", "binance", "deribit"} <= set(out.stdout.split())


def test_the_installed_source_serves_a_feed_from_its_simulated_venue(installed: dict[str, str]) -> None:
    script = textwrap.dedent(
        """
        import asyncio, aiohttp
        from feeds.catalog import parse_catalog
        from feeds.poller import FeedCache
        from feeds.registry import load_sources, make_source
        from feeds.simulator import MarketModel, VenueSimulator

        async def main():
            sim = VenueSimulator(MarketModel(1)); await sim.start()
            feeds = parse_catalog('''
            [[feed]]
            feed_id = "BTC-USD"
            instrument = "BTC-USD"
            sources = ["examplex", "coinbase"]
            min_sources = 2
            ''', "inline.toml", load_sources())
            sources = {name: make_source(name, base_url=sim.venue_url(name)) for name in ("examplex", "coinbase")}
            cache = FeedCache.for_feeds(sources, feeds)
            async with aiohttp.ClientSession() as session:
                await cache.poll_once(session)
            local = cache.aggregate(feeds[0])
            print(local.num_sources, ",".join(local.sources), sim.requests["examplex"])
            await sim.stop()

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=installed,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "coinbase,examplex", "1"]
