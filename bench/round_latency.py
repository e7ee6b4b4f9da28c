"""Round latency and gas on the devnet: n relayer processes, anvil, simulated venues.

Runs `relayer devnet` for a number of landed reports, then reads the leaders' stores:
round latency is from the leader's ObserveRequest to the attested report (threshold
signatures in hand), and landing latency adds transmission until the devnet sees the
report on-chain. Prints a table.

    .venv/bin/python bench/round_latency.py [--nodes 4] [--rounds 120] [--interval-ms 250]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=120)
    parser.add_argument("--interval-ms", type=int, default=250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        data_dir = Path(tmp)
        cmd = [sys.executable, "-m", "relayer", "devnet", "--nodes", str(args.nodes), "--rounds", str(args.rounds),
               "--json", "--data-dir", str(data_dir), "--round-interval-ms", str(args.interval_ms)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.rounds * 5 + 120)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return 1
        landed = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        attest_ms: list[float] = []
        for node_db in data_dir.glob("node-*/node.sqlite"):
            with sqlite3.connect(node_db) as conn:
                attest_ms += [
                    (a - s) * 1000
                    for s, a in conn.execute("SELECT started_at, attested_at FROM attested WHERE started_at IS NOT NULL")
                ]
    land_ms = [r["latency_ms"] for r in landed if r["latency_ms"] is not None]
    gas = [r["gas_used"] for r in landed]
    feeds = len(landed[0]["feeds"]) if landed else 0
    signers = landed[0]["signer_count"] if landed else 0
    print(f"n={args.nodes}, round interval {args.interval_ms} ms, {len(landed)} landed reports, "
          f"{feeds} feeds per report, {signers} signatures per report")
    print(f"| {'measure':<38} | {'samples':>7} | {'p50':>9} | {'p99':>9} | {'max':>9} |")
    print(f"|{'-' * 40}|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for name, values, unit in [
        ("observe request -> attested report", attest_ms, "ms"),
        ("observe request -> seen on-chain", land_ms, "ms"),
        ("gas per transmit", [float(g) for g in gas], "gas"),
        ("gas per feed update", [g / max(feeds, 1) for g in gas], "gas"),
    ]:
        if not values:
            continue
        fmt = (lambda v: f"{v:.1f}") if unit == "ms" else (lambda v: f"{v:,.0f}")
        print(f"| {name + ' (' + unit + ')':<38} | {len(values):>7} | {fmt(statistics.median(values)):>9} | "
              f"{fmt(pct(values, 99)):>9} | {fmt(max(values)):>9} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
