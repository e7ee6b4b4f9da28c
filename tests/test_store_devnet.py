"""A relayer's store on real parts: with a full disk the pacemaker lives through it, readiness
says so and comes back, nothing is signed that the store could not record, and the node signs
again once it can write; over a long run the store keeps only its retention window, and the
slashing-protection watermarks beyond it.

Full disk: a devnet of n=4 (f=1); the follower (it leads neither epoch 0 nor 1) runs the `disk_full`
test fault: SIGUSR1 makes every write of the process to a file fail with EFBIG (its store's and
its log's), the next lifts that.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from relayer.devnet import Devnet
from tests.test_byzantine import _query, land, start, stats
from tests.test_fd_exhaustion_devnet import _lines, _wait_for_line
from tests.test_pacemaker_devnet import _latest_signed_report, _signs_again, _until_readyz

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

FULL_S = 8.0


async def test_a_full_disk_never_kills_the_pacemaker_nor_yields_an_unrecorded_signature(tmp_path: Path) -> None:
    devnet: Devnet = await start(tmp_path, faults={"follower": "disk_full"})
    try:
        follower = devnet.follower()
        node = devnet.nodes[follower]
        proc = node.proc
        assert proc is not None
        landed: list[dict[str, Any]] = await land(devnet, 2)
        # The follower's engine runs (and holds the SIGUSR1 toggle) once it has signed a report.
        await _signs_again(devnet, follower, (-1, -1, 0.0), timeout=30)
        errors_before = stats(devnet, follower).get("store_errors", 0)

        at = len(_lines(node.log_path))
        os.kill(proc.pid, signal.SIGUSR1)
        await _wait_for_line(node.log_path, "no file may grow", after=at, timeout=10)
        signed_before = _latest_signed_report(devnet, follower)
        # Readiness names the store; the other three carry on meanwhile.
        await _until_readyz(devnet, follower, {"store_unwritable"}, timeout=15, partial=True)
        loop = asyncio.get_running_loop()
        until = loop.time() + FULL_S
        landed += await land(devnet, 3, timeout=FULL_S + 30)
        await asyncio.sleep(max(0.0, until - loop.time()))
        assert proc.poll() is None, "the node with a full disk exited"
        # Nothing it signed while full: a signature is given only once its record is durable.
        assert _latest_signed_report(devnet, follower)[:2] == signed_before[:2]

        at = len(_lines(node.log_path))
        os.kill(proc.pid, signal.SIGUSR1)
        await _wait_for_line(node.log_path, "files may grow again", after=at, timeout=10)
        await _signs_again(devnet, follower, signed_before, timeout=30)
        await _until_readyz(devnet, follower, set(), timeout=30)  # pacemaker alive, store writable
        assert stats(devnet, follower).get("store_errors", 0) > errors_before, stats(devnet, follower)
        assert not [line for line in _lines(node.log_path) if line.startswith("Traceback")]

        # Every landed report that carries the node's signature is one its store recorded.
        landed += await land(devnet, 2)
        recorded = {(r["epoch"], r["round"]) for r in _query(node.data_dir, "SELECT epoch, round FROM signed_reports")}
        signed = [(r["epoch"], r["round"]) for r in landed if node.address in r["signers"]]
        assert set(signed) <= recorded, sorted(set(signed) - recorded)
        assert proc.poll() is None
    finally:
        await devnet.teardown()


RETENTION_H = 0.002  # 7.2 s; pruned every 1.8 s (a quarter of the window)


async def test_the_store_stays_within_its_retention_window_and_keeps_its_watermarks(tmp_path: Path) -> None:
    devnet: Devnet = await start(tmp_path, node_env={"RELAYER_STORE_RETENTION_HOURS": str(RETENTION_H)})
    try:
        window_s = RETENTION_H * 3600
        # Rounds every 0.3 s: at most a window and a prune interval of rows, and some slack
        # for a prune that runs late on a busy machine.
        bound = int((window_s * 1.25 + 3.0) / 0.3)
        await land(devnet, 2)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 150
        samples: list[dict[int, int]] = []
        # Until well past two bounds' worth of rounds, however slowly the machine runs them.
        while _query(devnet.nodes[0].data_dir, "SELECT MAX(round) AS r FROM attested")[0]["r"] <= 3 * bound:
            assert loop.time() < deadline, "too few rounds to tell pruning from a short run"
            await land(devnet, 1)
            samples.append({i: _query(n.data_dir, "SELECT COUNT(*) AS c FROM attested")[0]["c"]
                            for i, n in enumerate(devnet.nodes)})
            await asyncio.sleep(1.0)
        signed = {i: _query(n.data_dir, "SELECT COUNT(*) AS c FROM signed_reports")[0]["c"]
                  for i, n in enumerate(devnet.nodes)}
        rounds = _query(devnet.nodes[0].data_dir, "SELECT MAX(round) AS r FROM attested")[0]["r"]
        assert all(c <= bound for s in samples[len(samples) // 2:] for c in s.values()), (bound, samples)
        assert all(0 < c <= bound for c in signed.values()), (bound, signed)
        # The slashing-protection watermark outlives the window: each member's highest signed
        # report is still there.
        for i, n in enumerate(devnet.nodes):
            top = _latest_signed_report(devnet, i)
            assert top[:2] >= (0, rounds - bound), (i, top, rounds)
    finally:
        await devnet.teardown()
