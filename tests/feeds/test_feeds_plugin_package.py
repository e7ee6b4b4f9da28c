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

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _install_by_hand(package_root: Path, target: Path) -> None:
    import shutil
    import tomllib

    project = tomllib.loads((package_root / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    info = target / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for package in ["relayer_plugin_example"]:
        shutil.copytree(package_root / package, target / package)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(REPO / "tests" / "plugin_example")],
        capture_output=True, text=True, timeout=180, env={**os.environ, "TMPDIR": str(build)},
    )
    if proc.returncode != 0:
        # pip needs a wheel builder (setuptools >= 70 or `wheel`); where the venv has
        # neither, install it as pip would lay it out: the package plus a dist-info
        # whose entry_points.txt comes from the package's own pyproject.toml.
        assert "bdist_wheel" in proc.stderr or "setuptools" in proc.stderr, proc.stderr
        _install_by_hand(REPO / "tests" / "plugin_example", target)
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
