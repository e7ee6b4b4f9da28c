"""Rounds under scheme 0x0002 (FROST) among engines on the in-process bus, on a manual clock:
one Schnorr signature per report under the group key, a bad share blamed and worked around,
a nonce spent in the store before its share is handed to the outbox and never again."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from relayer.crypto.frost import ORDER
from relayer.protocol.attestation import AttestedReport
from relayer.protocol.committee import Committee
from relayer.protocol.engine import EngineInputs, RoundEngine
from relayer.protocol.messages import (
    MAX_SIGNING_ATTEMPTS,
    Attested,
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
    open_envelope,
    seal,
    to_hex,
)
from relayer.protocol.outbox import Outbox
from relayer.store import Store
from relayer.testing.clock import ManualClock
from relayer.testing.faults import FaultyEngineFactory, OutboxWrapper
from tests.relayer.protocol.network import DOMAIN, Network, network, observer
from tests.relayer.protocol.threshold_net import group_of, threshold_committee, verifies

pytestmark = pytest.mark.unit


def _keys(n: int) -> list[bytes]:
    return [secrets.token_bytes(32) for _ in range(n)]


def _sent(net: Network, kind: Kind, by: int | None = None) -> list[Envelope]:
    envelopes = [(i, open_envelope(d)) for i, _, d in net.sent]
    return [e for i, e in envelopes if e.kind is kind and (by is None or i == by)]


def _retried_without(net: Network, committee: Committee, outcome: Any, leader: int, reports: list[AttestedReport],
                     out: int, spent_ok: Callable[[list[int]], bool]) -> None:
    """Each report verifies under the group key and was signed on a retry (attempt 1) by a set
    without member `out`, who spent only its first nonce; `spent_ok` judges the attempts each
    member of the retry's set spent."""
    for report in reports:
        assert report.schnorr is not None
        digest = DOMAIN.report_digest(committee.config_digest, report.epoch, report.round, report.updates)
        assert verifies(outcome, report.schnorr, digest)
        retry = [e for e in _sent(net, Kind.SIGNING_SET, by=leader) if e.round == report.round]
        assert len(retry) == 1 and out not in retry[0].body["members"] and retry[0].body["attempt"] == 1
        assert [r["attempt"] for r in net.engines[out].store.used_nonces(committee.digest_hex, 0, report.round)] == [0]
        for member in retry[0].body["members"]:
            rows = net.engines[member].store.used_nonces(committee.digest_hex, 0, report.round)
            assert spent_ok([r["attempt"] for r in rows])


@pytest.mark.parametrize(("n", "f", "t"), [(4, 1, 3), (7, 2, 5)])
async def test_reports_carry_one_schnorr_signature_under_the_group_key(tmp_path: Path, n: int, f: int,
                                                                        t: int) -> None:
    keys = _keys(n)
    committee = threshold_committee(keys, f, t)
    outcome, shares = group_of(n, t)
    net = network(tmp_path, keys, committee, [100 + i for i in range(n)], threshold_keys=shares)
    net.start()
    await net.clock.advance(0.5)
    await net.stop()
    leader = committee.leader(0)
    reports = net.attested[leader]
    assert len(reports) >= 4
    for report in reports:
        assert report.signatures == () and report.schnorr is not None
        digest = DOMAIN.report_digest(committee.config_digest, report.epoch, report.round, report.updates)
        assert verifies(outcome, report.schnorr, digest)
        assert not verifies(outcome, report.schnorr, bytes(32))
    for i in range(n):
        assert {r.key for r in net.attested[i]} == {r.key for r in reports}
        assert all(r.schnorr is not None for r in net.attested[i])
    # No co-signatures under 0x0002; shares went to the leader from a set of t members, the
    # leader's own through its loopback (not on the bus).
    assert not _sent(net, Kind.REPORT_SIGNATURE)
    first = [e for e in _sent(net, Kind.SIGNATURE_SHARE) if e.round == reports[0].round]
    sharers = {committee.index_of(e.sender) for e in first} | {leader}
    assert len(first) == t - 1 and len(sharers) == t
    # Every sharer spent exactly the nonce of attempt 0 in its store; the others none.
    for member in range(n):
        rows = net.engines[member].store.used_nonces(committee.digest_hex, 0, reports[0].round)
        assert [r["attempt"] for r in rows] == ([0] if member in sharers else [])


class _BadShare(OutboxWrapper):
    """A member whose signature shares are off by one."""

    def seal(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel) -> bytes:
        if isinstance(body, SignatureShare):
            wrong = (int.from_bytes(from_hex(body.share), "big") + 1) % ORDER
            body = body.model_copy(update={"share": to_hex(wrong.to_bytes(32, "big"))})
        return super().seal(kind, epoch, round, body)


async def test_a_bad_share_is_blamed_its_sender_excluded_and_the_round_still_attests(tmp_path: Path) -> None:
    keys = _keys(4)
    committee = threshold_committee(keys, 1, 3)
    outcome, shares = group_of(4, 3)
    leader = committee.leader(0)
    bad = min(i for i in range(4) if i != leader)  # in the leader's first signing set
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], threshold_keys=shares, wrap={bad: _BadShare})
    net.start()
    await net.clock.advance(0.35)
    await net.stop()
    engine = net.engines[leader]
    reports = net.attested[leader]
    assert len(reports) >= 3
    assert engine.stats.dropped[(committee.signers[bad], "bad_share")] == len(reports)
    assert engine.stats.signing_retries == len(reports)
    # The retry asked the other three with their second nonces, never the bad member.
    _retried_without(net, committee, outcome, leader, reports, bad, lambda attempts: 1 in attempts)
    # Every other member holds the same attested reports.
    for i in range(4):
        assert {r.key for r in net.attested[i]} == {r.key for r in reports}


class _AttestedAt(OutboxWrapper):
    """The leader's outbox, noting when (on the clock) each round's attested report goes out."""

    clock: ManualClock | None = None
    at: dict[int, float] = {}

    def broadcast(self, kind: Kind, epoch: Epoch, round: RoundId, body: BaseModel, *, to_self: bool = True) -> None:
        if kind is Kind.ATTESTED:
            assert self.clock is not None
            self.at[round] = self.clock.monotonic()
        super().broadcast(kind, epoch, round, body, to_self=to_self)


async def test_a_silent_signer_is_excluded_after_the_share_timeout_and_the_round_still_attests(
        tmp_path: Path) -> None:
    keys = _keys(4)
    committee = threshold_committee(keys, 1, 3)
    outcome, shares = group_of(4, 3)
    leader = committee.leader(0)
    silent = min(i for i in range(4) if i != leader)  # in the leader's first signing set
    _AttestedAt.at = {}
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], threshold_keys=shares,
                  wrap={leader: _AttestedAt}, factories={silent: FaultyEngineFactory("withhold_shares")})
    outbox = net.engines[leader].outbox
    assert isinstance(outbox, _AttestedAt)
    outbox.clock = net.clock
    net.start()
    await net.clock.advance(0.35)
    await net.stop()
    engine = net.engines[leader]
    reports = net.attested[leader]
    # Every round started long enough ago attested, each one share timeout later than it would
    # have (the silent member's), well within the round interval; nobody asked for a new epoch.
    interval, timeout = committee.offchain.round_interval_ms / 1000, committee.offchain.share_timeout_ms / 1000
    assert len(reports) >= 3 and len(reports) >= engine.stats.rounds_started - 1
    assert engine.stats.epoch_changes == 0 and engine.stats.progress_timeouts == 0
    for report in reports:
        state = engine.rounds.get(report.epoch, report.round)
        assert state is not None and state.started_mono is not None
        took = _AttestedAt.at[report.round] - state.started_mono
        assert timeout - 1e-9 <= took < interval
    assert engine.stats.dropped[(committee.signers[silent], "silent")] == len(reports)
    assert engine.stats.signing_retries == len(reports)
    assert not any(reason == "bad_share" for _, reason in engine.stats.dropped)
    # The retry named the other three at their second nonces; the silent member spent only
    # its first (its share never left), and no member spent one nonce twice.
    _retried_without(net, committee, outcome, leader, reports, silent,
                     lambda attempts: sorted(attempts) in ([1], [0, 1]))
    for i in range(4):
        assert {r.key for r in net.attested[i]} == {r.key for r in reports}


async def test_silent_signers_beyond_what_the_committee_can_spare_attest_nothing(tmp_path: Path) -> None:
    keys = _keys(4)
    committee = threshold_committee(keys, 1, 3)
    _, shares = group_of(4, 3)
    leader = committee.leader(0)
    mute = [i for i in range(4) if i != leader][:2]  # two silent leave two who answer, t is 3
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], threshold_keys=shares,
                  factories={i: FaultyEngineFactory("withhold_shares") for i in mute})
    net.start()
    await net.clock.advance(0.35)
    await net.stop()
    assert not any(net.attested)
    engine = net.engines[leader]
    assert engine.stats.signing_exhausted >= 3
    assert all(engine.stats.dropped[(committee.signers[i], "silent")] >= 3 for i in mute)
    # Bounded: per round at most one retry per member the committee can spare.
    rounds = {e.round for e in _sent(net, Kind.PROPOSAL, by=leader)}
    assert len(_sent(net, Kind.SIGNING_SET, by=leader)) <= len(rounds) * (committee.n - committee.threshold)


async def test_fewer_than_threshold_valid_shares_never_aggregate(tmp_path: Path) -> None:
    keys = _keys(4)
    committee = threshold_committee(keys, 1, 3)
    _, shares = group_of(4, 3)
    leader = committee.leader(0)
    bad = [i for i in range(4) if i != leader][:2]  # two liars leave two honest members, t is 3
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], threshold_keys=shares,
                  wrap={i: _BadShare for i in bad})
    net.start()
    await net.clock.advance(0.35)
    await net.stop()
    assert not any(net.attested)
    engine = net.engines[leader]
    assert engine.stats.signing_exhausted >= 3
    assert all(engine.stats.dropped[(committee.signers[i], "bad_share")] >= 3 for i in bad)
    assert not _sent(net, Kind.ATTESTED)


async def test_fewer_than_threshold_members_online_attest_nothing(tmp_path: Path) -> None:
    keys = _keys(4)
    committee = threshold_committee(keys, 1, 4)  # 2f+1 = 3 observe, but 4 must sign
    _, shares = group_of(4, 4)
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], threshold_keys=shares)
    net.down.add(next(i for i in range(4) if i != committee.leader(0)))
    net.start()
    await net.clock.advance(2.0)  # several progress timeouts, several leaders
    await net.stop()
    assert not any(net.attested)
    assert not _sent(net, Kind.PROPOSAL)
    assert not _sent(net, Kind.SIGNATURE_SHARE)
    # The observers did commit: the leaders had observations, just not from t members.
    assert _sent(net, Kind.OBSERVATION)


class _StoreAtHandOver(OutboxWrapper):
    """Records, as each signature share is handed to the outbox, whether its nonce is spent."""

    store: Store | None = None
    seen: list[tuple[int, int, bool]] = []

    def send_to(self, index: int, data: bytes) -> None:
        env = open_envelope(data)
        if env.kind is Kind.SIGNATURE_SHARE:
            assert self.store is not None
            attempt = int(env.body["attempt"])
            self.seen.append((env.round, attempt, self.store.nonce_used(env.digest, env.epoch, env.round, attempt)))
        super().send_to(index, data)


async def test_a_nonce_is_spent_before_its_share_leaves_and_never_after_a_restart(tmp_path: Path) -> None:
    keys = _keys(4)
    committee = threshold_committee(keys, 1, 3)
    _, shares = group_of(4, 3)
    leader = committee.leader(0)
    follower = min(i for i in range(4) if i != leader)  # in every first signing set
    _StoreAtHandOver.seen = []
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], threshold_keys=shares,
                  wrap={follower: _StoreAtHandOver})
    outbox = net.engines[follower].outbox
    assert isinstance(outbox, _StoreAtHandOver)
    outbox.store = net.engines[follower].store
    net.start()
    await net.clock.advance(0.25)
    await net.stop()
    assert len(_StoreAtHandOver.seen) >= 2
    assert all(spent for _, _, spent in _StoreAtHandOver.seen)
    round_ = _StoreAtHandOver.seen[0][0]
    store = net.engines[follower].store
    digest = committee.digest_hex
    spent_before = store.used_nonces(digest, 0, round_)
    observation_before = store.signed_observation(digest, 0, round_)
    store.close()

    # The member restarts on the same store and the round's messages come again.
    sent: list[tuple[str, bytes]] = []

    async def ignore(report: object) -> None:
        return None

    restarted = Store(tmp_path / f"n{follower}.sqlite", sync="normal")
    engine = RoundEngine(EngineInputs(
        private_key=keys[follower], address=committee.signers[follower], committee=committee, domain=DOMAIN,
        store=restarted, observe=observer(101), publish=lambda data: sent.append(("*", data)),
        send_to=lambda address, data: sent.append((address, data)), on_attested=ignore,
        threshold_key=shares[follower],
    ), clock=ManualClock())
    again = [d for i, _, d in net.sent if i == leader and open_envelope(d).round == round_
             and open_envelope(d).kind in (Kind.OBSERVE_REQUEST, Kind.PROPOSAL)]
    assert len(again) == 2
    for data in again:
        engine.on_wire(committee.signers[leader], data)
        for _ in range(3):
            await engine.clock.advance(0)
    kinds = [open_envelope(d).kind for _, d in sent]
    assert Kind.SIGNATURE_SHARE not in kinds
    # The observation answered again is the stored one: the same commitments, no fresh nonce.
    assert [open_envelope(d).encode().decode() for _, d in sent if open_envelope(d).kind is Kind.OBSERVATION] == [
        observation_before]
    assert engine.stats.refused["nonce"] == 1
    assert restarted.used_nonces(digest, 0, round_) == spent_before
    # Even asked directly, the store refuses the spent nonce.
    with pytest.raises(Exception, match="never used twice"):
        restarted.mark_nonce_used(digest, 0, round_, 0, b"", bytes(32), [])
    await engine.stop()


def test_scheme_0x0001_messages_keep_their_bytes_and_0x0002_fields_are_bounded() -> None:
    key = secrets.token_bytes(32)
    committee = threshold_committee([key], 0, 1, digest=bytes.fromhex("0001" + "ab" * 30))
    plain = observer(100)()
    env = seal(private_key=key, sender=committee.signers[0], kind=Kind.OBSERVATION,
               config_digest=committee.config_digest, epoch=0, round=1, body=plain)
    # Only the fields 0x0001 always had: no nulls for 0x0002's optional ones.
    assert set(env.body) == {"feeds"}
    for body in (Proposal(observations=(), updates="0x"), Attested(updates="0x", signatures=())):
        assert seal(private_key=key, sender=committee.signers[0], kind=Kind.PROPOSAL,
                    config_digest=committee.config_digest, epoch=0, round=1,
                    body=body).body.keys() == set(type(body).model_fields) - {"signing_set", "schnorr"}
    point = "0x02" + "11" * 32
    with pytest.raises(ValidationError):
        Observation(feeds=plain.feeds, commitments=tuple(NonceCommitment(hiding=point, binding=point)
                                                         for _ in range(MAX_SIGNING_ATTEMPTS + 1)))
    with pytest.raises(ValidationError):
        NonceCommitment(hiding="0x04" + "11" * 32, binding=point)  # compressed points only
    with pytest.raises(ValidationError):
        SigningSet(report_digest="0x" + "00" * 32, attempt=1, members=(2, 1))  # ascending, distinct
    with pytest.raises(ValidationError):
        SignatureShare(report_digest="0x" + "00" * 32, attempt=MAX_SIGNING_ATTEMPTS, share="0x" + "00" * 32)
