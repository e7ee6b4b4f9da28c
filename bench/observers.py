"""Round latency on a devnet with and without observers on the nodes' observer relays.

One devnet (4 relayers, each with its observer relay in a process of its own: `relayer
relay`), phases in one sitting: no observer; N js-libp2p observers (bench/observer_swarm.mjs)
each on one relay (N/4 per relay); N observers each on every relay (N per relay, every report
received 4 times); none again. The relays and the observers run on the same machine at
niceness `--nice` (19 by default: they stand for other machines, taking only the CPU the
relayers leave); the observers' own CPU time is printed with each phase. Attested latency is
the leader's ObserveRequest to the attested report (from the nodes' stores); landed adds
transmission until the devnet sees it on-chain.

    .venv/bin/python bench/observers.py [--observers 50] [--rounds 40] [--interval-ms 500] [--nice 19]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


class Devnet:
    def __init__(self, data_dir: Path, interval_ms: int, nice: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relayer", "devnet", "--nodes", "4", "--json", "--data-dir", str(data_dir),
             "--round-interval-ms", str(interval_ms), "--observers", "--relay-nice", str(nice)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.landed: list[tuple[float, dict[str, object]]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.landed.append((time.time(), json.loads(line)))

    def wait_landed(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.landed) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"devnet landed {len(self.landed)} of {count} reports")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40, help="landed reports per phase")
    parser.add_argument("--interval-ms", type=int, default=500)
    parser.add_argument("--nice", type=int, default=19, help="niceness of the relays and the observers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-observers-") as tmp:
        data_dir = Path(tmp)
        devnet = Devnet(data_dir, args.interval_ms, args.nice)
        windows: list[tuple[str, float, float]] = []
        swarms: dict[str, dict[str, object]] = {}
        try:
            devnet.wait_landed(3, 180)  # warm-up
            relays = json.loads((data_dir / "devnet.json").read_text())["observer_relays"]
            phases = [("none", None), (f"{args.observers} observers, 1 relay each", "one"),
                      (f"{args.observers} observers, every relay", "all"), ("none again", None)]
            for label, each in phases:
                swarm = None
                if each is not None:
                    swarm = subprocess.Popen(
                        ["node", "bench/observer_swarm.mjs", "--n", str(args.observers), "--each", each,
                         *[x for r in relays for x in ("--relay", r)]],
                        cwd=REPO, stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(args.nice),
                    )
                    assert swarm.stdout is not None
                    if not swarm.stdout.readline().startswith("ready"):
                        raise SystemExit("observer swarm did not come up")
                    time.sleep(3)  # subscriptions and meshes settle
                start, first = time.time(), len(devnet.landed)
                devnet.wait_landed(first + args.rounds, args.rounds * 10 + 60)
                windows.append((label, start, time.time()))
                if swarm is not None:
                    swarm.send_signal(signal.SIGTERM)
                    out, _ = swarm.communicate(timeout=60)
                    swarms[label] = json.loads(out.strip().splitlines()[-1])
        finally:
            devnet.stop()
        attested: list[tuple[float, float]] = []
        for db in sorted(data_dir.glob("node-*/node.sqlite")):
            with sqlite3.connect(db) as conn:
                attested += conn.execute(
                    "SELECT attested_at, (attested_at - started_at) * 1000 FROM attested WHERE started_at IS NOT NULL"
                ).fetchall()
    print(f"4 relayers, round interval {args.interval_ms} ms, {args.rounds} landed reports per phase; "
          f"one machine, {os.cpu_count()} cores; relays (own processes) and observers at nice {args.nice}")
    print("| phase | rounds | attested p50 ms | attested p99 ms | landed p50 ms | landed p99 ms "
          "| reports received | dial failures | observers' CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, start, end in windows:
        att = [ms for at, ms in attested if start <= at <= end]
        land = [float(str(r["latency_ms"])) for t, r in devnet.landed if start <= t <= end and r.get("latency_ms") is not None]
        swarm = swarms.get(label, {})
        print(f"| {label} | {len(att)} | {statistics.median(att):.1f} | {pct(att, 99):.1f} "
              f"| {statistics.median(land):.1f} | {pct(land, 99):.1f} "
              f"| {swarm.get('received', '-')} | {swarm.get('dial_failures', '-')} | {swarm.get('cpu_s', '-')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
