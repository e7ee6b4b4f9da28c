"""The pacemaker on real parts: a follower cut off past the progress timeout, then paused, then
restarted, each time comes back to the committee's epoch and signs again, and nobody changes
epoch for it.

One devnet of n=4 (f=1) with a 1.5 s progress timeout; the follower leads neither epoch 0 nor 1
and runs the `partition` test fault (SIGUSR1 cuts it off from the committee and back), honest
otherwise.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relayer.devnet import Devnet
from tests.test_byzantine import PROGRESS_TIMEOUT_MS, _query, land, start, stats

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
async def devnet(tmp_path: Path) -> AsyncIterator[Devnet]:
    # Readiness gives up on the RPC after 3 s here (15 s by default), so a short stall shows.
    dn = await start(tmp_path, faults={"follower": "partition"}, node_env={"RELAYER_RPC_STALE_AFTER_S": "3"})
    try:
        yield dn
    finally:
        await dn.teardown()


def _latest_signed_report(devnet: Devnet, index: int) -> tuple[int, int, float]:
    """(epoch, round, created_at) of the newest report signature in node `index`'s store."""
    rows = _query(devnet.nodes[index].data_dir,
                  "SELECT epoch, round, created_at FROM signed_reports ORDER BY epoch DESC, round DESC LIMIT 1")
    return (rows[0]["epoch"], rows[0]["round"], rows[0]["created_at"]) if rows else (-1, -1, 0.0)


async def _signs_again(devnet: Devnet, index: int, after: tuple[int, int, float], timeout: float) -> tuple[int, int, float]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        latest = _latest_signed_report(devnet, index)
        if latest[:2] > after[:2]:
            return latest
        assert loop.time() < deadline, f"node {index} signed nothing newer than {after[:2]} in {timeout} s"
        await asyncio.sleep(0.1)


async def test_a_cut_off_paused_or_restarted_follower_signs_again_in_the_committees_epoch(devnet: Devnet) -> None:
    follower = devnet.follower()
    others = [i for i in range(4) if i != follower]
    await land(devnet, 2)
    proc = devnet.nodes[follower].proc
    assert proc is not None
    # The follower's engine runs (and holds the SIGUSR1 toggle) once it has signed a report.
    await _signs_again(devnet, follower, (-1, -1, 0.0), timeout=30)

    # Cut off for more than two progress timeouts: it asks for epoch 1 and nobody follows; its
    # readiness says it makes no progress, the others' stay ready.
    os.kill(proc.pid, signal.SIGUSR1)
    await asyncio.sleep(0.5)
    cut_at = _latest_signed_report(devnet, follower)
    await _until_readyz(devnet, follower, {"no_progress"}, timeout=15)
    assert _latest_signed_report(devnet, follower)[:2] == cut_at[:2]  # it heard nothing to sign
    missed = await land(devnet, 1)  # the other three carry on
    assert all(_readyz(devnet, i) == (200, set()) for i in others)
    reconnected_at = time.time()
    os.kill(proc.pid, signal.SIGUSR1)
    again = await _signs_again(devnet, follower, cut_at, timeout=20)
    assert again[0] == 0, again
    print(f"cut-off follower signed again {again[2] - reconnected_at:.2f} s after reconnecting "
          f"(progress timeout {PROGRESS_TIMEOUT_MS / 1000} s)")
    await _until_readyz(devnet, follower, set(), timeout=10)
    # What landed while it was cut off is read back from the chain into its own record.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    wanted = {(r["epoch"], r["round"]) for r in missed}
    while True:
        held = {(row["epoch"], row["round"]) for row in _query(devnet.nodes[follower].data_dir,
                                                              "SELECT epoch, round FROM attested")}
        if wanted <= held:
            break
        assert loop.time() < deadline, f"node {follower} never adopted {sorted(wanted - held)}"
        await asyncio.sleep(0.2)
    assert stats(devnet, follower).get("adopted_from_chain", 0) >= 1
    before = _latest_signed_report(devnet, follower)

    # Paused for more than two progress timeouts: on waking, its own timer has run out.
    os.kill(proc.pid, signal.SIGSTOP)
    await asyncio.sleep(2.5 * PROGRESS_TIMEOUT_MS / 1000)
    paused_until = _latest_signed_report(devnet, follower)
    assert paused_until[:2] == before[:2] or paused_until[:2] > before[:2]  # a signature in flight may land
    resumed_at = time.time()
    os.kill(proc.pid, signal.SIGCONT)
    again = await _signs_again(devnet, follower, paused_until, timeout=20)
    # It signed in epoch 0, the committee's: it never left, and nobody moved for it.
    assert again[0] == 0, again
    print(f"paused follower signed again {again[2] - resumed_at:.2f} s after SIGCONT "
          f"(progress timeout {PROGRESS_TIMEOUT_MS / 1000} s)")
    await land(devnet, 2)

    # Restarted (SIGKILL, then started again): it resumes epoch 0 and signs again.
    devnet.kill_node(follower)
    killed_at = _latest_signed_report(devnet, follower)
    devnet.start_node(follower)
    again = await _signs_again(devnet, follower, killed_at, timeout=45)
    assert again[0] == 0, again
    await land(devnet, 1)
    for i in others:
        assert stats(devnet, i).get("epoch_changes", 0) == 0, (i, stats(devnet, i))
    deadline = asyncio.get_running_loop().time() + 10
    while (stats(devnet, follower).get("epoch"), stats(devnet, follower).get("wanted_epoch")) != (0, 0):
        assert asyncio.get_running_loop().time() < deadline, stats(devnet, follower)
        await asyncio.sleep(0.2)

    # The chain stalls (anvil stopped) past the RPC limit: every node says rpc_down, then recovers.
    assert devnet.anvil is not None
    devnet.anvil.send_signal(signal.SIGSTOP)
    try:
        await _until_readyz(devnet, others[0], {"rpc_down"}, timeout=15, partial=True)
    finally:
        devnet.anvil.send_signal(signal.SIGCONT)
    await _until_readyz(devnet, others[0], set(), timeout=20)
    await land(devnet, 1)


def _readyz(devnet: Devnet, index: int) -> tuple[int, set[str]]:
    try:
        with urllib.request.urlopen(devnet.nodes[index].api + "/readyz", timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, {r["reason"] for r in json.loads(body)["reasons"]}


async def _until_readyz(devnet: Devnet, index: int, reasons: set[str], *, timeout: float,
                        partial: bool = False) -> None:
    """Wait until node `index`'s /readyz names exactly `reasons` (503), or none (200);
    with `partial`, at least `reasons`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, seen = await asyncio.to_thread(_readyz, devnet, index)
        if (reasons <= seen if partial else seen == reasons) and status == (503 if reasons else 200):
            return
        assert loop.time() < deadline, f"node {index}: /readyz {status} {seen}, expected {reasons or 'ready'}"
        await asyncio.sleep(0.2)


async def test_the_devnet_keeps_going_when_a_relayer_exits_unless_told_to_stop(tmp_path: Path) -> None:
    devnet = await start(tmp_path)
    try:
        await land(devnet, 1)
        out = devnet.out
        assert isinstance(out, io.StringIO)
        stop = asyncio.Event()
        watching = asyncio.create_task(devnet.watch(stop))
        victim = devnet.follower()
        devnet.kill_node(victim)
        landed = len(devnet.landed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(devnet.landed) < landed + 2:  # the other three land reports; watch() reads them
            assert not watching.done(), out.getvalue()
            assert loop.time() < deadline, out.getvalue()
            await asyncio.sleep(0.2)
        text = out.getvalue()
        assert f"node-{victim} exited" in text and "3 of 4 relayers still run; keeping going" in text
        stop.set()
        assert await watching == 130
        # Told to stop on exit, the next exit ends the watch with 1 (the victim runs again first).
        devnet.start_node(victim)
        devnet.o.stop_on_exit = True
        stop = asyncio.Event()
        watching = asyncio.create_task(devnet.watch(stop))
        await asyncio.sleep(1.0)
        assert not watching.done(), out.getvalue()
        devnet.kill_node(next(i for i in range(4) if i != victim))
        assert await asyncio.wait_for(watching, 30) == 1
    finally:
        await devnet.teardown()
