"""One relayer node: sources, local aggregation, p2p, round protocol and transmission, wired.

Everything runs on one asyncio loop except the libp2p host, which lives in its own trio
thread behind `relayer.p2p.host.P2PHost`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from web3 import AsyncHTTPProvider, AsyncWeb3

from aggregation.errors import AggregationError
from aggregation.trigger import Landed, Promise
from feeds.catalog import check_sources
from feeds.errors import FeedsError
from feeds.poller import FeedCache
from feeds.registry import make_source
from relayer.chain.codec import address_of
from relayer.api import ApiServer, ServedFeedInfo, SubscriptionsBoard, SubscriptionsSnapshot
from relayer.http_guard import ApiLimits, ConnectionGuard
from relayer.chain.codec import feed_id_bytes, unpack_signatures
from relayer.chain.contract import chain_id_of
from relayer.chain.errors import ChainError
from relayer.chain.feed_view import FeedView
from relayer.chain.oracle import QuorumOracleClient
from relayer.chain.subscriptions import PromiseBook, SubscriptionRegistryClient
from relayer.chain.risk_gate import RiskGateClient
from relayer.chain.rpc import JsonRpcClient
from relayer.chain.txmanager import TxManager
from relayer.keygen import installed_share
from relayer.keystore import KeystoreError, keystore_password, load_signing_key
from relayer.logs import register_secret, set_log_identity
from relayer.metrics import (
    ChainContext,
    CommitteeView,
    DropCount,
    EngineCounters,
    HostCounters,
    NodeHealth,
    NodeIdentity,
    NodeSnapshot,
    SourceHealthView,
    Telemetry,
    TransmissionCounts,
)
from relayer.p2p.errors import MessageRejected
from relayer.p2p.host import P2PHost
from relayer.p2p.identity import address_of_peer_id
from relayer.protocol.committee import Committee
from relayer.protocol.report import decode_carried
from relayer.protocol.signer import THRESHOLD_SCHNORR, scheme_of
from relayer.protocol.selection import CarryAll, FeedSelection, Inclusion, TriggerSelection
from relayer.protocol.engine import AttestedReport, EngineFactory, EngineInputs, RoundEngine, ThresholdKeyShare
from relayer.protocol.errors import InvalidMessage, SchemeMismatch
from relayer.protocol.messages import Envelope, FeedObservation, Observation, open_envelope
from relayer.settings import FeedSpec, Settings, read_key_file
from relayer.supervise import supervised
from relayer.store import Store
from relayer.transmission import Transmitter

log = logging.getLogger(__name__)

# How far back (blocks) a starting node reads landed reports it does not hold.
ADOPT_WINDOW_BLOCKS = 2_000
# At most this many landed reports are read back per config poll.
ADOPT_PER_POLL = 64

DIAL_BACK_PASSES = 3
# How often the node tells telemetry (and the store) its counters: the gauges lag by at most this.
SNAPSHOT_INTERVAL_S = 0.5


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of a file; None when it is missing."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class ServedFeed:
    spec: FeedSpec
    index: int


class Node:
    def __init__(self, settings: Settings, *, engine_factory: EngineFactory = RoundEngine) -> None:
        self.settings = settings
        # Only `python -m relayer.testing` passes another factory (a fault's), on a local devnet.
        self.engine_factory = engine_factory
        self.key, self.dry_run = load_signing_key(settings)
        if self.dry_run:
            log.warning("dry run: no keystore_file or signing_key_file given; following the network, signing nothing")
        register_secret(self.key)
        self.transmitter_key = read_key_file(settings.transmitter_key_file) if settings.transmitter_key_file else None
        if self.transmitter_key is not None:
            register_secret(self.transmitter_key)
        self.address = address_of(self.key)
        set_log_identity(self.address)
        # Asked for once at start: a committee under scheme 0x0002 may come (and the share be
        # rewritten by a new key generation) long after, with nobody at a prompt.
        self._share_password = keystore_password(settings) if settings.threshold_share_file is not None else None
        # Watching a 0x0002 committee for want of a usable share: the share file as it was then
        # (size, mtime; None when missing), so that a new one is tried as soon as it is put in place.
        self._awaiting_share = False
        self._unusable_share: tuple[int, int] | None = None
        self.store = Store(settings.data_dir / "node.sqlite", sync=settings.store_sync)
        self._stop = asyncio.Event()
        self.engine: RoundEngine | None = None
        self.host: P2PHost[Envelope] | None = None
        # Reports for peers outside the committee, on a host of their own (None: not serving).
        self.transmitter: Transmitter | None = None
        # One transaction manager per transmitting key, across committee changes: it owns the nonce.
        self.txmanager: TxManager | None = None
        self._committees_seen = 0
        self.committee: Committee | None = None
        self.telemetry = Telemetry(
            NodeIdentity(name=settings.name, address=self.address, dry_run=self.dry_run,
                         oracle=settings.oracle_address, risk_gate=settings.risk_gate_address,
                         min_balance_wei=int(settings.min_balance_eth * 10**18),
                         rpc_stale_after_s=settings.rpc_stale_after_s,
                         store_retention_hours=settings.store_retention_hours),
            self.store,
        )
        self._last_observation: tuple[tuple[int, int], Observation] | None = None
        self.subscriptions_board = SubscriptionsBoard()
        # Filled in run(): the promises per feed (catalog defaults, subscriptions, floors) and
        # the chain's latest two states per feed, what the trigger policy decides against.
        self.promise_book: PromiseBook | None = None
        self.feed_view: FeedView | None = None
        self._view_refresh: asyncio.Task[None] | None = None
        # Supervised long-lived tasks (relayer.supervise): those waiting to restart, and failures.
        self.failed_tasks: dict[str, str] = {}
        # Per served feed index its on-chain (min, max), followed from FeedParametersSet logs.
        self.bounds: dict[int, tuple[int, int]] = {}
        self._bounds_block: int | None = None
        self._landed_block: int | None = None
        self.task_failures: Counter[str] = Counter()

    @property
    def promises(self) -> dict[int, Promise]:
        """Per served feed index, the promise the network keeps now (empty before run())."""
        if self.promise_book is None:
            return {}
        current = self.promise_book.promises
        return {sf.index: current[feed_id_bytes(sf.spec.feed_id)] for sf in self.served}

    def observe(self) -> Observation:
        """Observe every served feed from the local cache; a feed that cannot be served is left out.

        Rounds come faster than venue polls: within one second and with no new fetch since,
        the cache yields the same observation, so the last one is reused.
        """
        self._refresh_view_for_round()
        return self._cached_observation()

    def _cached_observation(self) -> Observation:
        """The observation of now, reused within the same second and cache generation."""
        now = time.time()
        key = (self.cache.generation, int(now))
        if self._last_observation is not None and self._last_observation[0] == key:
            return self._last_observation[1]
        observation = self._observe_now(now)
        self._last_observation = (key, observation)
        return observation

    def _observe_now(self, now: float) -> Observation:
        feeds = []
        for feed in self.served:
            try:
                local = self.cache.aggregate(feed.spec, now=now)
            except (AggregationError, FeedsError) as exc:
                log.warning("feed not observed: %s", exc,
                            extra={"feed": feed.spec.feed_id, "reason": getattr(exc, "reason", type(exc).__name__)})
                continue
            feeds.append(
                FeedObservation(
                    feed_index=feed.index, value=local.value, observed_at=int(now), num_sources=local.num_sources
                )
            )
        return Observation(feeds=tuple(sorted(feeds, key=lambda f: f.feed_index)))

    async def _dial_peers(self) -> None:
        """Keep one connection per pair: the node with the higher address dials, and redials;
        the other waits a few seconds for that call before dialing too."""
        assert self.host is not None
        host = self.host

        async def dial(addr: str) -> None:
            try:
                await host.connect(addr)
            except Exception as exc:  # a peer being down is normal; retry next pass
                log.debug("dial %s failed: %s", addr, exc)

        # A peer with the higher address may not know ours (a newcomer is in our list before
        # we are in theirs): after this many passes without its call, we dial it ourselves.
        waited: dict[str, int] = {}
        while True:
            connected = set(host.connected_peers())
            missing = []
            for addr in self.settings.peers:
                peer_id = addr.rsplit("/p2p/", 1)[-1]
                if peer_id in connected:
                    waited.pop(peer_id, None)
                    continue
                waited[peer_id] = waited.get(peer_id, 0) + 1
                if address_of_peer_id(peer_id).lower() < self.address.lower() or waited[peer_id] > DIAL_BACK_PASSES:
                    missing.append(addr)
            await asyncio.gather(*(dial(addr) for addr in missing))
            await asyncio.sleep(1.0)

    def request_stop(self) -> None:
        self._stop.set()

    def _open_message(self, sender: str, data: bytes) -> Envelope:
        """Both transports' message check (p2p thread): the envelope, parsed and its signer
        recovered once, travels with the bytes to the engine; a refusal names its reason."""
        try:
            env = open_envelope(data, max_bytes=self.settings.max_message_bytes)
        except InvalidMessage as exc:
            raise MessageRejected(exc.reason, exc.detail) from None
        if env.sender.lower() != sender.lower():
            raise MessageRejected("sender_mismatch", f"envelope from {env.sender} relayed as {sender}")
        committee = self.committee
        if committee is not None and env.digest != committee.digest_hex:
            raise MessageRejected("wrong_digest", f"{env.digest[:12]} is not the config digest {committee.digest_hex[:12]}")
        return env

    def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.create_task(supervised(name, run, failed=self.failed_tasks, failures=self.task_failures),
                                   name=name)

    def _on_wire(self, sender: str, data: bytes, opened: Envelope | None) -> None:
        if self.engine is not None:
            self.engine.on_wire(sender, data, opened)

    async def _start_committee(self, committee: Committee) -> None:
        """Start (or restart) the round protocol under `committee`; watch only when not a member."""
        assert self.host is not None
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        self.committee = committee
        self._awaiting_share = False
        self.host.set_allowed(committee.signers)
        index = committee.index_of(self.address)
        extra = {"epoch": 0, "round": 0}
        if index is None:
            log.warning(
                "signing key %s is not in the committee of %s (digest %s); watching for a config that adds it",
                self.address, self.settings.oracle_address, committee.digest_hex[:12], extra=extra,
            )
            return
        log.info("committee member %d of %d (f=%d, threshold=%d, digest %s)", index, committee.n, committee.f,
                 committee.threshold, committee.digest_hex[:12], extra=extra)
        self._committees_seen += 1
        self.transmitter = Transmitter(oracle=self.oracle, committee=committee, index=index,
                                       txmanager=self.txmanager, store=self.store, generation=self._committees_seen)
        selection = self._feed_selection(committee)
        threshold_key = None
        if scheme_of(committee.config_digest) == THRESHOLD_SCHNORR:
            threshold_key = await self._threshold_key(committee, index)
            if threshold_key is None:
                return

        def inclusions(report: AttestedReport) -> Sequence[Inclusion]:
            return selection.inclusions(decode_carried(report.updates))

        try:
            self.engine = self.engine_factory(EngineInputs(
                private_key=self.key, address=self.address, committee=committee,
                domain=self.oracle.domain(self.chain_id), store=self.store,
                observe=self.telemetry.timed_observe(self.observe),
                on_attested=self.telemetry.wrap_attested(self.transmitter.handle, committee.signers, inclusions),
                # Direct streams by default: one copy per peer per message, where gossip costs
                # several; gossip stays available for networks that are not fully connected.
                publish=self.host.send_all if self.settings.transport == "direct" else self.host.publish,
                send_to=self.host.send if self.settings.transport == "direct" else None,
                selection=selection,
                bounds=lambda: self.bounds,
                threshold_key=threshold_key,
            ))
        except SchemeMismatch as exc:
            log.error("cannot take part in this committee, watching only: %s", exc, extra=extra)
            return
        self.engine.start()

    async def _threshold_key(self, committee: Committee, index: int) -> ThresholdKeyShare | None:
        """This member's share of the installed group key, from `threshold_share_file`; None (and
        an error logged: the node watches) when it is missing, for another committee, or not
        the share of the key the contract holds."""
        extra = {"epoch": 0, "round": 0}
        path, password = self.settings.threshold_share_file, self._share_password
        if path is None or password is None:
            log.error("the committee signs with threshold Schnorr (scheme 0x0002) and no threshold_share_file is "
                      "set: run `relayer dkg` and set it; watching only", extra=extra)
            return None
        stamp = _file_stamp(path)  # before reading: a share put in place meanwhile is tried next
        try:
            record = await installed_share(path, password, chain_id=self.chain_id, oracle=self.oracle,
                                           signers=committee.signers, threshold=committee.threshold, member=index)
        except (KeystoreError, ChainError) as exc:
            log.error("cannot sign under scheme 0x0002, watching only until the share file changes: %s", exc,
                      extra=extra)
            self._awaiting_share, self._unusable_share = True, stamp
            return None
        register_secret(record.secret.to_bytes(32, "big"))
        return ThresholdKeyShare(record.key_share(), record.verification_shares)

    async def _watch_config(self) -> None:
        """Follow `setConfig` on-chain: a new digest switches committees without a restart."""
        while True:
            await asyncio.sleep(self.settings.config_poll_interval)
            try:
                onchain = await self.oracle.config()
            except Exception as exc:
                log.warning("cannot read the on-chain config: %s", exc)
                continue
            current = self.committee
            if current is None or bytes(onchain.config_digest) != current.config_digest:
                log.info("new on-chain config %s replaces %s", "0x" + bytes(onchain.config_digest).hex()[:10],
                         current.digest_hex[:12] if current else "none")
                await self._start_committee(Committee.from_onchain(onchain))
            elif self._share_replaced():
                log.info("the threshold key share file changed; trying it for committee %s", current.digest_hex[:12])
                await self._start_committee(current)

    def _share_replaced(self) -> bool:
        """Watching for want of a usable share, and the share file is not the one found unusable."""
        path = self.settings.threshold_share_file
        return self._awaiting_share and path is not None and _file_stamp(path) != self._unusable_share

    async def _poll_promises(self) -> None:
        book = self.promise_book
        if book is None:
            return
        try:
            if await book.poll():
                log.info("subscriptions changed: promises re-read at block %s (%d subscriptions)", book.block,
                         len(book.current.subscriptions))
        except ChainError as exc:
            log.warning("cannot read the subscription registry: %s", exc)
        except Exception:  # noqa: BLE001 - following the registry must survive the unexpected
            log.exception("the promises failed to refresh; retrying next poll")

    async def _adopt_missed(self) -> None:
        """Reports of this committee that landed without reaching this node (a lost broadcast,
        a restart mid-round): read back from their transactions, verified and recorded, so the
        store, the metrics and the reports API miss nothing that is on-chain."""
        engine, committee = self.engine, self.committee
        if engine is None or committee is None:
            return
        try:
            head = await self.oracle.rpc.block_number()
            if self._landed_block is None:
                # From this committee's setConfig, but no further back than a window: a node
                # that was down for days reads back its recent past, not every report since.
                _, config_block, _ = await self.oracle.latest_config_details()
                self._landed_block = max(int(config_block), head - ADOPT_WINDOW_BLOCKS) - 1
            if head <= self._landed_block:
                return
            events = await self.oracle.transmission_events(self._landed_block + 1, head)
            if len(events) > ADOPT_PER_POLL:
                # A backlog (a node back after a while): a slice per poll, so the loop that
                # keeps the feed view fresh is never held up for long.
                events = events[:ADOPT_PER_POLL]
                head = events[-1].block_number
            for event in events:
                if self.store.attested_report(event.epoch, event.round, committee.digest_hex) is not None:
                    continue
                tx = await self.oracle.rpc.request("eth_getTransactionByHash", ["0x" + event.tx_hash.hex()])
                args = self.oracle.decode_transmit_input(tx["input"])
                if bytes(args["configDigest"]) != committee.config_digest:
                    continue
                signatures = unpack_signatures(int(args["signerBitmask"]), bytes(args["signatures"]))
                if engine.adopt_landed(event.epoch, event.round, bytes(args["updates"]), signatures):
                    log.info("adopted a report this node missed from its landing (tx 0x%s)", event.tx_hash.hex(),
                             extra={"epoch": event.epoch, "round": event.round})
            self._landed_block = head
        except (ChainError, InvalidMessage, KeyError, ValueError) as exc:
            log.warning("cannot read back landed reports: %s", exc)

    async def _load_bounds(self) -> None:
        head = await self.oracle.rpc.block_number()
        self.bounds = await self.oracle.feed_bounds([sf.index for sf in self.served])
        self._bounds_block = head

    async def _poll_bounds(self) -> None:
        """Re-read the served feeds' bounds when governance changed a feed's parameters."""
        try:
            if self._bounds_block is None:
                await self._load_bounds()
                return
            head = await self.oracle.rpc.block_number()
            if head <= self._bounds_block:
                return
            changed = await self.oracle.feed_parameter_changes(self._bounds_block + 1, head)
            if changed:
                await self._load_bounds()
                log.info("feed parameters changed on-chain (feeds %s); bounds re-read", sorted(set(changed)))
            else:
                self._bounds_block = head
        except ChainError as exc:
            log.warning("cannot read the feeds' on-chain bounds: %s", exc)

    def _refresh_view_for_round(self) -> None:
        """Under the trigger policy, look at the chain as each round starts (an observe request
        is its start on every member): the leader's choice and the followers' check are then
        made against views of the same moment, not views up to a poll interval apart."""
        committee, view = self.committee, self.feed_view
        if committee is None or view is None or committee.offchain.feed_selection != "trigger":
            return
        if self._view_refresh is not None and not self._view_refresh.done():
            return
        self._view_refresh = asyncio.get_running_loop().create_task(self._refresh_view(view))

    @staticmethod
    async def _refresh_view(view: FeedView) -> None:
        try:
            await view.refresh()
        except ChainError as exc:
            log.warning("cannot read the feeds on-chain: %s", exc)

    def _feed_selection(self, committee: Committee) -> FeedSelection:
        """The committee's report policy (its off-chain config): every feed every round, or
        only the feeds that trigger against this node's view of the chain."""
        if committee.offchain.feed_selection != "trigger":
            return CarryAll()
        view = self.feed_view

        def recent() -> dict[int, tuple[Landed | None, ...]]:
            return view.current().recent_views() if view is not None else {}

        async def refresh() -> None:
            if view is not None:
                await view.refresh()

        return TriggerSelection(recent, lambda: self.promises, committee.offchain.heartbeat_lead_ms // 1000, refresh)

    async def _follow_chain(self) -> None:
        """Keep the feed view current (one cheap poll per venue poll interval, a round or less)
        and the promises (the registry's logs every config_poll_interval, so a change holds
        within two polls). Runs from start, before the committee's peers are connected."""
        assert self.feed_view is not None
        loop = asyncio.get_running_loop()
        next_promises = loop.time() + self.settings.config_poll_interval
        while True:
            await asyncio.sleep(min(self.settings.poll_interval, self.settings.config_poll_interval))
            try:
                await self.feed_view.refresh()
            except ChainError as exc:
                log.warning("cannot read the feeds on-chain: %s", exc)
            except Exception:  # noqa: BLE001 - the view must keep following; say what broke
                log.exception("the feed view failed to refresh; retrying next poll")
            if loop.time() >= next_promises:
                next_promises = loop.time() + self.settings.config_poll_interval
                await self._poll_promises()
                await self._poll_bounds()
                await self._adopt_missed()

    def _tell_subscriptions(self) -> None:
        book, view = self.promise_book, self.feed_view
        if book is None:
            return
        try:
            # Not observe(): that starts a read of the chain for a round, on the event loop,
            # and the stats job runs in the scheduler's worker thread.
            observation = self._cached_observation()
        except Exception as exc:  # noqa: BLE001 - the view must not stop the stats job
            log.debug("no local observation for the subscriptions view: %s", exc)
            observation = Observation(feeds=())
        self.subscriptions_board.update(SubscriptionsSnapshot(
            at=time.time(), registry=self.settings.subscription_registry_address,
            feeds=tuple(ServedFeedInfo(sf.spec.feed_id, feed_id_bytes(sf.spec.feed_id), sf.index, sf.spec.decimals)
                        for sf in self.served),
            promises=book.current, promises_block=book.block,
            onchain=view.snapshot if view is not None else None,
            local={f.feed_index: (f.value, f.observed_at) for f in observation.feeds},
        ))

    async def _load_promises(self, w3: AsyncWeb3[AsyncHTTPProvider]) -> None:
        """The promises at start: catalog defaults, and the registry's subscriptions and floors."""
        s = self.settings
        # A catalog deviation of 0 ("every change") is kept as 1 bps, the finest promise there is.
        defaults = {feed_id_bytes(sf.spec.feed_id): Promise(max(sf.spec.deviation_bps, 1), sf.spec.heartbeat_s,
                                                            sf.spec.min_reference_fixed)
                    for sf in self.served}
        registry = None
        if s.subscription_registry_address is not None:
            registry = SubscriptionRegistryClient(w3, s.subscription_registry_address, rpc=self.rpc)
            reads = await registry.oracle()
            if reads.lower() != s.oracle_address.lower():
                raise ChainError(f"SubscriptionRegistry {registry.address} serves oracle {reads}, not this node's "
                                 f"oracle {s.oracle_address}; correct subscription_registry_address")
        self.promise_book = PromiseBook(registry, defaults)
        await self.promise_book.load()
        self.feed_view = FeedView(self.oracle, [sf.index for sf in self.served])
        await self.feed_view.refresh()

    def _snapshot(self) -> NodeSnapshot:
        # Called from run() only, once its RPC client and source cache exist.
        engine, host, committee, transmitter = self.engine, self.host, self.committee, self.transmitter
        cache, rpc = self.cache, self.rpc
        return NodeSnapshot(
            at=time.time(),
            committee=None if committee is None else CommitteeView(
                digest=committee.digest_hex, signers=committee.signers, f=committee.f,
                threshold=committee.threshold, quorum=committee.quorum,
                member_index=committee.index_of(self.address),
                leader=committee.leader(engine.epoch) if engine is not None else None,
            ),
            engine=None if engine is None else EngineCounters(
                epoch=engine.epoch, round=engine.round, rounds_started=engine.stats.rounds_started,
                reports_attested=engine.stats.reports_attested, epoch_changes=engine.stats.epoch_changes,
                wanted_epoch=engine.pacemaker.wanted, progress_timeouts=engine.stats.progress_timeouts,
                store_errors=engine.stats.store_errors, refused=dict(engine.stats.refused),
                left_out=dict(engine.stats.left_out), adopted_from_chain=engine.stats.adopted_from_chain,
                dropped=tuple(DropCount(peer, reason, n) for (peer, reason), n in list(engine.stats.dropped.items())),
            ),
            host=None if host is None else HostCounters(
                peers=tuple(host.connected_peers()),
                dropped=tuple(DropCount(peer, reason, n) for (peer, reason), n in list(host.dropped.items())),
                traffic=host.traffic(), accept_failures=host.accept_failures,
            ),
            transmission=None if transmitter is None else TransmissionCounts(
                digest=transmitter.committee.digest_hex, transmitted=transmitter.stats.transmitted,
                superseded=transmitter.stats.superseded, failed=transmitter.stats.failed,
                gas_used=transmitter.stats.gas_used,
            ),
            sources=tuple(
                SourceHealthView(name=name, healthy=h.healthy, consecutive_failures=h.consecutive_failures,
                                 ok_count=h.ok_count, error_count=h.error_count, last_latency_ms=h.last_latency_ms,
                                 last_error_type=h.last_error_type)
                for name, h in list(cache.health.items())
            ),
            rpc_failovers={url: rpc.failovers.get(url, 0) for url in rpc.urls},
            health=NodeHealth(
                rpc_last_ok_at=rpc.last_ok_at, rpc_last_error=rpc.last_error, store_error=self.store.write_error,
                pacemaker_alive=engine is not None and engine.alive(),
                wishing_for_s=engine.pacemaker.wishing_for() if engine is not None else None,
                progress_timeout_s=committee.offchain.progress_timeout_ms / 1000 if committee is not None else 0.0,
                failed_tasks=dict(self.failed_tasks), task_failures=dict(self.task_failures),
            ),
        )

    def _snapshot_stats(self) -> None:
        """Tell telemetry, and keep the counters in the store, where `relayer status`, tests and
        benchmarks read them."""
        snapshot = self._snapshot()
        self.telemetry.update(snapshot)
        self._tell_subscriptions()
        try:
            self.store.set_state("stats", json.dumps(snapshot.stats_record(self.address)))
        except sqlite3.Error as exc:
            # Readiness says so (store_unwritable); the log says it once a minute at most.
            log.error("cannot write the node's counters to the store: %s", exc)

    def _prune_store(self) -> None:
        cutoff = time.time() - self.settings.store_retention_hours * 3600
        try:
            deleted = self.store.prune(cutoff)
        except sqlite3.Error as exc:
            log.error("cannot prune the store: %s", exc)
            return
        if any(deleted.values()):
            log.info("store pruned to the last %.0f h: %s; %d bytes on disk", self.settings.store_retention_hours,
                     ", ".join(f"{t} {n}" for t, n in deleted.items() if n), self.store.size_bytes())

    async def _poll_venues(self, session: aiohttp.ClientSession) -> None:
        """Poll the venues every poll_interval. A poll that overruns its slot (venues slow, or no
        descriptor to connect with) starts the next at once, never two side by side; supervised,
        so a failing poll is logged once and restarted, not a traceback every interval."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at = max(next_at + self.settings.poll_interval, loop.time())
            await asyncio.sleep(next_at - loop.time())
            await self.cache.poll_once(session)

    async def run(self) -> None:
        s = self.settings
        # Reads and transmissions fail over across rpc_urls in order (relayer.chain.rpc);
        # web3 only lends its ABI tooling here.
        self.rpc = JsonRpcClient(s.rpc_urls, timeout=s.rpc_timeout)
        w3 = AsyncWeb3(AsyncHTTPProvider(s.rpc_urls[0]))
        self.chain_id = await chain_id_of(self.rpc)
        self.oracle = QuorumOracleClient(w3, s.oracle_address, rpc=self.rpc)
        if self.transmitter_key is not None:
            self.txmanager = TxManager(
                self.rpc, self.transmitter_key, self.chain_id, max_fee_per_gas=int(s.max_fee_per_gas_gwei * 10**9),
                resend_after_blocks=s.resend_after_blocks, confirmations=s.confirmations,
            )
        committee = Committee.from_onchain(await self.oracle.config())
        self.served = [ServedFeed(f, await self.oracle.feed_index(f.feed_id)) for f in s.feeds]
        sources = {name: make_source(name, s.source_urls.get(name), timeout=s.source_timeout,
                                     stream_url=s.stream_urls.get(name))
                   for name in sorted({n for f in s.feeds for n in f.sources})}
        check_sources(s.feeds, {name: type(source) for name, source in sources.items()})
        self.cache = FeedCache.for_feeds(sources, s.feeds, max_age=max(10.0, 5 * s.poll_interval),
                                         poll_budget=s.poll_interval)
        await self._load_promises(w3)
        await self._poll_bounds()

        async with aiohttp.ClientSession() as session:
            await self.cache.poll_once(session)
            scheduler = AsyncIOScheduler()
            scheduler.add_job(self._snapshot_stats, "interval", seconds=SNAPSHOT_INTERVAL_S, max_instances=1,
                              coalesce=True)
            retention_s = s.store_retention_hours * 3600
            scheduler.add_job(self._prune_store, "interval", seconds=min(3600.0, max(1.0, retention_s / 4)),
                              max_instances=1, coalesce=True)
            self._prune_store()
            scheduler.start()
            poller = self._supervise("venue_poller", lambda: self._poll_venues(session))
            chain_follower = self._supervise("chain_follower", self._follow_chain)
            # Streaming sources update the cache on each venue message (polled while a stream is down).
            streams = self._supervise("source_streams", lambda: self.cache.run_streams(session))
            limits = ApiLimits(max_connections=s.api_max_connections, max_streams=s.api_max_streams,
                               header_timeout_s=s.api_header_timeout_s, body_timeout_s=s.api_body_timeout_s)
            guard = ConnectionGuard(limits, failed=self.failed_tasks, failures=self.task_failures)
            api = ApiServer(self.telemetry, s.api_host, s.api_port, self.subscriptions_board,
                            guard=guard) if s.api_enabled else None
            if api is not None:
                await api.start()
            loop = asyncio.get_running_loop()
            self.host = P2PHost(
                self.key, listen_host=s.listen_host, listen_port=s.listen_port,
                allowed_addresses=committee.signers, on_message=self._on_wire, open_message=self._open_message,
                max_message_size=s.max_message_bytes,
            )
            self.committee = committee
            await self.host.start()
            log.info("p2p listening on %s", ", ".join(self.host.listen_addrs))
            dialer = self._supervise("dialer", self._dial_peers)
            if committee.index_of(self.address) is not None:
                log.info("waiting up to 30 s for %d committee peers", committee.quorum - 1)
                try:
                    await self.host.wait_for_peers(committee.quorum - 1, timeout=30.0)
                except Exception as exc:
                    log.warning("starting with fewer peers than a quorum: %s", exc)
            await self._start_committee(committee)
            watcher = self._supervise("config_watcher", self._watch_config)
            self._snapshot_stats()
            self.telemetry.start(ChainContext(
                oracle=self.oracle, chain_id=self.chain_id, feeds=self.served,
                transmitter=address_of(self.transmitter_key) if self.transmitter_key is not None else None,
                risk_gate=RiskGateClient(w3, s.risk_gate_address, rpc=self.rpc) if s.risk_gate_address else None,
            ))
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            try:
                await self._stop.wait()
            finally:
                log.info("stopping")
                dialer.cancel()
                poller.cancel()
                watcher.cancel()
                chain_follower.cancel()
                streams.cancel()
                await self.telemetry.stop()
                if api is not None:
                    await api.stop()
                if self.engine is not None:
                    await self.engine.stop()
                if self.txmanager is not None:
                    await self.txmanager.stop()
                scheduler.shutdown(wait=False)
                self._snapshot_stats()  # the final counters, for status and benchmarks
                await self.host.stop()
                await self.rpc.close()
                self.store.close()
