"""Telemetry is told: snapshots and callbacks in, Prometheus metrics and API views out.

No node here: a frozen `NodeSnapshot` is all telemetry gets from one, so these tests build
snapshots by hand and read what telemetry makes of them.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from decimal import Decimal
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from aggregation.volatility import annualized_realized_vol
from feeds.kinds import FactorKind
from relayer.chain.codec import FeedUpdate, encode_updates
from relayer.chain.oracle import QuorumOracleClient, connect
from relayer.metrics import (
    NO_RISK_GATE,
    ChainContext,
    CommitteeView,
    DropCount,
    EngineCounters,
    HostCounters,
    NodeHealth,
    NodeIdentity,
    NodeSnapshot,
    SourceHealthView,
    Telemetry,
    TransmissionCounts,
)
from relayer.node import ServedFeed
from relayer.protocol.engine import AttestedReport
from relayer.protocol.selection import Inclusion
from relayer.settings import FeedSpec
from relayer.store import Store

pytestmark = pytest.mark.unit

ME = "0x" + "aa" * 20
SIGNERS = (ME, "0x" + "bb" * 20, "0x" + "cc" * 20, "0x" + "dd" * 20)
DIGEST = "0x" + "11" * 32


def committee(digest: str = DIGEST) -> CommitteeView:
    return CommitteeView(digest=digest, signers=SIGNERS, f=1, threshold=2, quorum=3, member_index=0, leader=2)


def snapshot(*, peers: int = 3, ok: int = 5, errors: int = 1, transmitted: int = 2, gas: int = 100_000,
             digest: str = DIGEST, rpc_ok: bool = True) -> NodeSnapshot:
    return NodeSnapshot(
        at=1000.0,
        committee=committee(digest),
        engine=EngineCounters(epoch=4, round=17, rounds_started=17, reports_attested=15, epoch_changes=1,
                              refused={"report": 1}, dropped=(DropCount(SIGNERS[1], "wrong_epoch", 2),),
                              wanted_epoch=5, progress_timeouts=3, store_errors=1),
        host=HostCounters(peers=tuple(f"peer{i}" for i in range(peers)),
                          dropped=(DropCount("12D3Koo", "not_in_committee", 1),), traffic={"sent": 10}),
        transmission=TransmissionCounts(digest=digest, transmitted=transmitted, superseded=1, failed=0, gas_used=gas),
        sources=(SourceHealthView(name="kraken", healthy=True, consecutive_failures=0, ok_count=ok,
                                  error_count=errors, last_latency_ms=12.0, last_error_type="SourceTimeout"),),
        rpc_failovers={"http://127.0.0.1:8545": 0},
        health=NodeHealth(rpc_last_ok_at=time.time() if rpc_ok else None, rpc_last_error=None if rpc_ok else "down",
                          store_error=None, pacemaker_alive=True, wishing_for_s=None, progress_timeout_s=2.0,
                          task_failures={"dialer": 2}),
    )


def metric(t: Telemetry, name: str, **labels: str) -> float | None:
    value = t.registry.get_sample_value(name, labels)
    return None if value is None else float(value)


def spec(feed_id: str, kind: str = "spot", decimals: int = 8) -> FeedSpec:
    return FeedSpec(feed_id=feed_id, instrument="BTC-USD", kind=FactorKind(kind),
                    sources=("binance", "coinbase", "kraken"), min_sources=2, decimals=decimals)


def telemetry(tmp_path: Path, *feeds: FeedSpec, risk_gate: str | None = None) -> Telemetry:
    me = NodeIdentity(name="n0", address=ME, dry_run=False, oracle="0x" + "ee" * 20, risk_gate=risk_gate)
    t = Telemetry(me, Store(tmp_path / "node.sqlite"))
    # No call is made here: the oracle client only names where telemetry would read.
    oracle = QuorumOracleClient(connect("http://127.0.0.1:9"), "0x" + "ee" * 20)
    t.chain = ChainContext(oracle=oracle, chain_id=31337, feeds=[ServedFeed(s, i) for i, s in enumerate(feeds)])
    return t


def test_the_snapshot_is_frozen_and_a_renamed_field_is_an_error() -> None:
    snap = snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.engine = None  # type: ignore[misc]
    with pytest.raises(TypeError, match="peer_count"):
        HostCounters(peer_count=3, dropped=(), traffic={})  # type: ignore[call-arg]


def test_snapshots_become_gauges_counters_and_stage_counts(tmp_path: Path) -> None:
    t = telemetry(tmp_path)
    t.update(snapshot())
    assert metric(t, "relayer_peers_connected") == 3
    assert (metric(t, "relayer_epoch"), metric(t, "relayer_round")) == (4, 17)
    assert metric(t, "relayer_epoch_wanted") == 5 and metric(t, "relayer_progress_timeouts_total") == 3
    assert metric(t, "relayer_store_errors_total") == 1
    assert metric(t, "relayer_committee_member") == 1
    assert metric(t, "relayer_source_healthy", source="kraken") == 1
    assert metric(t, "relayer_messages_dropped_total", peer=SIGNERS[1], reason="wrong_epoch", layer="protocol") == 2
    assert metric(t, "relayer_messages_dropped_total", peer="12D3Koo", reason="not_in_committee", layer="p2p") == 1
    assert metric(t, "relayer_rpc_failovers_total", url="http://127.0.0.1:8545") == 0
    assert metric(t, "relayer_stage_total", stage="source_fetch", result="ok") == 5
    assert metric(t, "relayer_stage_total", stage="source_fetch", result="error") == 1
    assert metric(t, "relayer_stage_total", stage="transmission", result="ok") == 2

    # Counters grow by what the node's counters grew by, never by their totals again.
    t.update(snapshot(peers=2, ok=8, transmitted=3, gas=150_000))
    assert metric(t, "relayer_peers_connected") == 2
    assert metric(t, "relayer_stage_total", stage="source_fetch", result="ok") == 8
    assert metric(t, "relayer_stage_total", stage="transmission", result="ok") == 3
    assert metric(t, "relayer_gas_spent_total") == 150_000

    # A new committee's transmitter counts from zero; the gas spent before is kept.
    t.update(snapshot(transmitted=1, gas=40_000, digest="0x" + "22" * 32))
    assert metric(t, "relayer_gas_spent_total") == 190_000
    assert metric(t, "relayer_stage_total", stage="transmission", result="ok") == 4
    text = generate_latest(t.registry).decode()
    assert "relayer_stage_duration_seconds_count{stage=\"source_fetch\"}" in text


def test_status_and_readiness_come_from_the_snapshot(tmp_path: Path) -> None:
    t = telemetry(tmp_path)
    assert t.ready() is False  # told nothing yet
    t.update(snapshot(peers=1))
    assert t.ready() is False  # a member needs quorum - 1 = 2 peers
    t.update(snapshot(peers=2))
    status = t.status()
    assert status["ready"] is True
    assert metric(t, "relayer_ready") == 1 and metric(t, "relayer_not_ready", reason="rpc_down") == 0
    assert metric(t, "relayer_task_failures_total", task="dialer") == 2
    t.update(snapshot(peers=2, rpc_ok=False))
    reasons = t.readiness().public()["reasons"]
    assert [r["reason"] for r in reasons] == ["rpc_down"] and "down" in reasons[0]["message"]  # type: ignore[index]
    assert metric(t, "relayer_ready") == 0 and metric(t, "relayer_not_ready", reason="rpc_down") == 1
    t.update(snapshot(peers=2))
    assert status["committee"]["member_index"] == 0 and status["committee"]["leader"] == 2
    assert (status["epoch"], status["round"], status["reports_attested"]) == (4, 17, 15)
    assert status["transmission"] == {"transmitted": 2, "superseded": 1, "failed": 0, "gas_used": 100_000}
    assert status["sources"]["kraken"] == {"healthy": True, "ok": 5, "errors": 1, "last_error": "SourceTimeout"}
    assert status["chain_id"] == 31337 and status["risk_gate"] is None


def test_stats_record_keeps_the_store_format() -> None:
    record = snapshot().stats_record(ME)
    assert record["dropped"] == [[SIGNERS[1], "wrong_epoch", 2]]
    assert record["p2p_dropped"] == [["12D3Koo", "not_in_committee", 1]]
    assert (record["peers"], record["epoch_changes"], record["digest"]) == (3, 1, DIGEST)
    assert record["transmission"] == {"transmitted": 2, "superseded": 1, "failed": 0, "gas_used": 100_000}
    bare = NodeSnapshot(at=1.0, committee=None, engine=None, host=None, transmission=None).stats_record(ME)
    assert bare == {"at": 1.0, "address": ME, "digest": None}


def test_attested_reports_are_recorded_and_timed_from_the_own_observation(tmp_path: Path) -> None:
    t = telemetry(tmp_path, spec("BTC-USD"))
    t._store.record_observation(DIGEST, 4, 17, "{}")
    updates = encode_updates([FeedUpdate(feed_index=0, observed_at=1000, num_sources=3, value=65_000 * 10**8)])
    report = AttestedReport(config_digest=bytes.fromhex(DIGEST[2:]), epoch=4, round=17, updates=updates,
                            signatures=((0, b"\x01" * 65), (2, b"\x02" * 65)))
    queue = t.subscribe()
    t.on_attested(report, SIGNERS)
    event = queue.get_nowait()
    assert event["type"] == "attested" and event["signers"] == [SIGNERS[0], SIGNERS[2]]
    assert event["feeds"][0]["value"] == "65000.00000000"
    (rec,) = t.rounds_view()
    assert rec["latency_ms"] is not None and rec["latency_ms"] >= 0  # started at the signed observation
    assert (rec["scheme"], rec["signer_count"]) == ("0x0001", 2)
    assert metric(t, "relayer_reports_attested_total") == 1
    assert metric(t, "relayer_stage_duration_seconds_count", stage="report") == 1
    # A threshold report names no signers: its rounds say which scheme instead of a count of 0.
    t.on_attested(dataclasses.replace(report, round=20, signatures=(), schnorr=b"\x05" * 96), SIGNERS)
    threshold = next(r for r in t.rounds_view() if r["round"] == 20)
    assert (threshold["scheme"], threshold["signer_count"], threshold["signers"]) == ("0x0002", 0, [])

    t._store.record_report_signature(DIGEST, 4, 17, b"\x03" * 32, updates, b"\x04" * 65)
    t.sample_signatures()
    t.sample_signatures()  # read on from where it stopped: counted once
    assert metric(t, "relayer_stage_total", stage="signature", result="ok") == 1


def test_each_feed_of_an_attested_report_says_why_it_is_in_it_and_skipped_feeds_are_counted(
        tmp_path: Path) -> None:
    t = telemetry(tmp_path, spec("BTC-USD"), spec("ETH-USD"), spec("BTC-DVOL", "implied_vol", 6))
    updates = encode_updates([FeedUpdate(feed_index=0, observed_at=1000, num_sources=3, value=65_000 * 10**8)])
    report = AttestedReport(config_digest=bytes.fromhex(DIGEST[2:]), epoch=4, round=18, updates=updates,
                            signatures=((0, b"\x01" * 65), (2, b"\x02" * 65)))
    why = (Inclusion(0, "deviation", moved_bps=31.25, threshold_bps=25, age_s=40, heartbeat_s=3600),
           Inclusion(1, "skipped", moved_bps=3.5, threshold_bps=25, age_s=40, heartbeat_s=3600),
           Inclusion(2, "skipped", moved_bps=12.0, threshold_bps=300, age_s=40, heartbeat_s=3600))
    t.on_attested(report, SIGNERS, why)
    t.on_attested(dataclasses.replace(report, round=19, updates=b""), SIGNERS,
                  (Inclusion(0, "skipped", 1.0, 25, 41, 3600),))
    assert metric(t, "relayer_feed_inclusions_total", feed="BTC-USD", reason="deviation") == 1
    assert metric(t, "relayer_feed_inclusions_total", feed="BTC-USD", reason="skipped") == 1
    assert metric(t, "relayer_feed_inclusions_total", feed="ETH-USD", reason="skipped") == 1
    assert metric(t, "relayer_feed_inclusions_total", feed="BTC-DVOL", reason="skipped") == 1
    assert b'relayer_feed_inclusions_total{feed="BTC-USD",reason="deviation"} 1.0' in generate_latest(t.registry)
    older, newer = sorted(t.rounds_view(), key=lambda r: r["round"])
    assert older["feeds"][0]["inclusion"] == {"reason": "deviation", "moved_bps": 31.25, "threshold_bps": 25,
                                              "age_s": 40, "heartbeat_s": 3600}
    assert [s["feed_id"] for s in older["skipped"]] == ["ETH-USD", "BTC-DVOL"]
    assert newer["feeds"] == [] and [s["feed_id"] for s in newer["skipped"]] == ["BTC-USD"]
    view = t.inclusions_view()
    assert view["counts"]["BTC-USD"] == {"deviation": 1, "skipped": 1}
    assert view["latest"]["BTC-USD"]["reason"] == "skipped" and view["latest"]["BTC-USD"]["round"] == 19
    assert {f["feed_id"]: f["inclusion"]["reason"] for f in t.feed_view()} == {
        "BTC-USD": "skipped", "ETH-USD": "skipped", "BTC-DVOL": "skipped"}


def test_realized_vol_of_landed_values_is_aggregations_estimator(tmp_path: Path) -> None:
    t = telemetry(tmp_path, spec("BTC-USD"), spec("BTC-RVOL-1H", "realized_vol", 6))
    t.history["BTC-USD"] = deque([(1000, "65000"), (1002, "65100")])
    assert t.realized_vol("BTC-USD") is None  # two values: not yet
    values = ["65000", "65100", "64950", "65020", "65300"]
    t.history["BTC-USD"] = deque((1000 + 2 * i, v) for i, v in enumerate(values))
    vol = t.realized_vol("BTC-USD")
    assert vol == {"annualized": str(annualized_realized_vol([Decimal(v) for v in values], 2)), "samples": 5,
                   "sampling_seconds": 2}
    view = {f["feed_id"]: f for f in t.feed_view()}
    assert view["BTC-USD"]["realized_vol"] == vol
    assert view["BTC-RVOL-1H"]["realized_vol"] is None  # only spot feeds carry one


def test_without_a_risk_gate_the_views_say_there_is_none(tmp_path: Path) -> None:
    t = telemetry(tmp_path, spec("BTC-USD"))
    gate = t.risk_gate_view()
    assert gate == {"configured": False, "address": None, "message": NO_RISK_GATE, "error": None, "markets": []}
    assert "no RiskGate configured" in gate["message"]
    (feed,) = t.feed_view()
    assert feed["margin"] is None
