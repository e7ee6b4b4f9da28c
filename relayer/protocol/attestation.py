"""Attestation: from co-signatures to a self-certifying `AttestedReport`.

The leader collects co-signatures of the report it proposed; each is checked against the
report this node signed itself (a different digest is an equivocation, counted even after
the quorum). Co-signatures that arrive before this node has signed the proposal are kept
(a bounded few) and checked once it has. With `threshold` valid signatures the leader
broadcasts the attested report; any node accepts an attested report it verifies on its
own: it decodes, and carries at least `threshold` distinct members' valid signatures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from relayer.chain.codec import PackedSignatures, ReportDomain
from relayer.chain.errors import CodecError
from relayer.protocol.committee import Committee
from relayer.protocol.errors import Dropped, Ignored, InvalidMessage, SignatureRejected
from relayer.protocol.messages import Attested, Envelope, Epoch, Kind, ReportSignature, RoundId, from_hex, to_hex
from relayer.protocol.outbox import Outbox
from relayer.protocol.pacemaker import Pacemaker
from relayer.protocol.report import decode_carried
from relayer.protocol.round_state import Rounds, RoundState, Stats
from relayer.protocol.signer import ReportSigner
from relayer.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttestedReport:
    config_digest: bytes
    epoch: Epoch
    round: RoundId
    updates: bytes
    signatures: tuple[tuple[int, bytes], ...]
    started_at: float | None = None
    # Scheme 0x0002: the one Schnorr signature in the contract's form (R's x and y, z); the
    # per-member `signatures` are then empty.
    schnorr: bytes | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.epoch, self.round)

    def contract_signatures(self) -> list[tuple[int, bytes]] | PackedSignatures:
        """What `QuorumOracle.transmit` takes for this report's scheme."""
        if self.schnorr is not None:
            return PackedSignatures(0, self.schnorr)
        return list(self.signatures)


class Attestation:
    def __init__(self, *, committee: Committee, index: int, signer: ReportSigner, domain: ReportDomain,
                 store: Store, outbox: Outbox, pacemaker: Pacemaker, rounds: Rounds, stats: Stats,
                 on_attested: Callable[[AttestedReport], Awaitable[None]],
                 verify_schnorr: Callable[[bytes, bytes], None] | None = None) -> None:
        self.committee = committee
        # Scheme 0x0002: checks (report digest, Schnorr signature) against the group key.
        self.verify_schnorr = verify_schnorr
        self.index = index
        self.signer = signer
        self.domain = domain
        self.store = store
        self.outbox = outbox
        self.pacemaker = pacemaker
        self.rounds = rounds
        self.stats = stats
        self._on_attested = on_attested
        self._tasks: set[asyncio.Task[None]] = set()

    # --- co-signatures ------------------------------------------------------------------

    def on_report_signature(self, env: Envelope, sender: int, body: ReportSignature) -> None:
        state = self.rounds.state(env.epoch, env.round)
        if state.report_digest is None:
            if state.attested:
                raise Ignored("late_signature", f"co-signature for round {env.round}, attested already")
            # A co-signature may overtake the proposal; keep a bounded few until we have signed.
            if len(state.early_signatures) >= self.committee.n:
                raise Ignored("early_buffer_full", f"{self.committee.n} early co-signatures kept for round {env.round}")
            state.early_signatures.append((env, sender, body))
            return
        if from_hex(body.report_digest) != state.report_digest:
            raise InvalidMessage("conflicting_signature", f"{env.sender} signed another report for this round")
        if state.attested:
            # Checked for a conflict above, even when it comes after the quorum.
            raise Ignored("late_signature", f"co-signature for round {env.round}, attested already")
        signature = from_hex(body.signature)
        try:
            self.signer.verify(state.report_digest, ((sender, signature),), self.committee)
        except SignatureRejected as exc:
            raise InvalidMessage("bad_signature", f"report signature sent by {env.sender}: {exc}") from None
        state.signatures[sender] = signature
        if len(state.signatures) >= self.committee.threshold:
            self._quorum(env.epoch, env.round, state)

    def release_early(self, epoch: Epoch, round: RoundId) -> None:
        """Check the co-signatures that came before this node signed the round's report."""
        state = self.rounds.state(epoch, round)
        early, state.early_signatures = state.early_signatures, []
        for env, sender, body in early:
            try:
                self.on_report_signature(env, sender, body)
            except Dropped as exc:
                self.stats.drop(env.sender, exc, epoch=epoch, round=round)

    def _quorum(self, epoch: Epoch, round: RoundId, state: RoundState) -> None:
        chosen = tuple(sorted(state.signatures.items())[: self.committee.threshold])
        report = AttestedReport(self.committee.config_digest, epoch, round, state.updates or b"", chosen,
                                state.started_at)
        self._attested(report, state)
        if self.committee.leader(epoch) == self.index:
            # Not to ourselves: we hold it already.
            self.outbox.broadcast(
                Kind.ATTESTED, epoch, round,
                Attested(updates=to_hex(report.updates), signatures=tuple((i, to_hex(s)) for i, s in chosen)),
                to_self=False,
            )

    def threshold_quorum(self, epoch: Epoch, round: RoundId, state: RoundState, schnorr: bytes) -> None:
        """Scheme 0x0002, leading: the signing set's shares made one signature."""
        report = AttestedReport(self.committee.config_digest, epoch, round, state.updates or b"", (),
                                state.started_at, schnorr)
        self._attested(report, state)
        self.outbox.broadcast(Kind.ATTESTED, epoch, round,
                              Attested(updates=to_hex(report.updates), signatures=(), schnorr=to_hex(schnorr)),
                              to_self=False)

    # --- attested reports -----------------------------------------------------------

    def verify(self, epoch: Epoch, round: RoundId, updates: bytes, signatures: Sequence[tuple[int, bytes]],
               schnorr: bytes | None = None) -> None:
        """Check an attested report on its own: decodable, and >= threshold distinct committee
        signatures (0x0001) or one Schnorr signature under the group key (0x0002)."""
        try:
            decode_carried(updates)
        except CodecError as exc:
            raise InvalidMessage("bad_attested", f"updates do not decode: {exc}") from None
        if self.verify_schnorr is not None:
            if schnorr is None or signatures:
                raise InvalidMessage("bad_attested", "under scheme 0x0002 a report carries one Schnorr signature "
                                                     "and no per-member signatures")
            try:
                self.verify_schnorr(self.domain.report_digest(self.committee.config_digest, epoch, round, updates),
                                    schnorr)
            except SignatureRejected as exc:
                raise InvalidMessage("bad_attested", str(exc)) from None
            return
        if schnorr is not None:
            raise InvalidMessage("bad_attested", "a Schnorr signature under scheme 0x0001")
        if len({i for i, _ in signatures}) != len(signatures) or len(signatures) < self.committee.threshold:
            raise InvalidMessage(
                "bad_attested", f"{len(signatures)} signatures (distinct required), threshold {self.committee.threshold}"
            )
        report_digest = self.domain.report_digest(self.committee.config_digest, epoch, round, updates)
        try:
            self.signer.verify(report_digest, signatures, self.committee)
        except SignatureRejected as exc:
            raise InvalidMessage("bad_attested", str(exc)) from None

    def on_attested(self, env: Envelope, sender: int, body: Attested) -> None:
        state = self.rounds.state(env.epoch, env.round)
        if state.attested:
            raise Ignored("duplicate_attested", f"round {env.round} is attested already")
        updates = from_hex(body.updates)
        signatures = tuple((i, from_hex(s)) for i, s in body.signatures)
        schnorr = from_hex(body.schnorr) if body.schnorr is not None else None
        self.verify(env.epoch, env.round, updates, signatures, schnorr)
        self._attested(AttestedReport(self.committee.config_digest, env.epoch, env.round, updates, signatures,
                                      schnorr=schnorr), state)

    def adopt_landed(self, epoch: Epoch, round: RoundId, updates: bytes, signatures: Sequence[tuple[int, bytes]]) -> bool:
        """An attested report this node missed, read back from the transaction that landed it:
        checked like one from the wire, then kept and handed on as if it had arrived. False
        when this node holds it already."""
        state = self.rounds.state(epoch, round)
        if state.attested or self.store.attested_report(epoch, round, self.committee.digest_hex) is not None:
            return False
        self.verify(epoch, round, updates, signatures)
        self.stats.adopted_from_chain += 1
        # Not progress for the pacemaker: the committee made it, but this node did not hear it;
        # a node that only reads landings back is still cut off from the rounds.
        self._attested(AttestedReport(self.committee.config_digest, epoch, round, updates, tuple(signatures)), state,
                       progress=False)
        return True

    def _attested(self, report: AttestedReport, state: RoundState, *, progress: bool = True) -> None:
        state.attested = True
        state.done.set()
        if progress:
            self.pacemaker.progress(report.epoch)
        self.stats.reports_attested += 1
        observations: list[dict[str, Any]] | None = state.observation_dicts
        # Under 0x0002 the store's signature list holds one entry: (0, the Schnorr signature).
        kept = list(report.signatures) if report.schnorr is None else [(0, report.schnorr)]
        fresh = self.store.record_attested(
            self.committee.digest_hex, report.epoch, report.round, report.updates, kept,
            observations, report.started_at,
        )
        if not fresh:
            return
        log.info("report attested with %d signatures", len(report.signatures) or 1,
                 extra={"epoch": report.epoch, "round": report.round})
        task = asyncio.create_task(self._handle(report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, report: AttestedReport) -> None:
        await self._on_attested(report)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
