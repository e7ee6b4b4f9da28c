"""A relayer whose disk is full, on real parts: the pacemaker lives through it, readiness says
so and comes back, nothing is signed that the store could not record, and the node signs again
once it can write.

One devnet of n=4 (f=1); the follower (it leads neither epoch 0 nor 1) runs the `disk_full`
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
