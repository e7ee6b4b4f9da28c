"""Signing a round's report under scheme 0x0002 (FROST threshold Schnorr, relayer/crypto/frost.py).

The round is the same as under 0x0001 up to the proposal; what differs is who signs and how:

- observing: each member draws fresh hedged nonces (one pair per signing attempt of the
  round) and puts their commitments in its signed observation; the nonces stay in memory
  only, never in the store, so they die with the process;
- proposing: the leader picks the signing set, `threshold` members whose observations it
  used (itself first when it observed), and names it in the proposal; the commitments are
  those of the included observations, each signed by its member;
- sharing: a member of the set verifies the proposal as under 0x0001, takes the nonce out of
  memory, durably marks it used in the store (`Store.mark_nonce_used`) and only then computes
  its signature share and hands it to the outbox. A crash at any instant leaves the nonce
  either unspent and forgotten (never used) or marked (never used again);
- aggregating: the leader checks every share against the member's verification share; a bad
  one is counted against its sender (`bad_share`), the sender is excluded for the round and
  the leader asks again (`SigningSet`) with another set and the next attempt's nonces, while
  enough observers committed to one. A member of the set whose share has not come within the
  share timeout (`OffchainConfig.share_timeout_ms`) is counted (`silent`) and excluded the same
  way, so a member that observed and then hung costs the round one timeout, not the round. With every share of the set valid it sums them into one
  signature (`FrostReportAggregator`) and broadcasts the attested report, which any member
  checks against the group key.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coincurve import PublicKey

from relayer.crypto import frost
from relayer.protocol.clock import Clock
from relayer.protocol.committee import Committee
from relayer.protocol.errors import (
    Dropped,
    EquivocationRefused,
    Ignored,
    InvalidMessage,
    SchemeMismatch,
    SignatureRejected,
)
from relayer.protocol.messages import (
    MAX_SIGNING_ATTEMPTS,
    Envelope,
    Epoch,
    Kind,
    NonceCommitment,
    Observation,
    Proposal,
    RoundId,
    SignatureShare,
    SigningSet,
    from_hex,
    to_hex,
)
from relayer.protocol.outbox import Outbox
from relayer.protocol.round_state import Rounds, RoundState, Stats
from relayer.protocol.signer import FrostReportAggregator, frost_identifier
from relayer.store import Store

log = logging.getLogger(__name__)

# Rounds whose unspent nonces are kept in memory; older ones are forgotten, never reused.
_KEEP_NONCE_ROUNDS = 64


@dataclass(frozen=True)
class ThresholdKeyShare:
    """A member's part of the committee's FROST group key, from the key generation: its secret
    share, the group key and every member's verification share (by member index, 0-based)."""

    share: frost.KeyShare
    verification_shares: Mapping[int, PublicKey]

    @property
    def group_public_key(self) -> PublicKey:
        return self.share.group_public_key


def signing_attempts(committee: Committee) -> int:
    """Nonce pairs per observation: one attempt, plus one per member that may be excluded
    before fewer than `threshold` are left."""
    return max(1, min(MAX_SIGNING_ATTEMPTS, committee.n - committee.threshold + 1))


def schnorr_point(schnorr: bytes) -> frost.Signature:
    """The contract's form (R's x and y, z; 96 bytes) back to a FROST signature."""
    try:
        return frost.Signature(PublicKey(b"\x04" + schnorr[:64]), int.from_bytes(schnorr[64:], "big"))
    except ValueError as exc:
        raise SignatureRejected(f"R of the Schnorr signature is not a curve point: {exc}") from None


def _commitments(member: int, observation: Mapping[str, Any]) -> tuple[frost.Commitment, ...]:
    """The nonce commitments in a member's observation envelope (as a dict), by attempt."""
    listed = observation.get("body", {}).get("commitments") or ()
    try:
        return tuple(
            frost.Commitment(frost_identifier(member), frost.deserialize_element(from_hex(c["hiding"])),
                             frost.deserialize_element(from_hex(c["binding"])))
            for c in listed
        )
    except (frost.FrostError, KeyError, TypeError, ValueError) as exc:
        raise InvalidMessage("bad_commitment", f"member {member}'s nonce commitments are not points: {exc}") from None


def _stop_waiting(state: RoundState) -> None:
    if state.share_timer is not None:
        state.share_timer.cancel()
        state.share_timer = None


class ThresholdSigning:
    """Both sides of 0x0002 signing for one node: the member's shares and the leader's aggregation."""

    def __init__(self, *, committee: Committee, index: int, key: ThresholdKeyShare, store: Store, outbox: Outbox,
                 rounds: Rounds, stats: Stats, clock: Clock,
                 on_signature: Callable[[Epoch, RoundId, RoundState, bytes], None]) -> None:
        if key.share.identifier != frost_identifier(index):
            raise SchemeMismatch(
                f"the key share is FROST participant {key.share.identifier}, this node is member {index} "
                f"(participant {frost_identifier(index)}); load the share the key generation gave this member"
            )
        self.aggregator = FrostReportAggregator(key.group_public_key, key.verification_shares, committee.threshold)
        self.aggregator.check_committee(committee)
        self.committee = committee
        self.index = index
        self.key = key
        self.store = store
        self.outbox = outbox
        self.rounds = rounds
        self.stats = stats
        self.clock = clock
        self.share_timeout = committee.offchain.share_timeout_ms / 1000
        self.digest = committee.digest_hex
        self.attempts = signing_attempts(committee)
        self._on_signature = on_signature
        # Unspent nonces by round and attempt; an entry becomes None the moment it is taken.
        self._nonces: OrderedDict[tuple[Epoch, RoundId], list[frost.Nonces | None]] = OrderedDict()

    @property
    def group_public_key(self) -> PublicKey:
        return self.key.group_public_key

    # --- observing -------------------------------------------------------------------

    def with_commitments(self, observation: Observation) -> tuple[Observation, list[frost.Nonces]]:
        """The observation with commitments to fresh hedged nonces, and the nonces themselves."""
        nonces = [frost.commit(self.key.share.secret) for _ in range(self.attempts)]
        me = frost_identifier(self.index)
        commitments = tuple(
            NonceCommitment(hiding=to_hex(frost.serialize_element(c.hiding)),
                            binding=to_hex(frost.serialize_element(c.binding)))
            for c in (n.commitment(me) for n in nonces)
        )
        return Observation(feeds=observation.feeds, commitments=commitments), nonces

    def keep_nonces(self, epoch: Epoch, round: RoundId, nonces: list[frost.Nonces]) -> None:
        """Once the observation carrying their commitments is durably recorded."""
        self._nonces[(epoch, round)] = list(nonces)
        while len(self._nonces) > _KEEP_NONCE_ROUNDS:
            self._nonces.popitem(last=False)

    # --- the leader: choosing a set ----------------------------------------------------

    def choose(self, committed: Mapping[int, Sequence[frost.Commitment]], excluded: set[int],
               attempt: int) -> tuple[int, ...] | None:
        """`threshold` members with a commitment for `attempt`, this node first; None if too few."""
        eligible = [m for m in sorted(committed) if m not in excluded and len(committed[m]) > attempt]
        ordered = [m for m in eligible if m == self.index] + [m for m in eligible if m != self.index]
        if attempt >= self.attempts or len(ordered) < self.committee.threshold:
            return None
        return tuple(sorted(ordered[: self.committee.threshold]))

    def signing_set(self, observations: Mapping[int, Envelope]) -> tuple[int, ...] | None:
        """The leader's first set, from the observations it is about to propose."""
        committed: dict[int, tuple[frost.Commitment, ...]] = {}
        for member, env in observations.items():
            try:
                committed[member] = _commitments(member, env.to_dict())
            except InvalidMessage as exc:
                self.stats.drop(env.sender, exc, epoch=env.epoch, round=env.round)
        return self.choose(committed, set(), 0)

    # --- a member: sharing -------------------------------------------------------------

    def on_proposal(self, env: Envelope, body: Proposal, state: RoundState) -> None:
        """The proposal verified (state.report_digest set): note its commitments and, when
        this node is in its signing set, send a share."""
        state.commitments = {}
        for raw in body.observations:
            member = self.committee.index_of(str(raw.get("sender", "")))
            if member is not None:
                state.commitments[member] = _commitments(member, raw)
        if body.signing_set is None:
            raise InvalidMessage("bad_signing_set", "a proposal under scheme 0x0002 names no signing set")
        self._check_set(body.signing_set, 0, state)
        state.signing_set, state.attempt = body.signing_set, 0
        if self.committee.leader(env.epoch) == self.index:
            self._await_shares(env.epoch, env.round, state)
        if self.index in body.signing_set:
            self._share(env.epoch, env.round, state, 0, body.signing_set)
        self._release_early(env.epoch, env.round, state)

    def on_signing_set(self, env: Envelope, sender: int, body: SigningSet) -> None:
        if self.committee.leader(env.epoch) != sender:
            raise InvalidMessage("not_leader", f"signing set for epoch {env.epoch} from a non-leader")
        state = self.rounds.get(env.epoch, env.round)
        if state is None or state.report_digest is None or state.commitments is None:
            raise Ignored("unknown_report", f"signing set for round {env.round}, whose proposal this node has not signed")
        if from_hex(body.report_digest) != state.report_digest:
            raise InvalidMessage("bad_signing_set", "signing set for another report than the proposal's")
        if state.attested:
            raise Ignored("late_signing_set", f"round {env.round} is attested already")
        self._check_set(body.members, body.attempt, state)
        if sender != self.index:  # the leader moved its own state when it asked
            state.signing_set, state.attempt = body.members, body.attempt
        if self.index in body.members:
            self._share(env.epoch, env.round, state, body.attempt, body.members)

    def _check_set(self, members: tuple[int, ...], attempt: int, state: RoundState) -> None:
        assert state.commitments is not None
        if len(members) != self.committee.threshold:
            raise InvalidMessage("bad_signing_set",
                                 f"{len(members)} members in the signing set, the threshold is {self.committee.threshold}")
        short = [m for m in members if len(state.commitments.get(m, ())) <= attempt]
        if short:
            raise InvalidMessage("bad_signing_set", f"members {short} committed no nonce for attempt {attempt}")

    def _share(self, epoch: Epoch, round: RoundId, state: RoundState, attempt: int, members: tuple[int, ...]) -> None:
        assert state.commitments is not None and state.report_digest is not None
        extra = {"epoch": epoch, "round": round}
        kept = self._nonces.get((epoch, round))
        nonces = kept[attempt] if kept is not None and attempt < len(kept) else None
        if kept is None or nonces is None:
            # Spent, or drawn by this process before a restart: a nonce is never drawn again
            # from anything stored, so this round gets no share from this node.
            self.stats.refused["nonce"] += 1
            log.warning("no unspent nonce for attempt %d of this round; no signature share", attempt, extra=extra)
            return
        kept[attempt] = None  # out of memory before anything else can fail
        mine = state.commitments[self.index][attempt]
        try:
            self.store.record_report_signature(self.digest, epoch, round, state.report_digest, state.updates or b"",
                                               b"")
            self.store.mark_nonce_used(self.digest, epoch, round, attempt, mine.encode(), state.report_digest,
                                       list(members))
        except EquivocationRefused as exc:
            self.stats.refused["share"] += 1
            log.warning("%s", exc, extra=extra)
            return
        # Durably spent: only now may a share computed with it exist.
        commitments = [state.commitments[m][attempt] for m in members]
        share = frost.sign(self.key.share, nonces, commitments, state.report_digest)
        self.outbox.to_leader(Kind.SIGNATURE_SHARE, epoch, round,
                              SignatureShare(report_digest=to_hex(state.report_digest), attempt=attempt,
                                             share=to_hex(frost.serialize_scalar(share))))

    # --- the leader: shares into one signature ------------------------------------------

    def on_share(self, env: Envelope, sender: int, body: SignatureShare) -> None:
        if self.committee.leader(env.epoch) != self.index:
            raise Ignored("not_for_me", f"signature share for epoch {env.epoch}, led by another member")
        state = self.rounds.get(env.epoch, env.round)
        if state is None or not state.proposed:
            raise Ignored("unknown_round", f"signature share for round {env.round}, which this leader did not propose")
        if state.attested:
            raise Ignored("late_share", f"signature share for round {env.round}, attested already")
        if state.report_digest is None or state.commitments is None or state.signing_set is None:
            # It overtook this node's own handling of its proposal: keep a bounded few.
            if len(state.early_shares) >= self.committee.n * self.attempts:
                raise Ignored("early_buffer_full", f"early signature shares kept for round {env.round}")
            state.early_shares.append((env, sender, body))
            return
        if from_hex(body.report_digest) != state.report_digest:
            raise InvalidMessage("conflicting_share", f"{env.sender} shared a signature of another report")
        if body.attempt != state.attempt or sender not in state.signing_set:
            raise Ignored("stale_share", f"share for attempt {body.attempt}; the set of attempt {state.attempt} "
                                         f"is {list(state.signing_set)}")
        if sender in state.shares:
            raise Ignored("duplicate_share", f"a second share from member {sender}")
        share = int.from_bytes(from_hex(body.share), "big")
        commitments = [state.commitments[m][state.attempt] for m in state.signing_set]
        if not frost.verify_share(frost_identifier(sender), self.key.verification_shares[sender], share, commitments,
                                  self.group_public_key, state.report_digest):
            state.excluded.add(sender)
            self._retry(env.epoch, env.round, state)
            raise InvalidMessage("bad_share", f"signature share of member {sender} for attempt {body.attempt} "
                                              "does not verify; excluded for this round")
        state.shares[sender] = share
        if len(state.shares) == len(state.signing_set):
            self._aggregate(env.epoch, env.round, state)

    def _release_early(self, epoch: Epoch, round: RoundId, state: RoundState) -> None:
        early, state.early_shares = state.early_shares, []
        for env, sender, body in early:
            try:
                self.on_share(env, sender, body)
            except Dropped as exc:
                self.stats.drop(env.sender, exc, epoch=epoch, round=round)

    def _retry(self, epoch: Epoch, round: RoundId, state: RoundState) -> None:
        assert state.commitments is not None and state.report_digest is not None
        attempt = state.attempt + 1
        members = self.choose(state.commitments, state.excluded, attempt)
        if members is None:
            _stop_waiting(state)  # nobody left to wait for
            self.stats.signing_exhausted += 1
            log.warning("signing attempt %d: fewer than %d members left with unspent nonces; the round attests "
                        "nothing (excluded: %s)", attempt, self.committee.threshold, sorted(state.excluded),
                        extra={"epoch": epoch, "round": round})
            return
        self.stats.signing_retries += 1
        state.signing_set, state.attempt, state.shares = members, attempt, {}
        self._await_shares(epoch, round, state)
        self.outbox.broadcast(Kind.SIGNING_SET, epoch, round,
                              SigningSet(report_digest=to_hex(state.report_digest), attempt=attempt, members=members))

    def _await_shares(self, epoch: Epoch, round: RoundId, state: RoundState) -> None:
        """Leading: give the current set one share timeout to answer."""
        _stop_waiting(state)
        attempt = state.attempt
        state.share_timer = self.clock.call_later(self.share_timeout, lambda: self._shares_due(epoch, round, attempt))

    def _shares_due(self, epoch: Epoch, round: RoundId, attempt: int) -> None:
        """The share timeout of `attempt` ran out: the members of its set that sent no valid
        share are excluded for the round, as for a bad share, and another set is asked."""
        state = self.rounds.get(epoch, round)
        if state is None or state.attested or state.attempt != attempt or state.signing_set is None:
            return
        state.share_timer = None
        silent = [m for m in state.signing_set if m not in state.shares]
        for member in silent:
            address = self.committee.signers[member]
            self.stats.dropped[(address, "silent")] += 1
            log.warning("member %d (%s) sent no signature share for attempt %d within %d ms; excluded for this round",
                        member, address, attempt, self.committee.offchain.share_timeout_ms,
                        extra={"epoch": epoch, "round": round, "peer": address})
        state.excluded.update(silent)
        self._retry(epoch, round, state)

    def _aggregate(self, epoch: Epoch, round: RoundId, state: RoundState) -> None:
        assert state.commitments is not None and state.report_digest is not None and state.signing_set is not None
        _stop_waiting(state)
        commitments = {m: state.commitments[m][state.attempt] for m in state.signing_set}
        packed = self.aggregator.aggregate(state.report_digest, commitments, dict(state.shares))
        self._on_signature(epoch, round, state, packed.signatures)

    # --- attested reports ----------------------------------------------------------------

    def verify(self, report_digest: bytes, schnorr: bytes) -> None:
        """Raises SignatureRejected unless `schnorr` (the contract's form) is the group's
        signature of `report_digest`."""
        if not frost.verify(schnorr_point(schnorr), self.group_public_key, report_digest):
            raise SignatureRejected("the Schnorr signature does not verify under the committee's group key")
