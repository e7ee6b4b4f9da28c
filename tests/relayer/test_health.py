"""Readiness: each cause on its own turns the node not-ready with its reason, and back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from relayer.health import REASONS, HealthInputs, readiness

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
GOOD = HealthInputs(
    now=NOW, started=True, member=True, peers=3, quorum=3, rpc_last_ok_at=NOW - 1, rpc_last_error=None,
    rpc_stale_after_s=15, balance_wei=10**18, min_balance_wei=5 * 10**16, store_error=None, pacemaker_alive=True,
    wishing_for_s=None, progress_timeout_s=2.0,
)


def test_a_healthy_member_is_ready() -> None:
    r = readiness(GOOD)
    assert r.ready and r.public() == {"ready": True, "reasons": []}


@pytest.mark.parametrize(("change", "reason"), [
    ({"started": False}, "starting"),
    ({"rpc_last_ok_at": NOW - 16}, "rpc_down"),
    ({"rpc_last_ok_at": None, "rpc_last_error": "eth_blockNumber: connection refused"}, "rpc_down"),
    ({"balance_wei": 4 * 10**16}, "low_balance"),
    ({"store_error": "OperationalError: database or disk is full"}, "store_unwritable"),
    ({"pacemaker_alive": False}, "pacemaker_dead"),
    ({"wishing_for_s": 4.1}, "no_progress"),
    ({"peers": 1}, "few_peers"),
    ({"failed_tasks": {"chain_follower": "RpcError: down"}}, "task_failed"),
])
def test_each_cause_alone_is_named(change: dict[str, object], reason: str) -> None:
    r = readiness(replace(GOOD, **change))  # type: ignore[arg-type]
    assert not r.ready and [x.reason for x in r.reasons] == [reason]
    assert reason in REASONS and r.reasons[0].message
    # And back: the same inputs without the cause are ready again.
    assert readiness(GOOD).ready


def test_limits_are_exclusive_where_they_should_be() -> None:
    assert readiness(replace(GOOD, rpc_last_ok_at=NOW - 15)).ready
    assert readiness(replace(GOOD, balance_wei=5 * 10**16)).ready
    assert readiness(replace(GOOD, wishing_for_s=4.0)).ready  # two timeouts: a leader change in progress
    assert readiness(replace(GOOD, balance_wei=None)).ready  # not read yet


def test_a_watcher_is_judged_on_the_chain_and_its_store_only() -> None:
    watcher = replace(GOOD, member=False, peers=0, balance_wei=0, pacemaker_alive=False, wishing_for_s=99.0)
    assert readiness(watcher).ready
    assert [x.reason for x in readiness(replace(watcher, store_error="disk full")).reasons] == ["store_unwritable"]


def test_several_causes_are_all_named() -> None:
    r = readiness(replace(GOOD, rpc_last_ok_at=None, store_error="x", peers=0))
    assert [x.reason for x in r.reasons] == ["rpc_down", "store_unwritable", "few_peers"]
