"""Engines of one committee on an in-process bus, stepped by a manual clock.

The bus is deliberately simple (deliver to everyone else on the same loop, at once): these
tests are about the protocol's decisions. The same engine runs over real libp2p hosts and a
real chain in tests/test_devnet.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from relayer.chain.codec import ReportDomain
from relayer.protocol.committee import Committee
from relayer.protocol.engine import AttestedReport, RoundEngine
from relayer.protocol.messages import FeedObservation, Observation
from relayer.protocol.outbox import Outbox
from relayer.store import Store
from relayer.testing.clock import ManualClock

DOMAIN = ReportDomain(31337, "0x" + "11" * 20)
OBSERVED_AT = 1_700_000_000


def observer(value: int) -> Callable[[], Observation]:
    return lambda: Observation(feeds=(
        FeedObservation(feed_index=0, value=value, observed_at=OBSERVED_AT, num_sources=3),
        FeedObservation(feed_index=1, value=value // 10, observed_at=OBSERVED_AT, num_sources=2),
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
            observe: dict[int, Callable[[], Observation]] | None = None) -> Network:
    net = Network(clock=ManualClock())
    for i, key in enumerate(keys):
        reports: list[AttestedReport] = []
        net.attested.append(reports)

        async def collect(report: AttestedReport, into: list[AttestedReport] = reports) -> None:
            into.append(report)

        net.engines.append(RoundEngine(
            private_key=key, address=committee.signers[i], committee=committee, domain=DOMAIN,
            store=Store(tmp_path / f"n{i}.sqlite", sync="normal"),
            observe=(observe or {}).get(i, observer(values[i])),
            publish=net.publisher(i), send_to=net.sender(i), on_attested=collect,
            clock=net.clock, wrap_outbox=(wrap or {}).get(i),
        ))
    return net
