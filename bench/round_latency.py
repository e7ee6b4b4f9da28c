"""Round latency, traffic and gas on the devnet: n relayer processes, anvil, simulated venues.

For each committee size, runs `relayer devnet` until the given number of reports have
landed, then reads the nodes' stores. Round latency is from the leader's ObserveRequest
to the attested report (threshold signatures in hand, from the leader's store); landed
latency adds transmission until a transmitter holds the receipt (from its store: the report
is on-chain and its sender knows); "seen" is when the devnet's reader, polling the chain's
events every 50 ms, printed it (what a consumer polling that often would see). Two phases show where
the round's time goes: when 2f+1 members had signed their observations, and when f+1 had
co-signed the report (from the members' own stores; under scheme 0x0002, whose threshold
the devnet sets to f+1 too, when f+1 had spent a nonce and sent their signature shares).
`--store-sync full normal` gives a row each with and without an fsync per signature;
`--scheme 0x0001 0x0002` a row each for ECDSA co-signatures and one FROST signature (the
devnet makes the group key before the first round: not part of any round's time). Traffic is what each
node's p2p host sent and received, per attested round. Prints one table.

It measures the protocol round, so every round must carry every feed and land: the devnet
runs with `--feed-selection all` explicitly (its default too; `trigger` lands only what
moved past its threshold, and most rounds would send nothing). What the trigger
policy costs over time is `bench/cost.py`'s table.

    .venv/bin/python bench/round_latency.py [--nodes 4 7 10] [--rounds 200] [--interval-ms 250]
                                            [--store-sync full normal] [--scheme 0x0001 0x0002]
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


def run(nodes: int, rounds: int, interval_ms: int, grace_ms: int, store_sync: str, scheme: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        data_dir = Path(tmp)
        cmd = [sys.executable, "-m", "relayer", "devnet", "--nodes", str(nodes), "--rounds", str(rounds),
               "--json", "--data-dir", str(data_dir), "--round-interval-ms", str(interval_ms),
               "--grace-ms", str(grace_ms), "--store-sync", store_sync, "--feed-selection", "all",
               "--scheme", scheme]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=rounds * 5 + 180)
        if proc.returncode != 0:
            raise SystemExit(f"devnet n={nodes} scheme {scheme} failed:\n{proc.stderr[-4000:]}")
        time.sleep(0)  # stores are closed: the devnet stopped every node before exiting
        landed = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        attest_ms: list[float] = []
        traffic: list[dict[str, int]] = []
        attested_rounds = 0
        started: dict[tuple[int, int], float] = {}
        signed_obs: dict[tuple[int, int], list[float]] = {}
        signed_reports: dict[tuple[int, int], list[float]] = {}
        receipts: dict[tuple[int, int], float] = {}
        for node_db in sorted(data_dir.glob("node-*/node.sqlite")):
            with sqlite3.connect(node_db) as conn:
                for e, r, s, a in conn.execute(
                        "SELECT epoch, round, started_at, attested_at FROM attested WHERE started_at IS NOT NULL"):
                    attest_ms.append((a - s) * 1000)
                    started[(e, r)] = s
                for table, into in (("signed_observations", signed_obs), ("signed_reports", signed_reports)):
                    for e, r, t in conn.execute(f"SELECT epoch, round, created_at FROM {table}"):
                        into.setdefault((e, r), []).append(t)
                # When a transmitter held the receipt: the report on-chain, known to its sender.
                for e, r, t in conn.execute("SELECT epoch, round, created_at FROM transmissions WHERE status = 'landed'"):
                    receipts[(e, r)] = min(t, receipts.get((e, r), t))
                attested_rounds = max(attested_rounds, conn.execute("SELECT COUNT(*) FROM attested").fetchone()[0])
                row = conn.execute("SELECT value FROM state WHERE key = 'stats'").fetchone()
                if row:
                    traffic.append(json.loads(row[0]).get("p2p_traffic", {}))
    per_round = max(attested_rounds, 1)
    f = (nodes - 1) // 3

    def phase(times: dict[tuple[int, int], list[float]], k: int) -> list[float]:
        """Per round: ms from the leader's request until the k-th member had signed."""
        return [(sorted(times[key])[k - 1] - s) * 1000 for key, s in started.items() if len(times.get(key, [])) >= k]

    return {
        "nodes": nodes,
        "sync": store_sync,
        "scheme": scheme,
        "obs_quorum_ms": phase(signed_obs, 2 * f + 1),
        "cosign_ms": phase(signed_reports, f + 1),
        "landed": len(landed),
        "feeds": len(landed[0]["feeds"]) if landed else 0,
        "signers": landed[0]["signer_count"] if landed else 0,
        "attest_ms": attest_ms,
        "land_ms": [(receipts[key] - s) * 1000 for key, s in started.items() if key in receipts],
        "seen_ms": [r["latency_ms"] for r in landed if r["latency_ms"] is not None],
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
    parser.add_argument("--store-sync", nargs="+", default=["full"], choices=("full", "normal"),
                        help="one table row per value: fsync each signature (full) or not (normal)")
    parser.add_argument("--scheme", nargs="+", default=["0x0001"], choices=("0x0001", "0x0002"),
                        help="one table row per value, alternating for each n: ECDSA co-signatures (0x0001) or "
                             "one threshold Schnorr signature (0x0002)")
    args = parser.parse_args()
    results = [run(n, args.rounds, args.interval_ms, args.grace_ms, sync, scheme)
               for n in args.nodes for scheme in args.scheme for sync in args.store_sync]
    print(f"round interval {args.interval_ms} ms, grace {args.grace_ms} ms; {args.rounds} landed reports per row; "
          f"one machine, {os.cpu_count()} cores")
    print("phases (p50, from the leader's request): 2f+1 observations signed; f+1 co-signatures (0x0002: "
          "signature shares) signed")
    print("| n | f | scheme | feeds | sigs | store sync | 2f+1 obs ms | f+1 co-sign ms | attested p50 ms | attested p99 ms "
          "| landed p50 ms | landed p99 ms | seen p50 ms | msgs/round/node | KiB/round/node | gas/transmit p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        a, land, seen, gas = r["attest_ms"], r["land_ms"], r["seen_ms"], r["gas"]
        print(
            f"| {r['nodes']} | {(r['nodes'] - 1) // 3} | {r['scheme']} | {r['feeds']} "
            f"| {'1 schnorr' if r['scheme'] == '0x0002' else r['signers']} | {r['sync']} "
            f"| {statistics.median(r['obs_quorum_ms']):.1f} | {statistics.median(r['cosign_ms']):.1f} "
            f"| {statistics.median(a):.1f} | {pct(a, 99):.1f} "
            f"| {statistics.median(land):.1f} | {pct(land, 99):.1f} | {statistics.median(seen):.1f} "
            f"| {r['msgs']:.1f} | {r['bytes'] / 1024:.1f} | {statistics.median(gas):,.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
