"""A js-libp2p observer (scripts/observer.mjs) outside the committee, on a live devnet: it
dials the nodes' observer relays, receives reports on the read-only topic and verifies each
against the on-chain committee."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devnet_proc import REPO, DevnetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    proc = DevnetProcess(tmp_path_factory.mktemp("observer-devnet"))
    proc.wait_first_report()
    yield proc
    assert proc.stop() == 0


def test_js_observer_receives_and_verifies_reports(devnet: DevnetProcess, tmp_path: Path) -> None:
    info = devnet.info
    assert len(info["observer_relays"]) == 4
    done = subprocess.run(
        ["node", "scripts/observer.mjs", "--devnet", str(devnet.data_dir), "--count", "2", "--timeout", "60",
         "--json", "--key-file", str(tmp_path / "observer.key")],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2
    members = {node["address"].lower() for node in info["nodes"]}
    for line in lines:
        assert line["verified"] is True
        assert line["config_digest"] == info["config_digest"]
        assert len(line["signers"]) >= info["threshold"]
        assert set(line["signers"]) <= members
        assert line["feeds"] >= 1
    assert len({(line["epoch"], line["round"]) for line in lines}) == 2
    assert "refused" not in done.stderr

    # Each node counted what its relay published, and refused nothing from the observer.
    for node in info["nodes"]:
        with sqlite3.connect(Path(node["data_dir"], "node.sqlite")) as conn:
            stats = json.loads(conn.execute("SELECT value FROM state WHERE key = 'stats'").fetchone()[0])
        assert stats["observer_relay"]["published"] >= 1
        assert stats["observer_relay"]["dropped"] == []

