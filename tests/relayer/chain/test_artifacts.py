"""The committed contracts-abi/ must be exactly what the pinned compiler makes of contracts/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "contracts-abi"

pytestmark = pytest.mark.integration  # runs node + solcjs (~4 s)


def test_committed_artifacts_match_a_fresh_compile(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH; the drift check needs the npm toolchain (`npm ci`)")
    subprocess.run(
        [node, str(REPO / "scripts" / "compile_contracts.js"), "--out", str(tmp_path)],
        cwd=REPO, check=True, capture_output=True, timeout=120,
    )
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_bytes() for p in COMMITTED.glob("*.json")}
    assert {"QuorumOracle.json", "FeedProxy.json"} <= fresh.keys()
    assert sorted(committed) == sorted(fresh), "artifact set differs: run `node scripts/compile_contracts.js`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale artifacts {stale}: run `node scripts/compile_contracts.js` and commit contracts-abi/"
