"""Store growth: how many bytes a node's store (node.sqlite) takes per round and per day, and
that retention keeps it bounded.

    .venv/bin/python bench/store_growth.py [--nodes 4] [--minutes 3] [--retention-minutes 2]

Two devnet runs one after the other (anvil, the simulated venues, n relayer processes, one
round a second, every feed every round: the heaviest store a devnet makes):

1. **No pruning within the run** (the default 72 h retention). At the end the nodes stop,
   which checkpoints the write-ahead log into the database file, and each store is read:
   rows per table, bytes per table (sqlite's dbstat, indexes with their table), and the file
   less the file of an empty store. Per round: rows and bytes; at one round a second, MB a
   day unpruned and the steady size under the default 72 h retention (bytes per round
   times 72 x 3600 rounds: the slashing-protection watermarks kept forever are a few rows).
2. **A short retention** (`store_retention_hours` 0.01 h = 36 s, pruned every 9 s). The
   stores' size on disk (the database file and its write-ahead log, together
   `Store.size_bytes`) is sampled every 10 s: the database plateaus once pruning starts,
   since sqlite reuses the pages it freed; the log grows to sqlite's automatic checkpoint
   (1,000 pages, about 4 MB) and is then written over from its start.

Prints one table per run. A benchmark measures; what pruning deletes and keeps (the
slashing-protection watermarks) is tested in tests/relayer/test_store.py.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relayer.devnet import Devnet, DevnetOptions  # noqa: E402
from relayer.store import Store  # noqa: E402

ROUND_INTERVAL_MS = 1000
DEFAULT_RETENTION_H = 72.0
SHORT_RETENTION_H = 0.01
SAMPLE_EVERY_S = 10.0
MB = 1_000_000


@dataclass
class NodeStore:
    rows: dict[str, int]
    table_bytes: dict[str, int]
    rounds: int  # rounds this node signed an observation in (one row each, unpruned)
    file_bytes: int


@dataclass
class Run:
    seconds: float
    landed: int
    stores: list[NodeStore] = field(default_factory=list)
    # (s since the first landing, mean database file size, mean write-ahead log size) over the nodes
    samples: list[tuple[float, int, int]] = field(default_factory=list)


def _read(path: Path) -> tuple[dict[str, int], dict[str, int], int]:
    """Rows per table, bytes per table (its indexes included) and signed rounds of one store."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        rows = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        table_bytes = dict.fromkeys(tables, 0)
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            if table in table_bytes:
                table_bytes[table] += size
        rounds = conn.execute("SELECT COUNT(DISTINCT epoch || '/' || round) FROM signed_observations").fetchone()[0]
    return rows, table_bytes, int(rounds)


def _size_on_disk(path: Path) -> tuple[int, int]:
    """The database file and its write-ahead log (together, `Store.size_bytes`)."""
    wal = path.with_name(path.name + "-wal")
    return (path.stat().st_size if path.exists() else 0), (wal.stat().st_size if wal.exists() else 0)


async def run_devnet(nodes: int, minutes: float, retention_h: float, data_dir: Path) -> Run:
    devnet = Devnet(DevnetOptions(nodes=nodes, data_dir=data_dir, round_interval_ms=ROUND_INTERVAL_MS,
                                  feed_selection="all",
                                  node_env={"RELAYER_STORE_RETENTION_HOURS": str(retention_h)}),
                    out=io.StringIO())
    paths = [data_dir / f"node-{i}" / "node.sqlite" for i in range(nodes)]
    landed = 0
    try:
        await devnet.setup()
        while not landed:
            landed += len(await devnet.poll_landed())
            await asyncio.sleep(0.5)
        started = time.monotonic()
        samples: list[tuple[float, int, int]] = []
        next_sample = started
        while (now := time.monotonic()) - started < minutes * 60:
            if now >= next_sample:
                sizes = [_size_on_disk(p) for p in paths]
                samples.append((now - started, int(statistics.mean(db for db, _ in sizes)),
                                int(statistics.mean(wal for _, wal in sizes))))
                next_sample += SAMPLE_EVERY_S
            landed += len(await devnet.poll_landed())
            await asyncio.sleep(0.5)
        seconds = time.monotonic() - started
    finally:
        await devnet.teardown()  # the nodes close their stores: the log is checkpointed into the file
    run = Run(seconds=seconds, landed=landed, samples=samples)
    for path in paths:
        rows, table_bytes, rounds = _read(path)
        run.stores.append(NodeStore(rows, table_bytes, rounds, path.stat().st_size))
    return run


def _empty_store_bytes(tmp: Path) -> int:
    store = Store(tmp / "empty.sqlite")
    store.close()
    return (tmp / "empty.sqlite").stat().st_size


def print_growth(run: Run, empty: int) -> float:
    """The unpruned run's table; returns bytes per round."""
    tables = sorted({t for s in run.stores for t in s.rows})
    print(f"\nNo pruning: {len(run.stores)} nodes, {run.seconds / 60:.1f} min at 1 round/s, "
          f"{run.landed} reports landed, every feed every round")
    print(f"  {'table':<22}{'rows/round':>12}{'bytes/round':>13}")
    for t in tables:
        per_rows = statistics.mean(s.rows[t] / max(1, s.rounds) for s in run.stores)
        per_bytes = statistics.mean(s.table_bytes[t] / max(1, s.rounds) for s in run.stores)
        print(f"  {t:<22}{per_rows:>12.2f}{per_bytes:>13,.0f}")
    per_round = statistics.mean((s.file_bytes - empty) / max(1, s.rounds) for s in run.stores)
    rounds = statistics.mean(s.rounds for s in run.stores)
    print(f"  {'whole file':<22}{'':>12}{per_round:>13,.0f}   ({rounds:.0f} rounds signed per node, "
          f"empty store {empty:,} bytes)")
    print(f"  unpruned at 1 round/s: {per_round * 86_400 / MB:,.0f} MB/day")
    print(f"  steady state at the default {DEFAULT_RETENTION_H:.0f} h retention: "
          f"{per_round * DEFAULT_RETENTION_H * 3600 / MB:,.0f} MB")
    return per_round


def print_plateau(run: Run, per_round: float) -> None:
    retention_s = SHORT_RETENTION_H * 3600
    print(f"\nRetention {SHORT_RETENTION_H} h ({retention_s:.0f} s, pruned every {retention_s / 4:.0f} s): "
          f"mean store size on disk over {len(run.stores)} nodes")
    print(f"  {'at':>6}  {'database':>11}  {'log (wal)':>11}  {'together':>11}")
    for at, db, wal in run.samples:
        print(f"  {at:>4.0f} s  {db / 1000:>8,.0f} kB  {wal / 1000:>8,.0f} kB  {(db + wal) / 1000:>8,.0f} kB")
    late = [(db, wal) for at, db, wal in run.samples if at >= 2 * retention_s]
    if late:
        print(f"  plateau (after {2 * retention_s:.0f} s): database {min(d for d, _ in late) / 1000:,.0f} to "
              f"{max(d for d, _ in late) / 1000:,.0f} kB, together {min(d + w for d, w in late) / 1000:,.0f} to "
              f"{max(d + w for d, w in late) / 1000:,.0f} kB (the log stops at sqlite's 1,000-page checkpoint); "
              f"{retention_s:.0f} s of rows x bytes/round = {retention_s * per_round / 1000:,.0f} kB")
    print("  rows at the end: " + ", ".join(
        f"{t} {statistics.mean(s.rows[t] for s in run.stores):.0f}" for t in sorted(run.stores[0].rows)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=3.0, help="the unpruned run")
    parser.add_argument("--retention-minutes", type=float, default=2.0, help="the run with a 36 s retention")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="store-growth-") as tmp:
        root = Path(tmp)
        empty = _empty_store_bytes(root)
        growth = await run_devnet(args.nodes, args.minutes, DEFAULT_RETENTION_H, root / "unpruned")
        per_round = print_growth(growth, empty)
        if args.retention_minutes > 0:
            pruned = await run_devnet(args.nodes, args.retention_minutes, SHORT_RETENTION_H, root / "pruned")
            print_plateau(pruned, per_round)


if __name__ == "__main__":
    asyncio.run(main())
