"""What a node exposes about itself: Prometheus metrics and the recent-history the API serves.

`Telemetry` is the node's one read-only window for operators. It owns a per-node
`CollectorRegistry` (no import-time globals), wraps the two callbacks the round engine
already takes (`observe`, `on_attested`), and runs one background task that samples the
node (peers, epoch and round, source health, signatures in the store, the chain's
latest landed round, the transmitter's balance). Everything is named `relayer_*`.

Stages: `source_fetch`, `observation`, `report`, `signature`, `transmission`; each has a
result counter (`relayer_stage_total{stage,result}`) and a duration histogram
(`relayer_stage_duration_seconds{stage}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from aggregation.errors import InvalidInput
from aggregation.fixed import from_fixed
from aggregation.margin import MarginCurve, compute_margins
from relayer.chain.codec import decode_updates

if TYPE_CHECKING:
    from relayer.node import Node
    from relayer.protocol.engine import AttestedReport
    from relayer.protocol.messages import Observation

log = logging.getLogger(__name__)

STAGES = ("source_fetch", "observation", "report", "signature", "transmission")
HISTORY = 240  # points kept per feed for the dashboard's charts
RECENT_ROUNDS = 50

# The curve the dashboard applies to the latest values when showing "what RiskGate would
# set": volatility in bps (annualized), depth in USD within +-50 bps of mid. Below $5M of
# depth the initial margin rises by up to 10 percentage points.
DEFAULT_CURVE = MarginCurve(
    base_im_bps=500, vol_multiplier_bps=2500, depth_penalty_bps=1000, depth_ref=5_000_000,
    floor_im_bps=200, cap_im_bps=5000, mm_ratio_bps=6000, floor_mm_bps=100,
)
BPS = 10_000


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
    report: dict[str, Any] | None = None

    @property
    def latency_ms(self) -> float | None:
        end = self.landed_at or self.attested_at
        if self.started_at is None or end is None:
            return None
        return round((end - self.started_at) * 1000, 1)

    def public(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "round": self.round, "attested_at": self.attested_at,
                "landed_at": self.landed_at, "latency_ms": self.latency_ms, "signer_count": self.signer_count,
                "signers": self.signers, "feeds": self.feeds, "landed": self.landed_at is not None}


class _StatsCollector(Collector):
    """Counters the node keeps itself (drops, source health, gas), read at scrape time."""

    def __init__(self, telemetry: "Telemetry") -> None:
        self.t = telemetry

    def collect(self) -> Iterator[Any]:
        node = self.t.node
        dropped = CounterMetricFamily("relayer_messages_dropped", "Messages dropped, per peer, reason and layer",
                                      labels=["peer", "reason", "layer"])
        engine = getattr(node, "engine", None)
        if engine is not None:
            for (peer, reason), n in list(engine.stats.dropped.items()):
                dropped.add_metric([peer, reason, "protocol"], n)
        host = getattr(node, "host", None)
        if host is not None:
            for (peer, reason), n in list(host.dropped.items()):
                dropped.add_metric([peer, reason, "p2p"], n)
        yield dropped
        rpc = getattr(node, "rpc", None)
        failovers = CounterMetricFamily("relayer_rpc_failovers", "Times an RPC endpoint failed and the next took over",
                                        labels=["url"])
        if rpc is not None:
            for url in rpc.urls:
                failovers.add_metric([url], rpc.failovers.get(url, 0))
        yield failovers
        cache = getattr(node, "cache", None)
        healthy = GaugeMetricFamily("relayer_source_healthy", "1 when the source's last fetch succeeded",
                                    labels=["source"])
        failures = GaugeMetricFamily("relayer_source_consecutive_failures", "Failed fetches since the last good one",
                                     labels=["source"])
        if cache is not None:
            for name, h in cache.health.items():
                healthy.add_metric([name], 1.0 if h.healthy else 0.0)
                failures.add_metric([name], h.consecutive_failures)
        yield healthy
        yield failures
        gas = CounterMetricFamily("relayer_gas_spent", "Gas used by this node's transmissions (wei-free units)")
        gas.add_metric([], self.t.gas_base + self.t._transmitter_stat("gas_used"))
        yield gas


class Telemetry:
    def __init__(self, node: "Node") -> None:
        self.node = node
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
        self.round = Gauge("relayer_round", "Latest round of the current epoch", registry=r)
        self.landed_round = Gauge("relayer_last_landed_round", "On-chain round id of each feed's latest value",
                                  ["feed"], registry=r)
        self.landed_total = Counter("relayer_rounds_landed", "Reports seen landing on-chain", registry=r)
        self.attested_total = Counter("relayer_reports_attested", "Reports attested (>= threshold signatures)",
                                      registry=r)
        self.balance = Gauge("relayer_transmitter_balance_wei", "Balance of this node's transmitter", registry=r)
        self.member = Gauge("relayer_committee_member", "1 when this node's key is in the committee", registry=r)
        self.gas_base = 0
        self.rounds: dict[tuple[int, int], RoundRecord] = {}
        self.history: dict[str, deque[tuple[float, str]]] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.last_landed: tuple[int, int] | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._seen_health: dict[str, tuple[int, int]] = {}
        self._seen_transmitter: dict[str, int] = {}
        self._transmitter_ref: Any = None
        self._signature_rowid = 0
        self._next_block: int | None = None
        self._task: asyncio.Task[None] | None = None
        r.register(_StatsCollector(self))

    # --- wrapping the engine's callbacks -----------------------------------------------

    def timed_observe(self, observe: Callable[[], "Observation"]) -> Callable[[], "Observation"]:
        def wrapped() -> "Observation":
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
        self, handle: Callable[["AttestedReport"], Awaitable[None]]
    ) -> Callable[["AttestedReport"], Awaitable[None]]:
        async def wrapped(report: "AttestedReport") -> None:
            try:
                self.on_attested(report)
            except Exception:  # telemetry never stands in the way of transmission
                log.exception("telemetry failed on an attested report", extra={"epoch": report.epoch,
                                                                                  "round": report.round})
            await handle(report)
        return wrapped

    def _feed_names(self) -> dict[int, Any]:
        return {sf.index: sf.spec for sf in getattr(self.node, "served", [])}

    def on_attested(self, report: "AttestedReport") -> None:
        now = time.time()
        committee = self.node.committee
        specs = self._feed_names()
        feeds = []
        for u in decode_updates(report.updates):
            spec = specs.get(u.feed_index)
            decimals = spec.decimals if spec else 0
            feeds.append({"feed_id": spec.feed_id if spec else str(u.feed_index), "feed_index": u.feed_index,
                          "value": str(from_fixed(u.value, decimals)), "raw_value": u.value, "decimals": decimals,
                          "observed_at": u.observed_at, "num_sources": u.num_sources})
        signers = [committee.signers[i] if committee and i < committee.n else str(i) for i, _ in report.signatures]
        rec = self.rounds.setdefault((report.epoch, report.round), RoundRecord(report.epoch, report.round))
        rec.attested_at = now
        rec.started_at = report.started_at if report.started_at is not None else self._observed_at(report)
        rec.signer_count, rec.signers, rec.feeds = len(report.signatures), signers, feeds
        rec.report = {
            "config_digest": "0x" + report.config_digest.hex(), "epoch": report.epoch, "round": report.round,
            "updates": "0x" + report.updates.hex(),
            "signatures": [{"index": i, "signer": signers[k], "signature": "0x" + s.hex()}
                           for k, (i, s) in enumerate(report.signatures)],
        }
        self._trim_rounds()
        self.attested_total.inc()
        self.stage_total.labels("report", "ok").inc()
        started = rec.started_at
        if started is not None:  # the leader times from its request, a follower from its observation
            self.stage_seconds.labels("report").observe(max(0.0, now - started))
        self.publish({"type": "attested", **rec.public(), "report": rec.report})

    def _observed_at(self, report: "AttestedReport") -> float | None:
        try:
            row = self.node.store.db.conn.execute(
                "SELECT created_at FROM signed_observations WHERE digest = ? AND epoch = ? AND round = ?",
                ["0x" + report.config_digest.hex(), report.epoch, report.round],
            ).fetchone()
        except sqlite3.Error:
            return None
        return float(row[0]) if row and row[0] is not None else None

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

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample_loop(), name="telemetry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _transmitter_stat(self, name: str) -> int:
        t = getattr(self.node, "transmitter", None)
        return int(getattr(t.stats, name)) if t is not None else 0

    async def _sample_loop(self) -> None:
        tick = 0
        while True:
            try:
                self._sample_local()
                await self._sample_chain(balance=tick % 10 == 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an RPC hiccup is retried next tick
                log.debug("telemetry sample failed: %s", exc)
            tick += 1
            await asyncio.sleep(0.5)

    def _sample_local(self) -> None:
        node = self.node
        engine, host, committee = getattr(node, "engine", None), getattr(node, "host", None), node.committee
        if host is not None:
            self.peers.set(len(host.connected_peers()))
        if engine is not None:
            self.epoch.set(engine.epoch)
            self.round.set(engine.round)
        self.member.set(1 if committee is not None and committee.index_of(node.address) is not None
                        and not node.dry_run else 0)
        cache = getattr(node, "cache", None)
        if cache is not None:
            for name, h in cache.health.items():
                ok, err = self._seen_health.get(name, (0, 0))
                if h.ok_count > ok:
                    self.stage_total.labels("source_fetch", "ok").inc(h.ok_count - ok)
                    if h.last_latency_ms is not None:
                        self.stage_seconds.labels("source_fetch").observe(h.last_latency_ms / 1000)
                if h.error_count > err:
                    self.stage_total.labels("source_fetch", "error").inc(h.error_count - err)
                self._seen_health[name] = (h.ok_count, h.error_count)
        transmitter = getattr(node, "transmitter", None)
        if transmitter is not self._transmitter_ref:  # a new committee starts new stats
            self.gas_base += self._seen_transmitter.get("gas_used", 0)
            self._seen_transmitter, self._transmitter_ref = {}, transmitter
        if transmitter is not None:
            for name, result in (("transmitted", "ok"), ("superseded", "superseded"), ("failed", "error")):
                now, seen = int(getattr(transmitter.stats, name)), self._seen_transmitter.get(name, 0)
                if now > seen:
                    self.stage_total.labels("transmission", result).inc(now - seen)
                self._seen_transmitter[name] = now
            self._seen_transmitter["gas_used"] = transmitter.stats.gas_used
        self._sample_signatures()

    def _sample_signatures(self) -> None:
        """Report signatures this node gave, timed from its observation of the same round."""
        try:
            rows = self.node.store.db.conn.execute(
                "SELECT r.rowid, r.created_at, o.created_at FROM signed_reports r LEFT JOIN signed_observations o "
                "ON o.digest = r.digest AND o.epoch = r.epoch AND o.round = r.round WHERE r.rowid > ? "
                "ORDER BY r.rowid", [self._signature_rowid],
            ).fetchall()
        except sqlite3.Error:
            return
        for rowid, signed_at, observed_at in rows:
            self._signature_rowid = rowid
            self.stage_total.labels("signature", "ok").inc()
            if signed_at is not None and observed_at is not None:
                self.stage_seconds.labels("signature").observe(max(0.0, signed_at - observed_at))

    async def _sample_chain(self, *, balance: bool) -> None:
        node = self.node
        oracle = getattr(node, "oracle", None)
        if oracle is None:
            return
        if balance and node.transmitter_key is not None:
            from relayer.chain.codec import address_of

            self.balance.set(await oracle.rpc.balance(address_of(node.transmitter_key)))
        head = await oracle.rpc.block_number()
        first = self._next_block is None
        landed_keys: list[tuple[int, int]] = []
        if not first and head >= self._next_block:
            for event in await oracle.transmission_events(self._next_block, head):
                landed_keys.append((event.epoch, event.round))
        if first or head >= self._next_block:
            self._next_block = head + 1
        if not first and not landed_keys:
            return
        served = list(getattr(node, "served", []))
        latest, states = await oracle.latest_feeds([sf.index for sf in served])
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
                points.append((float(state.observed_at), value))
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

    # --- views for the API -------------------------------------------------------------

    def feed_view(self) -> list[dict[str, Any]]:
        out = []
        by_key = {(r.epoch, r.round): r for r in self.rounds.values()}
        for sf in getattr(self.node, "served", []):
            fid = sf.spec.feed_id
            entry = dict(self.latest.get(fid, {"feed_id": fid, "decimals": sf.spec.decimals, "value": None}))
            rec = by_key.get((entry.get("epoch"), entry.get("round")))  # type: ignore[arg-type]
            entry["report"] = rec.report if rec is not None else None
            entry["signer_count"] = rec.signer_count if rec is not None else None
            entry["description"] = sf.spec.description
            entry["kind"] = str(sf.spec.kind)
            entry["margin"] = self.margin(fid)
            out.append(entry)
        return out

    def margin(self, feed_id: str) -> dict[str, Any] | None:
        """What RiskGate would set for the market of a spot feed, from the latest on-chain values.

        Volatility and depth come from the attested realized-vol and depth feeds of the same
        instrument when this node serves them and they have landed (as RiskGate reads them);
        otherwise volatility is estimated from the landed prices and depth is taken at the
        reference. Other kinds of feed have no margin of their own (None).
        """
        spec = self._spec(feed_id)
        if spec is None or str(getattr(spec, "kind", "spot")) != "spot":
            return None
        vol_feed = self._sibling(spec.instrument, "realized_vol")
        depth_feed = self._sibling(spec.instrument, "depth")
        vol_bps = self._landed_decimal(vol_feed)
        depth = self._landed_decimal(depth_feed)
        source = {"volatility": vol_feed if vol_bps is not None else "landed prices",
                  "depth": depth_feed if depth is not None else "reference"}
        vol = int(vol_bps * BPS) if vol_bps is not None else self._realized_vol_bps(feed_id)
        if vol is None:
            return None
        depth_units = int(depth) if depth is not None else DEFAULT_CURVE.depth_ref
        try:
            m = compute_margins(DEFAULT_CURVE, vol, depth_units)
        except InvalidInput:
            return None
        return {"volatility_bps": vol, "depth": depth_units, "initial_bps": m.initial_bps,
                "maintenance_bps": m.maintenance_bps, "samples": len(self.history.get(feed_id, ())),
                "source": source}

    def _spec(self, feed_id: str) -> Any:
        return next((sf.spec for sf in getattr(self.node, "served", []) if sf.spec.feed_id == feed_id), None)

    def _sibling(self, instrument: str, kind: str) -> str | None:
        for sf in getattr(self.node, "served", []):
            if sf.spec.instrument == instrument and str(sf.spec.kind) == kind:
                return str(sf.spec.feed_id)
        return None

    def _landed_decimal(self, feed_id: str | None) -> Decimal | None:
        entry = self.latest.get(feed_id) if feed_id else None
        if not entry or entry.get("value") is None:
            return None
        value = Decimal(entry["value"])
        return value if value >= 0 else None

    def _realized_vol_bps(self, feed_id: str) -> int | None:
        points = list(self.history.get(feed_id, ()))
        returns, gaps = [], []
        for (t0, v0), (t1, v1) in zip(points, points[1:]):
            a, b = Decimal(v0), Decimal(v1)
            if a > 0 and b > 0 and t1 > t0:
                returns.append(math.log(float(b / a)))
                gaps.append(t1 - t0)
        if len(returns) < 2:
            return None
        mean = sum(returns) / len(returns)
        var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
        per_year = 365 * 86400 / (sum(gaps) / len(gaps))
        return int(math.sqrt(var * per_year) * BPS)

    def history_view(self) -> dict[str, list[list[Any]]]:
        return {fid: [[t, v] for t, v in pts] for fid, pts in self.history.items()}

    def rounds_view(self) -> list[dict[str, Any]]:
        return [self.rounds[k].public() for k in sorted(self.rounds, reverse=True)]

    def status(self) -> dict[str, Any]:
        node = self.node
        engine, host, committee = getattr(node, "engine", None), getattr(node, "host", None), node.committee
        peers = []
        if host is not None:
            from relayer.p2p.identity import address_of_peer_id

            for pid in host.connected_peers():
                with contextlib.suppress(Exception):
                    peers.append({"peer_id": pid, "address": address_of_peer_id(pid)})
        index = committee.index_of(node.address) if committee is not None else None
        return {
            "name": node.settings.name, "address": node.address, "dry_run": node.dry_run,
            "chain_id": getattr(node, "chain_id", None), "oracle": node.settings.oracle_address,
            "committee": None if committee is None else {
                "digest": committee.digest_hex, "signers": list(committee.signers), "f": committee.f,
                "threshold": committee.threshold, "n": committee.n, "member_index": index,
                "leader": committee.leader(engine.epoch) if engine is not None else None,
            },
            "peers": peers, "epoch": engine.epoch if engine is not None else None,
            # A follower's engine only knows the leader's rounds through what it attested.
            "round": (max([engine.round] + [k[1] for k in self.rounds if k[0] == engine.epoch])
                      if engine is not None else None),
            "last_landed": list(self.last_landed) if self.last_landed else None,
            "reports_attested": engine.stats.reports_attested if engine is not None else 0,
            "transmission": {k: self._transmitter_stat(k) for k in ("transmitted", "superseded", "failed", "gas_used")},
            "sources": {name: {"healthy": h.healthy, "ok": h.ok_count, "errors": h.error_count,
                               "last_error": h.last_error_type}
                        for name, h in (getattr(node, "cache", None).health.items()
                                        if getattr(node, "cache", None) is not None else [])},
            "ready": self.ready(),
        }

    def ready(self) -> bool:
        node = self.node
        host, committee = getattr(node, "host", None), node.committee
        if host is None or committee is None or getattr(node, "cache", None) is None:
            return False
        if node.dry_run or committee.index_of(node.address) is None:
            return True  # a watcher is ready once it follows the chain
        return getattr(node, "engine", None) is not None and len(host.connected_peers()) >= committee.quorum - 1
