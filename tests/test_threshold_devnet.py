"""The devnet on scheme 0x0002: the relayers make the group key at start (`relayer dkg`'s run,
over libp2p), the owner installs it with their approvals, and reports signed with one Schnorr
signature of a threshold of them land."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.test_devnet import run_devnet

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_devnet_makes_installs_and_signs_with_a_threshold_key(tmp_path: Path) -> None:
    reports = run_devnet(tmp_path, "--scheme", "0x0002", rounds=3, timeout=240)
    info = json.loads((tmp_path / "devnet.json").read_text())
    assert len(reports) == 3
    assert [(r["epoch"], r["round"]) for r in reports] == sorted({(r["epoch"], r["round"]) for r in reports})
    assert all(r["signer_count"] == 0 and r["feeds"] for r in reports)  # one signature, no signer bitmask
    assert info["scheme"] == "0x0002" and info["config_digest"].startswith("0x0002")
    group_keys, spent = set(), 0
    for node in info["nodes"]:
        share = json.loads((Path(node["data_dir"]) / "threshold-share.json").read_text())
        assert share["transcript_hash"] == info["transcript_hash"][2:]
        assert share["secret_share"]["crypto"]["kdf"] == "scrypt"
        group_keys.add(share["group_public_key"])
        with sqlite3.connect(Path(node["data_dir"]) / "node.sqlite") as conn:
            spent += conn.execute("SELECT COUNT(*) FROM used_nonces").fetchone()[0]
    assert group_keys == {info["group_key"][2:]}
    # Every landed report took signature shares from at least a threshold of members, each
    # after its nonce was marked spent.
    assert spent >= 3 * info["threshold"]
