"""A whole relayer node out of file descriptors, on real parts: it stays up and quiet while the
other members land reports, and signs again once it has its descriptors back.

One devnet of n=4 (f=1); the follower (it leads neither epoch 0 nor 1) runs the
`fd_exhaustion` test fault: SIGUSR1 makes it hold every descriptor it may open, the next
gives them back. Meanwhile something knocks on each of its doors (the libp2p listener and the
HTTP API) so that every accept() it tries fails with EMFILE, and another member restarts, so
that its connection to the exhausted node must be made anew once descriptors are back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

import pytest

from relayer.devnet import Devnet
from tests.test_byzantine import land, start, stats
from tests.test_pacemaker_devnet import _latest_signed_report, _signs_again

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

EXHAUSTED_S = 10.0
# Log lines (traceback lines included) the exhausted node may write in EXHAUSTED_S: besides
# its INFO line or two a round (a round each 300 ms), the failures it meets, each said once.
MAX_LINES = 150
MAX_TROUBLE_LINES = 50


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


async def _wait_for_line(path: Path, text: str, *, after: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(text in line for line in _lines(path)[after:]):
        assert loop.time() < deadline, f"{path} never said {text!r}"
        await asyncio.sleep(0.1)


async def _knock(port: int, until: float) -> int:
    """Connect to 127.0.0.1:`port` again and again until loop time `until`; each connection
    waits in the listener's backlog for an accept() that cannot get a descriptor."""
    loop = asyncio.get_running_loop()
    knocks = 0
    held: list[socket.socket] = []
    try:
        while loop.time() < until:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 1.0)
                knocks += 1
                held.append(sock)
            except (OSError, asyncio.TimeoutError):
                sock.close()
            await asyncio.sleep(0.5)
    finally:
        for sock in held:
            sock.close()
    return knocks


async def test_a_node_out_of_file_descriptors_stays_up_and_quiet_and_signs_again(tmp_path: Path) -> None:
    devnet: Devnet = await start(tmp_path, faults={"follower": "fd_exhaustion"})
    try:
        follower = devnet.follower()
        node = devnet.nodes[follower]
        proc = node.proc
        assert proc is not None
        await land(devnet, 2)
        # The follower's engine runs (and holds the SIGUSR1 toggle) once it has signed a report.
        await _signs_again(devnet, follower, (-1, -1, 0.0), timeout=30)
        config = json.loads(node.config_path.read_text())
        api_port = int(node.api.rsplit(":", 1)[1])

        # A member that leads neither epoch 0 nor 1 and is not the exhausted one goes down; it
        # comes back while the follower is out of descriptors.
        leaders = {devnet.committee.leader(0), devnet.committee.leader(1)}
        restarted = next(i for i in range(4) if i not in leaders | {follower})
        devnet.kill_node(restarted)

        start_line = len(_lines(node.log_path))
        os.kill(proc.pid, signal.SIGUSR1)
        await _wait_for_line(node.log_path, "none left to open", after=start_line, timeout=10)
        devnet.start_node(restarted)
        exhausted_at = len(_lines(node.log_path))
        loop = asyncio.get_running_loop()
        until = loop.time() + EXHAUSTED_S
        knocked, landed = await asyncio.gather(
            asyncio.gather(_knock(config["listen_port"], until), _knock(api_port, until)),
            land(devnet, 3, timeout=EXHAUSTED_S + 30),
        )
        await asyncio.sleep(max(0.0, until - loop.time()))
        written = _lines(node.log_path)[exhausted_at:]
        assert proc.poll() is None, "the exhausted node exited:\n" + "\n".join(written[-40:])
        assert all(k > 0 for k in knocked), knocked  # both listeners had connections to accept
        assert len(landed) >= 3  # the other three carried on
        trouble = [line for line in written if " INFO " not in line]
        print(f"exhausted for {EXHAUSTED_S:.0f} s: {len(written)} log lines, {len(trouble)} of them not INFO")
        assert len(written) < MAX_LINES, "\n".join(written[-60:])
        assert len(trouble) < MAX_TROUBLE_LINES, "\n".join(trouble)
        assert not [line for line in written if line.startswith("Traceback")], "\n".join(trouble)
        # Its libp2p listener met EMFILE, and counted it.
        assert stats(devnet, follower).get("p2p_accept_failures", {}).get("EMFILE", 0) >= 1, stats(devnet, follower)

        signed_before = _latest_signed_report(devnet, follower)
        given_at = len(_lines(node.log_path))
        os.kill(proc.pid, signal.SIGUSR1)
        await _wait_for_line(node.log_path, "gave back", after=given_at, timeout=10)
        await _signs_again(devnet, follower, signed_before, timeout=30)
        # Its listener and dialer outlived EMFILE: the restarted member is its peer again.
        deadline = loop.time() + 30
        while stats(devnet, follower).get("peers") != 3:
            assert loop.time() < deadline, f"node {follower} never reconnected: {stats(devnet, follower)}"
            await asyncio.sleep(0.2)
        # And its signatures are among those of landed reports again.
        deadline = loop.time() + 30
        while True:
            reports = await land(devnet, 1)
            if any(node.address in r["signers"] for r in reports):
                break
            assert loop.time() < deadline, f"node {follower} signed no landed report after its descriptors came back"
        assert proc.poll() is None
    finally:
        await devnet.teardown()
