"""Each phase of the round protocol on one engine, the other members played message by message,
time stepped by a manual clock."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from relayer.protocol.committee import Committee
from relayer.protocol.engine import EngineInputs, RoundEngine
from relayer.protocol.epoch_buffer import PER_SENDER, FutureEpochBuffer
from relayer.protocol.errors import SchemeMismatch
from relayer.protocol.messages import Epoch, Kind, NewEpoch, ObserveRequest, open_envelope, seal
from relayer.protocol.round_state import Stats
from relayer.store import Store
from tests.relayer.protocol.network import DOMAIN, Solo, leading, network, observer, solo

pytestmark = pytest.mark.unit


def _others(committee: Committee, *exclude: int) -> list[int]:
    return [i for i in range(committee.n) if i not in exclude]


def _follow_into(s: Solo, epoch: int) -> None:
    """Take the solo node into `epoch`: f+1 other members show they are there."""
    me = s.engine.index
    for member in _others(s.committee, me)[: s.committee.f + 1]:
        s.deliver(member, Kind.NEW_EPOCH, epoch, 0, NewEpoch(epoch=Epoch(epoch)))
    assert s.engine.epoch == epoch


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


async def test_no_progress_within_the_timeout_announces_a_wish_but_never_leaves_alone(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    s = solo(tmp_path, keys, committee, _follower_of(committee, 0, 1))
    s.engine.start()
    await s.clock.advance(0.5999)  # progress timeout is 0.6 s
    assert s.outgoing(Kind.NEW_EPOCH) == []
    await s.clock.advance(0.0002)
    (wish,) = s.outgoing(Kind.NEW_EPOCH)
    assert (wish.epoch, wish.body) == (0, {"epoch": 1})  # in epoch 0, asking for epoch 1
    assert s.engine.epoch == 0 and s.engine.stats.epoch_changes == 0
    # Cut off for a long while: the wish is repeated every timeout, the epoch stays.
    await s.clock.advance(6.0)
    wishes = s.outgoing(Kind.NEW_EPOCH)
    assert len(wishes) == 11 and {(w.epoch, w.body["epoch"]) for w in wishes} == {(0, 1)}
    assert s.engine.epoch == 0 and s.engine.stats.progress_timeouts == 11
    await s.engine.stop()


async def test_a_node_joins_f_plus_1_wishes_and_moves_on_2f_plus_1(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    me = _follower_of(committee, 0, 2)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    a, b, c = _others(committee, me)
    s.deliver(a, Kind.NEW_EPOCH, 0, 0, NewEpoch(epoch=Epoch(3)))
    assert s.engine.epoch == 0 and s.outgoing(Kind.NEW_EPOCH) == []  # one member may be faulty
    s.deliver(b, Kind.NEW_EPOCH, 0, 0, NewEpoch(epoch=Epoch(2)))
    # f+1 = 2 members want 2 or more: this node asks for 2 too, and with it 2f+1 = 3 do.
    assert [w.body["epoch"] for w in s.outgoing(Kind.NEW_EPOCH)] == [2]
    assert s.engine.epoch == 2 and s.engine.stats.epoch_changes == 1
    # A wish below the sender's own epoch is malformed; one at or below ours is of no use.
    s.deliver(c, Kind.NEW_EPOCH, 3, 0, NewEpoch(epoch=Epoch(1)))
    assert s.engine.stats.dropped[(committee.signers[c], "bad_new_epoch")] == 1
    s.deliver(c, Kind.NEW_EPOCH, 1, 0, NewEpoch(epoch=Epoch(1)))
    assert s.engine.stats.dropped[(committee.signers[c], "stale_epoch")] == 1
    await s.engine.stop()


async def test_two_wishes_of_four_do_not_move_a_third_does(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    me = _follower_of(committee, 0, 1)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    a, b, _ = _others(committee, me)
    await s.clock.advance(0.61)  # our own timeout: we wish for epoch 1
    s.deliver(a, Kind.NEW_EPOCH, 0, 0, NewEpoch(epoch=Epoch(1)))
    assert s.engine.epoch == 0  # two wishes: f+1, not 2f+1
    s.deliver(b, Kind.NEW_EPOCH, 0, 0, NewEpoch(epoch=Epoch(1)))
    assert s.engine.epoch == 1 and s.engine.pacemaker.wanted == 1
    await s.engine.stop()


async def test_a_node_follows_f_plus_1_members_into_a_later_epoch_never_one(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    me = _follower_of(committee, 0)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    a, b, _ = _others(committee, me)
    # Observe requests are the epochs' leaders' own; what counts is that members are there.
    s.deliver(a, Kind.OBSERVE_REQUEST, 5, 1, ObserveRequest(started_at_ms=1))
    assert s.engine.epoch == 0  # one member may be faulty
    s.deliver(b, Kind.OBSERVE_REQUEST, 3, 1, ObserveRequest(started_at_ms=1))
    assert s.engine.epoch == 3  # f+1 = 2 members are at 3 or beyond
    s.deliver(b, Kind.OBSERVE_REQUEST, 2, 1, ObserveRequest(started_at_ms=1))
    assert s.engine.stats.dropped[(committee.signers[b], "stale_epoch")] == 1
    await s.engine.stop()


async def test_a_wish_from_an_epoch_we_left_is_answered_to_its_sender_once_a_timeout(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    me = _follower_of(committee, 0, 3)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    _follow_into(s, 3)
    behind = next(i for i in _others(s.committee, me))
    s.deliver(behind, Kind.NEW_EPOCH, 0, 0, NewEpoch(epoch=Epoch(1)))
    (told,) = s.outgoing(Kind.NEW_EPOCH, to=behind)
    assert (told.epoch, told.body["epoch"]) == (3, 3)  # "I am in epoch 3"
    s.deliver(behind, Kind.NEW_EPOCH, 0, 0, NewEpoch(epoch=Epoch(2)))
    assert len(s.outgoing(Kind.NEW_EPOCH, to=behind)) == 1  # not again within a timeout
    await s.clock.advance(0.61)
    s.deliver(behind, Kind.NEW_EPOCH, 0, 1, NewEpoch(epoch=Epoch(2)))  # its next wish (another envelope)
    assert len(s.outgoing(Kind.NEW_EPOCH, to=behind)) == 2 and s.engine.stats.epoch_nudges == 2
    await s.engine.stop()


async def test_a_member_that_starts_after_the_committee_left_its_epoch_catches_up(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    """The late member leads epoch 0: the others give up on it and move to epoch 1 while it is
    away. Back, it hears only epoch 1's leader (followers answer the leader alone), which is
    one member; the others answer its wish with their epoch, and it follows."""
    net = network(tmp_path, keys, committee, [100, 101, 102, 103])
    late = committee.leader(0)
    net.down.add(late)
    net.start()
    await net.clock.advance(1.0)
    assert all(e.epoch == 1 for i, e in enumerate(net.engines) if i != late)
    assert net.engines[late].epoch == 0
    net.down.discard(late)
    await net.clock.advance(1.5)  # its next wish, the answers, then rounds of epoch 1
    await net.stop()
    assert net.engines[late].epoch == 1
    assert any(r.epoch == 1 for r in net.attested[late])


async def test_a_restarted_node_resumes_in_the_epoch_it_left(tmp_path: Path, keys: list[bytes],
                                                            committee: Committee) -> None:
    me = _follower_of(committee, 0, 1)
    s = solo(tmp_path, keys, committee, me)
    s.engine.start()
    a, b, _ = _others(committee, me)
    for member in (a, b):
        s.deliver(member, Kind.OBSERVE_REQUEST, 1, 1, ObserveRequest(started_at_ms=1))
    assert s.engine.epoch == 1
    await s.engine.stop()
    again = solo(tmp_path, keys, committee, me)
    again.engine.start()
    assert again.engine.epoch == 1
    await again.engine.stop()


async def test_a_store_that_cannot_write_costs_the_saved_epoch_never_the_pacemaker(
    tmp_path: Path, keys: list[bytes], committee: Committee, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = _follower_of(committee, 0, 1, 2)
    s = solo(tmp_path, keys, committee, me)

    def full(key: str, value: str) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(s.engine.store, "set_state", full)
    s.engine.start()
    a, b, _ = _others(committee, me)
    for member in (a, b):
        s.deliver(member, Kind.OBSERVE_REQUEST, 1, 1, ObserveRequest(started_at_ms=1))
    assert s.engine.epoch == 1 and s.engine.stats.store_errors == 1
    # The timer still runs: the next timeout announces a wish for epoch 2.
    await s.clock.advance(0.61)
    assert [w.body["epoch"] for w in s.outgoing(Kind.NEW_EPOCH)] == [2]
    await s.engine.stop()


async def test_a_follower_cut_off_past_the_timeout_signs_again_once_reconnected(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    net = network(tmp_path, keys, committee, [100, 101, 102, 103])
    cut = _follower_of(committee, 0, 1)
    net.start()
    await net.clock.advance(0.3)
    net.down.add(cut)
    await net.clock.advance(2.0)  # more than three progress timeouts
    lonely = net.engines[cut]
    assert lonely.epoch == 0 and lonely.pacemaker.wanted == 1 and lonely.stats.progress_timeouts >= 3
    before = len(net.sent)
    net.down.discard(cut)
    await net.clock.advance(1.2)  # two progress timeouts
    await net.stop()
    assert all(e.epoch == 0 and e.stats.epoch_changes == 0 for e in net.engines)
    assert lonely.pacemaker.wanted == 0  # the wish was withdrawn on progress
    signed = [env for frm, _, data in net.sent[before:] if frm == cut
              for env in [open_envelope(data)] if env.kind is Kind.REPORT_SIGNATURE]
    assert len(signed) >= 5 and all(env.epoch == 0 for env in signed)
    # The others saw the withdrawn wish: none of them still counts it.
    assert all(e.pacemaker._wishes.get(cut, 0) == 0 for i, e in enumerate(net.engines) if i != cut)


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
    other = next(i for i in _others(committee, me) if i != ahead)
    s.deliver(other, Kind.NEW_EPOCH, 1, 0, NewEpoch(epoch=Epoch(1)))  # a second member is there
    await s.clock.settle()
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
                    config_digest=committee.config_digest, epoch=epoch, round=round, body=NewEpoch(epoch=epoch))

    kept = 0
    for member in range(3):
        for round in range(2):
            try:
                buffer.keep(env(member, 2 + round, round), member, NewEpoch(epoch=Epoch(2 + round)), Epoch(0))
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
    _follow_into(s, 1)
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

