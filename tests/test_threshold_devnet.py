"""The devnet on scheme 0x0002: the relayers make the group key at start (`relayer dkg`'s run,
over libp2p), the owner installs it with their approvals, and reports signed with one Schnorr
signature of a threshold of them land; a committee change runs a new key generation."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relayer.chain.codec import PackedSignatures
from relayer.chain.errors import ReportRefused
from relayer.devnet import Devnet, DevnetOptions
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


def _rows(node_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{node_dir / 'node.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
        return list(conn.execute(sql, params))


async def _landed_under(devnet: Devnet, digest: str, count: int, timeout: float) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: list[dict[str, Any]] = []
    while len(found) < count:
        assert loop.time() < deadline, f"only {len(found)} of {count} reports landed under {digest[:10]}.."
        found += [r for r in await devnet.poll_landed() if r["config_digest"] == digest]
        await asyncio.sleep(0.2)
    return found


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.2)


def _group_key_of_share(devnet: Devnet, index: int) -> str:
    share = json.loads((devnet.nodes[index].data_dir / "threshold-share.json").read_text())
    return str(share["group_public_key"])


async def test_a_committee_change_makes_a_new_key_and_old_key_reports_are_refused(tmp_path: Path) -> None:
    devnet = Devnet(DevnetOptions(nodes=4, spare_nodes=1, scheme=2, data_dir=tmp_path, round_interval_ms=300,
                                  progress_timeout_ms=1500, transmit_stage_ms=500, poll_interval=0.5),
                    out=io.StringIO())
    try:
        await devnet.setup()
        old_digest, old_key = devnet.committee.digest_hex, devnet.info["group_key"]
        before = await _landed_under(devnet, old_digest, 2, timeout=120)
        # Node 4 joins. The five make a new key among themselves; node 3's operator has not yet
        # put its new share in place, so node 3 still holds its share of the old key.
        late = 3
        new = await devnet.rotate([0, 1, 2, 3, 4], held_back={late})
        assert new.digest_hex.startswith("0x0002") and new.digest_hex != old_digest
        assert devnet.info["group_key"] != old_key
        assert await devnet.client.group_key() is not None
        for i in (0, 1, 2, 4):
            assert _group_key_of_share(devnet, i) == devnet.info["group_key"][2:]
        assert _group_key_of_share(devnet, late) == old_key[2:]
        after = await _landed_under(devnet, new.digest_hex, 3, timeout=90)
        assert all(r["signer_count"] == 0 for r in after)

        # Until it has its new share, the late member takes no part under the new committee.
        late_dir = devnet.nodes[late].data_dir
        assert not _rows(late_dir, "SELECT 1 FROM signed_observations WHERE digest = ?", new.digest_hex)
        assert not _rows(late_dir, "SELECT 1 FROM used_nonces WHERE digest = ?", new.digest_hex)
        assert "watching only until the share file changes" in devnet.nodes[late].log_path.read_text()

        # A report signed under the old key: refused by its digest, and under the new digest by
        # its signature.
        old_tx = await devnet.client.rpc.request("eth_getTransactionByHash", [before[0]["tx_hash"]])
        sent = devnet.client.decode_transmit_input(old_tx["input"])
        signature = PackedSignatures(sent["signerBitmask"], bytes(sent["signatures"]))
        for digest, reason in ((bytes(sent["configDigest"]), "ConfigDigestMismatch"),
                               (new.config_digest, "InvalidSchnorrSignature")):
            with pytest.raises(ReportRefused) as refused:
                await devnet.client.verify_report(digest, sent["epoch"], sent["round"], bytes(sent["updates"]),
                                                  signature)
            assert refused.value.reason == reason

        # Its share put in place, the member takes part again (no restart).
        devnet.deliver_share(late)
        await _until(lambda: bool(_rows(late_dir, "SELECT 1 FROM signed_observations WHERE digest = ?",
                                        new.digest_hex)), 60, "the member never took part with its new share")
        assert _group_key_of_share(devnet, late) == devnet.info["group_key"][2:]
        await _landed_under(devnet, new.digest_hex, 2, timeout=60)
    finally:
        await devnet.teardown()


def _stats(devnet: Devnet, index: int) -> dict[str, Any]:
    rows = _rows(devnet.nodes[index].data_dir, "SELECT value FROM state WHERE key = 'stats'")
    return json.loads(rows[0][0]) if rows else {}


def _silent_counted(devnet: Devnet, at: int, member: int) -> int:
    address = devnet.nodes[member].address.lower()
    return sum(n for peer, reason, n in _stats(devnet, at).get("dropped", [])
               if reason == "silent" and peer.lower() == address)


def _threshold_devnet(tmp_path: Path, **options: Any) -> Devnet:
    # threshold 3 of 4: the leader's first set is itself and the two lowest other observers,
    # which always include `Devnet.follower()` (only the next epoch's leader can rank before it).
    return Devnet(DevnetOptions(nodes=4, scheme=2, threshold=3, data_dir=tmp_path, round_interval_ms=500,
                                progress_timeout_ms=2000, transmit_stage_ms=500, poll_interval=0.5,
                                share_timeout_ms=100, **options), out=io.StringIO())


async def test_a_member_that_never_shares_costs_a_share_timeout_and_reports_keep_landing(tmp_path: Path) -> None:
    devnet = _threshold_devnet(tmp_path, node_faults={"follower": "withhold_shares"})
    try:
        await devnet.setup()
        follower, digest = devnet.follower(), devnet.committee.digest_hex
        reports = await _landed_under(devnet, digest, 6, timeout=120)
        # Rounds whose first set named the follower: it spent its first nonce and sent nothing;
        # the round landed all the same, on a second set's nonces, the follower not among them.
        retried = 0
        for report in reports:
            spent = _rows(devnet.nodes[follower].data_dir, "SELECT attempt FROM used_nonces WHERE digest = ? AND "
                          "epoch = ? AND round = ?", digest, report["epoch"], report["round"])
            if not spent:
                continue  # its observation came too late to be used: not asked
            assert spent == [(0,)]
            second = [i for i in range(4) if i != follower and _rows(
                devnet.nodes[i].data_dir, "SELECT 1 FROM used_nonces WHERE digest = ? AND epoch = ? AND round = ? "
                "AND attempt = 1", digest, report["epoch"], report["round"])]
            assert len(second) == devnet.committee.threshold
            retried += 1
        assert retried >= 3
        await asyncio.sleep(1.0)  # a stats snapshot
        assert sum(_silent_counted(devnet, i, follower) for i in range(4)) >= retried
        assert any("sent no signature share" in devnet.nodes[i].log_path.read_text() for i in range(4))
    finally:
        await devnet.teardown()


async def test_a_paused_follower_does_not_stop_the_reports(tmp_path: Path) -> None:
    devnet = _threshold_devnet(tmp_path)
    try:
        await devnet.setup()
        digest, follower = devnet.committee.digest_hex, devnet.follower()
        await _landed_under(devnet, digest, 2, timeout=120)
        proc = devnet.nodes[follower].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            during = await _landed_under(devnet, digest, 4, timeout=30)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert len(during) >= 4
        await _landed_under(devnet, digest, 2, timeout=30)
    finally:
        await devnet.teardown()
