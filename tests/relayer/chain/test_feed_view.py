"""The node's view of its feeds on-chain, against a real anvil: one cheap poll while nothing
lands, one batched read per landing, and the previous state kept for the follower check."""

from __future__ import annotations

import pytest

from aggregation.trigger import Landed
from relayer.chain.feed_view import FeedView, FeedViewError, UnknownFeedIndex
from tests.relayer.chain.conftest import Deployment

pytestmark = pytest.mark.integration


async def test_the_view_follows_landings_and_keeps_the_previous_state(oracle: Deployment) -> None:
    view = FeedView(oracle.client, [0, 1])
    with pytest.raises(FeedViewError, match="refresh"):
        view.current()
    assert await view.refresh() is True
    snap = view.current()
    assert snap.epoch_round == (0, 0)
    assert snap.landed() == {0: None, 1: None}
    assert snap.recent_views() == {0: (None,), 1: (None,)}  # never landed: every value triggers

    assert await view.refresh() is False  # nothing landed: one eth_call, no feed read
    assert (view.polls, view.reads) == (2, 1)

    t0 = await oracle.now() - 2  # t0 + 1 not ahead of the block: the oracle would store the block time
    await oracle.transmit(0, 1, oracle.updates(t0, (0, 3_000 * 10**8), (1, 60_000 * 10**8)))
    assert await view.refresh() is True
    snap = view.current()
    assert snap.epoch_round == (0, 1)
    assert snap.feed(0).latest == Landed(3_000 * 10**8, t0) and snap.feed(0).previous is None
    # The state before is known too: never written (a leader that had not seen this landing
    # yet still had a reason to carry the feed).
    assert snap.recent_views()[1] == (Landed(60_000 * 10**8, t0), None)

    # Only ETH/USD lands: BTC/USD keeps its state, ETH/USD's last one becomes its previous.
    await oracle.transmit(0, 2, oracle.updates(t0 + 1, (0, 3_010 * 10**8)))
    assert await view.refresh() is True
    snap = view.current()
    assert snap.recent_views()[0] == (Landed(3_010 * 10**8, t0 + 1), Landed(3_000 * 10**8, t0))
    assert snap.feed(1).latest == Landed(60_000 * 10**8, t0) and snap.feed(1).previous is None
    assert snap.block >= 1 and view.reads == 3

    # A view started after the landings knows only the latest state.
    fresh = FeedView(oracle.client, [0, 1])
    await fresh.refresh()
    assert fresh.current().recent_views() == {0: (Landed(3_010 * 10**8, t0 + 1),), 1: (Landed(60_000 * 10**8, t0),)}

    with pytest.raises(UnknownFeedIndex, match="feed index 7"):
        snap.feed(7)


async def test_a_view_refuses_duplicate_indexes(oracle: Deployment) -> None:
    with pytest.raises(FeedViewError, match="distinct"):
        FeedView(oracle.client, [0, 0])
