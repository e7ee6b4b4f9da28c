"""The trigger policy: which feeds a report carries, decided the same way on every node.

A push feed is written when it has a reason to be (as Chainlink's push feeds are): its new
median moved from the latest on-chain value by at least its deviation threshold, its
heartbeat ran out since the on-chain observation time, or it has never landed. A round in
which nothing triggers sends nothing.

Everything here is pure integer arithmetic on the scaled on-chain values, and time is the
report's own observation time (never a node's clock), so the leader's selection and each
follower's check depend only on the proposal and on what each node has seen on-chain.

Nodes may see the chain a block or two apart (a report that just landed, seen by one node
and not yet by another). A follower therefore checks the leader's selection against the
few latest on-chain states it knows for each feed: a feed is *justified* if it triggers
against any of them, and *owed* if it triggers against all of them. A proposal is
accepted when it carries every owed feed and only justified ones; so an honest leader
whose view is one landing behind or ahead is never refused, and a leader that pads a
report or withholds a feed that every recent view says is due is.

The promise of a feed is the tightest of its catalog default and its accepted on-chain
subscriptions, never tighter than the governance floors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from aggregation.errors import InvalidInput

__all__ = [
    "BPS",
    "Floors",
    "Landed",
    "Promise",
    "Reason",
    "Verdict",
    "check_selection",
    "effective_promise",
    "select",
    "trigger_reason",
]

BPS = 10_000


@dataclass(frozen=True, slots=True)
class Promise:
    """What subscribers are promised for one feed.

    ``min_reference`` is the magnitude below which deviation is measured against that floor
    instead of the value itself (in the feed's scaled units): for feeds that hover around
    zero (funding rates), a relative threshold against a near-zero value would trigger on
    every round. Zero means purely relative."""

    deviation_bps: int
    heartbeat_s: int
    min_reference: int = 0

    def __post_init__(self) -> None:
        if self.deviation_bps <= 0 or self.heartbeat_s <= 0 or self.min_reference < 0:
            raise InvalidInput(
                f"a promise needs deviation_bps > 0 and heartbeat_s > 0 (got {self.deviation_bps}, "
                f"{self.heartbeat_s}) and min_reference >= 0 (got {self.min_reference})"
            )


@dataclass(frozen=True, slots=True)
class Floors:
    """Governance's limits: nobody may be promised more than this (it would cost every
    operator gas for one subscriber's wish)."""

    min_deviation_bps: int
    min_heartbeat_s: int


def effective_promise(default: Promise, subscriptions: Iterable[Promise], floors: Floors) -> Promise:
    """The tightest of the catalog default and the subscriptions, clamped to the floors."""
    listed = [default, *subscriptions]
    deviation = max(min(p.deviation_bps for p in listed), floors.min_deviation_bps)
    heartbeat = max(min(p.heartbeat_s for p in listed), floors.min_heartbeat_s)
    return Promise(max(deviation, 1), max(heartbeat, 1), default.min_reference)


@dataclass(frozen=True, slots=True)
class Landed:
    """A feed's latest state on-chain: its value and the observation time it carries."""

    value: int
    observed_at: int


class Reason(StrEnum):
    FIRST_VALUE = "first_value"
    DEVIATION = "deviation"
    HEARTBEAT = "heartbeat"


def deviation_reached(value: int, landed: int, promise: Promise) -> bool:
    """|value - landed| >= deviation_bps of max(|landed|, min_reference), in integers."""
    reference = max(abs(landed), promise.min_reference)
    if reference == 0:
        return value != landed
    return abs(value - landed) * BPS >= promise.deviation_bps * reference


def trigger_reason(
    value: int, observed_at: int, landed: Landed | None, promise: Promise, heartbeat_lead_s: int = 0
) -> Reason | None:
    """Why this feed must be written now, or None.

    ``heartbeat_lead_s`` fires the heartbeat that much early, so that an update lands
    before the promise runs out rather than after (a round plus landing time)."""
    if landed is None:
        return Reason.FIRST_VALUE
    if observed_at <= landed.observed_at:
        return None  # the chain refuses an observation that is not newer
    if deviation_reached(value, landed.value, promise):
        return Reason.DEVIATION
    if observed_at - landed.observed_at >= promise.heartbeat_s - heartbeat_lead_s:
        return Reason.HEARTBEAT
    return None


def select(
    medians: Mapping[int, tuple[int, int]],
    view: Mapping[int, Landed | None],
    promises: Mapping[int, Promise],
    heartbeat_lead_s: int = 0,
) -> dict[int, Reason]:
    """The leader's choice: of the feeds with a median (index -> (value, observed_at)),
    those that trigger against the leader's view of the chain, with their reasons."""
    chosen: dict[int, Reason] = {}
    for index in sorted(medians):
        value, observed_at = medians[index]
        reason = trigger_reason(value, observed_at, view.get(index), promises[index], heartbeat_lead_s)
        if reason is not None:
            chosen[index] = reason
    return chosen


@dataclass(frozen=True, slots=True)
class Verdict:
    """A follower's judgement of a proposal's selection."""

    missing: tuple[int, ...]  # owed (due against every recent view) but left out
    unjustified: tuple[int, ...]  # carried with no reason against any recent view

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unjustified


def check_selection(
    medians: Mapping[int, tuple[int, int]],
    included: Iterable[int],
    recent_views: Mapping[int, Sequence[Landed | None]],
    promises: Mapping[int, Promise],
    heartbeat_lead_s: int = 0,
) -> Verdict:
    """Whether the leader's selection is one an honest leader could have made.

    ``recent_views`` holds, per feed, the latest on-chain states this node knows (newest
    first, at least one; ``None`` for "never landed"). Feeds without a median cannot be
    carried at all."""
    carried = set(included)
    unjustified = sorted(i for i in carried if i not in medians)
    missing: list[int] = []
    for index in sorted(medians):
        value, observed_at = medians[index]
        views = recent_views.get(index) or (None,)
        reasons = [trigger_reason(value, observed_at, v, promises[index], heartbeat_lead_s) for v in views]
        if index in carried and all(r is None for r in reasons):
            unjustified.append(index)
        elif index not in carried and all(r is not None for r in reasons):
            missing.append(index)
    return Verdict(tuple(missing), tuple(sorted(unjustified)))
