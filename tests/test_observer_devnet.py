"""A js-libp2p observer (scripts/observer.mjs) outside the committee, on a live devnet: it
dials the nodes' observer relays (`relayer relay`, one process beside each node), receives
reports on the read-only topic and verifies each against the on-chain committee; the Python
SDK verifies what a relay publishes; and no node's consensus host ever sees an observer."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relayer.client import ReportVerifier, parse_report
from relayer.p2p.host import P2PHost
from tests.devnet_proc import REPO, DevnetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    proc = DevnetProcess(tmp_path_factory.mktemp("observer-devnet"), "--observers")
    proc.wait_first_report()
    yield proc
    assert proc.stop() == 0


def relay_stats(node_dir: Path, timeout: float = 10.0) -> dict[str, Any]:
    """The relay's counters, once it has published a report: the file is rewritten each second."""
    deadline = time.monotonic() + timeout
    while True:
        path = node_dir / "relay-stats.json"
        stats: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        if stats.get("published", 0) >= 1 or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


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
    observer_id = done.stderr.split("observer: peer id ", 1)[1].split()[0]

    # Each relay process counted what it published from its node's stream, and refused
    # nothing from the observer; each node's consensus host knows only committee peers, and
    # never heard from the observer.
    for node in info["nodes"]:
        relay = relay_stats(Path(node["data_dir"]))
        assert relay["published"] >= 1 and relay["relayed"] == relay["published"]
        # Only forwards of another relay's report (gossip before the PRUNE lands) may be dropped.
        assert relay["stream_connects"] >= 1, relay
        assert all(reason == "observer_forward" for _peer, reason, *_ in relay["dropped"]), relay
        assert relay["peer_id"] in " ".join(info["observer_relays"])
        with sqlite3.connect(Path(node["data_dir"], "node.sqlite")) as conn:
            stats = json.loads(conn.execute("SELECT value FROM state WHERE key = 'stats'").fetchone()[0])
        assert stats["peers"] <= len(info["nodes"]) - 1
        assert observer_id not in json.dumps(stats["p2p_dropped"])



async def test_a_report_from_a_relay_verifies_with_the_python_sdk(devnet: DevnetProcess) -> None:
    # A libp2p host outside the committee, on the reports topic, dialing one node's relay.
    info = devnet.info
    received: list[bytes] = []
    observer: P2PHost[object] = P2PHost(os.urandom(32), topic=info["reports_topic"],
                                        on_message=lambda _sender, data, _opened: received.append(data))
    await observer.start()
    try:
        await observer.connect(info["observer_relays"][1])
        deadline = asyncio.get_running_loop().time() + 30
        while not received and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert received, "no report from the relay within 30 s"
    finally:
        await observer.stop()
    report = parse_report(json.loads(received[0]))
    async with ReportVerifier.connect(info["rpc_url"], info["oracle"]) as verifier:
        verified = await verifier.verify(report)
    assert verified.chain_id == info["chain_id"]
    assert len(verified.signers) >= info["threshold"]
    assert {s.lower() for s in verified.signers} <= {n["address"].lower() for n in info["nodes"]}
