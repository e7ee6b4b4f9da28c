"""The round protocol among four engines on an in-process bus, on a manual clock."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from relayer.chain.codec import (
    FeedUpdate,
    address_of,
    decode_updates,
    encode_updates,
    pack_signatures,
    recover_address,
    sign_digest,
    unpack_signatures,
)
from relayer.protocol.errors import InvalidMessage
from relayer.protocol.committee import Committee
from relayer.protocol.messages import Kind, NewEpoch, Proposal, open_envelope, seal
from relayer.protocol.outbox import Outbox
from relayer.testing.faults import OutboxWrapper
from tests.relayer.protocol.network import DOMAIN, network

pytestmark = pytest.mark.unit


async def test_rounds_attest_the_median_with_threshold_signatures(tmp_path: Path, keys: list[bytes],
                                                                  committee: Committee) -> None:
    net = network(tmp_path, keys, committee, [100, 104, 101, 10**9])
    net.start()
    await net.clock.advance(0.8)  # eight round intervals
    await net.stop()
    reports = net.attested[committee.leader(0)]
    assert len(reports) >= 7
    assert [r.key for r in reports] == sorted({r.key for r in reports})
    for report in reports:
        value = decode_updates(report.updates)[0].value
        assert 100 <= value <= 104  # the absurd 10**9 never wins the median
        digest = DOMAIN.report_digest(committee.config_digest, report.epoch, report.round, report.updates)
        signers = {recover_address(digest, sig) for _, sig in report.signatures}
        assert len(signers) >= committee.threshold
        assert signers <= set(committee.signers)
    # Every node holds the same attested reports, and none left epoch 0.
    for i in range(4):
        assert {r.key for r in net.attested[i]} == {r.key for r in reports}
        assert net.engines[i].epoch == 0


class _SkewProposals(OutboxWrapper):
    """A leader that proposes faithfully gathered observations with a value of its choosing."""

    def broadcast(self, kind: Kind, epoch, round, body, *, to_self: bool = True) -> None:  # type: ignore[no-untyped-def]
        if isinstance(body, Proposal):
            body = Proposal(observations=body.observations, updates=body.updates[:-8] + "deadbeef")
        super().broadcast(kind, epoch, round, body, to_self=to_self)


async def test_followers_refuse_a_proposal_they_cannot_recompute(tmp_path: Path, keys: list[bytes],
                                                                committee: Committee) -> None:
    leader = committee.leader(0)
    wrap: dict[int, type[Outbox]] = {leader: _SkewProposals}
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], wrap=dict(wrap))
    net.start()
    await net.clock.advance(0.599)  # just short of the progress timeout (0.6 s)
    honest = [i for i in range(4) if i != leader]
    assert not any(net.attested[i] for i in honest)
    assert all(net.engines[i].epoch == 0 for i in honest)
    await net.clock.advance(0.5)
    await net.stop()
    for i in honest:
        assert net.engines[i].stats.dropped[(committee.signers[leader], "bad_proposal")] >= 1
        # The faulty leader's epoch attests nothing; the next epoch's honest leader does.
        assert net.engines[i].epoch >= 1
        assert net.attested[i] and all(r.epoch >= 1 for r in net.attested[i])
        for r in net.attested[i]:
            assert 100 <= decode_updates(r.updates)[0].value <= 103


async def test_silent_leader_costs_one_progress_timeout(tmp_path: Path, keys: list[bytes],
                                                       committee: Committee) -> None:
    net = network(tmp_path, keys, committee, [100, 101, 102, 103])
    leader = committee.leader(0)
    net.down.add(leader)
    net.start()
    survivors = [i for i in range(4) if i != leader]
    await net.clock.advance(0.599)
    assert all(net.engines[i].epoch == 0 for i in survivors)
    assert not any(net.attested[i] for i in survivors)
    await net.clock.advance(0.002)  # the progress timeout passes
    assert all(net.engines[i].epoch == 1 for i in survivors)
    assert all(net.engines[i].stats.epoch_changes == 1 for i in survivors)
    await net.clock.advance(0.2)  # epoch 1's leader runs rounds at once
    await net.stop()
    assert all(net.attested[i] for i in survivors)
    assert all(r.epoch == 1 for i in survivors for r in net.attested[i])


async def test_replayed_and_foreign_digest_messages_are_dropped(tmp_path: Path, keys: list[bytes],
                                                               committee: Committee) -> None:
    net = network(tmp_path, keys, committee, [100, 101, 102, 103])
    net.start()
    await net.clock.advance(0.25)
    leader = committee.leader(0)
    target = net.engines[(leader + 1) % 4]
    sender = committee.signers[leader]
    # A message sealed under another digest is counted as wrong_digest.
    other = seal(private_key=keys[leader], sender=sender, kind=Kind.NEW_EPOCH,
                 config_digest=b"\x00" * 32, epoch=99, round=0, body=NewEpoch(epoch=99))
    target.on_wire(sender, other.encode())
    assert target.stats.dropped[(sender, "wrong_digest")] == 1
    assert target.epoch < 99
    # One of the leader's broadcasts, delivered a second time, is a replay.
    replayed = next(data for frm, to, data in net.sent if frm == leader and to is None)
    target.on_wire(sender, replayed)
    assert target.stats.dropped[(sender, "replayed")] == 1
    # A non-member's message is counted as not_in_committee, whatever it says.
    stranger = secrets.token_bytes(32)
    env = seal(private_key=stranger, sender=address_of(stranger), kind=Kind.NEW_EPOCH,
               config_digest=committee.config_digest, epoch=50, round=0, body=NewEpoch(epoch=50))
    target.on_wire(address_of(stranger), env.encode())
    assert target.stats.dropped[(address_of(stranger), "not_in_committee")] == 1
    assert open_envelope(env.encode()).epoch == 50 and target.epoch < 50
    await net.stop()


async def test_a_median_outside_its_on_chain_bounds_is_left_out_and_the_rest_attested(
        tmp_path: Path, keys: list[bytes], committee: Committee) -> None:
    # Feed 1 observes value // 10 = 10..10; its on-chain bounds stop at 5: the contract would
    # refuse any report carrying it, so every node leaves it out and feed 0 still lands.
    bounds = {0: (1, 10**6), 1: (0, 5)}
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], bounds=bounds)
    net.start()
    await net.clock.advance(0.35)
    await net.stop()
    leader = committee.leader(0)
    for i in range(4):
        assert net.attested[i], i
        assert all([u.feed_index for u in decode_updates(r.updates)] == [0] for r in net.attested[i])
    assert net.engines[leader].stats.left_out[(1, "out_of_bounds")] >= 3
    assert not any(n for e in net.engines for (_, reason), n in e.stats.dropped.items() if reason == "bad_proposal")


async def test_a_follower_with_other_bounds_refuses_what_it_cannot_recompute(
        tmp_path: Path, keys: list[bytes], committee: Committee) -> None:
    """Bounds are part of the report rule: a member reading different ones does not sign."""
    leader = committee.leader(0)
    odd = next(i for i in range(4) if i != leader)
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], bounds={1: (0, 5)}, bounds_of={odd: {}})
    net.start()
    await net.clock.advance(0.35)
    await net.stop()
    assert net.engines[odd].stats.dropped[(committee.signers[leader], "missing_feed")] >= 1
    assert net.attested[leader]  # the other two followers and the leader make the threshold of 3


async def test_a_missed_report_read_back_from_its_landing_is_verified_kept_and_handed_on(
        tmp_path: Path, keys: list[bytes], committee: Committee) -> None:
    net = network(tmp_path, keys, committee, [100, 101, 102, 103])
    me = next(i for i in range(4) if i != committee.leader(0))
    engine = net.engines[me]
    updates = encode_updates([FeedUpdate(feed_index=0, value=101, observed_at=1_700_000_000, num_sources=3)])
    digest = DOMAIN.report_digest(committee.config_digest, 0, 7, updates)
    signed = [(i, sign_digest(keys[i], digest)) for i in (0, 1, 2)]
    # As read back from calldata: compact signatures, unpacked again.
    from_chain = unpack_signatures(*pack_signatures(signed))
    with pytest.raises(InvalidMessage):
        engine.adopt_landed(0, 7, updates, from_chain[:1])  # below the threshold (2)
    with pytest.raises(InvalidMessage):
        engine.adopt_landed(0, 7, updates + b"\x00" * 32, from_chain)  # not what they signed
    assert engine.adopt_landed(0, 7, updates, from_chain) is True
    assert engine.adopt_landed(0, 7, updates, from_chain) is False  # held already
    await asyncio.sleep(0)
    assert [r.key for r in net.attested[me]] == [(0, 7)] and engine.stats.adopted_from_chain == 1
    row = engine.store.attested_report(0, 7, committee.digest_hex)
    assert row is not None
    await net.stop()
