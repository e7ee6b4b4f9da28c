"""Gossip delivery latency between P2PHost instances on loopback.

Measures publish() on one host's asyncio loop to on_message() on every other
host's loop, i.e. including both trio<->asyncio bridges. Hosts publish in turn,
paced so the run measures latency rather than Yamux throughput (notes: 45-230
msg/s to every receiver).

    .venv/bin/python bench/p2p_gossip.py [--hosts 4] [--messages 200] [--interval-ms 50,20]
    .venv/bin/python bench/p2p_gossip.py --processes   # one process per host

In-process mode runs every host's trio thread under one GIL, next to the
asyncio loop; --processes gives each host its own interpreter, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import struct
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relayer.p2p.host import P2PHost  # noqa: E402

# payload: publisher index, sequence number, send time (time.time_ns, shared clock across processes)
_HEADER = struct.Struct(">HIq")
_PAD = 200  # a small report-sized message


def _payload(origin: int, seq: int) -> bytes:
    return _HEADER.pack(origin, seq, time.time_ns()) + b"\0" * _PAD


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


_COLUMNS = f"{'mode':<14} {'hosts':>5} {'every ms':>8} {'delivered':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}"


def _row(mode: str, n_hosts: int, interval_s: float, latencies_ms: list[float], expected: int) -> str:
    delivered = f"{len(latencies_ms)}/{expected}"
    if not latencies_ms:
        return f"{mode:<14} {n_hosts:>5} {interval_s * 1000:>8.0f} {delivered:>9} {'-':>7} {'-':>7} {'-':>7} {'-':>7}"
    return (
        f"{mode:<14} {n_hosts:>5} {interval_s * 1000:>8.0f} {delivered:>9} "
        f"{statistics.median(latencies_ms):>7.2f} {_percentile(latencies_ms, 90):>7.2f} "
        f"{_percentile(latencies_ms, 99):>7.2f} {max(latencies_ms):>7.2f}"
    )


async def _in_process(n_hosts: int, n_messages: int, interval_s: float) -> str:
    latencies: list[float] = []
    received = 0

    def on_message(_sender: str, data: bytes, _opened: None) -> None:
        nonlocal received
        _origin, _seq, sent_ns = _HEADER.unpack_from(data)
        latencies.append((time.time_ns() - sent_ns) / 1e6)
        received += 1

    hosts = [P2PHost(os.urandom(32), on_message=on_message) for _ in range(n_hosts)]
    await asyncio.gather(*(h.start() for h in hosts))
    try:
        await asyncio.gather(
            *(hosts[i].connect(hosts[j].listen_addrs[0]) for i in range(n_hosts) for j in range(i + 1, n_hosts))
        )
        await asyncio.gather(*(h.wait_for_peers(n_hosts - 1, 10.0) for h in hosts))
        expected = n_messages * (n_hosts - 1)
        for seq in range(n_messages):
            hosts[seq % n_hosts].publish(_payload(seq % n_hosts, seq))
            await asyncio.sleep(interval_s)
        deadline = time.perf_counter() + 5.0
        while received < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await asyncio.gather(*(h.stop() for h in hosts))
    return _row("in-process", n_hosts, interval_s, latencies, expected)


def _worker(index: int, key: bytes, conn: Connection) -> None:
    """One host per process; driven over a pipe by the parent."""

    async def run() -> None:
        latencies: list[float] = []
        host: P2PHost[None] = P2PHost(
            key,
            on_message=lambda _s, d, _o: latencies.append((time.time_ns() - _HEADER.unpack_from(d)[2]) / 1e6),
        )
        await host.start()
        conn.send(host.listen_addrs[0])
        loop = asyncio.get_running_loop()
        while True:
            command, arg = await loop.run_in_executor(None, conn.recv)
            if command == "connect":
                for addr in arg:
                    await host.connect(addr)
                conn.send("ok")
            elif command == "ready":
                await host.wait_for_peers(arg, 10.0)
                conn.send("ok")
            elif command == "publish":
                n_messages, n_hosts, interval_s, t0 = arg
                await asyncio.sleep(max(0.0, t0 - time.time()))
                for seq in range(n_messages):
                    if seq % n_hosts == index:
                        host.publish(_payload(index, seq))
                    await asyncio.sleep(interval_s)
                await asyncio.sleep(1.0)
                conn.send(latencies)
            elif command == "stop":
                await host.stop()
                conn.send("ok")
                return

    asyncio.run(run())


def _multi_process(n_hosts: int, n_messages: int, interval_s: float) -> str:
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(n_hosts)]
    procs = [ctx.Process(target=_worker, args=(i, os.urandom(32), pipes[i][1])) for i in range(n_hosts)]
    for p in procs:
        p.start()
    parents = [pipe[0] for pipe in pipes]
    try:
        addrs = [c.recv() for c in parents]
        for i, c in enumerate(parents):
            c.send(("connect", addrs[i + 1 :]))
            c.recv()
        for c in parents:
            c.send(("ready", n_hosts - 1))
        for c in parents:
            c.recv()
        t0 = time.time() + 0.5
        for c in parents:
            c.send(("publish", (n_messages, n_hosts, interval_s, t0)))
        latencies = [ms for c in parents for ms in c.recv()]
        for c in parents:
            c.send(("stop", None))
            c.recv()
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    return _row("multi-process", n_hosts, interval_s, latencies, n_messages * (n_hosts - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument(
        "--interval-ms", default="50,20", help="comma-separated publish spacings, one table row each"
    )
    parser.add_argument("--processes", action="store_true", help="one process per host")
    args = parser.parse_args()
    print(f"gossip delivery latency, publish() to on_message(), {args.messages} messages per row")
    print(_COLUMNS)
    for interval_ms in (float(v) for v in args.interval_ms.split(",")):
        interval_s = interval_ms / 1000
        if args.processes:
            row = _multi_process(args.hosts, args.messages, interval_s)
        else:
            row = asyncio.run(_in_process(args.hosts, args.messages, interval_s))
        print(row, flush=True)


if __name__ == "__main__":
    main()
