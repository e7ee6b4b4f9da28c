"""One relayer node: sources, local aggregation, p2p, round protocol and transmission, wired.

Everything runs on one asyncio loop except the libp2p host, which lives in its own trio
thread behind `relayer.p2p.host.P2PHost`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from web3 import AsyncHTTPProvider, AsyncWeb3

from aggregation.errors import AggregationError
from aggregation.local import aggregate_readings
from feeds.poller import FeedCache
from feeds.registry import make_source
from relayer.chain.codec import address_of
from relayer.chain.oracle import QuorumOracleClient
from relayer.p2p.host import P2PHost
from relayer.p2p.identity import address_of_peer_id
from relayer.protocol.committee import Committee
from relayer.protocol.engine import AttestedReport, RoundEngine
from relayer.protocol.messages import FeedObservation, Observation
from relayer.settings import FeedSpec, Settings, SettingsError, read_key_file
from relayer.store import Store
from relayer.transmission import Transmitter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedFeed:
    spec: FeedSpec
    index: int


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.key = read_key_file(settings.signing_key_file)
        self.transmitter_key = read_key_file(settings.transmitter_key_file) if settings.transmitter_key_file else None
        self.address = address_of(self.key)
        self.store = Store(settings.data_dir / "node.sqlite")
        self._stop = asyncio.Event()
        self.engine: RoundEngine | None = None
        self.host: P2PHost | None = None

    def observe(self) -> Observation:
        """Observe every served feed from the local cache; a feed without enough sources is left out."""
        now = time.time()
        feeds = []
        for feed in self.served:
            readings = self.cache.readings(feed.spec.instrument, now=now)
            readings = [r for r in readings if r.source in feed.spec.sources]
            try:
                local = aggregate_readings(readings, min_sources=feed.spec.min_sources, decimals=feed.spec.decimals)
            except AggregationError as exc:
                log.warning("feed not observed: %s", exc, extra={"feed": feed.spec.feed_id})
                continue
            feeds.append(
                FeedObservation(
                    feed_index=feed.index, value=local.value, observed_at=int(now), num_sources=local.num_sources
                )
            )
        return Observation(feeds=tuple(feeds))

    async def _dial_peers(self) -> None:
        """Keep one connection per pair: the node with the higher address dials, and redials."""
        assert self.host is not None
        host = self.host

        async def dial(addr: str) -> None:
            try:
                await host.connect(addr)
            except Exception as exc:  # a peer being down is normal; retry next pass
                log.debug("dial %s failed: %s", addr, exc)

        while True:
            connected = set(host.connected_peers())
            missing = [
                addr for addr in self.settings.peers
                if (peer_id := addr.rsplit("/p2p/", 1)[-1]) not in connected
                and address_of_peer_id(peer_id).lower() < self.address.lower()
            ]
            await asyncio.gather(*(dial(addr) for addr in missing))
            await asyncio.sleep(1.0)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        s = self.settings
        w3 = AsyncWeb3(AsyncHTTPProvider(s.rpc_urls[0], request_kwargs={"timeout": s.rpc_timeout}))
        chain_id = await w3.eth.chain_id
        oracle = QuorumOracleClient(w3, s.oracle_address)
        committee = Committee.from_onchain(await oracle.config())
        index = committee.index_of(self.address)
        if index is None:
            raise SettingsError(
                f"signing key {self.address} is not in the committee of {s.oracle_address} "
                f"(signers: {', '.join(committee.signers)}); ask the owner to add it with setConfig"
            )
        self.served = [ServedFeed(f, await oracle.feed_index(f.feed_id)) for f in s.feeds]
        sources = {name: make_source(name, s.source_urls.get(name), timeout=s.source_timeout)
                   for name in sorted({n for f in s.feeds for n in f.sources})}
        self.cache = FeedCache(sources, sorted({f.instrument for f in s.feeds}), max_age=max(10.0, 5 * s.poll_interval))
        extra = {"epoch": 0, "round": 0}
        log.info("node %s is committee member %d of %d (f=%d, threshold=%d)", self.address, index,
                 committee.n, committee.f, committee.threshold, extra=extra)

        async with aiohttp.ClientSession() as session:
            await self.cache.poll_once(session)
            scheduler = AsyncIOScheduler()
            scheduler.add_job(self.cache.poll_once, "interval", args=[session], seconds=s.poll_interval,
                              max_instances=1, coalesce=True, misfire_grace_time=None)
            scheduler.start()
            transmitter = Transmitter(oracle=oracle, committee=committee, index=index,
                                      transmitter_key=self.transmitter_key, store=self.store)
            loop = asyncio.get_running_loop()
            engine_ref: list[RoundEngine] = []
            self.host = P2PHost(
                self.key, listen_host=s.listen_host, listen_port=s.listen_port,
                allowed_addresses=committee.signers,
                on_message=lambda sender, data: engine_ref[0].on_wire(sender, data) if engine_ref else None,
            )
            await self.host.start()
            log.info("p2p listening on %s", ", ".join(self.host.listen_addrs))
            self.engine = RoundEngine(
                private_key=self.key, address=self.address, committee=committee,
                domain=oracle.domain(chain_id), store=self.store, observe=self.observe,
                publish=self.host.publish, on_attested=transmitter.handle,
            )
            engine_ref.append(self.engine)
            dialer = asyncio.create_task(self._dial_peers())
            try:
                await self.host.wait_for_peers(committee.quorum - 1, timeout=30.0)
            except Exception as exc:
                log.warning("starting with fewer peers than a quorum: %s", exc)
            self.engine.start()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            try:
                await self._stop.wait()
            finally:
                log.info("stopping")
                dialer.cancel()
                await self.engine.stop()
                scheduler.shutdown(wait=False)
                await self.host.stop()
                self.store.close()
