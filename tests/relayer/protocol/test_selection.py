"""Which feeds a report carries: the trigger policy in the round protocol. The leader carries
what triggers against its view of the chain; followers refuse a padded or withholding
selection; a round where nothing triggers is attested empty (progress) and never sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregation.trigger import Landed, Promise
from relayer.chain.codec import FeedUpdate
from relayer.protocol.committee import Committee
from relayer.protocol.report import decode_carried
from relayer.protocol.selection import CarryAll, Inclusion, TriggerSelection
from tests.relayer.protocol.network import OBSERVED_AT, network

pytestmark = pytest.mark.unit

PROMISES = {0: Promise(deviation_bps=100, heartbeat_s=3600), 1: Promise(deviation_bps=100, heartbeat_s=3600)}


def _selection(view: dict[int, list[Landed | None]]) -> TriggerSelection:
    return TriggerSelection(lambda: view, lambda: PROMISES)


def _built(v0: int, v1: int, at: int = OBSERVED_AT) -> list[FeedUpdate]:
    return [FeedUpdate(0, at, 3, v0), FeedUpdate(1, at, 2, v1)]


def test_the_leader_carries_what_moved_and_followers_accept_exactly_that() -> None:
    view: dict[int, list[Landed | None]] = {0: [Landed(100, OBSERVED_AT - 60)], 1: [Landed(10, OBSERVED_AT - 60)]}
    selection = _selection(view)
    built = _built(102, 10)  # feed 0 moved 2 % (threshold 1 %), feed 1 did not
    chosen = selection.choose(built)
    assert [u.feed_index for u in chosen] == [0]
    assert selection.check(built, chosen) is None
    padded = selection.check(built, built)
    assert padded is not None and padded.reason == "unjustified_feed"
    withheld = selection.check(built, [])
    assert withheld is not None and withheld.reason == "missing_feed"
    forged = selection.check(built, [FeedUpdate(0, OBSERVED_AT, 3, 150)])
    assert forged is not None and forged.reason == "not_recomputed"


def test_a_follower_one_landing_ahead_still_accepts_the_leaders_choice() -> None:
    # The leader has not seen the landing of 102 yet; the follower has, and knows both states.
    leader = _selection({0: [Landed(100, OBSERVED_AT - 60)], 1: [Landed(10, OBSERVED_AT - 60)]})
    follower = _selection({0: [Landed(102, OBSERVED_AT - 1), Landed(100, OBSERVED_AT - 60)],
                           1: [Landed(10, OBSERVED_AT - 60)]})
    built = _built(102, 10)
    assert follower.check(built, leader.choose(built)) is None


def test_an_accepted_selection_says_why_each_feed_is_in_it_and_which_were_skipped() -> None:
    view: dict[int, list[Landed | None]] = {0: [Landed(100, OBSERVED_AT - 60)], 1: [Landed(10, OBSERVED_AT - 3600)]}
    selection = _selection(view)
    built = _built(102, 10)  # feed 0 moved 200 bps of 100 bps; feed 1's heartbeat ran out
    chosen = selection.choose(built)
    assert selection.check(built, chosen) is None
    assert selection.inclusions(chosen) == (
        Inclusion(0, "deviation", moved_bps=200.0, threshold_bps=100, age_s=60, heartbeat_s=3600),
        Inclusion(1, "heartbeat", moved_bps=0.0, threshold_bps=100, age_s=3600, heartbeat_s=3600),
    )
    quiet = _built(100, 10, at=OBSERVED_AT - 30)  # nothing triggers: an empty report, both skipped
    assert selection.check(quiet, []) is None
    assert [(i.feed_index, i.reason, i.moved_bps) for i in selection.inclusions([])] == [
        (0, "skipped", 0.0), (1, "skipped", 0.0)]


def test_first_values_and_a_report_this_node_did_not_judge() -> None:
    selection = _selection({0: [None], 1: [Landed(10, OBSERVED_AT - 60)]})
    built = _built(102, 10)
    assert [(i.feed_index, i.reason) for i in selection.inclusions(built[:1])] == [(0, "first_value")]
    # Attested without this node's check (it refused, or missed the proposal), and its view
    # gives no reason now: said so, not made up.
    assert [i.reason for i in selection.inclusions(built[1:])] == ["unknown"]
    assert [i.reason for i in CarryAll().inclusions(built)] == ["every_round", "every_round"]


def test_a_feed_this_node_does_not_serve_is_neither_carried_nor_demanded_by_it() -> None:
    # Serves feed 0 only (feed 1's median comes from the other members' observations).
    view: dict[int, list[Landed | None]] = {0: [Landed(100, OBSERVED_AT - 60)]}
    partial = TriggerSelection(lambda: view, lambda: {0: PROMISES[0]})
    built = _built(102, 10)
    assert [u.feed_index for u in partial.choose(built)] == [0]  # as leader: what it can judge
    assert partial.check(built, built[:1]) is None  # as follower: feed 1 left out, or
    assert partial.check(built, built) is None  # carried by a leader that serves it
    assert [(i.feed_index, i.reason) for i in partial.inclusions(built)] == [(0, "deviation"), (1, "not_served")]
    padded = partial.check(_built(100, 10), _built(100, 10))  # feed 0 is still policed
    assert padded is not None and padded.reason == "unjustified_feed"


def test_carry_all_refuses_a_leader_that_leaves_a_feed_out() -> None:
    built = _built(102, 10)
    refusal = CarryAll().check(built, built[:1])
    assert refusal is not None and refusal.reason == "missing_feed"
    assert CarryAll().check(built, built) is None


async def test_a_round_where_nothing_triggers_is_attested_empty_and_the_epoch_holds(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    # Every node has both feeds on-chain at the values they observe: nothing moves.
    view: dict[int, list[Landed | None]] = {0: [Landed(100, OBSERVED_AT - 60)], 1: [Landed(10, OBSERVED_AT - 60)]}
    net = network(tmp_path, keys, committee, [100, 100, 100, 100],
                  selections={i: _selection(view) for i in range(committee.n)})
    net.start()
    await net.clock.advance(1.5)  # past two progress timeouts (0.6 s)
    leader = net.engines[committee.leader(0)]
    assert all(e.pacemaker.epoch == 0 for e in net.engines)
    assert leader.stats.empty_reports >= 10
    reports = net.attested[committee.leader(0)]
    assert reports and all(r.updates == b"" and decode_carried(r.updates) == [] for r in reports)
    await net.stop()


async def test_a_padding_leader_is_refused_by_followers_that_police_the_trigger(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    view: dict[int, list[Landed | None]] = {0: [Landed(100, OBSERVED_AT - 60)], 1: [Landed(10, OBSERVED_AT - 60)]}
    lead = committee.leader(0)
    selections = {i: _selection(view) for i in range(committee.n)}
    selections[lead] = CarryAll()  # carries both feeds though neither moved
    net = network(tmp_path, keys, committee, [100, 100, 100, 100], selections=selections)  # type: ignore[arg-type]
    net.start()
    await net.clock.advance(0.35)
    assert net.attested[lead] == []  # nobody co-signed
    refusals = sum(n for e in net.engines for (_, reason), n in e.stats.dropped.items() if reason == "unjustified_feed")
    assert refusals >= 3 * (committee.n - 1)
    await net.stop()


async def test_a_follower_a_landing_behind_looks_again_before_refusing(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    # The leader has seen feed 0 land at 102; the followers' reads are one landing behind.
    fresh: dict[int, list[Landed | None]] = {0: [Landed(102, OBSERVED_AT - 1)], 1: [Landed(10, OBSERVED_AT - 60)]}
    lead = committee.leader(0)
    selections: dict[int, TriggerSelection] = {lead: _selection(fresh)}
    for i in range(committee.n):
        if i == lead:
            continue
        behind: dict[int, list[Landed | None]] = {0: [Landed(100, OBSERVED_AT - 60)], 1: [Landed(10, OBSERVED_AT - 60)]}

        async def catch_up(view: dict[int, list[Landed | None]] = behind) -> None:
            view.update(fresh)

        selections[i] = TriggerSelection(lambda view=behind: view, lambda: PROMISES, 0, catch_up)  # type: ignore[misc]
    net = network(tmp_path, keys, committee, [102, 102, 102, 102], selections=selections)  # type: ignore[arg-type]
    net.start()
    await net.clock.advance(0.05)
    reports = net.attested[lead]
    assert reports and reports[0].updates == b""  # nothing moved against the chain as it is
    followers = [e for i, e in enumerate(net.engines) if i != lead]
    assert all(e.stats.selection_rechecks == 1 for e in followers)
    assert sum(n for e in followers for (_, r), n in e.stats.dropped.items() if r == "missing_feed") == 0
    await net.stop()


async def test_a_withholding_leader_is_still_refused_after_the_second_look(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    view: dict[int, list[Landed | None]] = {0: [Landed(100, OBSERVED_AT - 60)], 1: [Landed(10, OBSERVED_AT - 60)]}
    lead = committee.leader(0)

    async def nothing_new() -> None:
        return None

    withholding = TriggerSelection(lambda: {0: [Landed(102, OBSERVED_AT - 1)], 1: view[1]}, lambda: PROMISES)
    selections = {i: TriggerSelection(lambda: view, lambda: PROMISES, 0, nothing_new) for i in range(committee.n)}
    selections[lead] = withholding  # claims feed 0 already landed at 102: withholds its update
    net = network(tmp_path, keys, committee, [102, 102, 102, 102], selections=selections)  # type: ignore[arg-type]
    net.start()
    await net.clock.advance(0.05)
    assert net.attested[lead] == []
    followers = [e for i, e in enumerate(net.engines) if i != lead]
    assert sum(n for e in followers for (_, r), n in e.stats.dropped.items() if r == "missing_feed") == len(followers)
    await net.stop()


@pytest.mark.parametrize(("fault", "values", "reason"), [
    ("pad_report", [100, 100, 100, 100], "unjustified_feed"),  # nothing moved; it carries both
    ("withhold_feed", [102, 102, 102, 102], "missing_feed"),  # feed 0 moved 2 %; it leaves it out
])
async def test_a_padding_or_withholding_leader_fault_is_refused(
    tmp_path: Path, keys: list[bytes], committee: Committee, fault: str, values: list[int], reason: str
) -> None:
    from relayer.testing.faults import FaultyEngineFactory

    view: dict[int, list[Landed | None]] = {0: [Landed(100, OBSERVED_AT - 60)], 1: [Landed(10, OBSERVED_AT - 60)]}
    lead = committee.leader(0)
    net = network(tmp_path, keys, committee, values, factories={lead: FaultyEngineFactory(fault)},
                  selections={i: _selection(view) for i in range(committee.n)})
    net.start()
    await net.clock.advance(0.35)
    assert net.attested[lead] == []
    followers = [e for i, e in enumerate(net.engines) if i != lead]
    assert sum(n for e in followers for (_, r), n in e.stats.dropped.items() if r == reason) >= 3 * len(followers)
    await net.stop()
