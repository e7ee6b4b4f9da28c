"""The feed cache: polls every (source, instrument), keeps the latest good reading.

The node calls :meth:`FeedCache.poll_once` from a scheduler job inside its asyncio
loop and reads :meth:`FeedCache.readings` when it observes, so observing never
waits on a venue. A failing venue lowers its own health and is logged once per
poll; it never stops the other fetches and never removes the other venues' data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from feeds.base import Source, SourceReading
from feeds.errors import FeedsConfigError, SourceError, SourceTimeout, UnknownInstrumentError

__all__ = ["SourceHealth", "FeedCache"]

logger = logging.getLogger(__name__)

# Extra time a source gets beyond its own timeout before the poller gives up on it.
# It only matters for a third-party source that forgets its timeout: one hung
# fetch must not hang the poll (and with it the node's scheduler job).
_DEADLINE_GRACE = 1.0


@dataclass(slots=True)
class SourceHealth:
    """Per source, across its instruments; updated once per fetch."""

    source: str
    ok_count: int = 0
    error_count: int = 0
    # Failed fetches since the last good one (fetches of one poll counted in
    # configured instrument order, so the number does not depend on task timing).
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_type: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None
    last_latency_ms: float | None = None

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0

    def record_ok(self, reading: SourceReading) -> None:
        self.ok_count += 1
        self.consecutive_failures = 0
        self.last_ok_at = reading.fetched_at
        self.last_latency_ms = reading.latency_ms

    def record_error(self, error: Exception, at: float) -> None:
        self.error_count += 1
        self.consecutive_failures += 1
        self.last_error = str(error)
        self.last_error_type = type(error).__name__
        self.last_error_at = at


class FeedCache:
    def __init__(
        self,
        sources: Mapping[str, Source],
        instruments: Sequence[str],
        *,
        max_age: float = 10.0,
    ) -> None:
        if max_age <= 0:
            raise FeedsConfigError(f"FeedCache: expected max_age > 0 seconds, got {max_age!r}")
        self._sources = dict(sources)
        self._instruments = list(dict.fromkeys(instruments))
        self.max_age = max_age
        for name, source in self._sources.items():
            if name != source.name:
                raise FeedsConfigError(
                    f"FeedCache: expected the source under key {name!r} to be named "
                    f"{name!r}, got {source.name!r}; key sources by their own name"
                )
            for instrument in self._instruments:
                # Fails at start, naming the source and instrument, rather than
                # failing every poll.
                source.symbol(instrument)
        self.health: dict[str, SourceHealth] = {name: SourceHealth(name) for name in self._sources}
        self._latest: dict[tuple[str, str], SourceReading] = {}

    @property
    def instruments(self) -> list[str]:
        return list(self._instruments)

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        """Fetch every (source, instrument) concurrently; store good readings, record failures."""
        outcomes: dict[tuple[str, str], SourceReading | Exception] = {}

        async def fetch(name: str, source: Source, instrument: str) -> None:
            try:
                async with asyncio.timeout(source.timeout + _DEADLINE_GRACE):
                    reading = await source.fetch_spot(session, instrument)
                self._check_identity(reading, name, instrument)
                outcomes[(name, instrument)] = reading
            except SourceError as exc:
                outcomes[(name, instrument)] = exc
            except TimeoutError:
                outcomes[(name, instrument)] = SourceTimeout(
                    f"{name} {instrument}: expected the source to finish within "
                    f"{source.timeout + _DEADLINE_GRACE:g}s, got no result; the source "
                    f"ignores its own timeout — fix {type(source).__name__}",
                    source=name,
                    instrument=instrument,
                )
            except Exception as exc:
                # A bug in one (possibly third-party) source must not cancel the
                # other fetches or crash the node; it counts against that source.
                logger.exception(
                    "source %s raised an unexpected %s for %s",
                    name,
                    type(exc).__name__,
                    instrument,
                    extra={"source": name, "instrument": instrument},
                )
                outcomes[(name, instrument)] = exc

        async with asyncio.TaskGroup() as group:
            for name, source in self._sources.items():
                for instrument in self._instruments:
                    group.create_task(fetch(name, source, instrument))

        now = time.time()
        for name in self._sources:
            for instrument in self._instruments:
                outcome = outcomes[(name, instrument)]
                health = self.health[name]
                if isinstance(outcome, SourceReading):
                    self._latest[(name, instrument)] = outcome
                    health.record_ok(outcome)
                    continue
                health.record_error(outcome, now)
                if isinstance(outcome, SourceError):
                    logger.warning(
                        "%s %s fetch failed (%s): %s",
                        name,
                        instrument,
                        type(outcome).__name__,
                        outcome,
                        extra={
                            "source": name,
                            "instrument": instrument,
                            "error_type": type(outcome).__name__,
                            "consecutive_failures": health.consecutive_failures,
                        },
                    )

    def readings(self, instrument: str, now: float | None = None) -> list[SourceReading]:
        """The latest reading of each source whose venue time is at most ``max_age`` old."""
        if instrument not in self._instruments:
            raise UnknownInstrumentError(
                f"feed cache: expected one of the polled instruments "
                f"({', '.join(self._instruments)}), got {instrument!r}; add it to the "
                f"node's instruments",
                source="feed-cache",
                instrument=instrument,
            )
        at = time.time() if now is None else now
        fresh: list[SourceReading] = []
        for name in self._sources:
            reading = self._latest.get((name, instrument))
            if reading is not None and at - reading.observed_at <= self.max_age:
                fresh.append(reading)
        return fresh

    @staticmethod
    def _check_identity(reading: SourceReading, name: str, instrument: str) -> None:
        if not isinstance(reading, SourceReading) or (reading.source, reading.instrument) != (
            name,
            instrument,
        ):
            raise SourceError(
                f"{name} {instrument}: expected a SourceReading for ({name}, {instrument}), "
                f"got {reading!r}; the source implementation is wrong",
                source=name,
                instrument=instrument,
            )
