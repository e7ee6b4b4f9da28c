"""The feed cache: polls every (source, factor, instrument) it serves, keeps the latest good reading.

The node calls :meth:`FeedCache.poll_once` from a scheduler job inside its asyncio
loop and reads :meth:`FeedCache.readings` / :meth:`FeedCache.aggregate` when it
observes, so observing never waits on a venue. A failing venue lowers its own health
and is logged once per failed fetch; it never stops the other fetches and never
removes the other venues' data.

Polling policy (all per target = (source, kind, instrument)):

- each kind has a poll interval (:data:`feeds.kinds.KINDS`): spot every poll, depth
  every 2 s, funding / open interest / implied vol every 5 s, realized vol (61
  candles) every 15 s; a poll only fetches the targets that are due;
- a failed target waits ``backoff_base * 2**(failures-1)`` seconds (capped at
  ``backoff_cap``) times a random jitter in [0.5, 1] before its next attempt;
- a rate limit blocks the whole venue until its Retry-After, or, when the venue says
  it inside an HTTP 200 (Kraken, OKX, Bybit), for the window its source documents;
- transient errors (5xx, connection refused) are retried within the poll
  ``retries`` times after a short jittered pause;
- at most ``concurrency_per_venue`` requests are in flight per venue;
- every fetch has the source's timeout, and a hard deadline above it.

Streaming (:meth:`FeedCache.run_streams`): a target whose source streams its kind
(``Source.streams``, with a stream URL) is fed by :mod:`feeds.stream` on each venue
message while its stream is live, and polled like any other while it is not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp

from aggregation.errors import AggregationError
from aggregation.fixed import to_fixed
from aggregation.local import LocalAggregate, aggregate_readings, spread_bps
from feeds.base import Source, SourceReading
from feeds.errors import (
    FeedsConfigError,
    FeedWithheld,
    SourceConnectionError,
    SourceError,
    SourceFrozenError,
    SourceHTTPError,
    SourceRateLimited,
    SourceTimeout,
    SourceUnavailable,
    UnknownInstrumentError,
)
from feeds.kinds import KINDS, FactorKind

__all__ = ["SourceHealth", "FeedCache", "Target", "DEFAULT_FROZEN_AFTER"]

logger = logging.getLogger(__name__)

# Extra time a source gets beyond its own timeout before the poller gives up on it.
# It only matters for a third-party source that forgets its timeout: one hung
# fetch must not hang the poll (and with it the node's scheduler job).
_DEADLINE_GRACE = 1.0
# A value that has not changed for this long (seconds) while the venue's clock moves
# is a frozen feed. Kinds not listed are never judged frozen (a funding rate or a
# DVOL close can legitimately sit still).
DEFAULT_FROZEN_AFTER: Mapping[FactorKind, float] = {
    FactorKind.SPOT: 30.0,
    FactorKind.DEPTH: 60.0,
    FactorKind.OPEN_INTEREST: 120.0,
}
# Health score shape.
_EWMA = 0.2
_SLOW_MS = 500.0
_STALE_FROM, _STALE_TO = 10.0, 60.0

Target = tuple[str, FactorKind, str]  # (source, kind, instrument)


@dataclass(slots=True)
class SourceHealth:
    """Per source, across its factors and instruments; updated once per fetch."""

    source: str
    ok_count: int = 0
    error_count: int = 0
    # Failed fetches since the last good one (fetches of one poll counted in a fixed
    # order, so the number does not depend on task timing).
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_type: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None
    last_latency_ms: float | None = None
    # Moving averages behind the score.
    error_rate: float = 0.0
    latency_ms: float | None = None
    outlier_rate: float = 0.0
    outlier_count: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0

    def score(self, now: float | None = None) -> float:
        """In [0, 1]: (1 - error rate) x latency factor x staleness factor x (1 - outlier rate).

        Latency above 500 ms scales the score by 500 / latency; a source whose last
        good reading is older than 10 s loses score linearly to 0 at 60 s.
        """
        at = time.time() if now is None else now
        latency = 1.0 if self.latency_ms is None or self.latency_ms <= _SLOW_MS else _SLOW_MS / self.latency_ms
        if self.last_ok_at is None:
            fresh = 0.0 if self.error_count else 1.0
        else:
            age = at - self.last_ok_at
            fresh = 1.0 if age <= _STALE_FROM else max(0.0, (_STALE_TO - age) / (_STALE_TO - _STALE_FROM))
        return round((1 - self.error_rate) * latency * fresh * (1 - self.outlier_rate), 6)

    def record_ok(self, reading: SourceReading) -> None:
        self.ok_count += 1
        self.consecutive_failures = 0
        self.last_ok_at = reading.fetched_at
        self.last_latency_ms = reading.latency_ms
        self.error_rate *= 1 - _EWMA
        self.latency_ms = reading.latency_ms if self.latency_ms is None else (
            (1 - _EWMA) * self.latency_ms + _EWMA * reading.latency_ms
        )

    def record_error(self, error: Exception, at: float) -> None:
        self.error_count += 1
        self.consecutive_failures += 1
        self.last_error = str(error)
        self.last_error_type = type(error).__name__
        self.last_error_at = at
        self.error_rate = (1 - _EWMA) * self.error_rate + _EWMA
        self.errors_by_type[self.last_error_type] = self.errors_by_type.get(self.last_error_type, 0) + 1

    def record_outlier(self, was_outlier: bool) -> None:
        self.outlier_count += was_outlier
        self.outlier_rate = (1 - _EWMA) * self.outlier_rate + (_EWMA if was_outlier else 0.0)


@dataclass(slots=True)
class _TargetState:
    last_attempt: float | None = None
    not_before: float = 0.0
    failures: int = 0
    last_value: Decimal | None = None
    unchanged_since: float | None = None


class FeedCache:
    def __init__(
        self,
        sources: Mapping[str, Source],
        instruments: Sequence[str] = (),
        *,
        max_age: float = 10.0,
        targets: Iterable[tuple[str, FactorKind | str, str]] = (),
        intervals: Mapping[FactorKind | str, float] | None = None,
        concurrency_per_venue: int = 4,
        retries: int = 1,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        frozen_after: Mapping[FactorKind | str, float] | None = None,
        rng: random.Random | None = None,
        poll_budget: float | None = None,
    ) -> None:
        if max_age <= 0:
            raise FeedsConfigError(f"FeedCache: expected max_age > 0 seconds, got {max_age!r}")
        if concurrency_per_venue < 1 or retries < 0 or backoff_base < 0 or backoff_cap < backoff_base:
            raise FeedsConfigError(
                "FeedCache: expected concurrency_per_venue >= 1, retries >= 0 and "
                f"0 <= backoff_base <= backoff_cap, got {concurrency_per_venue}, {retries}, "
                f"{backoff_base}, {backoff_cap}"
            )
        self._sources = dict(sources)
        self._instruments = list(dict.fromkeys(instruments))
        self.max_age = max_age
        for name, source in self._sources.items():
            if name != source.name:
                raise FeedsConfigError(
                    f"FeedCache: expected the source under key {name!r} to be named "
                    f"{name!r}, got {source.name!r}; key sources by their own name"
                )
        wanted: list[Target] = [
            (name, FactorKind.SPOT, instrument) for name in self._sources for instrument in self._instruments
        ]
        for name, kind, instrument in targets:
            if name not in self._sources:
                raise FeedsConfigError(f"FeedCache: target names source {name!r}, which is not configured")
            wanted.append((name, FactorKind(kind), instrument))
        self._targets: list[Target] = sorted(dict.fromkeys(wanted), key=lambda t: (t[0], t[1], t[2]))
        for name, kind, instrument in self._targets:
            source = self._sources[name]
            # Fails at start, naming the source and instrument, rather than every poll.
            source.symbol(instrument)
            if kind not in source.factors:
                raise source.unsupported(kind, instrument)
            if instrument not in self._instruments:
                self._instruments.append(instrument)
        self.intervals: dict[FactorKind, float] = {k: info.poll_interval for k, info in KINDS.items()}
        self.intervals.update({FactorKind(k): float(v) for k, v in (intervals or {}).items()})
        self.frozen_after: dict[FactorKind, float] = dict(DEFAULT_FROZEN_AFTER)
        if frozen_after is not None:
            self.frozen_after = {FactorKind(k): float(v) for k, v in frozen_after.items()}
        self.concurrency_per_venue = concurrency_per_venue
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._rng = rng or random.Random()
        self.health: dict[str, SourceHealth] = {name: SourceHealth(name) for name in self._sources}
        self._latest: dict[Target, SourceReading] = {}
        # Bumped on every fetch outcome: what aggregate() computes can only change with it
        # (or with the clock), so callers may reuse a result while it stands still.
        self.generation = 0
        self._state: dict[Target, _TargetState] = {t: _TargetState() for t in self._targets}
        self._venue_not_before: dict[str, float] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._inflight: dict[Target, asyncio.Task[None]] = {}
        self.poll_budget = poll_budget
        # Sources whose stream is delivering: the poller leaves their streamed targets alone.
        self._live_streams: set[str] = set()
        self._waiters: list[asyncio.Future[None]] = []

    @classmethod
    def for_feeds(cls, sources: Mapping[str, Source], feeds: Iterable[object], **options: object) -> "FeedCache":
        """A cache polling what ``feeds`` (catalog definitions) need; dispersion reads spot."""
        targets = []
        for feed in feeds:
            kind = FactorKind(getattr(feed, "kind", FactorKind.SPOT))
            polled = FactorKind.SPOT if KINDS[kind].derived else kind
            for name in getattr(feed, "sources"):
                targets.append((name, polled, getattr(feed, "instrument")))
        return cls(sources, (), targets=targets, **options)  # type: ignore[arg-type]

    @property
    def instruments(self) -> list[str]:
        return list(self._instruments)

    @property
    def targets(self) -> list[Target]:
        return list(self._targets)

    def max_age_for(self, kind: FactorKind | str) -> float:
        """A reading of ``kind`` counts while younger than this (3 poll intervals at least)."""
        return max(self.max_age, 3 * self.intervals.get(FactorKind(kind), 0.0))

    def streamed_targets(self) -> dict[str, list[Target]]:
        """Per source, the targets its stream can serve (its streamed kinds, when it has a stream URL)."""
        out: dict[str, list[Target]] = {}
        for target in self._targets:
            source = self._sources[target[0]]
            if target[1] in source.streams and source.stream_url:
                out.setdefault(target[0], []).append(target)
        return out

    async def run_streams(self, session: aiohttp.ClientSession, *, rng: random.Random | None = None) -> None:
        """Stream every target a source can stream, into this cache, until cancelled; returns at once if none."""
        from feeds.stream import run_stream

        groups = self.streamed_targets()
        if not groups:
            return
        try:
            async with asyncio.TaskGroup() as group:
                for name, targets in groups.items():
                    instruments = list(dict.fromkeys(t[2] for t in targets))
                    group.create_task(run_stream(self._sources[name], session, instruments, self, rng=rng or self._rng))
        finally:
            self._live_streams.difference_update(groups)

    def stream_live(self, source: str, live: bool) -> None:
        if live:
            self._live_streams.add(source)
        else:
            self._live_streams.discard(source)

    def stream_reading(self, reading: SourceReading) -> None:
        target = (reading.source, reading.kind, reading.instrument)
        if target in self._state:
            self._record(target, reading)

    def stream_failure(self, source: str, error: SourceError) -> None:
        """A refused message or a failed connection: the source's health, never a target's back-off."""
        self.generation += 1
        now = time.time()
        health = self.health[source]
        health.record_error(error, now)
        logger.warning(
            "%s stream failed (%s): %s", source, type(error).__name__, error,
            extra={"source": source, "error_type": type(error).__name__,
                   "consecutive_failures": health.consecutive_failures, "health_score": health.score(now)},
        )
        self._wake()

    async def next_update(self) -> None:
        """Wait for the next outcome recorded in this cache (a reading or a failure, polled or streamed)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _due(self, target: Target, now: float) -> bool:
        if target[0] in self._live_streams and target[1] in self._sources[target[0]].streams:
            return False
        state = self._state[target]
        if now < max(state.not_before, self._venue_not_before.get(target[0], 0.0)):
            return False
        interval = self.intervals.get(target[1], 0.0)
        return state.last_attempt is None or interval <= 0 or now - state.last_attempt >= interval - 1e-3

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        """Fetch every due target concurrently; store good readings, record failures.

        With ``poll_budget`` set, returns after at most that many seconds: a fetch
        still running (a hanging venue) finishes in the background, is recorded when
        it ends, and is not started again meanwhile, so one slow venue never holds
        back the others' readings or the next poll.
        """
        started = time.time()
        due = [t for t in self._targets if t not in self._inflight and self._due(t, started)]
        outcomes: dict[Target, SourceReading | Exception] = {}
        for target in due:
            self._state[target].last_attempt = started

        async def fetch(target: Target) -> None:
            name, kind, instrument = target
            source = self._sources[name]
            semaphore = self._semaphores.setdefault(name, asyncio.Semaphore(self.concurrency_per_venue))
            attempt = 0
            while True:
                try:
                    async with semaphore:
                        async with asyncio.timeout(source.timeout + _DEADLINE_GRACE):
                            if kind == FactorKind.SPOT:
                                reading = await source.fetch_spot(session, instrument)
                            else:
                                reading = await source.fetch(session, kind, instrument)
                    self._check_identity(reading, name, kind, instrument)
                    outcomes[target] = reading
                    return
                except SourceError as exc:
                    # A venue that says it is down in the body (status 200) is as
                    # transient as one that says it with a 5xx.
                    transient = isinstance(exc, SourceConnectionError | SourceUnavailable) or (
                        isinstance(exc, SourceHTTPError)
                        and not isinstance(exc, SourceRateLimited)
                        and (exc.status or 0) >= 500
                    )
                    if transient and attempt < self.retries:
                        attempt += 1
                        await asyncio.sleep(0.05 * 2 ** (attempt - 1) * self._rng.uniform(0.5, 1.5))
                        continue
                    outcomes[target] = exc
                    return
                except TimeoutError:
                    outcomes[target] = SourceTimeout(
                        f"{name} {instrument}: expected the source to finish within "
                        f"{source.timeout + _DEADLINE_GRACE:g}s, got no result; the source "
                        f"ignores its own timeout — fix {type(source).__name__}",
                        source=name,
                        instrument=instrument,
                    )
                    return
                except Exception as exc:
                    # A bug in one (possibly third-party) source must not cancel the
                    # other fetches or crash the node; it counts against that source.
                    logger.exception(
                        "source %s raised an unexpected %s for %s %s",
                        name,
                        type(exc).__name__,
                        kind,
                        instrument,
                        extra={"source": name, "instrument": instrument, "kind": str(kind)},
                    )
                    outcomes[target] = exc
                    return

        tasks = {target: asyncio.create_task(fetch(target)) for target in due}
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks.values(), timeout=self.poll_budget)
        # Recorded in target order, so counts and "last error" do not depend on timing.
        for target, task in tasks.items():
            if task in done:
                self._record(target, outcomes[target])
            else:
                self._inflight[target] = task
                task.add_done_callback(functools.partial(self._finish_late, target, outcomes=outcomes))

    def _finish_late(
        self, target: Target, task: asyncio.Task[None], *, outcomes: Mapping[Target, SourceReading | Exception]
    ) -> None:
        self._inflight.pop(target, None)
        if not task.cancelled() and target in outcomes:
            self._record(target, outcomes[target])

    def _record(self, target: Target, outcome: SourceReading | Exception) -> None:
        self.generation += 1
        self._wake()
        now = time.time()
        name, kind, instrument = target
        if isinstance(outcome, SourceReading):
            outcome = self._check_frozen(target, outcome)
        health = self.health[name]
        state = self._state[target]
        if isinstance(outcome, SourceReading):
            self._latest[target] = outcome
            health.record_ok(outcome)
            state.failures = 0
            state.not_before = 0.0
            return
        health.record_error(outcome, now)
        state.failures += 1
        if self.backoff_base > 0:
            delay = min(self.backoff_cap, self.backoff_base * 2 ** (state.failures - 1))
            state.not_before = now + delay * self._rng.uniform(0.5, 1.0)
        if isinstance(outcome, SourceRateLimited) and outcome.retry_after is not None:
            self._venue_not_before[name] = max(self._venue_not_before.get(name, 0.0), now + outcome.retry_after)
        if isinstance(outcome, SourceError):
            logger.warning(
                "%s %s %s fetch failed (%s): %s",
                name,
                kind,
                instrument,
                type(outcome).__name__,
                outcome,
                extra={
                    "source": name,
                    "instrument": instrument,
                    "kind": str(kind),
                    "error_type": type(outcome).__name__,
                    "consecutive_failures": health.consecutive_failures,
                    "health_score": health.score(now),
                },
            )

    def _check_frozen(self, target: Target, reading: SourceReading) -> SourceReading | SourceFrozenError:
        state = self._state[target]
        if state.last_value is None or reading.price != state.last_value:
            state.last_value = reading.price
            state.unchanged_since = reading.fetched_at
            return reading
        limit = self.frozen_after.get(target[1])
        since = state.unchanged_since if state.unchanged_since is not None else reading.fetched_at
        if limit is not None and reading.fetched_at - since > limit:
            # The old reading must not keep serving either: it is the frozen value.
            self._latest.pop(target, None)
            return SourceFrozenError(
                f"{target[0]} {target[2]}: expected the {target[1]} value to change within "
                f"{limit:g}s while the venue's clock moves, got {reading.price} unchanged for "
                f"{reading.fetched_at - since:.0f}s; the venue's feed is frozen — the feed uses "
                f"the other sources",
                source=target[0],
                instrument=target[2],
            )
        return reading

    def readings(
        self, instrument: str, now: float | None = None, kind: FactorKind | str = FactorKind.SPOT
    ) -> list[SourceReading]:
        """The latest reading of each source whose venue time is fresh enough for ``kind``."""
        if instrument not in self._instruments:
            raise UnknownInstrumentError(
                f"feed cache: expected one of the polled instruments "
                f"({', '.join(self._instruments)}), got {instrument!r}; add it to the "
                f"node's instruments",
                source="feed-cache",
                instrument=instrument,
            )
        kind = FactorKind(kind)
        at = time.time() if now is None else now
        max_age = self.max_age if kind == FactorKind.SPOT else self.max_age_for(kind)
        fresh: list[SourceReading] = []
        for name in self._sources:
            reading = self._latest.get((name, kind, instrument))
            if reading is not None and at - reading.observed_at <= max_age:
                fresh.append(reading)
        return fresh

    def aggregate(self, feed: object, now: float | None = None) -> LocalAggregate:
        """The local value of one catalog feed, or FeedWithheld saying why it cannot be served.

        Instant: reads the cache only. Records, per source, whether it was an outlier.
        """
        feed_id = str(getattr(feed, "feed_id"))
        kind = FactorKind(getattr(feed, "kind", FactorKind.SPOT))
        instrument = str(getattr(feed, "instrument"))
        allowed = tuple(getattr(feed, "sources"))
        min_sources = int(getattr(feed, "min_sources"))
        decimals = int(getattr(feed, "decimals"))
        at = time.time() if now is None else now
        info = KINDS[kind]
        polled = FactorKind.SPOT if info.derived else kind
        max_age = getattr(feed, "max_age_s", None) or (
            self.max_age if polled == FactorKind.SPOT else self.max_age_for(polled)
        )
        readings = [r for r in self.readings(instrument, now=at, kind=polled) if r.source in allowed]
        readings = [r for r in readings if at - r.observed_at <= max_age]
        missing = sorted(set(allowed) - {r.source for r in readings})
        why_missing = "; ".join(
            f"{n}: {self.health[n].last_error_type or 'no reading yet'}" for n in missing if n in self.health
        )
        try:
            if info.derived:
                result = self._dispersion(readings, min_sources, decimals)
            else:
                result = aggregate_readings(
                    readings,
                    min_sources=min_sources,
                    decimals=decimals,
                    mad_k=info.outlier_k,
                    rel_floor=info.outlier_rel_floor,
                    abs_floor=info.outlier_abs_floor,
                    method=str(getattr(feed, "method", "median")),
                    weights=getattr(feed, "weights", None) or None,
                    trim=getattr(feed, "trim", Decimal("0.2")),
                    sign=info.sign,
                )
        except AggregationError as exc:
            raise FeedWithheld(
                f"feed {feed_id} withheld: {exc}" + (f" (missing: {why_missing})" if why_missing else ""),
                feed_id=feed_id,
                reason="too_few_sources",
            ) from exc
        for reading in readings:
            self.health[reading.source].record_outlier(reading.source in result.outliers)
        low, high = getattr(feed, "min_value", None), getattr(feed, "max_value", None)
        if (low is not None and result.value < to_fixed(Decimal(low), decimals)) or (
            high is not None and result.value > to_fixed(Decimal(high), decimals)
        ):
            raise FeedWithheld(
                f"feed {feed_id} withheld: expected a value within [{low}, {high}], got "
                f"{Decimal(result.value).scaleb(-decimals)} from {', '.join(result.sources)}; "
                f"check the venues or the catalog's bounds",
                feed_id=feed_id,
                reason="out_of_bounds",
            )
        return result

    @staticmethod
    def _dispersion(readings: Sequence[SourceReading], min_sources: int, decimals: int) -> LocalAggregate:
        if len(readings) < min_sources:
            present = ", ".join(sorted(r.source for r in readings)) or "none"
            raise AggregationError(
                f"expected spot readings from at least {min_sources} sources for dispersion, got "
                f"{len(readings)} ({present})"
            )
        value = spread_bps([r.price for r in readings])
        return LocalAggregate(
            value=to_fixed(value, decimals),
            num_sources=len(readings),
            dispersion_bps=int(value.to_integral_value(rounding="ROUND_CEILING")),
            sources=tuple(sorted(r.source for r in readings)),
        )

    @staticmethod
    def _check_identity(reading: SourceReading, name: str, kind: FactorKind, instrument: str) -> None:
        if not isinstance(reading, SourceReading) or (reading.source, reading.kind, reading.instrument) != (
            name,
            kind,
            instrument,
        ):
            raise SourceError(
                f"{name} {instrument}: expected a {kind} SourceReading for ({name}, {instrument}), "
                f"got {reading!r}; the source implementation is wrong",
                source=name,
                instrument=instrument,
            )
