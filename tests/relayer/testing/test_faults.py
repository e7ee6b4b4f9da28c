"""Test faults wrap what an ordinary engine is given; honest engines notice each one."""

from __future__ import annotations


from pathlib import Path

import pytest

from relayer.chain.codec import decode_updates
from relayer.protocol.committee import Committee
from relayer.testing.faults import FAULTS, FaultyEngineFactory, FaultyRoundEngine, Partition, UnknownFault
from tests.relayer.protocol.network import network

pytestmark = pytest.mark.unit


def test_an_unknown_fault_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownFault, match="wrong_median"):
        FaultyEngineFactory("meteor")
    assert set(FAULTS) == {"silent", "wrong_median", "drop_observations", "forge_observation", "absurd",
                           "equivocate", "replay", "spam", "pad_report", "withhold_feed", "partition",
                           "withhold_shares"}


@pytest.mark.parametrize("fault", ["wrong_median", "drop_observations", "forge_observation"])
async def test_a_lying_leader_costs_one_progress_timeout_and_is_counted(
    tmp_path: Path, keys: list[bytes], committee: Committee, fault: str
) -> None:
    leader = committee.leader(0)
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], factories={leader: FaultyEngineFactory(fault)})
    net.start()
    await net.clock.advance(1.0)
    await net.stop()
    honest = [i for i in range(4) if i != leader]
    for i in honest:
        assert net.engines[i].stats.dropped[(committee.signers[leader], "bad_proposal")] >= 1
        assert net.attested[i] and all(r.epoch >= 1 for r in net.attested[i])
        assert all(100 <= decode_updates(r.updates)[0].value <= 103 for r in net.attested[i])


async def test_an_equivocating_member_is_caught_by_the_leader(tmp_path: Path, keys: list[bytes],
                                                             committee: Committee) -> None:
    liar = next(i for i in range(4) if i != committee.leader(0))
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], factories={liar: FaultyEngineFactory("equivocate")})
    net.start()
    await net.clock.advance(0.35)
    await net.stop()
    leader = net.engines[committee.leader(0)]
    assert leader.stats.dropped[(committee.signers[liar], "conflicting_signature")] >= 1
    assert net.attested[committee.leader(0)]


async def test_a_replaying_member_is_counted(tmp_path: Path, keys: list[bytes], committee: Committee) -> None:
    liar = next(i for i in range(4) if i != committee.leader(0))
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], factories={liar: FaultyEngineFactory("replay")})
    net.start()
    await net.clock.advance(0.6)
    await net.stop()
    counted = {reason for i, e in enumerate(net.engines) if i != liar
               for (peer, reason) in e.stats.dropped if peer == committee.signers[liar]}
    assert {"replayed", "wrong_digest"} <= counted


async def test_a_silent_member_sends_nothing_and_absurd_values_do_not_move_the_median(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    leader = committee.leader(0)
    silent, absurd = [i for i in range(4) if i != leader][:2]
    net = network(tmp_path, keys, committee, [100, 101, 102, 103],
                  factories={silent: FaultyEngineFactory("silent"), absurd: FaultyEngineFactory("absurd")})
    net.start()
    await net.clock.advance(0.35)
    await net.stop()
    assert all(frm != silent for frm, _, _ in net.sent)
    assert net.attested[leader]
    # f = 1 only: with one silent and one absurd member the leader has 3 observations, one absurd.
    for report in net.attested[leader]:
        assert 100 <= decode_updates(report.updates)[0].value <= 103


async def test_a_partitioned_member_hears_and_says_nothing_until_reconnected(
    tmp_path: Path, keys: list[bytes], committee: Committee
) -> None:
    cut = next(i for i in range(4) if i not in (committee.leader(0), committee.leader(1)))
    net = network(tmp_path, keys, committee, [100, 101, 102, 103], factories={cut: FaultyEngineFactory("partition")})
    engine = net.engines[cut]
    assert isinstance(engine, FaultyRoundEngine) and isinstance(engine.fault, Partition)
    net.start()
    await net.clock.advance(0.25)
    engine.fault.toggle()
    heard = engine.stats.reports_attested
    sent = len(net.sent)
    await net.clock.advance(1.5)  # more than two progress timeouts
    assert engine.stats.reports_attested == heard  # nothing arrived
    assert all(frm != cut for frm, _, _ in net.sent[sent:])  # its wishes went nowhere
    assert engine.pacemaker.wanted == 1 and engine.epoch == 0
    engine.fault.toggle()
    await net.clock.advance(0.5)
    await net.stop()
    assert engine.stats.reports_attested > heard and engine.pacemaker.wanted == 0
    assert all(e.epoch == 0 for e in net.engines)
