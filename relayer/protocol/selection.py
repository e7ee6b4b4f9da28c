"""Which feeds a report carries: the leader's choice and the followers' check of it.

`CarryAll` puts every feed with a quorum of observations in every report. `TriggerSelection`
applies the trigger policy of `aggregation.trigger` (deviation from the on-chain value,
heartbeat, first value) against this node's view of the chain: the leader carries what
triggers against its view; a follower accepts a selection when every carried feed has a
reason against one of the latest on-chain states it knows, and no feed that is due against
all of them is missing. When nothing triggers, the report carries no feed: it is still
attested (the round made progress, so the pacemaker does not change epoch for it) and it is
never transmitted.

Each policy also says why each feed is in a report it accepted (`Inclusion`: first value,
deviation with its size against the threshold, heartbeat with the on-chain age, or every
round under `CarryAll`) and which feeds with a quorum were left out because nothing
triggered (``skipped``), for operators' metrics and dashboard.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aggregation.trigger import BPS, Landed, Promise, check_selection, select, trigger_reason
from relayer.chain.codec import FeedUpdate

log = logging.getLogger(__name__)

# Per feed index, the latest on-chain states this node knows, newest first; None for a feed
# that never landed.
ChainView = Callable[[], Mapping[int, Sequence[Landed | None]]]
Promises = Callable[[], Mapping[int, Promise]]


@dataclass(frozen=True)
class Refusal:
    """Why a follower refuses a selection; ``reason`` is the drop counter's label."""

    reason: str  # not_recomputed, unjustified_feed or missing_feed
    message: str


EVERY_ROUND = "every_round"  # carried because the policy carries every feed
NOT_SERVED = "not_served"  # carried, and this node does not serve it: it has no promise to judge it by
SKIPPED = "skipped"  # had a quorum, and nothing triggered
UNKNOWN = "unknown"  # attested without this node's judgement, and no reason against its view now
# Accepted selections remembered until their report is attested (a few rounds in flight at most).
_EXPLAINED_KEPT = 32


@dataclass(frozen=True, slots=True)
class Inclusion:
    """Why one feed is in an accepted report, or that it had a quorum and was left out
    (``skipped``). ``moved_bps`` and ``age_s`` are measured against the on-chain state the
    decision was made against."""

    feed_index: int
    reason: str  # first_value, deviation, heartbeat, every_round, not_served, unknown or skipped
    moved_bps: float | None = None  # |median - on-chain value| in bps of the reference
    threshold_bps: int | None = None
    age_s: int | None = None  # from the on-chain observation time to the median's
    heartbeat_s: int | None = None


def explain(update: FeedUpdate, landed: Landed | None, promise: Promise, reason: str) -> Inclusion:
    """One feed's ``reason`` with the numbers behind it, against ``landed``."""
    if landed is None:
        return Inclusion(update.feed_index, reason, threshold_bps=promise.deviation_bps,
                         heartbeat_s=promise.heartbeat_s)
    reference = max(abs(landed.value), promise.min_reference)
    moved = abs(update.value - landed.value)
    # Truncated to 0.01 bps, never rounded up: a skipped feed never shows its threshold reached.
    moved_bps = moved * BPS * 100 // reference / 100 if reference else (0.0 if moved == 0 else float("inf"))
    return Inclusion(update.feed_index, reason, moved_bps, promise.deviation_bps,
                     update.observed_at - landed.observed_at, promise.heartbeat_s)


class FeedSelection(Protocol):
    def choose(self, built: Sequence[FeedUpdate]) -> list[FeedUpdate]:
        """The leader's selection from the per-feed medians of a round."""
        ...

    def check(self, built: Sequence[FeedUpdate], proposed: Sequence[FeedUpdate]) -> Refusal | None:
        """None when a follower accepts the leader's selection ``proposed`` of ``built``
        (recomputed by the follower itself), else why not."""
        ...

    def after_refresh(self, then: Callable[[], None]) -> bool:
        """When a fresher view of the chain could change a refusal, start reading it, call
        ``then`` once read, and return True; else False (refuse now)."""
        ...

    def inclusions(self, carried: Sequence[FeedUpdate]) -> tuple[Inclusion, ...]:
        """Why each feed of an attested report ``carried`` is in it, and the feeds skipped,
        as this node decided when it accepted the selection (or, when it did not judge it,
        against its view of the chain now: carried feeds only)."""
        ...


def _not_recomputed(built: Sequence[FeedUpdate], proposed: Sequence[FeedUpdate]) -> Refusal | None:
    recomputed = {u.feed_index: u for u in built}
    for update in proposed:
        if recomputed.get(update.feed_index) != update:
            return Refusal("not_recomputed", f"feed {update.feed_index} is not the median of the included observations")
    return None


class CarryAll:
    """Every feed with a quorum, every round."""

    def choose(self, built: Sequence[FeedUpdate]) -> list[FeedUpdate]:
        return list(built)

    def check(self, built: Sequence[FeedUpdate], proposed: Sequence[FeedUpdate]) -> Refusal | None:
        wrong = _not_recomputed(built, proposed)
        if wrong is not None:
            return wrong
        missing = sorted({u.feed_index for u in built} - {u.feed_index for u in proposed})
        return Refusal("missing_feed", f"feeds {missing} have a quorum but were left out") if missing else None

    def after_refresh(self, then: Callable[[], None]) -> bool:
        return False  # no view of the chain is involved

    def inclusions(self, carried: Sequence[FeedUpdate]) -> tuple[Inclusion, ...]:
        return tuple(Inclusion(u.feed_index, EVERY_ROUND) for u in carried)


class TriggerSelection:
    """Only what triggers (deviation, heartbeat, first value).

    A feed without a promise here is one this node does not serve (its catalog default and
    its on-chain view are those of the feeds it serves): other members' observations give it
    a median, but this node cannot judge whether it is due. As leader it leaves such a feed
    out (a member that serves it refuses only when it is due, which costs that round, where
    carrying it every round would be refused almost every round); as follower it accepts the
    leader's choice for it either way. A member serving fewer feeds than its committee (an
    operator's first config, say) then signs what the others carry."""

    def __init__(self, view: ChainView, promises: Promises, heartbeat_lead_s: int = 0,
                 refresh: Callable[[], Awaitable[object]] | None = None) -> None:
        self.view = view
        self.promises = promises
        self.heartbeat_lead_s = heartbeat_lead_s
        # Reads the chain again: a follower a landing behind the leader looks once more
        # before refusing (every node reads as a round starts, but a read may still be out).
        self.refresh = refresh
        self._pending: set[asyncio.Task[None]] = set()
        self._explained: OrderedDict[tuple[FeedUpdate, ...], tuple[Inclusion, ...]] = OrderedDict()

    def after_refresh(self, then: Callable[[], None]) -> bool:
        refresh = self.refresh
        if refresh is None:
            return False

        async def fresh_then() -> None:
            try:
                await refresh()
            except Exception as exc:  # noqa: BLE001 - judge on the view there is
                log.warning("cannot read the chain again before judging a proposal: %s", exc)
            then()

        task = asyncio.get_running_loop().create_task(fresh_then())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    def _split(self, built: Sequence[FeedUpdate]) -> tuple[dict[int, tuple[int, int]], set[int], Mapping[int, Promise]]:
        promises = self.promises()
        policed = {u.feed_index: (u.value, u.observed_at) for u in built if u.feed_index in promises}
        unjudged = {u.feed_index for u in built if u.feed_index not in promises}
        return policed, unjudged, promises

    def choose(self, built: Sequence[FeedUpdate]) -> list[FeedUpdate]:
        policed, _, promises = self._split(built)
        views = self.view()
        newest = {i: (views.get(i) or (None,))[0] for i in policed}
        chosen = set(select(policed, newest, promises, self.heartbeat_lead_s))
        return [u for u in built if u.feed_index in chosen]

    def check(self, built: Sequence[FeedUpdate], proposed: Sequence[FeedUpdate]) -> Refusal | None:
        wrong = _not_recomputed(built, proposed)
        if wrong is not None:
            return wrong
        policed, unjudged, promises = self._split(built)
        carried = {u.feed_index for u in proposed}
        views = self.view()
        verdict = check_selection(policed, carried - unjudged, views, promises, self.heartbeat_lead_s)
        if verdict.unjustified:
            return Refusal("unjustified_feed",
                           f"feeds {list(verdict.unjustified)} carried with no deviation, heartbeat or first value")
        if verdict.missing:
            return Refusal("missing_feed",
                           f"feeds {list(verdict.missing)} are due against every recent on-chain state but left out")
        self._remember(tuple(proposed), self._explain(built, carried, views, promises))
        return None

    def _explain(self, built: Sequence[FeedUpdate], carried: set[int],
                 views: Mapping[int, Sequence[Landed | None]], promises: Mapping[int, Promise]) -> tuple[Inclusion, ...]:
        """Per feed of ``built``: the reason against the newest on-chain state that gives one
        (an accepted carried feed has one against some recent state), or skipped."""
        out: list[Inclusion] = []
        for update in built:
            promise = promises.get(update.feed_index)
            if promise is None:
                if update.feed_index in carried:
                    out.append(Inclusion(update.feed_index, NOT_SERVED))
                continue
            recent = views.get(update.feed_index) or (None,)
            if update.feed_index not in carried:
                out.append(explain(update, recent[0], promise, SKIPPED))
                continue
            for landed in recent:
                reason = trigger_reason(update.value, update.observed_at, landed, promise, self.heartbeat_lead_s)
                if reason is not None:
                    out.append(explain(update, landed, promise, str(reason)))
                    break
            else:  # not judged by this node, and its view has moved on since
                out.append(explain(update, recent[0], promise, UNKNOWN))
        return tuple(out)

    def _remember(self, key: tuple[FeedUpdate, ...], why: tuple[Inclusion, ...]) -> None:
        self._explained[key] = why
        self._explained.move_to_end(key)
        while len(self._explained) > _EXPLAINED_KEPT:
            self._explained.popitem(last=False)

    def inclusions(self, carried: Sequence[FeedUpdate]) -> tuple[Inclusion, ...]:
        known = self._explained.pop(tuple(carried), None)
        if known is not None:
            return known
        return self._explain(carried, {u.feed_index for u in carried}, self.view(), self.promises())
