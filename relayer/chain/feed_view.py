"""The node's view of each served feed on-chain: its latest value and observation time, and the one before.

The trigger policy (``aggregation.trigger``) measures a new median against what is on-chain,
and a follower checks a leader's selection against the last two on-chain states it knows
(views a landing apart must not refuse an honest leader), so the view keeps both per feed.

How it stays fresh, and why this way: :meth:`FeedView.refresh` makes one ``eth_call``
(``latestEpochAndRound``) per call, and only when the chain's latest (epoch, round) differs
from the one the view was read at does it read every feed, in one batched request pinned
to one block (``latestFeed`` per feed plus the round, so the snapshot is consistent). With
the trigger policy most rounds land nothing, so the usual cost per round is that one call.
``NewTransmission`` logs would cost the same one request per poll (``eth_getLogs``) but carry
no values (they are in the transaction input, and a tripped breaker may have held a value
back), so the feeds would still have to be read; and a reorg that takes a landing away shows
up here as a changed round, where a log follower would have to notice removed logs.

The previous state is what this node saw before the latest change: after a restart it is
unknown until the next landing (the view then offers the latest state only, which the
follower check accepts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aggregation.trigger import Landed
from relayer.chain.errors import ChainError, RpcError
from relayer.chain.oracle import QuorumOracleClient
from relayer.chain.rpc import RpcCallError

__all__ = ["FeedOnchain", "FeedView", "FeedViewError", "FeedViewSnapshot", "UnknownFeedIndex"]


class FeedViewError(ChainError):
    """The chain answered something the feed view cannot use."""


class UnknownFeedIndex(FeedViewError):
    """A feed index this view does not follow was asked for."""


@dataclass(frozen=True, slots=True)
class FeedOnchain:
    """One feed's latest on-chain state (``latest``; None: never written) and the one before
    it as this node saw it (``previous``; None: not seen since the view started, or never)."""

    index: int
    latest: Landed | None
    previous: Landed | None
    round_id: int  # the feed's own on-chain round counter (0: never written)
    # Whether this node saw the state before ``latest`` (``previous``, None there meaning
    # "never written"): not after a restart or a reorg, until the next landing.
    previous_known: bool = False

    def recent(self) -> tuple[Landed | None, ...]:
        """Newest first, as ``aggregation.trigger.check_selection`` takes them."""
        if self.latest is None:
            return (None,)
        return (self.latest, self.previous) if self.previous_known else (self.latest,)


@dataclass(frozen=True, slots=True)
class FeedViewSnapshot:
    """The whole view at one block: the chain's latest (epoch, round) and every feed."""

    block: int
    epoch_round: tuple[int, int]
    feeds: Mapping[int, FeedOnchain]

    def landed(self) -> dict[int, Landed | None]:
        """Per feed index the latest state, for ``aggregation.trigger.select``."""
        return {i: f.latest for i, f in self.feeds.items()}

    def recent_views(self) -> dict[int, tuple[Landed | None, ...]]:
        """Per feed index the last two states, for ``aggregation.trigger.check_selection``."""
        return {i: f.recent() for i, f in self.feeds.items()}

    def feed(self, index: int) -> FeedOnchain:
        try:
            return self.feeds[index]
        except KeyError:
            raise UnknownFeedIndex(
                f"feed index {index} is not in this view (it follows {sorted(self.feeds)}); "
                "serve the feed, or ask for one of those"
            ) from None


class FeedView:
    """The served feeds of one oracle, refreshed when the chain's latest round changes."""

    def __init__(self, oracle: QuorumOracleClient, indexes: Sequence[int]) -> None:
        if len(set(indexes)) != len(indexes):
            raise FeedViewError(f"expected distinct feed indexes, got {list(indexes)}")
        self.oracle = oracle
        self.indexes = tuple(sorted(indexes))
        self.snapshot: FeedViewSnapshot | None = None
        self.reads = 0  # full reads of every feed (a landing, a reorg, a new config)
        self.polls = 0  # cheap polls of the latest round

    async def refresh(self) -> bool:
        """Look at the chain once; True when the view changed."""
        self.polls += 1
        latest = await self.oracle.latest_epoch_round()
        if self.snapshot is not None and latest == self.snapshot.epoch_round:
            return False
        await self.read()
        return True

    async def read(self) -> FeedViewSnapshot:
        """Read every feed, in one batched request pinned to the head block."""
        try:
            block = await self.oracle.rpc.block_number()
        except RpcCallError as exc:
            raise RpcError(f"eth_blockNumber for the feed view: {exc}") from exc
        results = await self.oracle._call_many(
            [("latestEpochAndRound", ())] + [("latestFeed", (i,)) for i in self.indexes], block=hex(block))
        if len(results) != len(self.indexes) + 1:
            raise FeedViewError(f"expected {len(self.indexes) + 1} answers, got {len(results)}; retry")
        epoch, round_ = results[0]
        epoch_round = (int(epoch), int(round_))
        states = [(int(v), int(t), int(r)) for v, t, r in results[1:]]
        before = self.snapshot.feeds if self.snapshot is not None else {}
        feeds: dict[int, FeedOnchain] = {}
        for index, (value, observed_at, round_id) in zip(self.indexes, states):
            latest = Landed(value, observed_at) if round_id else None
            old = before.get(index)
            if old is None or round_id < old.round_id:
                previous, known = None, False  # first read, or a reorg took landings away: unknown
            elif old.round_id == round_id:
                previous, known = old.previous, old.previous_known  # not in this landing
            else:
                previous, known = old.latest, True  # None here: the feed's first value just landed
            feeds[index] = FeedOnchain(index, latest, previous, round_id, known)
        self.snapshot = FeedViewSnapshot(block, epoch_round, feeds)
        self.reads += 1
        return self.snapshot

    def current(self) -> FeedViewSnapshot:
        if self.snapshot is None:
            raise FeedViewError("the feed view has not read the chain yet; call refresh() first")
        return self.snapshot
