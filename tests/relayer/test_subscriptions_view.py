"""`/api/subscriptions` as built from what the node tells: promise, origins, deviation, heartbeat."""

from __future__ import annotations

import pytest

from aggregation.trigger import Floors, Landed, Promise
from relayer.api import ServedFeedInfo, SubscriptionsBoard, SubscriptionsSnapshot, subscriptions_view
from relayer.chain.feed_view import FeedOnchain, FeedViewSnapshot
from relayer.chain.subscriptions import PromiseSet, Subscription

pytestmark = pytest.mark.unit

BTC, ETH = b"\x01" * 32, b"\x02" * 32
ALICE = "0x" + "aa" * 20


def _snapshot(local: dict[int, tuple[int, int]]) -> SubscriptionsSnapshot:
    promises = PromiseSet.of({BTC: Promise(25, 3_600), ETH: Promise(50, 3_600)},
                             [Subscription(ALICE, BTC, 10, 600)], {BTC: Floors(5, 60), ETH: Floors(5, 60)})
    onchain = FeedViewSnapshot(block=9, epoch_round=(0, 3), feeds={
        0: FeedOnchain(0, Landed(100_000, 1_000), Landed(99_000, 990), 3),
        1: FeedOnchain(1, None, None, 0),
    })
    return SubscriptionsSnapshot(at=1_010.0, registry="0x" + "11" * 20,
                                 feeds=(ServedFeedInfo("BTC-USD", BTC, 0, 8), ServedFeedInfo("ETH-USD", ETH, 1, 8)),
                                 promises=promises, promises_block=8, onchain=onchain, local=local)


def test_each_feed_shows_its_promise_who_asked_and_how_near_it_is_to_triggering() -> None:
    view = subscriptions_view(_snapshot({0: (100_150, 1_010), 1: (5_000, 1_010)}), now=1_100.0)
    btc, eth = view["feeds"]
    assert btc["promise"] == {"deviation_bps": 10, "heartbeat_s": 600}
    assert btc["default"] == {"deviation_bps": 25, "heartbeat_s": 3_600}
    assert btc["subscribers"] == [{"subscriber": ALICE, "deviation_bps": 10, "heartbeat_s": 600}]
    assert btc["deviation"] == {"bps": 15.0, "threshold_bps": 10, "reached": True}
    assert btc["heartbeat_left_s"] == 500.0  # observed on-chain at 1000, promised every 600 s, now 1100
    assert btc["would_trigger"] == "deviation"
    assert btc["onchain"]["previous"] == {"value": 99_000, "observed_at": 990}
    # Never landed: no deviation or heartbeat to speak of, and the first value is due.
    assert eth["onchain"] is None and eth["deviation"] is None and eth["heartbeat_left_s"] is None
    assert eth["would_trigger"] == "first_value" and eth["promise"] == {"deviation_bps": 50, "heartbeat_s": 3_600}


def test_a_small_move_is_below_the_threshold_and_the_board_waits_for_its_first_snapshot() -> None:
    board = SubscriptionsBoard()
    assert board.view()["ready"] is False
    board.update(_snapshot({0: (100_050, 1_010)}))
    btc = board.view(now=1_010.0)["feeds"][0]
    assert btc["deviation"] == {"bps": 5.0, "threshold_bps": 10, "reached": False}
    assert btc["would_trigger"] is None and btc["local"] == {"value": 100_050, "observed_at": 1_010}
