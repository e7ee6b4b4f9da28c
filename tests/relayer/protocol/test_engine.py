"""The round protocol among four engines on an in-process bus.

The bus is deliberately simple (deliver to everyone else on the same loop): these tests
are about the protocol's decisions. The same engine runs over real libp2p hosts and a
real chain in tests/test_devnet.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relayer.chain.codec import ReportDomain, decode_updates, recover_address
from relayer.protocol.committee import Committee
from relayer.protocol.engine import AttestedReport, RoundEngine
from relayer.protocol.messages import FeedObservation, Kind, Observation, Proposal, open_envelope
from relayer.store import Store

pytestmark = pytest.mark.unit

DOMAIN = ReportDomain(31337, "0x" + "11" * 20)


class Bus:
    def __init__(self) -> None:
        self.engines: list[RoundEngine] = []
        self.down: set[int] = set()

    def publisher(self, me: int):  # type: ignore[no-untyped-def]
        def publish(data: bytes) -> None:
            if me in self.down:
                return
            loop = asyncio.get_running_loop()
            for i, engine in enumerate(self.engines):
                if i != me and i not in self.down:
                    loop.call_soon(engine.on_wire, self.engines[me].address, data)
        return publish


def _observer(value: int):  # type: ignore[no-untyped-def]
    return lambda: Observation(feeds=(FeedObservation(feed_index=0, value=value, observed_at=1_700_000_000, num_sources=3),
                                      FeedObservation(feed_index=1, value=value // 10, observed_at=1_700_000_000, num_sources=2)))


def _network(tmp_path: Path, keys: list[bytes], committee: Committee, values: list[int],
             engine_cls: dict[int, type[RoundEngine]] | None = None):  # type: ignore[no-untyped-def]
    bus = Bus()
    attested: list[list[AttestedReport]] = [[] for _ in keys]
    for i, key in enumerate(keys):
        async def collect(report: AttestedReport, i: int = i) -> None:
            attested[i].append(report)
        cls = (engine_cls or {}).get(i, RoundEngine)
        bus.engines.append(cls(
            private_key=key, address=committee.signers[i], committee=committee, domain=DOMAIN,
            store=Store(tmp_path / f"n{i}.sqlite"), observe=_observer(values[i]),
            publish=bus.publisher(i), on_attested=collect,
        ))
    return bus, attested


async def _run(bus: Bus, seconds: float) -> None:
    for engine in bus.engines:
        engine.start()
    await asyncio.sleep(seconds)
    for engine in bus.engines:
        await engine.stop()


async def test_rounds_attest_the_median_with_threshold_signatures(tmp_path: Path, keys, committee) -> None:  # type: ignore[no-untyped-def]
    bus, attested = _network(tmp_path, keys, committee, [100, 104, 101, 10**9])
    await _run(bus, 0.8)
    reports = attested[0]
    assert len(reports) >= 3
    assert [r.key for r in reports] == sorted({r.key for r in reports})
    for report in reports:
        value = decode_updates(report.updates)[0].value
        assert 100 <= value <= 104  # the absurd 10**9 never wins the median
        digest = DOMAIN.report_digest(committee.config_digest, report.epoch, report.round, report.updates)
        signers = {recover_address(digest, sig) for _, sig in report.signatures}
        assert len(signers) >= committee.threshold
        assert signers <= set(committee.signers)
    # Every node holds the same attested reports.
    assert {r.key for r in attested[1]} >= {r.key for r in reports[:-1]}


class WrongMedianLeader(RoundEngine):
    """Test-only fault: proposes observations faithfully but a value of its choosing."""

    def _broadcast(self, kind, epoch, round, body):  # type: ignore[no-untyped-def]
        if kind is Kind.PROPOSAL:
            assert isinstance(body, Proposal)
            forged = body.updates[:-8] + "deadbeef"
            body = Proposal(observations=body.observations, updates=forged)
        super()._broadcast(kind, epoch, round, body)


async def test_followers_refuse_a_proposal_they_cannot_recompute(tmp_path: Path, keys, committee) -> None:  # type: ignore[no-untyped-def]
    leader = committee.leader(0)
    bus, attested = _network(tmp_path, keys, committee, [100, 101, 102, 103], {leader: WrongMedianLeader})
    await _run(bus, 1.6)  # past one progress timeout (0.6 s)
    honest = [i for i in range(4) if i != leader]
    for i in honest:
        drops = bus.engines[i].stats.dropped
        assert drops[(committee.signers[leader], "bad_proposal")] >= 1
        # The faulty leader's epoch attests nothing; a later epoch with an honest leader does.
        assert all(r.epoch > 0 for r in attested[i])
    assert any(attested[i] for i in honest)
    for i in honest:
        for r in attested[i]:
            assert 100 <= decode_updates(r.updates)[0].value <= 103


async def test_silent_leader_costs_one_progress_timeout(tmp_path: Path, keys, committee) -> None:  # type: ignore[no-untyped-def]
    bus, attested = _network(tmp_path, keys, committee, [100, 101, 102, 103])
    leader = committee.leader(0)
    bus.down.add(leader)
    await _run(bus, 1.6)
    survivors = [i for i in range(4) if i != leader]
    assert all(bus.engines[i].epoch >= 1 for i in survivors)
    assert any(attested[i] for i in survivors)


async def test_replayed_and_foreign_digest_messages_are_dropped(tmp_path: Path, keys, committee) -> None:  # type: ignore[no-untyped-def]
    bus, attested = _network(tmp_path, keys, committee, [100, 101, 102, 103])
    await _run(bus, 0.5)
    target = bus.engines[1]
    before = dict(target.stats.dropped)
    # A message sealed under another digest is counted as wrong_digest.
    from relayer.protocol.messages import NewEpoch, seal
    other = seal(private_key=keys[2], sender=committee.signers[2], kind=Kind.NEW_EPOCH,
                 config_digest=b"\x00" * 32, epoch=99, round=0, body=NewEpoch())
    target.on_wire(committee.signers[2], other.encode())
    assert target.stats.dropped[(committee.signers[2], "wrong_digest")] == before.get((committee.signers[2], "wrong_digest"), 0) + 1
    assert target.epoch < 99
    # A non-member's message is counted as not_in_committee, whatever it says.
    import secrets
    from relayer.chain.codec import address_of
    stranger = secrets.token_bytes(32)
    env = seal(private_key=stranger, sender=address_of(stranger), kind=Kind.NEW_EPOCH,
               config_digest=committee.config_digest, epoch=50, round=0, body=NewEpoch())
    target.on_wire(address_of(stranger), env.encode())
    assert target.stats.dropped[(address_of(stranger), "not_in_committee")] == 1
    assert open_envelope(env.encode()).epoch == 50 and target.epoch < 50
