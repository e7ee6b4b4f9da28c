"""Test faults wrap what an ordinary engine is given; honest engines notice each one."""

from __future__ import annotations
import errno
import os
import resource
from pathlib import Path

import pytest

from relayer.chain.codec import decode_updates
from relayer.protocol.committee import Committee
from relayer.testing.faults import (
    FAULTS,
    FaultContext,
    FaultyEngineFactory,
    FaultyRoundEngine,
    FdExhaustion,
    Partition,
    UnknownFault,
)
from tests.relayer.protocol.network import network

pytestmark = pytest.mark.unit


def test_an_unknown_fault_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownFault, match="wrong_median"):
        FaultyEngineFactory("meteor")
    assert set(FAULTS) == {"silent", "wrong_median", "drop_observations", "forge_observation", "absurd",
                           "equivocate", "replay", "spam", "pad_report", "withhold_feed", "partition",
                           "fd_exhaustion", "disk_full", "withhold_shares"}


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


def test_an_exhausted_process_can_open_nothing_until_the_descriptors_are_given_back(
    keys: list[bytes], committee: Committee
) -> None:
    fault = FdExhaustion(FaultContext(keys[0], committee.signers[0], committee, None))  # type: ignore[arg-type]
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    fault.toggle()
    try:
        assert fault.on and len(fault.held) > 0
        with pytest.raises(OSError) as refused:
            os.open(os.devnull, os.O_RDONLY)
        assert refused.value.errno == errno.EMFILE
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] <= FdExhaustion.limit  # a few thousand at most
    finally:
        fault.toggle()
    assert not fault.on and fault.held == []
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before
    os.close(os.open(os.devnull, os.O_RDONLY))


_DISK_FULL_PROBE = """
import os, resource, sys
from relayer.testing.faults import DiskFull, FaultContext
path, existing = sys.argv[1], sys.argv[2]
fault = DiskFull(FaultContext(b"k" * 32, "0x0", None, None))
before = resource.getrlimit(resource.RLIMIT_FSIZE)
fault.toggle()
for name, mode in ((path, "ab"), (existing, "r+b")):  # to grow a file, and into space it has
    try:
        with open(name, mode) as f:
            f.write(b"same")
        print("wrote")
    except OSError as exc:
        print("refused", exc.errno)
fault.toggle()
with open(path, "ab") as f:
    f.write(b"grow")
print("grew again", resource.getrlimit(resource.RLIMIT_FSIZE) == before)
"""


def test_disk_full_refuses_every_write_to_a_file_until_switched_off(tmp_path: Path) -> None:
    # In a process of its own: the limit and SIGXFSZ's disposition are the whole process's.
    import subprocess
    import sys

    existing = tmp_path / "existing"
    existing.write_bytes(b"0123456789")
    done = subprocess.run([sys.executable, "-c", _DISK_FULL_PROBE, str(tmp_path / "grows"), str(existing)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == [f"refused {errno.EFBIG}"] * 2 + ["grew again True"], done.stdout
    assert existing.read_bytes() == b"0123456789" and (tmp_path / "grows").read_bytes() == b"grow"
