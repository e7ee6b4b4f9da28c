"""The leader's side of a round: observe request, collecting signed observations, proposal.

The epoch's leader starts a round every round interval: it asks for observations, waits
for 2f+1 of them plus a short grace for more (all n end the wait at once), computes the
per-feed medians and proposes them with the signed observations it used. Observations
far from the median are counted against their sender: the median ignores them, an
operator should still see who sends them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from relayer.chain.codec import FeedUpdate
from relayer.chain.errors import CodecError
from relayer.protocol.clock import Clock
from relayer.protocol.committee import Committee
from relayer.protocol.errors import Ignored
from relayer.protocol.messages import Envelope, Epoch, Kind, Observation, ObserveRequest, Proposal, RoundId, to_hex
from relayer.protocol.outbox import Outbox
from relayer.protocol.pacemaker import Pacemaker
from relayer.protocol.report import build_updates, encode_carried, within_bounds
from relayer.protocol.selection import FeedSelection
from relayer.protocol.round_state import Rounds, Stats

log = logging.getLogger(__name__)

# An observation this far from the report's median (in basis points) is counted against its sender.
OUTLIER_BPS = 1000


def count_outliers(chosen: Sequence[Envelope], bodies: Sequence[Observation], built: Sequence[FeedUpdate],
                   stats: Stats) -> None:
    """Count, per peer, observations with a feed far from the report's median."""
    medians = {u.feed_index: u.value for u in built}
    for env, body in zip(chosen, bodies):
        for feed in body.feeds:
            median = medians.get(feed.feed_index)
            if median and abs(feed.value - median) * 10_000 > OUTLIER_BPS * abs(median):
                stats.dropped[(env.sender, "outlier_observation")] += 1
                break


class Leader:
    def __init__(self, *, committee: Committee, index: int, clock: Clock, outbox: Outbox, pacemaker: Pacemaker,
                 rounds: Rounds, stats: Stats, selection: FeedSelection,
                 bounds: Callable[[], Mapping[int, tuple[int, int]]] = dict,
                 signing_set: Callable[[Mapping[int, Envelope]], tuple[int, ...] | None] | None = None) -> None:
        self.committee = committee
        # Scheme 0x0002: who signs, from the observations used (None: everyone co-signs, 0x0001);
        # the proposal then waits for `threshold` observations, not only 2f+1.
        self.signing_set = signing_set
        self.needed = committee.quorum if signing_set is None else max(committee.quorum, committee.threshold)
        self.bounds = bounds
        self.selection = selection
        self.index = index
        self.clock = clock
        self.outbox = outbox
        self.pacemaker = pacemaker
        self.rounds = rounds
        self.stats = stats
        self.round = RoundId(0)  # the latest round this node led in the current epoch
        self._epoch_changed = asyncio.Event()
        pacemaker.on_enter.append(self._on_enter_epoch)

    def _on_enter_epoch(self, epoch: Epoch) -> None:
        self.round = RoundId(0)
        self._epoch_changed.set()

    def leads(self, epoch: Epoch) -> bool:
        return self.committee.leader(epoch) == self.index

    async def run(self) -> None:
        offchain = self.committee.offchain
        interval = offchain.round_interval_ms / 1000
        while True:
            epoch = self.pacemaker.epoch
            if not self.leads(epoch):
                self._epoch_changed.clear()
                await self._epoch_changed.wait()
                continue
            self.round = round = RoundId(self.round + 1)
            state = self.rounds.state(epoch, round)
            state.started_at = self.clock.time()
            state.started_mono = started = self.clock.monotonic()
            self.stats.rounds_started += 1
            self.outbox.broadcast(Kind.OBSERVE_REQUEST, epoch, round,
                                  ObserveRequest(started_at_ms=int(state.started_at * 1000)))
            # One round interval at most: a round that needs longer overlaps the next one,
            # and only the pacemaker's progress timeout gives up on the epoch.
            if not await self.clock.wait(state.done, interval):
                log.warning("round timed out without an attested report", extra={"epoch": epoch, "round": round})
            await self.clock.sleep(max(0.0, interval - (self.clock.monotonic() - started)))

    def on_observation(self, env: Envelope, sender: int, body: Observation) -> None:
        if not self.leads(env.epoch):
            raise Ignored("not_for_me", f"observation for epoch {env.epoch}, led by member {self.committee.leader(env.epoch)}")
        state = self.rounds.get(env.epoch, env.round)
        if state is None or state.started_at is None:
            raise Ignored("unknown_round", f"observation for round {env.round}, which this leader did not start")
        if state.proposed:
            raise Ignored("late_observation", f"observation for round {env.round} after its proposal")
        if sender in state.observations:
            raise Ignored("duplicate_observation", f"a second observation for round {env.round}")
        state.observations[sender] = env
        count = len(state.observations)
        if count >= self.committee.n:
            self.propose(env.epoch, env.round)
        elif count >= self.needed and state.proposal_timer is None:
            grace = self.committee.offchain.grace_ms / 1000
            epoch, round = env.epoch, env.round
            state.proposal_timer = self.clock.call_later(grace, lambda: self.propose(epoch, round))

    def propose(self, epoch: Epoch, round: RoundId) -> None:
        state = self.rounds.get(epoch, round)
        if state is None or state.proposed or epoch != self.pacemaker.epoch:
            return
        state.proposed = True
        if state.proposal_timer is not None:
            state.proposal_timer.cancel()
        chosen = [state.observations[i] for i in sorted(state.observations)]
        bodies = [Observation.model_validate(e.body) for e in chosen]
        built = build_updates(bodies, quorum=self.committee.quorum)
        count_outliers(chosen, bodies, built, self.stats)
        built, out = within_bounds(built, self.bounds())
        for update in out:
            key = (update.feed_index, "out_of_bounds")
            self.stats.left_out[key] += 1
            if self.stats.left_out[key] in (1, 10) or self.stats.left_out[key] % 100 == 0:
                low, high = self.bounds()[update.feed_index]
                log.warning("feed %d: median %d is outside its on-chain bounds [%d, %d]; left out of the report so "
                            "the other feeds land (%d times so far; governance may need to widen the bounds)",
                            update.feed_index, update.value, low, high, self.stats.left_out[key],
                            extra={"epoch": epoch, "round": round})
        if not built:
            log.warning("no feed has a quorum of observations within its bounds; nothing to propose",
                        extra={"epoch": epoch, "round": round})
            return
        carried = self.selection.choose(built)
        try:
            updates = encode_carried(carried)
        except CodecError as exc:
            log.warning("cannot encode the report (%s); nothing to propose", exc, extra={"epoch": epoch, "round": round})
            return
        if not carried:
            # Nothing triggered: an empty report is still attested, so the round counts as
            # progress, and it is never transmitted.
            self.stats.empty_reports += 1
        signers = None
        if self.signing_set is not None:
            signers = self.signing_set(state.observations)
            if signers is None:
                self.stats.short_of_signers += 1
                log.warning("fewer than %d observers committed nonces; nothing to propose", self.committee.threshold,
                            extra={"epoch": epoch, "round": round})
                return
        proposal = Proposal(observations=tuple(e.to_dict() for e in chosen), updates=to_hex(updates),
                            signing_set=signers)
        state.own_proposal = proposal
        self.outbox.broadcast(Kind.PROPOSAL, epoch, round, proposal)
