"""The trigger policy: the leader's selection and the followers' check agree whatever the
inputs, padding and withholding are caught, and promises never go below the floors. Uses
the thresholds the devnet catalog ships."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregation.errors import InvalidInput
from aggregation.trigger import (
    Floors,
    Landed,
    Promise,
    Reason,
    check_selection,
    deviation_reached,
    effective_promise,
    select,
    trigger_reason,
)
from feeds.catalog import load_catalog

pytestmark = pytest.mark.unit

CATALOG = {f.feed_id: f for f in load_catalog()}
FLOORS = Floors(min_deviation_bps=5, min_heartbeat_s=60)


def _promise(feed_id: str) -> Promise:
    feed = CATALOG[feed_id]
    return Promise(feed.deviation_bps, feed.heartbeat_s)


def _scaled(feed_id: str, value: str) -> int:
    from decimal import Decimal

    return int(Decimal(value) * 10 ** CATALOG[feed_id].decimals)


def test_catalog_spot_threshold_triggers_exactly_at_its_deviation() -> None:
    btc = _promise("BTC-USD")
    assert btc.deviation_bps == 25
    landed = Landed(_scaled("BTC-USD", "64000"), observed_at=1_000)
    at = _scaled("BTC-USD", "64160")  # +25 bps
    below = at - 1
    assert trigger_reason(at, 1_001, landed, btc) is Reason.DEVIATION
    assert trigger_reason(below, 1_001, landed, btc) is None
    down = _scaled("BTC-USD", "63840")  # -25 bps
    assert trigger_reason(down, 1_001, landed, btc) is Reason.DEVIATION


def test_heartbeat_first_value_and_stale_observations() -> None:
    vol = _promise("BTC-RVOL-1H")
    landed = Landed(_scaled("BTC-RVOL-1H", "0.55"), observed_at=10_000)
    same = landed.value
    assert trigger_reason(same, 10_000 + vol.heartbeat_s - 1, landed, vol) is None
    assert trigger_reason(same, 10_000 + vol.heartbeat_s, landed, vol) is Reason.HEARTBEAT
    assert trigger_reason(same, 10_000 + vol.heartbeat_s - 30, landed, vol, heartbeat_lead_s=30) is Reason.HEARTBEAT
    assert trigger_reason(same, 1, None, vol) is Reason.FIRST_VALUE
    # Not newer than what is on-chain: the contract would refuse it, so it never triggers.
    assert trigger_reason(landed.value * 2, 10_000, landed, vol) is None


def test_funding_near_zero_is_measured_against_its_reference_not_itself() -> None:
    relative = Promise(deviation_bps=1000, heartbeat_s=3600)
    floored = Promise(deviation_bps=1000, heartbeat_s=3600, min_reference=10_000)  # 0.0001 per 8 h
    # 1e-8 to 2e-8 per 8 h is a 100 % move of nothing at all.
    assert deviation_reached(2, 1, relative)
    assert not deviation_reached(2, 1, floored)
    assert deviation_reached(1_001, 1, floored)  # 10 % of the reference
    assert deviation_reached(-500, 600, floored)  # a sign flip past the reference
    assert deviation_reached(1, 0, relative)
    assert not deviation_reached(0, 0, relative)


def test_effective_promise_is_the_tightest_within_the_floors() -> None:
    default = _promise("ETH-USD")
    tight = Promise(deviation_bps=10, heartbeat_s=600)
    too_tight = Promise(deviation_bps=1, heartbeat_s=1)
    assert effective_promise(default, [], FLOORS) == default
    assert effective_promise(default, [tight], FLOORS) == Promise(10, 600)
    assert effective_promise(default, [tight, too_tight], FLOORS) == Promise(5, 60)
    with pytest.raises(InvalidInput):
        Promise(deviation_bps=0, heartbeat_s=60)


promises = st.builds(Promise, st.integers(1, 5_000), st.integers(1, 86_400), st.integers(0, 10**6))
landed = st.none() | st.builds(Landed, st.integers(-(10**12), 10**12), st.integers(0, 10**6))
feed_set = st.dictionaries(st.integers(0, 30), st.tuples(st.integers(-(10**12), 10**12), st.integers(0, 2 * 10**6)),
                           max_size=12)


@given(st.data(), feed_set)
def test_an_honest_leader_is_never_refused_by_a_follower_that_saw_its_view(
    data: st.DataObject, medians: dict[int, tuple[int, int]]
) -> None:
    feeds = sorted(medians)
    proms = {i: data.draw(promises) for i in feeds}
    leader_view = {i: data.draw(landed) for i in feeds}
    # The follower knows the leader's state among a few (one landing newer, or older).
    recent = {i: data.draw(st.permutations([leader_view[i], *data.draw(st.lists(landed, max_size=2))])) for i in feeds}
    chosen = select(medians, leader_view, proms)
    verdict = check_selection(medians, chosen, recent, proms)
    assert verdict.ok, verdict
    assert select(dict(reversed(list(medians.items()))), leader_view, proms) == chosen


@given(st.data(), feed_set)
def test_padding_and_withholding_are_caught(data: st.DataObject, medians: dict[int, tuple[int, int]]) -> None:
    feeds = sorted(medians)
    proms = {i: data.draw(promises) for i in feeds}
    view = {i: data.draw(landed) for i in feeds}
    chosen = set(select(medians, view, proms))
    follower = {i: [view[i]] for i in feeds}
    for i in feeds:
        if i in chosen:
            withheld = check_selection(medians, chosen - {i}, follower, proms)
            assert withheld.missing == (i,)
        else:
            padded = check_selection(medians, chosen | {i}, follower, proms)
            assert padded.unjustified == (i,)
    assert check_selection(medians, chosen | {99}, follower, proms).unjustified == (99,)


@given(promises, st.lists(promises, max_size=4), st.lists(promises, max_size=4))
def test_more_subscriptions_never_loosen_a_promise(default: Promise, a: list[Promise], b: list[Promise]) -> None:
    fewer = effective_promise(default, a, FLOORS)
    more = effective_promise(default, a + b, FLOORS)
    assert more.deviation_bps <= fewer.deviation_bps and more.heartbeat_s <= fewer.heartbeat_s
    assert more.deviation_bps >= FLOORS.min_deviation_bps and more.heartbeat_s >= FLOORS.min_heartbeat_s
