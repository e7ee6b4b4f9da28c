"""Test-only misbehaviour for real nodes: each fault attacks one check that honest nodes or
the contract must make.

A fault never reaches into the engine: it wraps what the engine is given, the wire below
the outbox (what leaves the process, as bytes), the outbox (what the protocol phases send)
or the observe callable (what the node says it saw). `FaultyEngineFactory` builds an
ordinary `RoundEngine` around those wrappers; only `python -m relayer.testing` hands one to
a node, and only on a local devnet (`relayer.testing.run`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import resource
import secrets
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

from pydantic import BaseModel

from relayer.chain.codec import FeedUpdate, ReportDomain, decode_updates, encode_updates, keccak
from relayer.protocol.clock import Clock
from relayer.protocol.committee import Committee
from relayer.protocol.engine import EngineInputs, RoundEngine
from relayer.protocol.messages import (
    Envelope,
    Epoch,
    FeedObservation,
    Kind,
    Observation,
    Proposal,
    ReportSignature,
    RoundId,
    from_hex,
    open_envelope,
    seal,
    to_hex,
)
from relayer.protocol.outbox import Outbox
from relayer.protocol.report import build_updates, decode_carried, encode_carried
from relayer.protocol.signer import EcdsaReportSigner

log = logging.getLogger(__name__)

Publish = Callable[[bytes], None]
SendTo = Callable[[str, bytes], None]
Observe = Callable[[], Observation]


class UnknownFault(ValueError):
    """No fault of that name; the message lists the known ones."""


@dataclass(frozen=True)
class FaultContext:
    """What a fault may use besides the engine's inputs: the node's key, as the node itself has it."""

    private_key: bytes
    address: str
    committee: Committee
    domain: ReportDomain


class OutboxWrapper(Outbox):
    """Passes everything to the wrapped outbox; a fault overrides what it lies about."""

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.committee = inner.committee

    def seal(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel) -> bytes:
        return self.inner.seal(kind, epoch, round, body)

    def send_all(self, data: bytes, *, to_self: bool = True) -> None:
        self.inner.send_all(data, to_self=to_self)

    def send_to(self, index: int, data: bytes) -> None:
        self.inner.send_to(index, data)


class Fault:
    """Honest by default: each hook returns what it was given."""

    name: ClassVar[str]

    def __init__(self, ctx: FaultContext) -> None:
        self.ctx = ctx

    def wire(self, publish: Publish, send_to: SendTo | None) -> tuple[Publish, SendTo | None]:
        return publish, send_to

    def outbox(self, outbox: Outbox) -> Outbox:
        return outbox

    def observe(self, observe: Observe) -> Observe:
        return observe

    def admits(self, sender: str) -> bool:
        """Whether a message from `sender` reaches the engine."""
        return True


class Silent(Fault):
    """Connected but mute: nothing leaves the process (a withholding leader, a hung follower)."""

    name = "silent"

    def wire(self, publish: Publish, send_to: SendTo | None) -> tuple[Publish, SendTo | None]:
        return (lambda data: None), (lambda address, data: None)


class _ProposalLie(OutboxWrapper):
    def __init__(self, inner: Outbox, change: Callable[[Proposal], Proposal]) -> None:
        super().__init__(inner)
        self._change = change

    def broadcast(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel, *, to_self: bool = True) -> None:
        if isinstance(body, Proposal):
            body = self._change(body)
        super().broadcast(kind, epoch, round, body, to_self=to_self)


class WrongMedian(Fault):
    """As leader, proposes honest observations with a value of its own choosing."""

    name = "wrong_median"

    def outbox(self, outbox: Outbox) -> Outbox:
        def skew(proposal: Proposal) -> Proposal:
            updates = decode_updates(from_hex(proposal.updates))
            skewed = [FeedUpdate(u.feed_index, u.observed_at, u.num_sources, u.value * 2) for u in updates]
            return Proposal(observations=proposal.observations, updates=to_hex(encode_updates(skewed)))

        return _ProposalLie(outbox, skew)


class DropObservations(Fault):
    """As leader, proposes fewer than 2f+1 observations (its own and f others)."""

    name = "drop_observations"

    def outbox(self, outbox: Outbox) -> Outbox:
        keep = self.ctx.committee.f + 1
        return _ProposalLie(outbox, lambda p: Proposal(observations=p.observations[:keep], updates=p.updates))


class PadReport(Fault):
    """As leader under the trigger policy, carries every feed with a quorum, whether it
    triggered or not (a leader that makes the network pay for updates nobody needs)."""

    name = "pad_report"

    def outbox(self, outbox: Outbox) -> Outbox:
        quorum = self.ctx.committee.quorum

        def pad(proposal: Proposal) -> Proposal:
            bodies = [Observation.model_validate(o["body"]) for o in proposal.observations]
            return Proposal(observations=proposal.observations,
                            updates=to_hex(encode_carried(build_updates(bodies, quorum=quorum))))

        return _ProposalLie(outbox, pad)


class WithholdFeed(Fault):
    """As leader under the trigger policy, leaves out the first feed that triggered (a leader
    that keeps a moved value off the chain)."""

    name = "withhold_feed"

    def outbox(self, outbox: Outbox) -> Outbox:
        def withhold(proposal: Proposal) -> Proposal:
            carried = decode_carried(from_hex(proposal.updates))
            return Proposal(observations=proposal.observations, updates=to_hex(encode_carried(carried[1:])))

        return _ProposalLie(outbox, withhold)


class ForgeObservation(Fault):
    """As leader, alters one honest observation it forwards (its signature no longer holds)."""

    name = "forge_observation"

    def outbox(self, outbox: Outbox) -> Outbox:
        def forge(proposal: Proposal) -> Proposal:
            forged = json.loads(json.dumps(list(proposal.observations)))
            for feed in forged[-1]["body"]["feeds"]:
                feed["value"] = feed["value"] * 3
            return Proposal(observations=tuple(forged), updates=proposal.updates)

        return _ProposalLie(outbox, forge)


class AbsurdValues(Fault):
    """Observes zero, negative and 1000x values in turn (f such nodes must not move a median)."""

    name = "absurd"

    def observe(self, observe: Observe) -> Observe:
        turn = 0

        def absurd() -> Observation:
            nonlocal turn
            turn += 1
            factor = (0, -1, 1000)[turn % 3]
            return Observation(feeds=tuple(
                FeedObservation(feed_index=f.feed_index, value=f.value * factor, observed_at=f.observed_at,
                                num_sources=f.num_sources)
                for f in observe().feeds
            ))

        return absurd


class _Equivocating(OutboxWrapper):
    def __init__(self, inner: Outbox, fault: Equivocate) -> None:
        super().__init__(inner)
        self._fault = fault

    def to_leader(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel) -> None:
        if not isinstance(body, ReportSignature):
            super().to_leader(kind, epoch, round, body)
            return
        self.broadcast(kind, epoch, round, body)
        other = self._fault.other_report(epoch, round)
        if other is not None:
            self.broadcast(kind, epoch, round, other)


class Equivocate(Fault):
    """Signs a second, different report for every round it co-signs, bypassing its own store,
    and sends both signatures to every member (not only to the leader)."""

    name = "equivocate"

    def __init__(self, ctx: FaultContext) -> None:
        super().__init__(ctx)
        self._last: Observation | None = None
        self._signer = EcdsaReportSigner(ctx.private_key)

    def observe(self, observe: Observe) -> Observe:
        def remembering() -> Observation:
            self._last = observe()
            return self._last

        return remembering

    def outbox(self, outbox: Outbox) -> Outbox:
        return _Equivocating(outbox, self)

    def other_report(self, epoch: Epoch, round: RoundId) -> ReportSignature | None:
        """A signature over a report the leader never proposed: this node's last observation, nudged."""
        if self._last is None or not self._last.feeds:
            return None
        other = encode_updates([FeedUpdate(f.feed_index, f.observed_at, f.num_sources, f.value + 1)
                                for f in self._last.feeds])
        digest = self.ctx.domain.report_digest(self.ctx.committee.config_digest, epoch, round, other)
        return ReportSignature(report_digest=to_hex(digest), signature=to_hex(self._signer.sign(digest)))


class Replay(Fault):
    """Re-publishes its own old messages, and copies of them re-sealed under a foreign digest."""

    name = "replay"

    def wire(self, publish: Publish, send_to: SendTo | None) -> tuple[Publish, SendTo | None]:
        sent: deque[bytes] = deque(maxlen=32)

        def replay(data: bytes) -> None:
            if len(sent) >= 4:
                old = sent[0]
                publish(old)  # an exact replay of an earlier message
                env = open_envelope(old)
                foreign = seal(private_key=self.ctx.private_key, sender=self.ctx.address, kind=env.kind,
                               config_digest=keccak(secrets.token_bytes(8)), epoch=env.epoch, round=env.round,
                               body=env.body)
                publish(foreign.encode())
            sent.append(data)

        def publishing(data: bytes) -> None:
            publish(data)
            replay(data)

        def sending(address: str, data: bytes) -> None:
            (send_to or (lambda _, d: publish(d)))(address, data)
            replay(data)

        return publishing, sending


class Spam(Fault):
    """Publishes oversized and malformed messages besides its honest ones."""

    name = "spam"

    def wire(self, publish: Publish, send_to: SendTo | None) -> tuple[Publish, SendTo | None]:
        def spam() -> None:
            publish(b"this is not json")
            publish(json.dumps({"v": 1, "kind": "observation", "digest": "0x00"}).encode())
            publish(b"{" + b" " * (1 << 20) + b"}")  # over the honest nodes' 1 MiB limit

        def publishing(data: bytes) -> None:
            publish(data)
            spam()

        def sending(address: str, data: bytes) -> None:
            (send_to or (lambda _, d: publish(d)))(address, data)
            spam()

        return publishing, sending


class _Toggled(Fault):
    """A fault switched on by SIGUSR1 and off by the next, honest while off."""

    def __init__(self, ctx: FaultContext) -> None:
        super().__init__(ctx)
        self.on = False
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.toggle)
        except RuntimeError:
            pass  # no running loop (built outside a node): toggled by hand

    def toggle(self) -> None:
        self.on = not self.on
        self.switched()

    def switched(self) -> None:
        """Called after each toggle, with `on` already set."""


class Partition(_Toggled):
    """Cut off from the committee while toggled on by SIGUSR1 (off by the next): nothing leaves,
    nothing from a peer arrives, and the process, its timers and its p2p connections run on, as
    for a node behind a network partition. Honest otherwise."""

    name = "partition"

    @property
    def cut(self) -> bool:
        return self.on

    def switched(self) -> None:
        log.warning("partition fault: %s", "cut off from the committee" if self.cut else "reconnected")

    def wire(self, publish: Publish, send_to: SendTo | None) -> tuple[Publish, SendTo | None]:
        def publishing(data: bytes) -> None:
            if not self.cut:
                publish(data)

        def sending(address: str, data: bytes) -> None:
            if not self.cut:
                (send_to or (lambda _, d: publish(d)))(address, data)

        return publishing, sending

    def admits(self, sender: str) -> bool:
        return not self.cut or sender.lower() == self.ctx.address.lower()


class FdExhaustion(_Toggled):
    """Out of file descriptors while toggled on by SIGUSR1 (off by the next): the process holds
    every descriptor it may open, so each accept(), dial, venue or RPC connection and store file
    it opens fails with EMFILE until they are given back. Honest otherwise.

    The soft RLIMIT_NOFILE is lowered to `limit` first (when higher), so the fault costs the
    machine a few thousand descriptors at most, and restored when they are given back."""

    name = "fd_exhaustion"
    limit = 2048

    def __init__(self, ctx: FaultContext) -> None:
        super().__init__(ctx)
        self.held: list[int] = []
        self._saved_limit: tuple[int, int] | None = None

    def switched(self) -> None:
        if self.on:
            self.exhaust()
            log.warning("fd_exhaustion fault: holding %d file descriptors; none left to open", len(self.held))
        else:
            given = self.give_back()
            log.warning("fd_exhaustion fault: gave back %d file descriptors", given)

    def exhaust(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft > self.limit:
            self._saved_limit = (soft, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.limit, hard))
        while True:
            try:
                self.held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    return
                raise

    def give_back(self) -> int:
        given = len(self.held)
        for fd in self.held:
            os.close(fd)
        self.held.clear()
        if self._saved_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self._saved_limit)
            self._saved_limit = None
        return given


class DiskFull(_Toggled):
    """A full disk while toggled on by SIGUSR1 (off by the next): every write of the process to
    a file fails with EFBIG (the store's, the log's), as on a full disk at its worst; reads go
    on. Honest otherwise.

    It is the soft RLIMIT_FSIZE set to 0 (SIGXFSZ ignored, so the write fails instead of the
    process dying): no size-limited mount is needed. The limit bounds a write's offset, not the
    growth, so even a write into space a file already has fails, which a real full disk would
    allow; stricter, and every store write meets it. Restored when switched off."""

    name = "disk_full"

    def __init__(self, ctx: FaultContext) -> None:
        super().__init__(ctx)
        self._saved_limit: tuple[int, int] | None = None
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def switched(self) -> None:
        if self.on:
            # Said before the limit, while the log can still grow.
            log.warning("disk_full fault: no file may grow from now on")
            self._saved_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, self._saved_limit[1]))
        else:
            if self._saved_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, self._saved_limit)
                self._saved_limit = None
            log.warning("disk_full fault: files may grow again")


class SharelessOutbox(OutboxWrapper):
    """Everything but signature shares leaves (scheme 0x0002)."""

    def to_leader(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel) -> None:
        if kind is not Kind.SIGNATURE_SHARE:
            super().to_leader(kind, epoch, round, body)


class WithholdShares(Fault):
    """Observes, then never sends its signature share: a member that hangs between its
    observation and its share, every round. The leader must give up on it after the share
    timeout and ask another signing set."""

    name = "withhold_shares"

    def outbox(self, outbox: Outbox) -> Outbox:
        return SharelessOutbox(outbox)


FAULTS: dict[str, type[Fault]] = {
    cls.name: cls
    for cls in (Silent, WrongMedian, DropObservations, ForgeObservation, AbsurdValues, Equivocate, Replay, Spam,
                PadReport, WithholdFeed, Partition, FdExhaustion, DiskFull, WithholdShares)
}


class FaultyRoundEngine(RoundEngine):
    """An ordinary `RoundEngine` whose inbound messages pass its fault's door first."""

    def __init__(self, inputs: EngineInputs, fault: Fault, *, clock: Clock | None = None) -> None:
        self.fault = fault
        super().__init__(inputs, wrap_outbox=fault.outbox, clock=clock)

    def on_wire(self, sender_address: str, data: bytes, opened: Envelope | None = None) -> None:
        if self.fault.admits(sender_address):
            super().on_wire(sender_address, data, opened)


class FaultyEngineFactory:
    """An `EngineFactory` for `Node`: an ordinary `RoundEngine` around one fault's wrappers."""

    def __init__(self, name: str) -> None:
        try:
            self.fault = FAULTS[name]
        except KeyError:
            raise UnknownFault(f"unknown test fault {name!r}; known: {', '.join(sorted(FAULTS))}") from None
        self.name = name

    def __call__(self, inputs: EngineInputs, *, clock: Clock | None = None) -> RoundEngine:
        fault = self.fault(FaultContext(inputs.private_key, inputs.address, inputs.committee, inputs.domain))
        publish, send_to = fault.wire(inputs.publish, inputs.send_to)
        faulty = replace(inputs, observe=fault.observe(inputs.observe), publish=publish, send_to=send_to)
        return FaultyRoundEngine(faulty, fault, clock=clock)
