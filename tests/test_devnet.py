"""End to end on real parts: anvil, the simulated venues over HTTP, 4 relayer processes on libp2p.

Runs `relayer devnet` as an operator would and checks what landed against the chain's
own record, the nodes' signed observations and the simulated market's true price. The
reports checked here are consecutive rounds carrying every feed, so these devnets run with
`--feed-selection all` (the devnet's default, `trigger`, is tests/test_trigger_devnet.py's).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aggregation.robust import median_int
from relayer.chain.codec import ReportDomain, decode_updates, recover_address
from relayer.protocol.messages import Observation, open_envelope, parse_body

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def run_devnet(data_dir: Path, *args: str, rounds: int = 4, timeout: float = 150) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "relayer", "devnet", "--nodes", "4", "--rounds", str(rounds), "--json",
           "--data-dir", str(data_dir), "--round-interval-ms", "500", "--feed-selection", "all", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(data_dir.glob("node-*/node.log")))
    assert proc.returncode == 0, f"devnet exited {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}\nnode logs:\n{logs}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    # --json: stdout holds report objects and nothing else.
    return [json.loads(line) for line in lines]


def attested_rows(node_dir: Path) -> dict[tuple[int, int], dict[str, Any]]:
    with sqlite3.connect(node_dir / "node.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        return {(r["epoch"], r["round"]): dict(r) for r in conn.execute("SELECT * FROM attested")}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], dict[str, Any], Path]:
    data_dir = tmp_path_factory.mktemp("devnet")
    reports = run_devnet(data_dir, rounds=4)
    return reports, json.loads((data_dir / "devnet.json").read_text()), data_dir


def test_consecutive_reports_land(healthy) -> None:  # type: ignore[no-untyped-def]
    reports, info, _ = healthy
    assert len(reports) == 4
    keys = [(r["epoch"], r["round"]) for r in reports]
    assert keys == sorted(set(keys))
    runs = [1]
    for (e0, r0), (e1, r1) in zip(keys, keys[1:]):
        runs.append(runs[-1] + 1 if e1 == e0 and r1 == r0 + 1 else 1)
    assert max(runs) >= 3, f"no three consecutive rounds landed: {keys}"
    assert {f["feed_id"] for r in reports for f in r["feeds"]} == {fd["feed_id"] for fd in info["feeds"]}


def test_values_are_medians_of_signed_observations_and_near_the_truth(healthy) -> None:  # type: ignore[no-untyped-def]
    reports, info, _ = healthy
    committee = [n["address"] for n in info["nodes"]]
    stores = {}
    for node in info["nodes"]:
        stores.update({k: v for k, v in attested_rows(Path(node["data_dir"])).items() if v["observations"]})
    index_of = {fd["feed_id"]: fd["index"] for fd in info["feeds"]}
    for report in reports:
        row = stores[(report["epoch"], report["round"])]
        envelopes = [open_envelope(o) for o in json.loads(row["observations"])]  # re-verifies each signature
        assert len({e.sender for e in envelopes}) == len(envelopes) >= 2 * info["f"] + 1
        assert {e.sender for e in envelopes} <= set(committee)
        observations = [parse_body(e) for e in envelopes]
        for feed in report["feeds"]:
            values = [f.value for o in observations if isinstance(o, Observation)
                      for f in o.feeds if f.feed_index == index_of[feed["feed_id"]]]
            assert feed["raw_value"] == median_int(values)
            if feed["true_price"] is None:  # only spot feeds have a price truth to compare with
                continue
            value, truth = Decimal(feed["value"]), Decimal(feed["true_price"])
            assert abs(value - truth) / truth < Decimal("0.005"), (feed, truth)


def test_every_report_carries_threshold_distinct_committee_signatures(healthy) -> None:  # type: ignore[no-untyped-def]
    reports, info, _ = healthy
    committee = [n["address"] for n in info["nodes"]]
    domain = ReportDomain(info["chain_id"], info["oracle"])
    digest = bytes.fromhex(info["config_digest"][2:])
    # The leader of a round always keeps its attested report; a follower keeps it when the
    # leader's `attested` message reached it. Every store that has a round has the same report.
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for node in info["nodes"]:
        for key, row in attested_rows(Path(node["data_dir"])).items():
            assert rows.setdefault(key, row)["updates"] == row["updates"], key
    for report in reports:
        assert report["signer_count"] >= info["threshold"]
        assert len(set(report["signers"])) == report["signer_count"]
        assert set(report["signers"]) <= set(committee)
        row = rows[(report["epoch"], report["round"])]
        updates = bytes.fromhex(row["updates"])
        assert [u.value for u in decode_updates(updates)] == [f["raw_value"] for f in report["feeds"]]
        report_digest = domain.report_digest(digest, report["epoch"], report["round"], updates)
        signers = {recover_address(report_digest, bytes.fromhex(sig)) for _, sig in json.loads(row["signatures"])}
        assert len(signers) >= info["threshold"] and signers <= set(committee)


def test_a_venue_answering_garbage_does_not_stop_rounds(tmp_path: Path) -> None:
    reports = run_devnet(tmp_path, "--venue-fault", "kraken=garbage", rounds=3)
    assert len(reports) == 3
    for report in reports:
        for feed in report["feeds"]:
            if feed["kind"] != "spot":
                continue
            # The four healthy spot venues carry every spot feed; the broken one is left out.
            assert feed["num_sources"] == 4
            assert abs(Decimal(feed["value"]) - Decimal(feed["true_price"])) / Decimal(feed["true_price"]) < Decimal("0.005")
    log = (tmp_path / "node-0" / "node.log").read_text()
    assert "kraken" in log and "HTML" in log


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


def test_sigterm_stops_every_child(tmp_path: Path) -> None:
    import signal
    import time

    err_path = tmp_path.parent / f"{tmp_path.name}-devnet.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relayer", "devnet", "--nodes", "4", "--json", "--data-dir", str(tmp_path),
             "--round-interval-ms", "500"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until one report has landed
        assert line, f"devnet ended before a report landed:\n{err_path.read_text()[-3000:]}"
        first = json.loads(line)
        assert first["signer_count"] >= 2
        info = json.loads((tmp_path / "devnet.json").read_text())
        relayers = [pid for pid in _processes_mentioning(str(tmp_path)) if pid != proc.pid]
        assert len(relayers) == 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(tmp_path)) == []
    port = int(info["rpc_url"].rsplit(":", 1)[1])
    assert _processes_mentioning(f"--port {port}") == []  # anvil is gone too
