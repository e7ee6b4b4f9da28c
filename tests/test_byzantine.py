"""Byzantine scenarios on real parts: relayer processes on libp2p, a real anvil, simulated venues.

Each scenario starts a devnet of n=4 (f=1) where one node misbehaves (relayer/testing/faults.py)
and asserts that honest nodes keep landing reports, that no on-chain value lies outside
the range of the honest nodes' signed observations for its round, and that the faulty
node's bad messages were counted by the honest ones.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relayer.devnet import Devnet, DevnetOptions
from relayer.protocol.messages import Observation, open_envelope, parse_body

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

PROGRESS_TIMEOUT_MS = 1500


def _query(node_dir: Path, sql: str, params: list[Any] | None = None) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{node_dir / 'node.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, params or []))


def stats(devnet: Devnet, index: int) -> dict[str, Any]:
    rows = _query(devnet.nodes[index].data_dir, "SELECT value FROM state WHERE key = 'stats'")
    return json.loads(rows[0]["value"]) if rows else {}


def drops_against(devnet: Devnet, honest: list[int], address: str) -> dict[str, int]:
    """Reasons and counts of what honest nodes dropped from `address` (engine and p2p layer)."""
    counted: dict[str, int] = {}
    for i in honest:
        snapshot = stats(devnet, i)
        for peer, reason, n in snapshot.get("dropped", []) + snapshot.get("p2p_dropped", []):
            if peer.lower() == address.lower():
                counted[reason] = counted.get(reason, 0) + n
    return counted


async def start(tmp_path: Path, *, faults: dict[int | str, str] | None = None, nodes: int = 4, spare: int = 0,
                feed_selection: str = "all", node_env: dict[str, str] | None = None) -> Devnet:
    devnet = Devnet(
        DevnetOptions(
            nodes=nodes, data_dir=tmp_path, round_interval_ms=300, progress_timeout_ms=PROGRESS_TIMEOUT_MS,
            transmit_stage_ms=500, poll_interval=0.5, node_faults=faults or {}, spare_nodes=spare,
            feed_selection=feed_selection, node_env=node_env or {},
        ),
        out=io.StringIO(),
    )
    try:
        await devnet.setup()
    except BaseException:
        await devnet.teardown()
        raise
    return devnet


@pytest.fixture
async def devnets() -> AsyncIterator[list[Devnet]]:
    started: list[Devnet] = []
    yield started
    for devnet in started:
        await devnet.teardown()


async def land(devnet: Devnet, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait until `count` more reports have landed; returns them."""
    landed: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(landed) < count:
        assert loop.time() < deadline, f"only {len(landed)} of {count} reports landed in {timeout} s"
        landed += await devnet.poll_landed()
        await asyncio.sleep(0.1)
    return landed


def honest_range(devnet: Devnet, honest: list[int], epoch: int, round: int) -> dict[int, tuple[int, int]]:
    """Per feed index: (min, max) of the values honest nodes signed for this round."""
    values: dict[int, list[int]] = {}
    digest = devnet.committee.digest_hex
    for i in honest:
        for row in _query(devnet.nodes[i].data_dir,
                          "SELECT envelope FROM signed_observations WHERE digest = ? AND epoch = ? AND round = ?",
                          [digest, epoch, round]):
            body = parse_body(open_envelope(row["envelope"].encode()))
            assert isinstance(body, Observation)
            for feed in body.feeds:
                values.setdefault(feed.feed_index, []).append(feed.value)
    return {k: (min(v), max(v)) for k, v in values.items()}


def assert_within_honest_range(devnet: Devnet, honest: list[int], reports: list[dict[str, Any]]) -> None:
    index_of = {fd["feed_id"]: fd["index"] for fd in devnet.feeds}
    for report in reports:
        ranges = honest_range(devnet, honest, report["epoch"], report["round"])
        assert ranges, f"no honest observation stored for {report['epoch']}/{report['round']}"
        for feed in report["feeds"]:
            low, high = ranges[index_of[feed["feed_id"]]]
            assert low <= feed["raw_value"] <= high, (feed, low, high)


def assert_one_report_per_round(reports: list[dict[str, Any]]) -> None:
    keys = [(r["epoch"], r["round"]) for r in reports]
    assert len(keys) == len(set(keys)) and keys == sorted(keys)


async def test_a_crashed_leader_is_replaced_by_the_next_epochs_leader(tmp_path: Path, devnets: list[Devnet]) -> None:
    devnet = await start(tmp_path)
    devnets.append(devnet)
    leader = devnet.committee.leader(0)
    devnet.kill_node(leader)  # crashed before its first round: epoch 0 can never finish
    reports = await land(devnet, 3)
    honest = [i for i in range(4) if i != leader]
    assert reports[0]["epoch"] == 1, "the next epoch's leader should land the next report"
    assert devnet.nodes[leader].address not in {s for r in reports for s in r["signers"]}
    assert_within_honest_range(devnet, honest, reports)
    assert all(stats(devnet, i)["epoch_changes"] >= 1 for i in honest)


@pytest.mark.parametrize("fault", ["silent", "wrong_median", "drop_observations", "forge_observation"])
async def test_a_faulty_leader_costs_a_timeout_never_a_wrong_value(
    tmp_path: Path, devnets: list[Devnet], fault: str
) -> None:
    devnet = await start(tmp_path, faults={"leader": fault})
    devnets.append(devnet)
    leader = devnet.committee.leader(0)
    reports = await land(devnet, 3)
    honest = [i for i in range(4) if i != leader]
    assert reports[0]["epoch"] >= 1, "epoch 0 has a faulty leader: nothing of it may land"
    assert_within_honest_range(devnet, honest, reports)
    assert_one_report_per_round(reports)
    await asyncio.sleep(1.2)  # one stats snapshot interval
    counted = drops_against(devnet, honest, devnet.nodes[leader].address)
    if fault == "silent":
        assert all(stats(devnet, i)["epoch_changes"] >= 1 for i in honest)
    else:
        assert counted.get("bad_proposal", 0) >= 1, counted


async def test_f_nodes_observing_absurd_values_cannot_move_the_median(tmp_path: Path, devnets: list[Devnet]) -> None:
    devnet = await start(tmp_path, faults={2: "absurd"})
    devnets.append(devnet)
    reports = await land(devnet, 4)
    honest = [0, 1, 3]
    assert_within_honest_range(devnet, honest, reports)
    await asyncio.sleep(1.2)
    assert drops_against(devnet, honest, devnet.nodes[2].address).get("outlier_observation", 0) >= 1


async def test_an_equivocating_signer_never_gets_two_reports_on_chain(tmp_path: Path, devnets: list[Devnet]) -> None:
    devnet = await start(tmp_path, faults={1: "equivocate"})
    devnets.append(devnet)
    reports = await land(devnet, 4)
    honest = [0, 2, 3]
    assert_within_honest_range(devnet, honest, reports)
    assert_one_report_per_round(reports)
    await asyncio.sleep(1.2)
    assert drops_against(devnet, honest, devnet.nodes[1].address).get("conflicting_signature", 0) >= 1
    # Honest nodes signed exactly one report per round, and it is the one that was attested.
    for i in honest:
        signed = {(r["epoch"], r["round"]): r["report_digest"] for r in _query(
            devnet.nodes[i].data_dir, "SELECT epoch, round, report_digest FROM signed_reports")}
        assert len(signed) == len(_query(devnet.nodes[i].data_dir, "SELECT 1 FROM signed_reports"))


async def test_replayed_and_foreign_digest_messages_are_dropped(tmp_path: Path, devnets: list[Devnet]) -> None:
    devnet = await start(tmp_path, faults={3: "replay"})
    devnets.append(devnet)
    reports = await land(devnet, 4)
    honest = [0, 1, 2]
    assert_within_honest_range(devnet, honest, reports)
    await asyncio.sleep(1.2)
    counted = drops_against(devnet, honest, devnet.nodes[3].address)
    assert counted.get("replayed", 0) >= 1, counted
    assert counted.get("wrong_digest", 0) >= 1, counted


async def test_oversized_malformed_and_outsider_floods_are_dropped(tmp_path: Path, devnets: list[Devnet]) -> None:
    import os

    from relayer.chain.codec import address_of
    from relayer.p2p.host import P2PHost

    devnet = await start(tmp_path, faults={0: "spam"})
    devnets.append(devnet)
    # The spammer must be able to send what honest nodes refuse.
    await land(devnet, 1)
    stranger_key = os.urandom(32)
    stranger = P2PHost(stranger_key)
    await stranger.start()
    try:
        target = json.loads((devnet.nodes[1].data_dir / "config.json").read_text())
        port = target["listen_port"]
        from relayer.p2p.identity import peer_id_of
        node1_key = bytes.fromhex((devnet.nodes[1].data_dir / "signing.key").read_text())
        try:
            await stranger.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(node1_key)}")
        except Exception:
            pass  # refused at the door is the expected outcome
        for _ in range(200):
            try:
                stranger.publish(b'{"flood": true}')
            except Exception:
                break
        reports = await land(devnet, 3)
    finally:
        await stranger.stop()
    honest = [1, 2, 3]
    assert_within_honest_range(devnet, honest, reports)
    await asyncio.sleep(1.2)
    counted = drops_against(devnet, honest, devnet.nodes[0].address)
    assert counted.get("oversized", 0) >= 1, counted
    assert counted.get("malformed", 0) >= 1, counted
    refused = drops_against(devnet, [1], address_of(stranger_key))
    assert refused.get("not_in_committee", 0) >= 1, refused


async def test_sigkill_mid_round_never_leaves_a_conflicting_signature(tmp_path: Path, devnets: list[Devnet]) -> None:
    devnet = await start(tmp_path)
    devnets.append(devnet)
    await land(devnet, 1)
    victim = 2
    store_dir = devnet.nodes[victim].data_dir
    rng = random.Random(5)
    kills = 0
    for _ in range(20):
        before = _query(store_dir, "SELECT MAX(epoch * 1000000 + round) AS m FROM signed_observations")[0]["m"] or 0
        await asyncio.sleep(rng.uniform(0.0, 0.4))
        devnet.kill_node(victim)
        kills += 1
        devnet.start_node(victim)
        # It rejoins: it signs an observation for a round newer than any before the kill.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            now = _query(store_dir, "SELECT MAX(epoch * 1000000 + round) AS m FROM signed_observations")[0]["m"] or 0
            if now > before:
                break
            assert loop.time() < deadline, f"node {victim} did not rejoin after kill {kills}"
            await asyncio.sleep(0.1)
    assert kills == 20
    # Every signature of the victim that anyone attested matches what its own store says it signed.
    mine = {(r["digest"], r["epoch"], r["round"]): r["report_digest"]
            for r in _query(store_dir, "SELECT digest, epoch, round, report_digest FROM signed_reports")}
    address = devnet.nodes[victim].address
    from relayer.chain.codec import ReportDomain, recover_address
    domain = ReportDomain(devnet.chain_id, devnet.client.address)
    checked = 0
    for i in range(4):
        for row in _query(devnet.nodes[i].data_dir, "SELECT * FROM attested"):
            updates = bytes.fromhex(row["updates"])
            digest = domain.report_digest(bytes.fromhex(row["digest"][2:]), row["epoch"], row["round"], updates)
            for _, sig in json.loads(row["signatures"]):
                if recover_address(digest, bytes.fromhex(sig)) == address:
                    assert mine[(row["digest"], row["epoch"], row["round"])] == digest.hex()
                    checked += 1
    assert checked >= 1
    reports = await land(devnet, 2)
    assert_within_honest_range(devnet, [0, 1, 2, 3], reports)


async def test_committee_rotation_while_rounds_run(tmp_path: Path, devnets: list[Devnet]) -> None:
    devnet = await start(tmp_path, spare=1)
    devnets.append(devnet)
    await land(devnet, 2)
    old_digest = devnet.committee.digest_hex
    new = await devnet.rotate([0, 1, 2, 4])
    assert new.digest_hex != old_digest
    members = {devnet.nodes[i].address for i in (0, 1, 2, 4)}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    under_new: list[dict[str, Any]] = []
    while len(under_new) < 3:
        assert loop.time() < deadline, "no reports under the new committee"
        for report in await devnet.poll_landed():
            if set(report["signers"]) <= members and report in devnet.landed:
                rows = [r for i in (0, 1, 2, 4) for r in _query(
                    devnet.nodes[i].data_dir, "SELECT digest FROM attested WHERE epoch = ? AND round = ?",
                    [report["epoch"], report["round"]])]
                if any(r["digest"] == new.digest_hex for r in rows):
                    under_new.append(report)
        await asyncio.sleep(0.1)
    assert_within_honest_range(devnet, [0, 1, 2, 4], under_new)
    # The removed member runs on but is outside: the others drop what it sends.
    await asyncio.sleep(1.2)
    removed = devnet.nodes[3].address
    counted = drops_against(devnet, [0, 1, 2], removed)
    assert sum(counted.values()) >= 1 or stats(devnet, 3).get("peers", 0) == 0, counted


async def test_n7_two_absurd_observers_and_a_lying_leader_cannot_move_the_median(
    tmp_path: Path, devnets: list[Devnet]
) -> None:
    devnet = await start(tmp_path, nodes=7, faults={"leader": "wrong_median"})
    devnets.append(devnet)
    leader = devnet.committee.leader(0)
    absurd = [i for i in range(7) if i != leader][:1]
    # f=2: the lying leader and one absurd observer. (Faults are per node, fixed at start.)
    devnet.kill_node(absurd[0])
    devnet.o.node_faults[absurd[0]] = "absurd"
    devnet.start_node(absurd[0])
    reports = await land(devnet, 3, timeout=90)
    honest = [i for i in range(7) if i != leader and i not in absurd]
    assert reports[0]["epoch"] >= 1
    assert_within_honest_range(devnet, honest, reports)
    assert_one_report_per_round(reports)
    await asyncio.sleep(1.2)
    assert drops_against(devnet, honest, devnet.nodes[leader].address).get("bad_proposal", 0) >= 1


async def test_under_the_trigger_policy_a_withholding_leader_costs_a_timeout(
    tmp_path: Path, devnets: list[Devnet]
) -> None:
    """Its first round owes every feed's first value; it leaves one out, followers refuse, and
    the next epoch's leader lands them all."""
    devnet = await start(tmp_path, faults={"leader": "withhold_feed"}, feed_selection="trigger")
    devnets.append(devnet)
    leader = devnet.committee.leader(0)
    (first,) = await land(devnet, 1)
    assert first["epoch"] >= 1 and len(first["feeds"]) == len(devnet.feeds)
    honest = [i for i in range(4) if i != leader]
    assert_within_honest_range(devnet, honest, [first])
    await asyncio.sleep(1.2)  # one stats snapshot interval
    assert drops_against(devnet, honest, devnet.nodes[leader].address).get("missing_feed", 0) >= 1


async def test_under_the_trigger_policy_a_padding_leader_is_refused(tmp_path: Path, devnets: list[Devnet]) -> None:
    """Once first values have landed, it carries every feed whether it moved or not:
    followers refuse, and the pacemaker moves on to an honest leader."""
    devnet = await start(tmp_path, faults={"leader": "pad_report"}, feed_selection="trigger")
    devnets.append(devnet)
    leader = devnet.committee.leader(0)
    honest = [i for i in range(4) if i != leader]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    counted: dict[str, int] = {}
    while True:
        try:
            counted = drops_against(devnet, honest, devnet.nodes[leader].address)
            changed = all(stats(devnet, i).get("epoch_changes", 0) >= 1 for i in honest)
        except sqlite3.OperationalError:  # a node has not created its store yet
            changed = False
        if counted.get("unjustified_feed", 0) >= 1 and changed:
            break
        assert loop.time() < deadline, f"padding never refused: {counted}"
        await asyncio.sleep(0.5)
    landed = await devnet.poll_landed()
    assert_within_honest_range(devnet, honest, landed)
