"""A member's side of a round: answer the leader's observe request, check and co-sign its proposal.

A follower signs an observation or a report only after the store has durably recorded
it, and never two different ones for the same (digest, epoch, round) (slashing
protection, after EIP-3076). Before co-signing a proposal it re-verifies every included
observation (signature, membership, distinctness, round) and recomputes the report from
them; the leader's own proposal, built from observations it verified on arrival, is not
checked twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from relayer.chain.codec import ReportDomain
from relayer.chain.errors import CodecError
from relayer.crypto import frost
from relayer.protocol.attestation import Attestation
from relayer.protocol.committee import Committee
from relayer.protocol.errors import Dropped, EquivocationRefused, Ignored, InvalidMessage, ReportMismatch
from relayer.protocol.leader import count_outliers
from relayer.protocol.messages import (
    Envelope,
    Kind,
    Observation,
    ObserveRequest,
    Proposal,
    ReportSignature,
    from_hex,
    open_envelope,
    to_hex,
)
from relayer.protocol.outbox import Outbox
from relayer.protocol.report import build_updates, decode_carried, encode_carried, within_bounds
from relayer.protocol.selection import FeedSelection
from relayer.protocol.round_state import Rounds, Stats
from relayer.protocol.signer import ReportSigner
from relayer.protocol.threshold import ThresholdSigning
from relayer.store import Store

log = logging.getLogger(__name__)


class _Deferred(Exception):
    """The proposal is judged again later (see `FeedSelection.after_refresh`)."""


class Follower:
    def __init__(self, *, committee: Committee, index: int, store: Store, observe: Callable[[], Observation],
                 outbox: Outbox, signer: ReportSigner, domain: ReportDomain, rounds: Rounds, stats: Stats,
                 attestation: Attestation, selection: FeedSelection,
                 bounds: Callable[[], Mapping[int, tuple[int, int]]] = dict,
                 threshold: ThresholdSigning | None = None) -> None:
        self.committee = committee
        self.selection = selection
        # Scheme 0x0002: observations carry nonce commitments, the report gets a share, not a signature.
        self.threshold = threshold
        self.bounds = bounds
        self.index = index
        self.store = store
        self.observe = observe
        self.outbox = outbox
        self.signer = signer
        self.domain = domain
        self.rounds = rounds
        self.stats = stats
        self.attestation = attestation
        self.digest = committee.digest_hex

    def on_observe_request(self, env: Envelope, sender: int, body: ObserveRequest) -> None:
        if self.committee.leader(env.epoch) != sender:
            raise InvalidMessage("not_leader", f"observe request for epoch {env.epoch} from a non-leader")
        existing = self.store.signed_observation(self.digest, env.epoch, env.round)
        if existing is not None:
            # Asked again (a restarted leader): the same signed observation, never a new one.
            self.outbox.send_to_leader(env.epoch, existing.encode())
            return
        try:
            self.store.check_observation_allowed(self.digest, env.epoch, env.round)
        except EquivocationRefused as exc:
            self.stats.refused["observation"] += 1
            log.warning("%s", exc, extra={"epoch": env.epoch, "round": env.round})
            return
        observation, nonces = self.observe(), list[frost.Nonces]()
        if self.threshold is not None:
            observation, nonces = self.threshold.with_commitments(observation)
        encoded = self.outbox.seal(Kind.OBSERVATION, env.epoch, env.round, observation)
        self.store.record_observation(self.digest, env.epoch, env.round, encoded.decode())
        if self.threshold is not None:
            self.threshold.keep_nonces(env.epoch, env.round, nonces)
        self.outbox.send_to_leader(env.epoch, encoded)

    def on_proposal(self, env: Envelope, sender: int, body: Proposal, *, rechecked: bool = False) -> None:
        if self.committee.leader(env.epoch) != sender:
            raise InvalidMessage("not_leader", f"proposal for epoch {env.epoch} from a non-leader")
        state = self.rounds.state(env.epoch, env.round)
        if state.updates is not None:
            raise Ignored("duplicate_proposal", f"a second proposal for round {env.round}")
        if sender == self.index and body == state.own_proposal:
            # Our own proposal, exactly as we built it from observations we had verified.
            updates, observation_dicts = from_hex(body.updates), list(body.observations)
        else:
            try:
                updates, observation_dicts = self._verify(env, body, sender, rechecked)
            except _Deferred:
                return
        report_digest = self.domain.report_digest(self.committee.config_digest, env.epoch, env.round, updates)
        try:
            earlier = self.store.check_report_allowed(self.digest, env.epoch, env.round, report_digest)
        except EquivocationRefused as exc:
            self.stats.refused["report"] += 1
            log.warning("%s", exc, extra={"epoch": env.epoch, "round": env.round})
            return
        if self.threshold is not None:
            state.updates, state.report_digest, state.observation_dicts = updates, report_digest, observation_dicts
            self.threshold.on_proposal(env, body, state)
            return
        signature = earlier.signature if earlier else self.signer.sign(report_digest)
        self.store.record_report_signature(self.digest, env.epoch, env.round, report_digest, updates, signature)
        state.updates, state.report_digest, state.observation_dicts = updates, report_digest, observation_dicts
        self.outbox.to_leader(Kind.REPORT_SIGNATURE, env.epoch, env.round,
                              ReportSignature(report_digest=to_hex(report_digest), signature=to_hex(signature)))
        self.attestation.release_early(env.epoch, env.round)

    def _recheck(self, env: Envelope, sender: int, body: Proposal) -> None:
        """The proposal again, once this node's view of the chain is fresh; never raises."""
        try:
            self.on_proposal(env, sender, body, rechecked=True)
        except Dropped as exc:
            self.stats.drop(env.sender, exc, epoch=env.epoch, round=env.round)
        except Exception:  # a bug must cost one proposal, never the node
            log.exception("error re-checking a proposal", extra={"epoch": env.epoch, "round": env.round})

    def _verify(self, env: Envelope, body: Proposal, sender: int, rechecked: bool) -> tuple[bytes, list[dict[str, Any]]]:
        seen: set[int] = set()
        observations: list[Observation] = []
        inners: list[Envelope] = []
        for raw in body.observations:
            try:
                inner = open_envelope(raw)
            except InvalidMessage as exc:
                raise InvalidMessage("bad_proposal", f"an included observation fails: {exc}") from None
            if inner.kind is not Kind.OBSERVATION:
                raise InvalidMessage("bad_proposal", f"proposal carries a {inner.kind.value}, not an observation")
            if (inner.digest, inner.epoch, inner.round) != (env.digest, env.epoch, env.round):
                raise InvalidMessage("bad_proposal", "an included observation is for another digest, epoch or round")
            who = self.committee.index_of(inner.sender)
            if who is None:
                raise InvalidMessage("bad_proposal", f"an included observation is from non-member {inner.sender}")
            if who in seen:
                raise InvalidMessage("bad_proposal", f"observation of {inner.sender} included twice")
            seen.add(who)
            try:
                parsed = Observation.model_validate(inner.body)
            except ValueError as exc:
                raise InvalidMessage("bad_proposal", f"an included observation does not parse: {exc}") from None
            observations.append(parsed)
            inners.append(inner)
        if len(observations) < self.committee.quorum:
            raise InvalidMessage(
                "bad_proposal", f"{len(observations)} observations, a report needs {self.committee.quorum}"
            )
        built = build_updates(observations, quorum=self.committee.quorum)
        if not built:
            raise InvalidMessage("bad_proposal", "no feed has a quorum of the included observations")
        # The leader leaves out a median the contract would refuse; so does this node's recomputation.
        built, _ = within_bounds(built, self.bounds())
        proposed = from_hex(body.updates)
        try:
            carried = decode_carried(proposed)
            canonical = encode_carried(carried)
        except CodecError as exc:
            raise InvalidMessage("bad_proposal", f"proposed updates do not decode: {exc}") from None
        if canonical != proposed:
            raise InvalidMessage("bad_proposal", "proposed updates are not canonically encoded")
        refusal = self.selection.check(built, carried)
        if refusal is not None and refusal.reason != "not_recomputed" and not rechecked and (
            self.selection.after_refresh(lambda: self._recheck(env, sender, body))
        ):
            # Judged against a view of the chain that may be a landing behind the leader's:
            # look again once it is fresh, then sign or refuse.
            self.stats.selection_rechecks += 1
            raise _Deferred()
        if refusal is not None:
            # not_recomputed: a value that is not the median; unjustified_feed / missing_feed:
            # a selection no honest leader could have made from the chain as this node sees it.
            reason = "bad_proposal" if refusal.reason == "not_recomputed" else refusal.reason
            raise InvalidMessage(reason, str(ReportMismatch(refusal.message)))
        updates = proposed
        if self.committee.leader(env.epoch) != self.index:  # the leader counted them when proposing
            count_outliers(inners, observations, built, self.stats)
        return updates, list(body.observations)
