from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayer.protocol.committee import Committee
from relayer.protocol.messages import FeedObservation, Observation
from relayer.protocol.report import build_updates

pytestmark = pytest.mark.unit


def _obs(*feeds: tuple[int, int]) -> Observation:
    return Observation(feeds=tuple(FeedObservation(feed_index=i, value=v, observed_at=100 + v % 7, num_sources=3)
                                   for i, v in feeds))


def test_median_per_feed_and_quorum_per_feed() -> None:
    observations = [_obs((0, 10), (1, 5)), _obs((0, 30)), _obs((0, 20), (1, 7))]
    updates = build_updates(observations, quorum=3)
    # Feed 1 has two observations only: below the quorum of three, left out.
    assert [(u.feed_index, u.value) for u in updates] == [(0, 20)]


@given(
    honest=st.lists(st.integers(min_value=1, max_value=10**12), min_size=3, max_size=3),
    faulty=st.lists(st.integers(min_value=-(10**30), max_value=10**30), min_size=1, max_size=1),
)
def test_f_faulty_values_cannot_leave_the_honest_range(honest: list[int], faulty: list[int]) -> None:
    observations = [_obs((0, v)) for v in honest + faulty]
    (update,) = build_updates(observations, quorum=3)
    assert min(honest) <= update.value <= max(honest)


@given(st.permutations([_obs((0, 5), (2, 9)), _obs((0, 7), (2, 1)), _obs((0, 6), (2, 4)), _obs((0, 1))]))
def test_order_of_observations_never_matters(observations: list[Observation]) -> None:
    assert build_updates(observations, quorum=3) == build_updates(sorted(observations, key=repr), quorum=3)


def test_leader_and_transmitter_order_are_deterministic(committee: Committee) -> None:
    leaders = [committee.leader(e) for e in range(40)]
    assert leaders == [committee.leader(e) for e in range(40)]
    assert set(leaders) == set(range(committee.n))  # every member leads some epoch
    assert all(a != b for a, b in zip(leaders, leaders[1:]))  # a faulty leader never leads twice in a row
    order = committee.transmitter_order(3, 17)
    assert sorted(order) == list(range(committee.n))
    assert order == committee.transmitter_order(3, 17)
    assert any(committee.transmitter_order(3, r) != order for r in range(18, 30))
