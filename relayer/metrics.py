"""What a node exposes about itself: Prometheus metrics and the recent history the API serves.

`Telemetry` is the node's one read-only window for operators, and it is told, never
reaching in: the node pushes a frozen `NodeSnapshot` (peers, epoch and round, protocol and
p2p counters, source health, transmitter counters) about once a second, and the round
engine's two callbacks (`observe`, `on_attested`) are wrapped to time them. Everything
else it reads through typed interfaces: the store's methods (signature timings), and on
the chain the oracle's latest feeds and landings and, when one is configured, what the
deployed RiskGate sets as margins. It owns a per-node `CollectorRegistry` (no import-time
globals); every metric is named `relayer_*`.

Stages: `source_fetch`, `observation`, `report`, `signature`, `transmission`; each has a
result counter (`relayer_stage_total{stage,result}`) and a duration histogram
(`relayer_stage_duration_seconds{stage}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from aggregation.errors import AggregationError
from aggregation.fixed import from_fixed
from aggregation.volatility import annualized_realized_vol
from relayer.chain.errors import ChainError
from relayer.health import REASONS, HealthInputs, Readiness, readiness
from relayer.protocol.report import decode_carried
from relayer.reports import FeedName, ReportBook, ReportContext

if TYPE_CHECKING:
    from relayer.chain.oracle import QuorumOracleClient
    from relayer.chain.risk_gate import MarketMargins, RiskGateClient, RiskMarket
    from relayer.protocol.engine import AttestedReport
    from relayer.protocol.messages import Observation
    from relayer.protocol.selection import Inclusion
    from relayer.settings import FeedSpec
    from relayer.store import Store

log = logging.getLogger(__name__)

STAGES = ("source_fetch", "observation", "report", "signature", "transmission")
HISTORY = 240  # points kept per feed for the dashboard's charts
RECENT_ROUNDS = 50
SAMPLE_INTERVAL_S = 0.5
# Balance, RiskGate markets and margins change slowly (margins also refresh on every landing).
SLOW_SAMPLE_EVERY = 10
NO_RISK_GATE = "no RiskGate configured: set risk_gate_address to show the margins it sets"


# --- what the node tells --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """What does not change while the node runs."""

    name: str
    address: str
    dry_run: bool
    oracle: str
    risk_gate: str | None = None
    min_balance_wei: int = 0
    rpc_stale_after_s: float = 15.0
    store_retention_hours: float | None = None  # how long attested reports stay servable by round


@dataclass(frozen=True, slots=True)
class CommitteeView:
    digest: str
    signers: tuple[str, ...]
    f: int
    threshold: int
    quorum: int
    member_index: int | None
    leader: int | None  # of the engine's current epoch; None while no engine runs

    @property
    def n(self) -> int:
        return len(self.signers)


@dataclass(frozen=True, slots=True)
class DropCount:
    peer: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class EngineCounters:
    epoch: int
    round: int
    rounds_started: int
    reports_attested: int
    epoch_changes: int
    refused: Mapping[str, int]
    dropped: tuple[DropCount, ...]
    # The epoch this node asks for (above `epoch` while it wants a change), progress timeouts
    # it had, and store writes outside signing that failed.
    wanted_epoch: int = 0
    progress_timeouts: int = 0
    store_errors: int = 0
    # Feeds left out of this node's proposals: (feed index, reason) -> count.
    left_out: Mapping[tuple[int, str], int] = field(default_factory=dict)
    # Attested reports this node missed on the wire and read back from their landing.
    adopted_from_chain: int = 0


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """What readiness (relayer.health) needs from the node besides its counters."""

    rpc_last_ok_at: float | None
    rpc_last_error: str | None
    store_error: str | None
    pacemaker_alive: bool
    wishing_for_s: float | None
    progress_timeout_s: float
    failed_tasks: Mapping[str, str] = field(default_factory=dict)
    task_failures: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HostCounters:
    peers: tuple[str, ...]  # connected committee peers' ids
    dropped: tuple[DropCount, ...]
    traffic: Mapping[str, int]
    # accept() calls of the process's p2p listeners that failed for lack of descriptors, by errno.
    accept_failures: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourceHealthView:
    name: str
    healthy: bool
    consecutive_failures: int
    ok_count: int
    error_count: int
    last_latency_ms: float | None
    last_error_type: str | None


@dataclass(frozen=True, slots=True)
class TransmissionCounts:
    digest: str  # the committee this transmitter serves: a new one starts new counters
    transmitted: int
    superseded: int
    failed: int
    gas_used: int


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One moment of the node, as it tells it. Frozen: safe to hand from the stats thread."""

    at: float
    committee: CommitteeView | None
    engine: EngineCounters | None
    host: HostCounters | None
    transmission: TransmissionCounts | None
    sources: tuple[SourceHealthView, ...] = ()
    rpc_failovers: Mapping[str, int] = field(default_factory=dict)
    health: NodeHealth | None = None

    def stats_record(self, address: str) -> dict[str, object]:
        """The counters kept in the store (state ``stats``) for `relayer status`, tests and benchmarks."""
        data: dict[str, object] = {"at": self.at, "address": address,
                                   "digest": self.committee.digest if self.committee else None}
        if self.engine is not None:
            e = self.engine
            data.update(epoch=e.epoch, round=e.round, rounds_started=e.rounds_started,
                        reports_attested=e.reports_attested, epoch_changes=e.epoch_changes,
                        wanted_epoch=e.wanted_epoch, progress_timeouts=e.progress_timeouts,
                        store_errors=e.store_errors, adopted_from_chain=e.adopted_from_chain,
                        refused=dict(e.refused), dropped=[[d.peer, d.reason, d.count] for d in e.dropped])
        if self.host is not None:
            data["p2p_dropped"] = [[d.peer, d.reason, d.count] for d in self.host.dropped]
            data["peers"] = len(self.host.peers)
            data["p2p_traffic"] = dict(self.host.traffic)
            data["p2p_accept_failures"] = dict(self.host.accept_failures)
        if self.transmission is not None:
            t = self.transmission
            data["transmission"] = {"transmitted": t.transmitted, "superseded": t.superseded,
                                    "failed": t.failed, "gas_used": t.gas_used}
        return data


class ServedFeedLike(Protocol):
    """A feed the node serves and its on-chain index (``relayer.node.ServedFeed``)."""

    @property
    def spec(self) -> FeedSpec: ...

    @property
    def index(self) -> int: ...


@dataclass(frozen=True)
class ChainContext:
    """What telemetry reads on-chain, given once the node has connected."""

    oracle: QuorumOracleClient
    chain_id: int
    feeds: Sequence[ServedFeedLike]
    transmitter: str | None = None  # the transmitter's address, for its balance
    risk_gate: RiskGateClient | None = None


def _inclusion(inclusion: Inclusion | None) -> dict[str, Any] | None:
    """An inclusion as the API and the dashboard show it."""
    if inclusion is None:
        return None
    return {"reason": inclusion.reason, "moved_bps": inclusion.moved_bps, "threshold_bps": inclusion.threshold_bps,
            "age_s": inclusion.age_s, "heartbeat_s": inclusion.heartbeat_s}


# --- recent rounds ----------------------------------------------------------------------


@dataclass
class RoundRecord:
    epoch: int
    round: int
    attested_at: float | None = None
    started_at: float | None = None
    signer_count: int = 0
    signers: list[str] = field(default_factory=list)
    feeds: list[dict[str, Any]] = field(default_factory=list)
    landed_at: float | None = None
    # "0x0001": one ECDSA signature per signer; "0x0002": one threshold Schnorr signature, whose
    # signers the report does not name (signer_count 0, signers empty).
    scheme: str = "0x0001"
    report: dict[str, Any] | None = None
    # Feeds with a quorum this round that were left out because nothing triggered.
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latency_ms(self) -> float | None:
        end = self.landed_at or self.attested_at
        if self.started_at is None or end is None:
            return None
        return round((end - self.started_at) * 1000, 1)

    def public(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "round": self.round, "attested_at": self.attested_at,
                "landed_at": self.landed_at, "latency_ms": self.latency_ms, "signer_count": self.signer_count,
                "scheme": self.scheme, "signers": self.signers, "feeds": self.feeds, "skipped": self.skipped,
                "landed": self.landed_at is not None}


@dataclass
class _MarketReading:
    market: RiskMarket
    margins: MarketMargins | None = None
    error: str | None = None


class _StatsCollector(Collector):
    """Counters the node keeps itself (drops, source health, gas), from its latest snapshot."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.t = telemetry

    def collect(self) -> Iterator[Any]:
        snap = self.t.snapshot
        dropped = CounterMetricFamily("relayer_messages_dropped", "Messages dropped, per peer, reason and layer",
                                      labels=["peer", "reason", "layer"])
        failovers = CounterMetricFamily("relayer_rpc_failovers", "Times an RPC endpoint failed and the next took over",
                                        labels=["url"])
        healthy = GaugeMetricFamily("relayer_source_healthy", "1 when the source's last fetch succeeded",
                                    labels=["source"])
        failures = GaugeMetricFamily("relayer_source_consecutive_failures", "Failed fetches since the last good one",
                                     labels=["source"])
        if snap is not None:
            for layer, counts in (("protocol", snap.engine.dropped if snap.engine else ()),
                                  ("p2p", snap.host.dropped if snap.host else ())):
                for d in counts:
                    dropped.add_metric([d.peer, d.reason, layer], d.count)
            for url, n in snap.rpc_failovers.items():
                failovers.add_metric([url], n)
            for h in snap.sources:
                healthy.add_metric([h.name], 1.0 if h.healthy else 0.0)
                failures.add_metric([h.name], h.consecutive_failures)
        ready = self.t.readiness()
        not_ready = GaugeMetricFamily("relayer_not_ready", "1 for each reason the node is not ready (see /readyz)",
                                      labels=["reason"])
        active = {r.reason for r in ready.reasons}
        for reason in REASONS:
            not_ready.add_metric([reason], 1.0 if reason in active else 0.0)
        yield GaugeMetricFamily("relayer_ready", "1 when /readyz answers 200", value=1.0 if ready.ready else 0.0)
        yield not_ready
        pacemaker = CounterMetricFamily("relayer_progress_timeouts", "Progress timeouts: no attested report of the "
                                        "epoch in time, so the node asked for the next one")
        store_errors = CounterMetricFamily("relayer_store_errors", "Store writes outside signing that failed")
        if snap is not None and snap.engine is not None:
            pacemaker.add_metric([], snap.engine.progress_timeouts)
            store_errors.add_metric([], snap.engine.store_errors)
        left_out = CounterMetricFamily("relayer_feeds_left_out", "Feeds this node, leading, left out of a report "
                                       "(out_of_bounds: the median lies outside the feed's on-chain bounds)",
                                       labels=["feed_index", "reason"])
        if snap is not None and snap.engine is not None:
            for (index, reason), n in snap.engine.left_out.items():
                left_out.add_metric([str(index), reason], n)
        yield left_out
        adopted = CounterMetricFamily("relayer_reports_adopted_from_chain", "Attested reports this node missed on "
                                      "the wire and read back from the transaction that landed them")
        if snap is not None and snap.engine is not None:
            adopted.add_metric([], snap.engine.adopted_from_chain)
        yield adopted
        tasks = CounterMetricFamily("relayer_task_failures", "Failures of the node's long-lived tasks (restarted)",
                                    labels=["task"])
        if snap is not None and snap.health is not None:
            for name, n in snap.health.task_failures.items():
                tasks.add_metric([name], n)
        yield pacemaker
        yield store_errors
        yield tasks
        accepts = CounterMetricFamily("relayer_p2p_accept_failures", "accept() calls of the p2p listeners that "
                                      "failed for lack of resources (file descriptors), by errno", labels=["error"])
        for name, n in (snap.host.accept_failures.items() if snap is not None and snap.host is not None else ()):
            accepts.add_metric([name], n)
        yield accepts
        yield dropped
        yield failovers
        yield healthy
        yield failures
        gas = CounterMetricFamily("relayer_gas_spent", "Gas used by this node's transmissions (wei-free units)")
        gas.add_metric([], self.t.gas_spent())
        yield gas


class Telemetry:
    def __init__(self, identity: NodeIdentity, store: Store) -> None:
        self.identity = identity
        self._store = store
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stage_total = Counter("relayer_stage", "Stage outcomes", ["stage", "result"], registry=r)
        self.stage_seconds = Histogram(
            "relayer_stage_duration_seconds", "Stage durations", ["stage"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        for stage in STAGES:  # every series exists from the first scrape
            self.stage_seconds.labels(stage)
            self.stage_total.labels(stage, "ok")
        self.peers = Gauge("relayer_peers_connected", "Connected committee peers", registry=r)
        self.epoch = Gauge("relayer_epoch", "Current epoch", registry=r)
        self.wanted_epoch = Gauge("relayer_epoch_wanted", "The epoch this node asks for; above relayer_epoch while "
                                  "it has seen no progress within the progress timeout", registry=r)
        self.round = Gauge("relayer_round", "Latest round of the current epoch", registry=r)
        self.landed_round = Gauge("relayer_last_landed_round", "On-chain round id of each feed's latest value",
                                  ["feed"], registry=r)
        self.landed_total = Counter("relayer_rounds_landed", "Reports seen landing on-chain", registry=r)
        self.attested_total = Counter("relayer_reports_attested", "Reports attested (>= threshold signatures)",
                                      registry=r)
        self.inclusions_total = Counter(
            "relayer_feed_inclusions", "Feeds in attested reports by why they are in it (first_value, deviation, "
            "heartbeat, every_round, not_served, unknown), and feeds with a quorum left out because nothing triggered (skipped)",
            ["feed", "reason"], registry=r)
        # Per feed id, why it was in (or left out of) the latest attested report that had a median for it.
        self.last_inclusion: dict[str, dict[str, Any]] = {}
        self.balance = Gauge("relayer_transmitter_balance_wei", "Balance of this node's transmitter", registry=r)
        self.member = Gauge("relayer_committee_member", "1 when this node's key is in the committee", registry=r)
        self.balance_wei: int | None = None
        self._balance_warned = False
        self.snapshot: NodeSnapshot | None = None
        self.chain: ChainContext | None = None
        self.rounds: dict[tuple[int, int], RoundRecord] = {}
        self.history: dict[str, deque[tuple[int, str]]] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.last_landed: tuple[int, int] | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._seen_health: dict[str, tuple[int, int]] = {}
        # (gas of earlier committees' transmitters, the current one's counters), replaced in one
        # assignment: update() runs on the node's stats thread while a scrape may read it.
        self._transmission: tuple[int, TransmissionCounts | None] = (0, None)
        self._signature_seq = 0
        self._next_block: int | None = None
        self._markets: dict[bytes, _MarketReading] = {}
        self._gate_next_block = 0
        self._gate_error: str | None = None
        self._gate_checked = False
        self._task: asyncio.Task[None] | None = None
        # Attested reports for subscribers (/api/reports/*): read from the store, streamed as told.
        self.reports = ReportBook(store, self._report_context)
        r.register(_StatsCollector(self))

    # --- what the node tells ------------------------------------------------------------

    def update(self, snap: NodeSnapshot) -> None:
        """Take the node's latest snapshot: gauges, and stage counts from the counters' growth."""
        self.snapshot = snap
        if snap.host is not None:
            self.peers.set(len(snap.host.peers))
        if snap.engine is not None:
            self.epoch.set(snap.engine.epoch)
            self.wanted_epoch.set(snap.engine.wanted_epoch)
            self.round.set(snap.engine.round)
        member = snap.committee is not None and snap.committee.member_index is not None
        self.member.set(1 if member and not self.identity.dry_run else 0)
        for h in snap.sources:
            ok, err = self._seen_health.get(h.name, (0, 0))
            if h.ok_count > ok:
                self.stage_total.labels("source_fetch", "ok").inc(h.ok_count - ok)
                if h.last_latency_ms is not None:
                    self.stage_seconds.labels("source_fetch").observe(h.last_latency_ms / 1000)
            if h.error_count > err:
                self.stage_total.labels("source_fetch", "error").inc(h.error_count - err)
            self._seen_health[h.name] = (h.ok_count, h.error_count)
        t = snap.transmission
        gas_base, seen = self._transmission
        if t is None:
            return
        if seen is not None and seen.digest != t.digest:  # a new committee's transmitter counts from zero
            gas_base, seen = gas_base + seen.gas_used, None
        for result, now, before in (("ok", t.transmitted, seen.transmitted if seen else 0),
                                    ("superseded", t.superseded, seen.superseded if seen else 0),
                                    ("error", t.failed, seen.failed if seen else 0)):
            if now > before:
                self.stage_total.labels("transmission", result).inc(now - before)
        self._transmission = (gas_base, t)

    def gas_spent(self) -> int:
        """Gas of every transmission this node made, across committees."""
        gas_base, current = self._transmission
        return gas_base + (current.gas_used if current else 0)

    # --- wrapping the engine's callbacks -----------------------------------------------

    def timed_observe(self, observe: Callable[[], Observation]) -> Callable[[], Observation]:
        def wrapped() -> Observation:
            started = time.perf_counter()
            try:
                result = observe()
            except Exception:
                self.stage_total.labels("observation", "error").inc()
                raise
            self.stage_seconds.labels("observation").observe(time.perf_counter() - started)
            self.stage_total.labels("observation", "ok" if result.feeds else "empty").inc()
            return result
        return wrapped

    def wrap_attested(
        self, handle: Callable[[AttestedReport], Awaitable[None]], signers: Sequence[str],
        inclusions: Callable[[AttestedReport], Sequence[Inclusion]] | None = None,
    ) -> Callable[[AttestedReport], Awaitable[None]]:
        """``handle`` (the transmitter), after telemetry records the report; ``signers`` are the
        committee's, by index, to name who signed; ``inclusions`` says why each feed is in the
        report, and which were skipped (the committee's selection policy)."""
        async def wrapped(report: AttestedReport) -> None:
            try:
                self.on_attested(report, signers, inclusions(report) if inclusions is not None else ())
            except Exception:  # telemetry never stands in the way of transmission
                log.exception("telemetry failed on an attested report", extra={"epoch": report.epoch,
                                                                                  "round": report.round})
            await handle(report)
        return wrapped

    def on_attested(self, report: AttestedReport, committee_signers: Sequence[str],
                    inclusions: Sequence[Inclusion] = ()) -> None:
        now = time.time()
        specs = {sf.index: sf.spec for sf in self._served()}
        why = {i.feed_index: i for i in inclusions}
        feeds = []
        for u in decode_carried(report.updates):
            spec = specs.get(u.feed_index)
            decimals = spec.decimals if spec else 0
            feeds.append({"feed_id": spec.feed_id if spec else str(u.feed_index), "feed_index": u.feed_index,
                          "value": str(from_fixed(u.value, decimals)), "raw_value": u.value, "decimals": decimals,
                          "observed_at": u.observed_at, "num_sources": u.num_sources,
                          "inclusion": _inclusion(why.get(u.feed_index))})
        skipped = []
        for inclusion in inclusions:
            spec = specs.get(inclusion.feed_index)
            feed_id = spec.feed_id if spec else str(inclusion.feed_index)
            self.inclusions_total.labels(feed_id, inclusion.reason).inc()
            self.last_inclusion[feed_id] = {**(_inclusion(inclusion) or {}), "epoch": report.epoch,
                                            "round": report.round}
            if inclusion.reason == "skipped":
                skipped.append({"feed_id": feed_id, "feed_index": inclusion.feed_index,
                                "inclusion": _inclusion(inclusion)})
        signers = [committee_signers[i] if i < len(committee_signers) else str(i) for i, _ in report.signatures]
        rec = self.rounds.setdefault((report.epoch, report.round), RoundRecord(report.epoch, report.round))
        rec.attested_at = now
        # The leader times from its request, a follower from its own observation.
        rec.started_at = report.started_at if report.started_at is not None else self._store.observation_signed_at(
            "0x" + report.config_digest.hex(), report.epoch, report.round)
        rec.signer_count, rec.signers, rec.feeds, rec.skipped = len(report.signatures), signers, feeds, skipped
        rec.scheme = "0x0002" if report.schnorr is not None else "0x0001"
        rec.report = {
            "config_digest": "0x" + report.config_digest.hex(), "epoch": report.epoch, "round": report.round,
            "updates": "0x" + report.updates.hex(),
            "signatures": [{"index": i, "signer": signers[k], "signature": "0x" + s.hex()}
                           for k, (i, s) in enumerate(report.signatures)],
        }
        self._trim_rounds()
        self.attested_total.inc()
        self.stage_total.labels("report", "ok").inc()
        if rec.started_at is not None:
            self.stage_seconds.labels("report").observe(max(0.0, now - rec.started_at))
        self.publish({"type": "attested", **rec.public(), "report": rec.report})
        self.reports.publish(report.config_digest, report.epoch, report.round, report.updates, report.signatures, now,
                             schnorr=report.schnorr)

    def _report_context(self) -> ReportContext:
        chain = self.chain
        return ReportContext(
            chain_id=chain.chain_id if chain is not None else None, oracle=self.identity.oracle,
            feeds={sf.index: FeedName(sf.spec.feed_id, sf.spec.decimals) for sf in self._served()},
            retention_hours=self.identity.store_retention_hours,
        )

    def inclusions_view(self) -> dict[str, Any]:
        """Per feed: why it was in (or left out of) the latest attested report with a median
        for it, and the counts by reason since the node started."""
        counts: dict[str, dict[str, int]] = {}
        for metric in self.inclusions_total.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    by_reason = counts.setdefault(sample.labels["feed"], {})
                    by_reason[sample.labels["reason"]] = int(sample.value)
        return {"latest": dict(self.last_inclusion), "counts": counts}

    def _trim_rounds(self) -> None:
        while len(self.rounds) > RECENT_ROUNDS:
            del self.rounds[min(self.rounds)]

    # --- server-sent events ------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled client misses events, never blocks us
                queue.put_nowait(event)

    # --- sampling ----------------------------------------------------------------------

    def start(self, chain: ChainContext) -> None:
        self.chain = chain
        self._task = asyncio.create_task(self._sample_loop(), name="telemetry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sample_loop(self) -> None:
        tick = 0
        while True:
            try:
                self.sample_signatures()
                await self.sample_chain(slow=tick % SLOW_SAMPLE_EVERY == 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an RPC hiccup is retried next tick
                log.debug("telemetry sample failed: %s", exc)
            tick += 1
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def _take_balance(self, transmitter: str, wei: int) -> None:
        self.balance_wei = wei
        self.balance.set(wei)
        floor = self.identity.min_balance_wei
        # Warned once on the way down, from twice the floor: before it runs out, not after.
        if wei < 2 * floor and not self._balance_warned:
            log.warning("transmitter %s holds %.6f ETH; below %.6f ETH (min_balance_eth) the node is not ready: "
                        "fund it", transmitter, wei / 1e18, floor / 1e18)
            self._balance_warned = True
        elif wei >= 2 * floor:
            self._balance_warned = False

    def sample_signatures(self) -> None:
        """Report signatures this node gave, timed from its observation of the same round."""
        for sig in self._store.report_signatures_after(self._signature_seq):
            self._signature_seq = sig.seq
            self.stage_total.labels("signature", "ok").inc()
            if sig.observed_at is not None:
                self.stage_seconds.labels("signature").observe(max(0.0, sig.signed_at - sig.observed_at))

    async def sample_chain(self, *, slow: bool) -> None:
        """One look at the chain: landings since the last look, the feeds' latest values, and
        (``slow``, on a landing, or the first time) the transmitter's balance and RiskGate's margins."""
        chain = self.chain
        if chain is None:
            return
        oracle = chain.oracle
        if slow and chain.transmitter is not None:
            self._take_balance(chain.transmitter, await oracle.rpc.balance(chain.transmitter))
        head = await oracle.rpc.block_number()
        first = self._next_block is None
        landed_keys: list[tuple[int, int]] = []
        if self._next_block is not None and head >= self._next_block:
            landed_keys = [(e.epoch, e.round) for e in await oracle.transmission_events(self._next_block, head)]
        if self._next_block is None or head >= self._next_block:
            self._next_block = head + 1
        if chain.risk_gate is not None and (first or slow or landed_keys):
            await self._sample_risk_gate(chain.risk_gate, oracle.address, head, markets=first or slow)
        if first or landed_keys:
            await self._sample_landed(chain, landed_keys)

    async def _sample_landed(self, chain: ChainContext, landed_keys: list[tuple[int, int]]) -> None:
        served = list(chain.feeds)
        latest, states = await chain.oracle.latest_feeds([sf.index for sf in served])
        if latest == (0, 0):
            return
        self.last_landed = latest
        now = time.time()
        feeds = []
        for sf, state in zip(served, states):
            value = str(from_fixed(state.value, sf.spec.decimals))
            self.landed_round.labels(sf.spec.feed_id).set(state.round_id)
            entry = {"feed_id": sf.spec.feed_id, "value": value, "raw_value": state.value,
                     "decimals": sf.spec.decimals, "observed_at": state.observed_at, "round_id": state.round_id,
                     "epoch": latest[0], "round": latest[1]}
            feeds.append(entry)
            points = self.history.setdefault(sf.spec.feed_id, deque(maxlen=HISTORY))
            if not points or points[-1][0] != state.observed_at:
                points.append((int(state.observed_at), value))
            self.latest[sf.spec.feed_id] = entry
        # What was on-chain before we started is history, not a landing we saw.
        for key in sorted(landed_keys):
            self.landed_total.inc()
            rec = self.rounds.setdefault(key, RoundRecord(*key))
            rec.landed_at = now
            if not rec.feeds and key == latest:
                rec.feeds = feeds
            if rec.attested_at is not None:
                self.stage_seconds.labels("transmission").observe(max(0.0, now - rec.attested_at))
            self.publish({"type": "landed", **rec.public(), "onchain": feeds})
        self._trim_rounds()

    async def _sample_risk_gate(self, gate: RiskGateClient, oracle: str, head: int, *, markets: bool) -> None:
        """RiskGate's markets (from its CurveSet events) and the margins it sets for each now."""
        if not self._gate_checked:
            reads = await gate.oracle()
            self._gate_checked = True
            if reads.lower() != oracle.lower():
                self._gate_error = (f"RiskGate {gate.address} reads oracle {reads}, not this node's oracle {oracle}; "
                                    "check risk_gate_address")
        if self._gate_error is not None:
            return
        if markets and head >= self._gate_next_block:
            for market in await gate.curve_events(self._gate_next_block, head):
                self._markets[market.market_id] = _MarketReading(market)  # the latest curve wins
            self._gate_next_block = head + 1
        readings = list(self._markets.values())
        results = await asyncio.gather(*(gate.margins(r.market.market_id) for r in readings), return_exceptions=True)
        for reading, result in zip(readings, results):
            if isinstance(result, ChainError):  # e.g. UnknownMarket: the gate refuses, and we say so
                reading.margins, reading.error = None, str(getattr(result, "reason", None) or result)
            elif isinstance(result, BaseException):
                raise result
            else:
                reading.margins, reading.error = result, None

    # --- views for the API -------------------------------------------------------------

    def _served(self) -> Sequence[ServedFeedLike]:
        return self.chain.feeds if self.chain is not None else ()

    def feed_view(self) -> list[dict[str, Any]]:
        out = []
        by_key = {(r.epoch, r.round): r for r in self.rounds.values()}
        for sf in self._served():
            spec = sf.spec
            entry = dict(self.latest.get(spec.feed_id, {"feed_id": spec.feed_id, "decimals": spec.decimals,
                                                        "value": None}))
            rec = by_key.get((entry.get("epoch"), entry.get("round")))  # type: ignore[arg-type]
            entry["report"] = rec.report if rec is not None else None
            entry["signer_count"] = rec.signer_count if rec is not None else None
            entry["scheme"] = rec.scheme if rec is not None else None
            entry["description"] = spec.description
            entry["kind"] = str(spec.kind)
            entry["instrument"] = spec.instrument
            entry["inclusion"] = self.last_inclusion.get(spec.feed_id)
            spot = str(spec.kind) == "spot"
            entry["realized_vol"] = self.realized_vol(spec.feed_id) if spot else None
            entry["margin"] = self.margin(spec.instrument) if spot else None
            out.append(entry)
        return out

    def realized_vol(self, feed_id: str) -> dict[str, Any] | None:
        """Annualized realized volatility of the landed values of ``feed_id`` (aggregation's
        estimator), or None below three landed values."""
        points = list(self.history.get(feed_id, ()))
        if len(points) < 3:
            return None
        # Landings are not evenly spaced: their mean spacing stands for the sampling period.
        sampling = max(1, round((points[-1][0] - points[0][0]) / (len(points) - 1)))
        try:
            vol = annualized_realized_vol([Decimal(v) for _, v in points], sampling)
        except AggregationError:
            return None
        return {"annualized": str(vol), "samples": len(points), "sampling_seconds": sampling}

    def margin(self, instrument: str) -> dict[str, Any] | None:
        """What the deployed RiskGate sets for the market whose inputs are ``instrument``'s feeds;
        None when no RiskGate is configured or none of its markets reads this instrument."""
        for view in self._market_views():
            if view["instrument"] == instrument:
                return view
        return None

    def _market_views(self) -> list[dict[str, Any]]:
        by_index = {sf.index: sf.spec for sf in self._served()}
        out = []
        for reading in self._markets.values():
            m, margins = reading.market, reading.margins
            inputs = m.inputs
            vol, implied, depth, dispersion, funding, open_interest = (
                by_index.get(i) if i is not None else None for i in inputs.feeds()
            )
            out.append({
                "market_id": "0x" + m.market_id.hex(), "name": m.name,
                "vol_feed": inputs.realized_vol_feed, "vol_feed_id": vol.feed_id if vol else None,
                "implied_vol_feed": inputs.implied_vol_feed, "implied_vol_feed_id": implied.feed_id if implied else None,
                "depth_feed": inputs.depth_feed, "depth_feed_id": depth.feed_id if depth else None,
                "dispersion_feed": inputs.dispersion_feed,
                "dispersion_feed_id": dispersion.feed_id if dispersion else None,
                "funding_feed": inputs.funding_feed, "funding_feed_id": funding.feed_id if funding else None,
                "open_interest_feed": inputs.open_interest_feed,
                "open_interest_feed_id": open_interest.feed_id if open_interest else None,
                "max_age": inputs.max_age,
                "instrument": vol.instrument if vol else depth.instrument if depth else None,
                "initial_bps": margins.initial_bps if margins else None,
                "maintenance_bps": margins.maintenance_bps if margins else None,
                "usable": margins.usable if margins else None,
                "error": reading.error,
            })
        return out

    def risk_gate_view(self) -> dict[str, Any]:
        address = self.identity.risk_gate
        if address is None:
            return {"configured": False, "address": None, "message": NO_RISK_GATE, "error": None, "markets": []}
        return {"configured": True, "address": address, "message": f"margins as RiskGate {address} sets them",
                "error": self._gate_error, "markets": self._market_views()}

    def history_view(self) -> dict[str, list[list[Any]]]:
        return {fid: [[t, v] for t, v in pts] for fid, pts in self.history.items()}

    def rounds_view(self) -> list[dict[str, Any]]:
        return [self.rounds[k].public() for k in sorted(self.rounds, reverse=True)]

    def status(self) -> dict[str, Any]:
        from relayer.p2p.identity import address_of_peer_id

        ident, snap = self.identity, self.snapshot
        committee = snap.committee if snap else None
        engine = snap.engine if snap else None
        peers = []
        for pid in snap.host.peers if snap and snap.host else ():
            with contextlib.suppress(Exception):
                peers.append({"peer_id": pid, "address": address_of_peer_id(pid)})
        t = self._transmission[1]
        return {
            "name": ident.name, "address": ident.address, "dry_run": ident.dry_run,
            "chain_id": self.chain.chain_id if self.chain else None, "oracle": ident.oracle,
            "risk_gate": ident.risk_gate,
            "committee": None if committee is None else {
                "digest": committee.digest, "signers": list(committee.signers), "f": committee.f,
                "threshold": committee.threshold, "n": committee.n, "member_index": committee.member_index,
                "leader": committee.leader,
            },
            "peers": peers, "epoch": engine.epoch if engine is not None else None,
            # A follower's engine only knows the leader's rounds through what it attested.
            "round": (max([engine.round] + [k[1] for k in self.rounds if k[0] == engine.epoch])
                      if engine is not None else None),
            "last_landed": list(self.last_landed) if self.last_landed else None,
            "reports_attested": engine.reports_attested if engine is not None else 0,
            "transmission": {"transmitted": t.transmitted if t else 0, "superseded": t.superseded if t else 0,
                             "failed": t.failed if t else 0, "gas_used": t.gas_used if t else 0},
            "sources": {h.name: {"healthy": h.healthy, "ok": h.ok_count, "errors": h.error_count,
                                 "last_error": h.last_error_type}
                        for h in (snap.sources if snap else ())},
            "ready": self.ready(),
        }

    def readiness(self, now: float | None = None) -> Readiness:
        """Every reason the node is not ready (relayer.health), from its latest snapshot."""
        snap = self.snapshot
        now = time.time() if now is None else now
        if snap is None or snap.host is None or snap.committee is None or snap.health is None:
            return readiness(HealthInputs(now=now, started=False, member=False, peers=0, quorum=0, rpc_last_ok_at=None,
                                          rpc_last_error=None, rpc_stale_after_s=0, balance_wei=None,
                                          min_balance_wei=0, store_error=None, pacemaker_alive=False,
                                          wishing_for_s=None, progress_timeout_s=0))
        h = snap.health
        member = not self.identity.dry_run and snap.committee.member_index is not None
        return readiness(HealthInputs(
            now=now, started=True, member=member, peers=len(snap.host.peers), quorum=snap.committee.quorum,
            rpc_last_ok_at=h.rpc_last_ok_at, rpc_last_error=h.rpc_last_error,
            rpc_stale_after_s=self.identity.rpc_stale_after_s, balance_wei=self.balance_wei,
            min_balance_wei=self.identity.min_balance_wei, store_error=h.store_error,
            pacemaker_alive=h.pacemaker_alive and snap.engine is not None if member else True,
            wishing_for_s=h.wishing_for_s, progress_timeout_s=h.progress_timeout_s, failed_tasks=dict(h.failed_tasks),
        ))

    def ready(self) -> bool:
        return self.readiness().ready
