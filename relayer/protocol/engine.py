"""The round protocol (after Chainlink OCR, simplified): pacemaker, leader and follower.

One `RoundEngine` per node, on the node's asyncio loop. It is transport-agnostic: it
gets bytes with the authenticated sender address from the p2p host and hands bytes to
`publish`. Every message is re-verified here whatever the transport claimed.

Epochs have a leader chosen by a PRF of (config digest, epoch). The leader runs rounds
at the configured interval: ObserveRequest -> signed Observations -> Proposal (the
observations it used) -> followers recompute, then co-sign (EIP-712) -> with `threshold`
signatures any node holds a self-certifying AttestedReport. No attested report within
the progress timeout moves a node to the next epoch; a node also follows f+1 committee
members into a higher epoch, since at least one of them is honest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from relayer.chain.codec import ReportDomain, decode_updates, encode_updates, recover_address, sign_digest
from relayer.chain.errors import CodecError
from relayer.protocol.committee import Committee
from relayer.protocol.errors import EquivocationRefused, InvalidMessage, ReportMismatch
from relayer.protocol.messages import (
    Attested,
    Envelope,
    Kind,
    NewEpoch,
    Observation,
    ObserveRequest,
    Proposal,
    ReportSignature,
    open_envelope,
    parse_body,
    seal,
)
from relayer.protocol.report import build_updates
from relayer.store import Store

log = logging.getLogger(__name__)

_KEEP_ROUNDS = 64
_SEEN_ENVELOPES = 4096
_OWN_SEALED_MAX = 64
# An observation this far from the report's median (in basis points) is counted against its sender.
OUTLIER_BPS = 1000


@dataclass(frozen=True)
class AttestedReport:
    config_digest: bytes
    epoch: int
    round: int
    updates: bytes
    signatures: tuple[tuple[int, bytes], ...]
    started_at: float | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.epoch, self.round)


@dataclass
class _RoundState:
    started_at: float | None = None
    observations: dict[int, Envelope] = field(default_factory=dict)
    proposal_task: asyncio.TimerHandle | None = None
    proposed: bool = False
    updates: bytes | None = None
    report_digest: bytes | None = None
    observation_dicts: list[dict[str, Any]] | None = None
    signatures: dict[int, bytes] = field(default_factory=dict)
    early_signatures: list[Envelope] = field(default_factory=list)
    own_proposal: Proposal | None = None  # as the leader built it, before it went out
    attested: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Stats:
    """Counters the node exposes; drops are counted per (peer, reason)."""

    def __init__(self) -> None:
        self.dropped: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.refused: defaultdict[str, int] = defaultdict(int)
        self.rounds_started = 0
        self.reports_attested = 0
        self.epoch_changes = 0


class RoundEngine:
    def __init__(
        self,
        *,
        private_key: bytes,
        address: str,
        committee: Committee,
        domain: ReportDomain,
        store: Store,
        observe: Callable[[], Observation],
        publish: Callable[[bytes], None],
        on_attested: Callable[[AttestedReport], Awaitable[None]],
        send_to: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._key = private_key
        self.address = address
        self.committee = committee
        self.domain = domain
        self.store = store
        self._observe = observe
        self._publish = publish
        # Point-to-point path for messages only the leader needs (observations); without
        # one, they are broadcast like everything else.
        self._send_to = send_to
        self._on_attested = on_attested
        self.stats = Stats()
        self.epoch = 0
        self.round = 0  # the leader's latest round in the current epoch
        self._rounds: dict[tuple[int, int], _RoundState] = {}
        self._epoch_senders: defaultdict[int, set[int]] = defaultdict(set)
        self._last_progress = time.monotonic()
        self._epoch_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._attested_tasks: set[asyncio.Task[None]] = set()
        # Signatures of envelopes already handled: gossip dedups by its own message id, so an
        # envelope published again under a new gossip id is a replay.
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Our own envelopes on their way back to us (the loopback in _send_raw): no need to
        # parse and recover what we have just sealed.
        self._own_sealed: dict[bytes, Envelope] = {}
        me = committee.index_of(address)
        if me is None:
            raise EquivocationRefused(f"{address} is not in the committee; this node can only watch")
        self.index = me

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        saved = self.store.get_state(f"epoch:{self.committee.digest_hex}")
        if saved is not None:
            # Resume in the epoch we left: rounds of it we already signed stay refused by the store.
            self.epoch = int(saved)
        self._tasks = [
            asyncio.create_task(self._lead(), name="leader"),
            asyncio.create_task(self._pacemaker(), name="pacemaker"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._attested_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._attested_tasks, return_exceptions=True)
        self._tasks = []

    @property
    def digest(self) -> str:
        return self.committee.digest_hex

    def _timing(self) -> tuple[float, float, float]:
        o = self.committee.offchain
        return o.round_interval_ms / 1000, o.progress_timeout_ms / 1000, o.grace_ms / 1000

    def _state(self, epoch: int, round: int) -> _RoundState:
        key = (epoch, round)
        state = self._rounds.get(key)
        if state is None:
            state = self._rounds[key] = _RoundState()
            if len(self._rounds) > _KEEP_ROUNDS:
                for old in sorted(self._rounds)[: len(self._rounds) - _KEEP_ROUNDS]:
                    del self._rounds[old]
        return state

    # --- pacemaker ------------------------------------------------------------------

    def _move_to_epoch(self, epoch: int, why: str) -> None:
        if epoch <= self.epoch:
            return
        log.info(
            "moving to epoch %d (%s); leader is %d", epoch, why, self.committee.leader(epoch),
            extra={"epoch": epoch, "round": 0},
        )
        self.epoch = epoch
        self.round = 0
        self.stats.epoch_changes += 1
        self._last_progress = time.monotonic()
        self.store.set_state(f"epoch:{self.digest}", str(epoch))
        self._epoch_changed.set()

    async def _pacemaker(self) -> None:
        _, progress_timeout, _ = self._timing()
        while True:
            await asyncio.sleep(min(progress_timeout / 4, 0.25))
            if time.monotonic() - self._last_progress > progress_timeout:
                target = self.epoch + 1
                self._broadcast(Kind.NEW_EPOCH, target, 0, NewEpoch())
                self._move_to_epoch(target, "progress timeout")

    def _note_epoch_sender(self, epoch: int, sender: int) -> None:
        if epoch <= self.epoch:
            return
        self._epoch_senders[epoch].add(sender)
        # The highest epoch that f+1 distinct members have reached or passed.
        seen: set[int] = set()
        for e in sorted(self._epoch_senders, reverse=True):
            seen |= self._epoch_senders[e]
            if len(seen) >= self.committee.f + 1:
                self._move_to_epoch(e, f"{len(seen)} members are there")
                break
        for e in [e for e in self._epoch_senders if e <= self.epoch]:
            del self._epoch_senders[e]

    # --- leader ---------------------------------------------------------------------

    async def _lead(self) -> None:
        while True:
            interval, progress_timeout, _ = self._timing()
            if self.committee.leader(self.epoch) != self.index:
                self._epoch_changed.clear()
                await self._epoch_changed.wait()
                continue
            epoch = self.epoch
            self.round += 1
            round = self.round
            state = self._state(epoch, round)
            state.started_at = time.time()
            self.stats.rounds_started += 1
            self._broadcast(Kind.OBSERVE_REQUEST, epoch, round, ObserveRequest(started_at_ms=int(state.started_at * 1000)))
            try:
                # One round interval at most: a round that needs longer overlaps the next one,
                # and only the pacemaker's progress timeout gives up on the epoch.
                await asyncio.wait_for(state.done.wait(), timeout=interval)
            except TimeoutError:
                log.warning("round timed out without an attested report", extra={"epoch": epoch, "round": round})
            elapsed = time.time() - state.started_at
            await asyncio.sleep(max(0.0, interval - elapsed))

    def _on_observation(self, env: Envelope, sender: int, body: Observation) -> None:
        if self.committee.leader(env.epoch) != self.index or env.epoch != self.epoch:
            return  # observations go to the leader; others ignore them
        state = self._rounds.get((env.epoch, env.round))
        if state is None or state.started_at is None or state.proposed:
            return
        if sender in state.observations:
            self.stats.dropped[(env.sender, "duplicate_observation")] += 1
            return
        state.observations[sender] = env
        count = len(state.observations)
        if count >= self.committee.n:
            self._propose(env.epoch, env.round)
        elif count >= self.committee.quorum and state.proposal_task is None:
            _, _, grace = self._timing()
            state.proposal_task = asyncio.get_running_loop().call_later(grace, self._propose, env.epoch, env.round)

    def _propose(self, epoch: int, round: int) -> None:
        state = self._rounds.get((epoch, round))
        if state is None or state.proposed or epoch != self.epoch:
            return
        state.proposed = True
        if state.proposal_task is not None:
            state.proposal_task.cancel()
        chosen = [state.observations[i] for i in sorted(state.observations)]
        bodies = [Observation.model_validate(e.body) for e in chosen]
        built = build_updates(bodies, quorum=self.committee.quorum)
        self._count_outliers(chosen, bodies, built)
        updates = encode_updates(built)
        if not updates:
            log.warning("no feed has a quorum of observations; nothing to propose", extra={"epoch": epoch, "round": round})
            return
        proposal = Proposal(observations=tuple(e.to_dict() for e in chosen), updates="0x" + updates.hex())
        state.own_proposal = proposal
        self._broadcast(Kind.PROPOSAL, epoch, round, proposal)

    def _count_outliers(self, chosen: list[Envelope], bodies: list[Observation], built: list[Any]) -> None:
        """Count, per peer, observations far from the report's median: the median ignores them,
        an operator should still see who sends them."""
        medians = {u.feed_index: u.value for u in built}
        for env, body in zip(chosen, bodies):
            for feed in body.feeds:
                median = medians.get(feed.feed_index)
                if median and abs(feed.value - median) * 10_000 > OUTLIER_BPS * abs(median):
                    self.stats.dropped[(env.sender, "outlier_observation")] += 1
                    break

    # --- inbound --------------------------------------------------------------------

    def on_wire(self, sender_address: str, data: bytes, opened: Envelope | None = None) -> None:
        """Entry point for bytes from the network; never raises.

        ``opened`` is the same bytes already parsed and authenticated by the transport's
        validator (:func:`open_envelope`), which spares a second signature recovery.
        """
        try:
            if opened is None and sender_address == self.address:
                opened = self._own_sealed.pop(data, None)
            env = opened if opened is not None else open_envelope(data)
            if env.sender.lower() != sender_address.lower():
                raise InvalidMessage("sender_mismatch", f"envelope from {env.sender} relayed as {sender_address}")
            if env.sig in self._seen:
                raise InvalidMessage("replayed", f"{env.kind.value} for epoch {env.epoch} round {env.round} seen before")
            self._seen[env.sig] = None
            if len(self._seen) > _SEEN_ENVELOPES:
                self._seen.popitem(last=False)
            self._handle(env)
        except InvalidMessage as exc:
            self.stats.dropped[(sender_address, exc.reason)] += 1
            log.warning("dropped message from %s: %s", sender_address, exc, extra={"peer": sender_address})
        except Exception:
            # A bug must cost one message, never the node.
            self.stats.dropped[(sender_address, "internal_error")] += 1
            log.exception("error handling message from %s", sender_address, extra={"peer": sender_address})

    def _handle(self, env: Envelope) -> None:
        if env.digest != self.digest:
            raise InvalidMessage("wrong_digest", f"{env.digest[:12]} is not the current config digest {self.digest[:12]}")
        sender = self.committee.index_of(env.sender)
        if sender is None:
            raise InvalidMessage("not_in_committee", f"{env.sender} is not a committee signer")
        body = parse_body(env)
        self._note_epoch_sender(env.epoch, sender)
        if isinstance(body, ObserveRequest):
            self._on_observe_request(env, sender)
        elif isinstance(body, Observation):
            self._on_observation(env, sender, body)
        elif isinstance(body, Proposal):
            self._on_proposal(env, sender, body)
        elif isinstance(body, ReportSignature):
            self._on_report_signature(env, sender, body)
        elif isinstance(body, Attested):
            self._on_attested_message(env, body)
        # NewEpoch carries nothing beyond its epoch, already noted above.

    def _on_observe_request(self, env: Envelope, sender: int) -> None:
        if env.epoch != self.epoch:
            return
        if self.committee.leader(env.epoch) != sender:
            raise InvalidMessage("not_leader", f"observe request for epoch {env.epoch} from a non-leader")
        existing = self.store.signed_observation(self.digest, env.epoch, env.round)
        if existing is not None:
            self._send_to_leader(env.epoch, existing.encode())
            return
        try:
            self.store.check_observation_allowed(self.digest, env.epoch, env.round)
        except EquivocationRefused as exc:
            self.stats.refused["observation"] += 1
            log.warning("%s", exc, extra={"epoch": env.epoch, "round": env.round})
            return
        observation = self._observe()
        encoded = self._seal(Kind.OBSERVATION, env.epoch, env.round, observation)
        self.store.record_observation(self.digest, env.epoch, env.round, encoded.decode())
        self._send_to_leader(env.epoch, encoded)

    def _verify_proposal(self, env: Envelope, body: Proposal) -> tuple[bytes, list[dict[str, Any]]]:
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
            parsed = parse_body(inner)
            assert isinstance(parsed, Observation)
            observations.append(parsed)
            inners.append(inner)
        if len(observations) < self.committee.quorum:
            raise InvalidMessage(
                "bad_proposal", f"{len(observations)} observations, a report needs {self.committee.quorum}"
            )
        built = build_updates(observations, quorum=self.committee.quorum)
        updates = encode_updates(built)
        proposed = bytes.fromhex(body.updates[2:])
        if updates != proposed or not updates:
            raise InvalidMessage("bad_proposal", str(ReportMismatch(
                f"leader proposed {proposed.hex()[:24]}.., recomputed {updates.hex()[:24]}.."
            )))
        if self.committee.leader(env.epoch) != self.index:  # the leader counted them when proposing
            self._count_outliers(inners, observations, built)
        return updates, list(body.observations)

    def _on_proposal(self, env: Envelope, sender: int, body: Proposal) -> None:
        if env.epoch != self.epoch:
            return
        if self.committee.leader(env.epoch) != sender:
            raise InvalidMessage("not_leader", f"proposal for epoch {env.epoch} from a non-leader")
        state = self._state(env.epoch, env.round)
        if state.updates is not None:
            return
        if sender == self.index and body == state.own_proposal:
            # Our own proposal, exactly as we built it from observations we had verified.
            updates, observation_dicts = bytes.fromhex(body.updates[2:]), list(body.observations)
        else:
            updates, observation_dicts = self._verify_proposal(env, body)
        report_digest = self.domain.report_digest(self.committee.config_digest, env.epoch, env.round, updates)
        try:
            earlier = self.store.check_report_allowed(self.digest, env.epoch, env.round, report_digest)
        except EquivocationRefused as exc:
            self.stats.refused["report"] += 1
            log.warning("%s", exc, extra={"epoch": env.epoch, "round": env.round})
            return
        signature = earlier.signature if earlier else sign_digest(self._key, report_digest)
        self.store.record_report_signature(self.digest, env.epoch, env.round, report_digest, updates, signature)
        state.updates, state.report_digest, state.observation_dicts = updates, report_digest, observation_dicts
        self._send_report_signature(
            env.epoch, env.round,
            ReportSignature(report_digest="0x" + report_digest.hex(), signature="0x" + signature.hex()),
        )
        for early in state.early_signatures:
            self._on_report_signature(early, self.committee.index_of(early.sender) or 0, parse_body(early))  # type: ignore[arg-type]
        state.early_signatures.clear()

    def _on_report_signature(self, env: Envelope, sender: int, body: ReportSignature) -> None:
        state = self._state(env.epoch, env.round)
        if state.report_digest is None:
            if state.attested:
                return
            # Gossip may deliver a co-signature before the proposal; keep a bounded few.
            if len(state.early_signatures) < self.committee.n:
                state.early_signatures.append(env)
            return
        if body.report_digest != "0x" + state.report_digest.hex():
            raise InvalidMessage("conflicting_signature", f"{env.sender} signed another report for this round")
        if state.attested:
            return  # checked for conflict above, even when it comes after the quorum
        signature = bytes.fromhex(body.signature[2:])
        try:
            signer = recover_address(state.report_digest, signature)
        except CodecError as exc:
            raise InvalidMessage("bad_signature", str(exc)) from None
        if signer.lower() != env.sender.lower():
            raise InvalidMessage("bad_signature", f"report signature by {signer}, sent by {env.sender}")
        state.signatures[sender] = signature
        if len(state.signatures) >= self.committee.threshold:
            chosen = sorted(state.signatures.items())[: self.committee.threshold]
            report = AttestedReport(
                self.committee.config_digest, env.epoch, env.round, state.updates or b"", tuple(chosen), state.started_at
            )
            self._attested(report, state.observation_dicts)
            if self.committee.leader(env.epoch) == self.index:
                self._broadcast(
                    Kind.ATTESTED, env.epoch, env.round,
                    Attested(updates="0x" + report.updates.hex(), signatures=tuple((i, "0x" + s.hex()) for i, s in chosen)),
                )

    def verify_attested(self, epoch: int, round: int, updates: bytes, signatures: list[tuple[int, bytes]]) -> None:
        """Check an attested report on its own: decodable, >= threshold distinct committee signatures."""
        try:
            decode_updates(updates)
        except CodecError as exc:
            raise InvalidMessage("bad_attested", f"updates do not decode: {exc}") from None
        if len({i for i, _ in signatures}) != len(signatures) or len(signatures) < self.committee.threshold:
            raise InvalidMessage(
                "bad_attested", f"{len(signatures)} signatures (distinct required), threshold {self.committee.threshold}"
            )
        report_digest = self.domain.report_digest(self.committee.config_digest, epoch, round, updates)
        for index, signature in signatures:
            if not 0 <= index < self.committee.n:
                raise InvalidMessage("bad_attested", f"signer index {index} outside the committee")
            try:
                signer = recover_address(report_digest, signature)
            except CodecError as exc:
                raise InvalidMessage("bad_attested", str(exc)) from None
            if signer.lower() != self.committee.signers[index].lower():
                raise InvalidMessage("bad_attested", f"signature {index} is by {signer}, not {self.committee.signers[index]}")

    def _on_attested_message(self, env: Envelope, body: Attested) -> None:
        state = self._state(env.epoch, env.round)
        if state.attested:
            return
        updates = bytes.fromhex(body.updates[2:])
        signatures = [(i, bytes.fromhex(s[2:])) for i, s in body.signatures]
        self.verify_attested(env.epoch, env.round, updates, signatures)
        report = AttestedReport(self.committee.config_digest, env.epoch, env.round, updates, tuple(signatures))
        self._attested(report, state.observation_dicts)

    def _attested(self, report: AttestedReport, observation_dicts: list[dict[str, Any]] | None) -> None:
        state = self._state(report.epoch, report.round)
        state.attested = True
        state.done.set()
        if report.epoch == self.epoch:
            self._last_progress = time.monotonic()
        self.stats.reports_attested += 1
        fresh = self.store.record_attested(
            self.digest, report.epoch, report.round, report.updates, list(report.signatures),
            observation_dicts, report.started_at,
        )
        if not fresh:
            return
        log.info(
            "report attested with %d signatures", len(report.signatures),
            extra={"epoch": report.epoch, "round": report.round},
        )
        task = asyncio.create_task(self._on_attested(report))
        self._attested_tasks.add(task)
        task.add_done_callback(self._attested_tasks.discard)

    # --- outbound -------------------------------------------------------------------

    def _seal(self, kind: Kind, epoch: int, round: int, body: Any) -> bytes:
        env = seal(
            private_key=self._key, sender=self.address, kind=kind,
            config_digest=self.committee.config_digest, epoch=epoch, round=round, body=body,
        )
        data = env.encode()
        if len(self._own_sealed) >= _OWN_SEALED_MAX:  # a fault-injected engine may never send
            self._own_sealed.clear()
        self._own_sealed[data] = env
        return data

    def _broadcast(self, kind: Kind, epoch: int, round: int, body: Any) -> None:
        self._send_raw(self._seal(kind, epoch, round, body))

    def _send_report_signature(self, epoch: int, round: int, body: ReportSignature) -> None:
        """Co-signatures go to the leader, who broadcasts the attested report: n messages a
        round instead of n squared, and no follower spends CPU on others' signatures."""
        self._send_to_leader(epoch, self._seal(Kind.REPORT_SIGNATURE, epoch, round, body))

    def _send_to_leader(self, epoch: int, data: bytes) -> None:
        leader = self.committee.leader(epoch)
        if leader == self.index:
            asyncio.get_running_loop().call_soon(self.on_wire, self.address, data)
        elif self._send_to is not None:
            self._send_to(self.committee.signers[leader], data)
        else:
            self._send_raw(data)

    def _send_raw(self, data: bytes) -> None:
        """Publish to the others and deliver to ourselves: gossip does not loop back."""
        self._publish(data)
        asyncio.get_running_loop().call_soon(self.on_wire, self.address, data)
