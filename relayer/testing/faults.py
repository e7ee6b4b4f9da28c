"""Test-only misbehaviour for real nodes: subclasses of RoundEngine that lie in chosen ways.

A node runs one of these only when its settings carry `test_fault` (tests and the
Byzantine scenarios set it through `RELAYER_TEST_FAULT`); production code never does.
Each fault attacks one check that honest nodes or the contract must make.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from typing import Any

from relayer.chain.codec import FeedUpdate, decode_updates, encode_updates, keccak, sign_digest
from relayer.protocol.engine import RoundEngine
from relayer.protocol.messages import (
    Envelope,
    FeedObservation,
    Kind,
    Observation,
    Proposal,
    ReportSignature,
    open_envelope,
    seal,
)


class SilentEngine(RoundEngine):
    """Connected but mute: never publishes (a withholding leader, a crashed follower)."""

    def _send_raw(self, data: bytes) -> None:
        return None


class WrongMedianEngine(RoundEngine):
    """As leader, proposes honest observations with a value of its own choosing."""

    def _broadcast(self, kind: Kind, epoch: int, round: int, body: Any) -> None:
        if kind is Kind.PROPOSAL:
            updates = decode_updates(bytes.fromhex(body.updates[2:]))
            skewed = [FeedUpdate(u.feed_index, u.observed_at, u.num_sources, u.value * 2) for u in updates]
            body = Proposal(observations=body.observations, updates="0x" + encode_updates(skewed).hex())
        super()._broadcast(kind, epoch, round, body)


class DropObservationsEngine(RoundEngine):
    """As leader, proposes fewer than 2f+1 observations (its own and f others)."""

    def _broadcast(self, kind: Kind, epoch: int, round: int, body: Any) -> None:
        if kind is Kind.PROPOSAL:
            kept = body.observations[: self.committee.f + 1]
            body = Proposal(observations=kept, updates=body.updates)
        super()._broadcast(kind, epoch, round, body)


class ForgeObservationEngine(RoundEngine):
    """As leader, alters one honest observation it forwards (its signature no longer holds)."""

    def _broadcast(self, kind: Kind, epoch: int, round: int, body: Any) -> None:
        if kind is Kind.PROPOSAL:
            forged = json.loads(json.dumps(list(body.observations)))
            for feed in forged[-1]["body"]["feeds"]:
                feed["value"] = feed["value"] * 3
            body = Proposal(observations=tuple(forged), updates=body.updates)
        super()._broadcast(kind, epoch, round, body)


class AbsurdValuesEngine(RoundEngine):
    """Observes zero, negative and 1000x values in turn (f such nodes must not move a median)."""

    def __init__(self, **kwargs: Any) -> None:
        honest_observe = kwargs["observe"]
        self._turn = 0

        def absurd() -> Observation:
            self._turn += 1
            factor = (0, -1, 1000)[self._turn % 3]
            feeds = honest_observe().feeds
            return Observation(feeds=tuple(
                FeedObservation(feed_index=f.feed_index, value=f.value * factor, observed_at=f.observed_at,
                                num_sources=f.num_sources)
                for f in feeds
            ))

        kwargs["observe"] = absurd
        super().__init__(**kwargs)


class EquivocatingEngine(RoundEngine):
    """Signs a second, different report for every round it co-signs, bypassing its own store,
    and sends both signatures to every member (not only to the leader)."""

    def _send_report_signature(self, epoch: int, round: int, body: ReportSignature) -> None:
        self._broadcast(Kind.REPORT_SIGNATURE, epoch, round, body)
        state = self._rounds.get((epoch, round))
        if state is None or state.updates is None:
            return
        updates = decode_updates(state.updates)
        other = encode_updates([FeedUpdate(u.feed_index, u.observed_at, u.num_sources, u.value + 1) for u in updates])
        digest = self.domain.report_digest(self.committee.config_digest, epoch, round, other)
        conflicting = ReportSignature(report_digest="0x" + digest.hex(),
                                      signature="0x" + sign_digest(self._key, digest).hex())
        self._broadcast(Kind.REPORT_SIGNATURE, epoch, round, conflicting)


class ReplayEngine(RoundEngine):
    """Re-publishes its own old messages, and copies of them re-sealed under a foreign digest."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sent: deque[bytes] = deque(maxlen=32)

    def _send_to_leader(self, epoch: int, data: bytes) -> None:
        super()._send_to_leader(epoch, data)
        self._replay(data)

    def _send_raw(self, data: bytes) -> None:
        super()._send_raw(data)
        self._replay(data)

    def _replay(self, data: bytes) -> None:
        if len(self._sent) >= 4:
            old = self._sent[0]
            self._publish(old)  # an exact replay of an earlier message
            env = open_envelope(old)
            foreign = seal(private_key=self._key, sender=self.address, kind=env.kind,
                           config_digest=keccak(secrets.token_bytes(8)), epoch=env.epoch, round=env.round,
                           body=_RawBody(env))
            self._publish(foreign.encode())
        self._sent.append(data)


class _RawBody:
    """Lets `seal` re-use an envelope's body as is."""

    def __init__(self, env: Envelope) -> None:
        self._body = env.body

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return self._body


class SpamEngine(RoundEngine):
    """Publishes oversized and malformed messages besides its honest ones."""

    def _send_raw(self, data: bytes) -> None:
        super()._send_raw(data)
        self._spam()

    def _send_to_leader(self, epoch: int, data: bytes) -> None:
        super()._send_to_leader(epoch, data)
        self._spam()

    def _spam(self) -> None:
        self._publish(b"this is not json")
        self._publish(json.dumps({"v": 1, "kind": "observation", "digest": "0x00"}).encode())
        self._publish(b"{" + b" " * (1 << 20) + b"}")  # over the honest nodes' 1 MiB limit


FAULTS: dict[str, type[RoundEngine]] = {
    "silent": SilentEngine,
    "wrong_median": WrongMedianEngine,
    "drop_observations": DropObservationsEngine,
    "forge_observation": ForgeObservationEngine,
    "absurd": AbsurdValuesEngine,
    "equivocate": EquivocatingEngine,
    "replay": ReplayEngine,
    "spam": SpamEngine,
}


def faulty_engine_class(name: str) -> type[RoundEngine]:
    try:
        return FAULTS[name]
    except KeyError:
        raise ValueError(f"unknown test fault {name!r}; known: {', '.join(sorted(FAULTS))}") from None
