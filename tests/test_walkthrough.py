"""The README walkthrough, command by command: init -> check -> join the committee -> run.

A new operator's node joins a running devnet the way the README tells them to: `relayer
init --devnet`, `relayer check` (fails only on committee membership), `relayer committee
add --replace` as the local oracle owner, `relayer check` again (all pass), then `relayer
run`, which co-signs reports that land on-chain, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from relayer.chain.codec import address_of
from relayer.devnet import Devnet, DevnetOptions
from relayer.ports import free_port
from tests.test_byzantine import land

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "walkthrough password"


async def relayer(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One CLI command, awaited: the devnet's simulated venues run on this event loop."""
    env = {**os.environ, "RELAYER_KEYSTORE_PASSWORD": PASSWORD}
    env.pop("RELAYER_KEYSTORE_PASSWORD_FILE", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "relayer", *args, cwd=REPO, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def devnet(tmp_path: Path) -> AsyncIterator[Devnet]:
    net = Devnet(DevnetOptions(nodes=4, data_dir=tmp_path / "devnet", round_interval_ms=300,
                               progress_timeout_ms=1500, transmit_stage_ms=500), out=io.StringIO())
    try:
        await net.setup()
        yield net
    finally:
        await net.teardown()


def signed_reports(data_dir: Path, digest: str) -> int:
    path = data_dir / "node.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM signed_reports WHERE digest = ?", [digest]).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


async def test_a_new_operator_follows_the_readme_into_the_committee(tmp_path: Path, devnet: Devnet) -> None:
    devnet_dir = tmp_path / "devnet"
    node_dir = tmp_path / "mynode"
    config = node_dir / "relayer.toml"

    # 2. Key and config, from the devnet's description of itself. The key is picked to sort
    # below every member's address: by the dial rule those members would call it, but they
    # do not know its address, so the newcomer must call them.
    key = os.urandom(32)
    while address_of(key).lower() > min(n.address.lower() for n in devnet.nodes):
        key = os.urandom(32)
    key_file = tmp_path / "imported.key"
    key_file.write_text(key.hex())
    api_port = free_port()
    init = await relayer("init", "--dir", str(node_dir), "--devnet", str(devnet_dir), "--import-key", str(key_file),
                         "--listen-port", str(free_port()), "--api-port", str(api_port), "--scrypt-n", "1024")
    assert init.returncode == 0, init.stderr
    me = next(line.split()[-1] for line in init.stdout.splitlines() if line.startswith("signer address"))
    text = config.read_text()
    assert devnet.anvil is not None and devnet.anvil.rpc_url in text
    assert "/p2p/" in text and "binance = " in text  # peers and simulated venue URLs filled in
    assert f'subscription_registry_address = "{devnet.registry.address}"' in text

    # 3. Check: everything passes but membership. The devnet's relayers are up (listening)
    # once a report has landed: on a loaded machine a relayer may still be starting before.
    await land(devnet, 1)
    check = await relayer("check", "--config", str(config))
    assert check.returncode != 0
    failing = [line for line in check.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and "committee" in failing[0], check.stdout
    assert "fix:" in check.stdout

    # 4. Join: the local owner swaps relayer 3 for the new key.
    show = await relayer("committee", "show", "--devnet", str(devnet_dir))
    assert show.returncode == 0 and devnet.nodes[3].address in show.stdout, show.stderr
    leaving = devnet.nodes[3].address
    add = await relayer("committee", "add", "--devnet", str(devnet_dir), "--signer", me, "--replace", leaving)
    assert add.returncode == 0, add.stderr
    assert me in add.stdout and leaving not in add.stdout
    new_digest = next(line.split()[2] for line in add.stdout.splitlines() if line.startswith("config digest"))
    assert new_digest != devnet.committee.digest_hex

    again = await relayer("check", "--config", str(config))
    assert again.returncode == 0, again.stdout
    assert "is signer 3" in again.stdout

    # 5. Run it: it co-signs reports under the new committee, and they land.
    log_path = tmp_path / "mynode.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "relayer", "run", "--config", str(config)], cwd=REPO,
                                env={**os.environ, "RELAYER_KEYSTORE_PASSWORD": PASSWORD},
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while signed_reports(node_dir / "data", new_digest) < 3:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert loop.time() < deadline, "the new member signed no reports in 60 s"
            await asyncio.sleep(0.5)
        landed = []
        while not any(me.lower() in (s.lower() for s in r["signers"]) for r in landed):
            assert loop.time() < deadline, "no landed report carries the new member's signature"
            landed += await devnet.poll_landed()
            await asyncio.sleep(0.2)

        # 6. Subscriptions: the devnet's example subscriber asks for a tighter BTC-USD promise,
        # and the new node serves it.
        listed = await relayer("subscriptions", "list", "--devnet", str(devnet_dir))
        assert listed.returncode == 0 and "BTC-USD" in listed.stdout and "asked: nobody" in listed.stdout, listed
        add = await relayer("subscriptions", "add", "--devnet", str(devnet_dir), "--feed", "BTC-USD",
                            "--deviation-bps", "10", "--heartbeat", "600")
        assert add.returncode == 0, add.stderr
        listed = await relayer("subscriptions", "list", "--devnet", str(devnet_dir))
        assert "promise 10 bps / 600 s" in listed.stdout, listed.stdout
        promise = None
        while promise != {"deviation_bps": 10, "heartbeat_s": 600}:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert loop.time() < deadline + 30, f"the node never served the new promise: {promise}"
            await asyncio.sleep(0.5)
            # aiohttp, not a blocking call: the devnet's simulated venues run on this loop.
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{api_port}/api/subscriptions") as response:
                feeds = (await response.json())["feeds"]
            promise = next(f["promise"] for f in feeds if f["feed_id"] == "BTC-USD")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    err = log_path.read_text()
    assert proc.returncode == 0, err[-2000:]
    assert "stopped cleanly" in err
    status = json.loads((devnet_dir / "devnet.json").read_text())
    assert status["oracle"] in config.read_text()
