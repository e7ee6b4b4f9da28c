"""The compose file's bootstrap job, run as compose runs it, against a real anvil: it must
configure a fresh chain (a contract change that it trips over shows here, not in a user's
`docker compose up`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from relayer.chain.anvil import AnvilNode
from relayer.chain.oracle import QuorumOracleClient, connect
from relayer.chain.contract import disconnect
from relayer.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def test_bootstrap_configures_a_fresh_chain_and_writes_valid_node_configs(tmp_path: Path) -> None:
    with AnvilNode.start() as anvil:
        done = subprocess.run([sys.executable, "docker/bootstrap.py", "--rpc", anvil.rpc_url, "--out", str(tmp_path),
                               "--nodes", "4"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        info = json.loads((tmp_path / "devnet.json").read_text())
        assert len(info["signers"]) == 4
        for i in range(4):
            settings = Settings.load(tmp_path / f"node-{i}" / "config.json")
            assert settings.oracle_address == info["oracle"] and len(settings.peers) == 3

        async def onchain() -> tuple[int, list[int]]:
            w3 = connect(anvil.rpc_url)
            try:
                client = QuorumOracleClient(w3, info["oracle"])
                config = await client.config()
                depths = [(await client.feed_parameters(await client.feed_index(f["feed_id"]))).history_depth
                          for f in info["feeds"]]
                return len(config.signers), depths
            finally:
                await disconnect(w3)

        signers, depths = asyncio.run(onchain())
        assert signers == 4 and depths and all(d > 0 for d in depths)  # spot feeds keep history
