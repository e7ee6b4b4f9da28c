"""Round latency, traffic and gas on the devnet: n relayer processes, anvil, simulated venues.

For each committee size, runs `relayer devnet` until the given number of reports have
landed, then reads the nodes' stores. Round latency is from the leader's ObserveRequest
to the attested report (threshold signatures in hand, from the leader's store); landing
latency adds transmission until the devnet sees the report on-chain. Traffic is what each
node's p2p host sent and received, per attested round. Prints one table.

    .venv/bin/python bench/round_latency.py [--nodes 4 7 10] [--rounds 200] [--interval-ms 250]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(nodes: int, rounds: int, interval_ms: int, grace_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        data_dir = Path(tmp)
        cmd = [sys.executable, "-m", "relayer", "devnet", "--nodes", str(nodes), "--rounds", str(rounds),
               "--json", "--data-dir", str(data_dir), "--round-interval-ms", str(interval_ms),
               "--grace-ms", str(grace_ms)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=rounds * 5 + 180)
        if proc.returncode != 0:
            raise SystemExit(f"devnet n={nodes} failed:\n{proc.stderr[-4000:]}")
        time.sleep(0)  # stores are closed: the devnet stopped every node before exiting
        landed = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        attest_ms: list[float] = []
        traffic: list[dict[str, int]] = []
        attested_rounds = 0
        for node_db in sorted(data_dir.glob("node-*/node.sqlite")):
            with sqlite3.connect(node_db) as conn:
                attest_ms += [(a - s) * 1000 for s, a in conn.execute(
                    "SELECT started_at, attested_at FROM attested WHERE started_at IS NOT NULL")]
                attested_rounds = max(attested_rounds, conn.execute("SELECT COUNT(*) FROM attested").fetchone()[0])
                row = conn.execute("SELECT value FROM state WHERE key = 'stats'").fetchone()
                if row:
                    traffic.append(json.loads(row[0]).get("p2p_traffic", {}))
    per_round = max(attested_rounds, 1)
    return {
        "nodes": nodes,
        "landed": len(landed),
        "feeds": len(landed[0]["feeds"]) if landed else 0,
        "signers": landed[0]["signer_count"] if landed else 0,
        "attest_ms": attest_ms,
        "land_ms": [r["latency_ms"] for r in landed if r["latency_ms"] is not None],
        "gas": [r["gas_used"] for r in landed],
        "msgs": statistics.mean(t.get("published_msgs", 0) + t.get("received_msgs", 0) for t in traffic) / per_round
        if traffic else 0.0,
        "bytes": statistics.mean(t.get("published_bytes", 0) + t.get("received_bytes", 0) for t in traffic) / per_round
        if traffic else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 7, 10])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--interval-ms", type=int, default=250)
    parser.add_argument("--grace-ms", type=int, default=20)
    args = parser.parse_args()
    results = [run(n, args.rounds, args.interval_ms, args.grace_ms) for n in args.nodes]
    print(f"round interval {args.interval_ms} ms, grace {args.grace_ms} ms; {args.rounds} landed reports per row; "
          f"one machine, {os.cpu_count()} cores")
    print("| n | f | feeds | sigs | attested p50 ms | attested p99 ms | landed p50 ms | landed p99 ms "
          "| msgs/round/node | KiB/round/node | gas/transmit p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        a, land, gas = r["attest_ms"], r["land_ms"], r["gas"]
        print(
            f"| {r['nodes']} | {(r['nodes'] - 1) // 3} | {r['feeds']} | {r['signers']} "
            f"| {statistics.median(a):.1f} | {pct(a, 99):.1f} "
            f"| {statistics.median(land):.1f} | {pct(land, 99):.1f} "
            f"| {r['msgs']:.1f} | {r['bytes'] / 1024:.1f} | {statistics.median(gas):,.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
