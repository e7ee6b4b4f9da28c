"""Engines of one committee on an in-process bus, stepped by a manual clock.

The bus is deliberately simple (deliver to everyone else on the same loop, at once): these
tests are about the protocol's decisions. The same engine runs over real libp2p hosts and a
real chain in tests/test_devnet.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from relayer.chain.codec import ReportDomain
from relayer.protocol.committee import Committee
from relayer.protocol.engine import AttestedReport, EngineInputs, RoundEngine, ThresholdKeyShare
from relayer.protocol.messages import Envelope, FeedObservation, Kind, Observation, open_envelope, seal
from relayer.protocol.outbox import Outbox
from relayer.protocol.selection import FeedSelection
from relayer.store import Store
from relayer.testing.clock import ManualClock
from relayer.testing.faults import FaultyEngineFactory

DOMAIN = ReportDomain(31337, "0x" + "11" * 20)
OBSERVED_AT = 1_700_000_000


def observer(value: int, observed_at: int = OBSERVED_AT) -> Callable[[], Observation]:
    return lambda: Observation(feeds=(
        FeedObservation(feed_index=0, value=value, observed_at=observed_at, num_sources=3),
        FeedObservation(feed_index=1, value=value // 10, observed_at=observed_at, num_sources=2),
    ))


@dataclass
class Network:
    clock: ManualClock
    engines: list[RoundEngine] = field(default_factory=list)
    attested: list[list[AttestedReport]] = field(default_factory=list)
    down: set[int] = field(default_factory=set)
    sent: list[tuple[int, str | None, bytes]] = field(default_factory=list)  # (from, to or None for all, data)

    def publisher(self, me: int) -> Callable[[bytes], None]:
        def publish(data: bytes) -> None:
            self.sent.append((me, None, data))
            if me in self.down:
                return
            loop = asyncio.get_running_loop()
            for i, engine in enumerate(self.engines):
                if i != me and i not in self.down:
                    loop.call_soon(engine.on_wire, self.engines[me].address, data)
        return publish

    def sender(self, me: int) -> Callable[[str, bytes], None]:
        def send(address: str, data: bytes) -> None:
            self.sent.append((me, address, data))
            if me in self.down:
                return
            for i, engine in enumerate(self.engines):
                if engine.address == address and i not in self.down:
                    asyncio.get_running_loop().call_soon(engine.on_wire, self.engines[me].address, data)
        return send

    def start(self) -> None:
        for engine in self.engines:
            engine.start()

    async def stop(self) -> None:
        for engine in self.engines:
            await engine.stop()


def network(tmp_path: Path, keys: list[bytes], committee: Committee, values: list[int], *,
            wrap: dict[int, Callable[[Outbox], Outbox]] | None = None,
            factories: dict[int, FaultyEngineFactory] | None = None,
            selections: dict[int, FeedSelection] | None = None,
            bounds: Mapping[int, tuple[int, int]] | None = None,
            bounds_of: dict[int, Mapping[int, tuple[int, int]]] | None = None,
            threshold_keys: Mapping[int, ThresholdKeyShare] | None = None,
            domain: ReportDomain = DOMAIN, observed_at: int = OBSERVED_AT) -> Network:
    net = Network(clock=ManualClock())
    for i, key in enumerate(keys):
        reports: list[AttestedReport] = []
        net.attested.append(reports)

        async def collect(report: AttestedReport, into: list[AttestedReport] = reports) -> None:
            into.append(report)

        inputs = EngineInputs(
            private_key=key, address=committee.signers[i], committee=committee, domain=domain,
            store=Store(tmp_path / f"n{i}.sqlite", sync="normal"), observe=observer(values[i], observed_at),
            publish=net.publisher(i), send_to=net.sender(i), on_attested=collect,
            selection=(selections or {}).get(i),
            bounds=(lambda b=(bounds_of or {}).get(i, bounds or {}): b),
            threshold_key=(threshold_keys or {}).get(i),
        )
        factory = (factories or {}).get(i)
        net.engines.append(factory(inputs, clock=net.clock) if factory is not None else
                           RoundEngine(inputs, clock=net.clock, wrap_outbox=(wrap or {}).get(i)))
    return net


@dataclass
class Solo:
    """One engine under test; the other members are played by the test, message by message."""

    engine: RoundEngine
    keys: list[bytes]
    committee: Committee
    clock: ManualClock
    published: list[bytes] = field(default_factory=list)
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    attested: list[AttestedReport] = field(default_factory=list)

    def deliver(self, member: int, kind: Kind, epoch: int, round: int, body: BaseModel) -> bytes:
        data = seal(private_key=self.keys[member], sender=self.committee.signers[member], kind=kind,
                    config_digest=self.committee.config_digest, epoch=epoch, round=round, body=body).encode()
        self.engine.on_wire(self.committee.signers[member], data)
        return data

    def outgoing(self, kind: Kind, *, to: int | None = None) -> list[Envelope]:
        """What the engine sent of `kind`: broadcast, or to member `to`."""
        raw = self.published if to is None else [d for a, d in self.sent if a == self.committee.signers[to]]
        return [e for e in (open_envelope(d) for d in raw) if e.kind is kind]

    def drops(self, reason: str) -> int:
        return sum(n for (_, r), n in self.engine.stats.dropped.items() if r == reason)


async def leading(tmp_path: Path, keys: list[bytes], committee: Committee) -> Solo:
    """The leader of epoch 0, started: its first observe request is out, its own observation in."""
    s = solo(tmp_path, keys, committee, committee.leader(0))
    s.engine.start()
    await s.clock.advance(0)
    return s


def solo(tmp_path: Path, keys: list[bytes], committee: Committee, me: int, value: int = 100) -> Solo:
    clock = ManualClock()
    published: list[bytes] = []
    sent: list[tuple[str, bytes]] = []
    reports: list[AttestedReport] = []

    async def collect(report: AttestedReport) -> None:
        reports.append(report)

    engine = RoundEngine(EngineInputs(
        private_key=keys[me], address=committee.signers[me], committee=committee, domain=DOMAIN,
        store=Store(tmp_path / f"solo{me}.sqlite", sync="normal"), observe=observer(value),
        publish=published.append, send_to=lambda address, data: sent.append((address, data)),
        on_attested=collect,
    ), clock=clock)
    return Solo(engine, keys, committee, clock, published, sent, reports)
