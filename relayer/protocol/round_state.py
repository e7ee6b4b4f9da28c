"""What a node knows about each round it takes part in, kept for the last few dozen rounds,
and the engine's counters.

The leader fills in observations and its proposal, the follower side the report it signed,
attestation the co-signatures; one `RoundState` per (epoch, round) holds all of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from relayer.crypto.frost import Commitment
from relayer.protocol.clock import Timer
from relayer.protocol.errors import Dropped
from relayer.protocol.messages import Envelope, Epoch, Proposal, ReportSignature, RoundId, SignatureShare

log = logging.getLogger(__name__)

KEEP_ROUNDS = 64

RoundKey = tuple[Epoch, RoundId]


@dataclass
class RoundState:
    started_at: float | None = None  # unix time the leader sent its observe request
    started_mono: float | None = None
    observations: dict[int, Envelope] = field(default_factory=dict)
    proposal_timer: Timer | None = None
    proposed: bool = False
    updates: bytes | None = None
    report_digest: bytes | None = None
    observation_dicts: list[dict[str, Any]] | None = None
    signatures: dict[int, bytes] = field(default_factory=dict)
    early_signatures: list[tuple[Envelope, int, ReportSignature]] = field(default_factory=list)
    own_proposal: Proposal | None = None  # as the leader built it, before it went out
    attested: bool = False
    # Scheme 0x0002: the included observations' nonce commitments (by member, by attempt), the
    # current attempt and its signing set; at the leader, the valid shares of that attempt and
    # the members excluded for a bad share or for silence, and the timer of the current attempt.
    commitments: dict[int, tuple[Commitment, ...]] | None = None
    signing_set: tuple[int, ...] | None = None
    attempt: int = 0
    shares: dict[int, int] = field(default_factory=dict)
    excluded: set[int] = field(default_factory=set)
    early_shares: list[tuple[Envelope, int, SignatureShare]] = field(default_factory=list)
    share_timer: Timer | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Rounds:
    """The round states of the latest `KEEP_ROUNDS` rounds; older ones are forgotten."""

    def __init__(self, keep: int = KEEP_ROUNDS) -> None:
        self._keep = keep
        self._states: dict[RoundKey, RoundState] = {}

    def get(self, epoch: Epoch, round: RoundId) -> RoundState | None:
        return self._states.get((epoch, round))

    def state(self, epoch: Epoch, round: RoundId) -> RoundState:
        key = (epoch, round)
        found = self._states.get(key)
        if found is None:
            found = self._states[key] = RoundState()
            if len(self._states) > self._keep:
                for old in sorted(self._states)[: len(self._states) - self._keep]:
                    del self._states[old]
        return found

    def cancel_timers(self) -> None:
        for state in self._states.values():
            for timer in (state.proposal_timer, state.share_timer):
                if timer is not None:
                    timer.cancel()


class Stats:
    """Counters the node exposes; drops are counted per (peer, reason).

    Reasons of invalid messages (WARNING): oversized, malformed, bad_signature,
    sender_mismatch, replayed, wrong_digest, not_in_committee, not_leader, bad_proposal,
    conflicting_signature, bad_attested, bad_new_epoch, unjustified_feed and missing_feed (a proposal's
    feed selection no honest leader could make: relayer.protocol.selection). Of valid ones
    this node does not use (DEBUG): stale_epoch, future_epoch_full, not_for_me, unknown_round, late_observation,
    duplicate_observation, duplicate_proposal, late_signature, early_buffer_full,
    duplicate_attested. Under scheme 0x0002, invalid: bad_commitment, bad_signing_set,
    conflicting_share, bad_share (the sender is excluded for the round), wrong_scheme; silent counts
    no message but its absence: a member of the signing set whose share did not come within the
    share timeout (excluded for the round, as for bad_share); valid but
    unused: unknown_report, late_signing_set, late_share, stale_share, duplicate_share. Besides: outlier_observation (used, but far from the median) and
    internal_error (a bug cost one message).
    """

    def __init__(self) -> None:
        self.dropped: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.refused: defaultdict[str, int] = defaultdict(int)
        self.rounds_started = 0
        self.reports_attested = 0
        self.epoch_changes = 0
        # Progress timeouts: each one announced (again) the epoch this node wants.
        self.progress_timeouts = 0
        # Members behind this node's epoch told, to them alone, which epoch it is in.
        self.epoch_nudges = 0
        # Writes to the store that failed outside signing (a lost saved epoch).
        self.store_errors = 0
        # Messages for an epoch this node had not reached, kept and later handled.
        self.future_buffered = 0
        self.future_replayed = 0
        # Rounds in which no feed triggered: attested with no updates, never transmitted.
        self.empty_reports = 0
        # Proposals whose feed selection was judged again on a fresh view of the chain.
        self.selection_rechecks = 0
        # Feeds this node, leading, left out of a report, per (feed index, reason): a median
        # outside the feed's on-chain bounds ("out_of_bounds") would make the contract refuse it all.
        self.left_out: defaultdict[tuple[int, str], int] = defaultdict(int)
        # Attested reports this node missed on the wire and read back from their landing.
        self.adopted_from_chain = 0
        # Scheme 0x0002, leading: rounds not proposed for want of `threshold` committed observers,
        # signing sets asked again after a bad share or a silent member, and rounds left with too
        # few to ask.
        self.short_of_signers = 0
        self.signing_retries = 0
        self.signing_exhausted = 0

    def drop(self, peer: str, why: Dropped, *, epoch: int | None = None,
             round: int | None = None) -> None:
        """Count a message this node will not act on, with a log line saying why: WARNING for an
        invalid one, DEBUG for one that is valid but of no use here."""
        self.dropped[(peer, why.reason)] += 1
        log.log(why.log_level, "dropped message from %s: %s", peer, why,
                extra={"peer": peer, "epoch": epoch, "round": round})
