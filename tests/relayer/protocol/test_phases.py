"""Each phase of the round protocol on one engine, the other members played message by message,
time stepped by a manual clock."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from relayer.protocol.committee import Committee
from relayer.protocol.engine import EngineInputs, RoundEngine
from relayer.protocol.epoch_buffer import PER_SENDER, FutureEpochBuffer
from relayer.protocol.errors import SchemeMismatch
from relayer.protocol.messages import Epoch, Kind, NewEpoch, ObserveRequest, seal
from relayer.protocol.round_state import Stats
from relayer.store import Store
from tests.relayer.protocol.network import DOMAIN, leading, network, observer, solo

pytestmark = pytest.mark.unit


def _others(committee: Committee, *exclude: int) -> list[int]:
    return [i for i in range(committee.n) if i not in exclude]


def _follower_of(committee: Committee, *epochs: int) -> int:
    """A member that leads none of `epochs`."""
    return next(i for i in range(committee.n) if all(committee.leader(e) != i for e in epochs))


# --- leader ---------------------------------------------------------------------------


async def test_the_leader_waits_the_grace_period_after_a_quorum_then_proposes(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    s = await leading(tmp_path, keys, committee)
    me = s.engine.index
    (request,) = s.outgoing(Kind.OBSERVE_REQUEST)
    assert (request.epoch, request.round) == (0, 1)
    a, b, c = _others(committee, me)
    s.deliver(a, Kind.OBSERVATION, 0, 1, observer(101)())
    s.deliver(b, Kind.OBSERVATION, 0, 1, observer(102)())  # with our own: 3 = 2f+1
    await s.clock.advance(0.0049)  # grace is 5 ms
    assert s.outgoing(Kind.PROPOSAL) == []
    await s.clock.advance(0.0002)
    (proposal,) = s.outgoing(Kind.PROPOSAL)
    assert len(proposal.body["observations"]) == 3
    # The fourth observation comes after the proposal: counted, not used.
    s.deliver(c, Kind.OBSERVATION, 0, 1, observer(103)())
    assert s.engine.stats.dropped[(committee.signers[c], "late_observation")] == 1
    await s.engine.stop()


async def test_the_leader_proposes_at_once_when_every_member_has_observed(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    s = await leading(tmp_path, keys, committee)
    for i, member in enumerate(_others(committee, s.engine.index)):
        s.deliver(member, Kind.OBSERVATION, 0, 1, observer(101 + i)())
    await s.clock.settle()
    (proposal,) = s.outgoing(Kind.PROPOSAL)
    assert len(proposal.body["observations"]) == committee.n
    await s.engine.stop()


async def test_the_leader_starts_a_round_every_interval(tmp_path: Path, keys: list[bytes],
                                                        committee: Committee) -> None:
    s = solo(tmp_path, keys, committee, committee.leader(0))
    s.engine.start()
    await s.clock.advance(0.35)  # rounds at 0, 0.1, 0.2 and 0.3 s; none attests
    assert [e.round for e in s.outgoing(Kind.OBSERVE_REQUEST)] == [1, 2, 3, 4]
    assert s.engine.round == 4 and s.engine.stats.rounds_started == 4
    await s.engine.stop()


# --- pacemaker ------------------------------------------------------------------------


async def test_no_progress_within_the_timeout_announces_and_enters_the_next_epoch(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    s = solo(tmp_path, keys, committee, _follower_of(committee, 0, 1))
    s.engine.start()
    await s.clock.advance(0.5999)  # progress timeout is 0.6 s
    assert s.engine.epoch == 0 and s.outgoing(Kind.NEW_EPOCH) == []
    await s.clock.advance(0.0002)
    assert s.engine.epoch == 1 and s.engine.stats.epoch_changes == 1
    assert [e.epoch for e in s.outgoing(Kind.NEW_EPOCH)] == [1]
    await s.clock.advance(0.6)  # and again, counted from entering epoch 1
    assert s.engine.epoch == 2
    await s.engine.stop()


async def test_an_attested_report_of_the_epoch_resets_the_progress_timeout(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    net = network(tmp_path, keys, committee, [100, 101, 102, 103])
    net.start()
    await net.clock.advance(3.0)  # five progress timeouts, with a report every round
    await net.stop()
    assert all(e.epoch == 0 and e.stats.epoch_changes == 0 for e in net.engines)


async def test_a_node_follows_f_plus_1_members_into_a_later_epoch_never_one(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    me = _follower_of(committee, 0)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    a, b, _ = _others(committee, me)
    s.deliver(a, Kind.NEW_EPOCH, 5, 0, NewEpoch())
    assert s.engine.epoch == 0  # one member may be faulty
    s.deliver(b, Kind.NEW_EPOCH, 3, 0, NewEpoch())
    assert s.engine.epoch == 3  # f+1 = 2 members are at 3 or beyond
    s.deliver(b, Kind.NEW_EPOCH, 2, 0, NewEpoch())
    assert s.engine.stats.dropped[(committee.signers[b], "stale_epoch")] == 1
    await s.engine.stop()


async def test_a_restarted_node_resumes_in_the_epoch_it_left(tmp_path: Path, keys: list[bytes],
                                                            committee: Committee) -> None:
    me = _follower_of(committee, 0, 1)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    await s.clock.advance(0.61)
    await s.engine.stop()
    again = solo(tmp_path, keys, committee, me)
    again.engine.start()
    assert again.engine.epoch == 1
    await again.engine.stop()


# --- future epochs --------------------------------------------------------------------


async def test_an_observe_request_of_a_future_epoch_is_kept_and_answered_on_entering_it(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    me = _follower_of(committee, 0, 1)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    ahead = committee.leader(1)
    s.deliver(ahead, Kind.OBSERVE_REQUEST, 1, 1, ObserveRequest(started_at_ms=5))
    await s.clock.settle()
    assert s.engine.epoch == 0  # one member ahead is not enough to follow
    assert s.outgoing(Kind.OBSERVATION, to=ahead) == []
    assert s.engine.stats.future_buffered == 1
    await s.clock.advance(0.61)  # the progress timeout takes this node to epoch 1
    assert s.engine.epoch == 1
    (answer,) = s.outgoing(Kind.OBSERVATION, to=ahead)
    assert (answer.epoch, answer.round) == (1, 1)
    assert s.engine.stats.future_replayed == 1
    await s.engine.stop()


async def test_future_epoch_messages_are_bounded_per_sender(tmp_path: Path, keys: list[bytes],
                                                            committee: Committee) -> None:
    me = _follower_of(committee, 0)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    ahead = committee.leader(7)
    for round in range(1, PER_SENDER + 4):
        s.deliver(ahead, Kind.OBSERVE_REQUEST, 7, round, ObserveRequest(started_at_ms=round))
    assert s.engine.stats.future_buffered == PER_SENDER
    assert s.engine.stats.dropped[(committee.signers[ahead], "future_epoch_full")] == 3
    await s.engine.stop()


def test_the_future_buffer_is_bounded_in_total_and_drops_skipped_epochs(keys: list[bytes],
                                                                         committee: Committee) -> None:
    stats = Stats()
    buffer = FutureEpochBuffer(stats, members=committee.n, per_sender=3, total=4)

    def env(member: int, epoch: int, round: int):  # type: ignore[no-untyped-def]
        return seal(private_key=keys[member], sender=committee.signers[member], kind=Kind.NEW_EPOCH,
                    config_digest=committee.config_digest, epoch=epoch, round=round, body=NewEpoch())

    kept = 0
    for member in range(3):
        for round in range(2):
            try:
                buffer.keep(env(member, 2 + round, round), member, NewEpoch(), Epoch(0))
                kept += 1
            except Exception as exc:
                assert getattr(exc, "reason", None) == "future_epoch_full"
    assert kept == len(buffer) == 4
    handled: list[tuple[int, int]] = []
    buffer.enter(Epoch(3), lambda k: handled.append((k.env.epoch, k.env.round)))
    assert handled == [(3, 1), (3, 1)]  # epoch 2's were skipped: stale
    assert sum(n for (_, reason), n in stats.dropped.items() if reason == "stale_epoch") == 2
    assert len(buffer) == 0


# --- drops ----------------------------------------------------------------------------


async def test_every_dropped_message_is_counted_with_a_debug_line(
    tmp_path: Path, keys: list[bytes], committee: Committee, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="relayer.protocol")
    me = _follower_of(committee, 0, 1)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    other = _others(committee, me, committee.leader(0))[0]
    # An observation sent to a node that does not lead the epoch.
    s.deliver(other, Kind.OBSERVATION, 0, 1, observer(100)())
    assert s.engine.stats.dropped[(committee.signers[other], "not_for_me")] == 1
    await s.clock.advance(0.61)  # to epoch 1
    # An observe request of an epoch this node has left.
    s.deliver(committee.leader(0), Kind.OBSERVE_REQUEST, 0, 9, ObserveRequest(started_at_ms=1))
    assert s.engine.stats.dropped[(committee.signers[committee.leader(0)], "stale_epoch")] == 1
    lines = [r for r in caplog.records if r.levelno == logging.DEBUG and "dropped" in r.getMessage()]
    assert any("not_for_me" in r.getMessage() for r in lines)
    assert any("stale_epoch" in r.getMessage() and getattr(r, "peer", None) == committee.signers[committee.leader(0)]
               for r in lines)
    await s.engine.stop()


async def test_a_second_observation_of_a_member_is_counted_as_a_duplicate(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    s = await leading(tmp_path, keys, committee)
    other = _others(committee, s.engine.index)[0]
    s.deliver(other, Kind.OBSERVATION, 0, 1, observer(100)())
    s.deliver(other, Kind.OBSERVATION, 0, 1, observer(101)())  # signed differently: not a replay
    assert s.engine.stats.dropped[(committee.signers[other], "duplicate_observation")] == 1
    await s.engine.stop()


# --- signer seam ----------------------------------------------------------------------


async def test_an_engine_refuses_a_committee_of_another_signature_scheme(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    schnorr = replace(committee, config_digest=bytes.fromhex("0002") + committee.config_digest[2:])
    with pytest.raises(SchemeMismatch, match="0x0002"):
        RoundEngine(EngineInputs(private_key=keys[0], address=committee.signers[0], committee=schnorr,
                                 domain=DOMAIN, store=Store(tmp_path / "x.sqlite"), observe=observer(1),
                                 publish=lambda d: None, on_attested=_never))


async def _never(report: object) -> None:
    raise AssertionError("nothing may be attested")

