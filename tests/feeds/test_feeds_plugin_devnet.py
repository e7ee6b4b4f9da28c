"""A venue package installed into the environment is served by `relayer devnet` end to end.

tests/plugin_example (a source and its simulated venue, both through entry points) is
pip-installed into this venv; `relayer devnet --catalog` with the catalog the package
ships starts anvil, the simulated venues (the plugin's among them) and four relayers,
and a report lands on-chain carrying the plugin's feed. No project file is edited:
the repository's git status is the same before and after. The package is uninstalled
at the end so the other tests see only the built-in venues.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.feeds.plugin_install import PLUGIN_ROOT, install_by_hand, pip_install, pip_uninstall

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _git_status() -> str | None:
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _entry_point_names(group: str) -> set[str]:
    # A fresh interpreter: what a newly started relayer process would find.
    code = f"from importlib.metadata import entry_points; print(' '.join(e.name for e in entry_points(group={group!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


@pytest.fixture(scope="module")
def plugin_in_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    assert "examplex" not in _entry_point_names("relayer.sources"), "the plugin example is already installed"
    if pip_install(tmp_path_factory.mktemp("build")) == "by hand":
        install_by_hand(Path(sysconfig.get_paths()["purelib"]))
    try:
        yield
    finally:
        pip_uninstall()
        assert "examplex" not in _entry_point_names("relayer.sources") | _entry_point_names("relayer.simulated_venues")


def _devnet(data_dir: Path, *args: str, rounds: int = 2, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    # Every round carries every feed (`--feed-selection all`): each of the reports read
    # carries the plugin's feed, not only the first one.
    cmd = [sys.executable, "-m", "relayer", "devnet", "--nodes", "4", "--rounds", str(rounds), "--json",
           "--data-dir", str(data_dir), "--round-interval-ms", "500", "--feed-selection", "all", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_devnet_report_carries_the_plugin_feed(plugin_in_venv: None, tmp_path: Path) -> None:
    before = _git_status()
    proc = _devnet(tmp_path, "--catalog", str(PLUGIN_ROOT / "devnet-catalog.toml"))
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("node-*/node.log")))
    assert proc.returncode == 0, f"devnet exited {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}\nlogs:\n{logs}"
    reports: list[dict[str, Any]] = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(reports) == 2
    info = json.loads((tmp_path / "devnet.json").read_text())
    assert [fd["feed_id"] for fd in info["feeds"]] == ["BTC-USD", "BTC-USD-EXAMPLEX"]
    assert info["source_urls"]["examplex"].endswith("/examplex")
    for report in reports:
        feeds = {f["feed_id"]: f for f in report["feeds"]}
        plugin_feed = feeds["BTC-USD-EXAMPLEX"]
        # examplex is that feed's only source: the value on-chain is the plugin venue's quote.
        assert plugin_feed["num_sources"] == 1
        value, truth = Decimal(plugin_feed["value"]), Decimal(plugin_feed["true_price"])
        assert abs(value - truth) / truth * 10_000 <= 5  # its noise is 2 bps, plus tick rounding
        assert feeds["BTC-USD"]["num_sources"] >= 2
    if before is not None:
        assert _git_status() == before


def test_a_catalog_naming_an_unknown_source_stops_the_devnet_before_it_starts(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[[feed]]\nfeed_id = "X"\ninstrument = "BTC-USD"\nsources = ["nowhere"]\nmin_sources = 1\n')
    proc = _devnet(tmp_path / "data", "--catalog", str(catalog), timeout=60)
    assert proc.returncode == 2
    assert "unknown source 'nowhere'" in proc.stderr and "starting anvil" not in proc.stderr


def test_a_source_without_a_simulated_venue_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from feeds.errors import CatalogError
    from relayer import devnet

    monkeypatch.setattr(devnet, "simulated_venue_names", lambda: ["binance", "coinbase"])
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[[feed]]\nfeed_id = "X"\ninstrument = "BTC-USD"\nsources = ["binance", "kraken"]\n')
    with pytest.raises(CatalogError, match="got kraken without one"):
        devnet.devnet_catalog(catalog)
