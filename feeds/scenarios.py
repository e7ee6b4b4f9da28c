"""Market scenarios: what happens to the simulated market, phase by phase, once a scenario starts.

A scenario is a schedule of phases, each an offset (seconds since the scenario started) with
what the market does from then on: extra volatility, a step in the price level, a multiplier
on implied volatility, venues that stop answering. :class:`ScenarioClock` turns a schedule and
a start time into pure functions of (seed, instrument, time), applied by
:class:`~feeds.market.MarketModel` on top of its seeded walk; ``calm`` changes nothing.

Time scale. A one-hour realized-volatility window (60 one-minute candles) would take an hour to
show a spike. So while a scenario runs, the venues' candle history runs on a market clock
``TIME_SCALE`` times faster than the wall clock: the candle ``k`` minutes back carries the
scenario's price path as it was ``k * CANDLE_SECONDS`` seconds ago (0.5 s per candle, so the
whole hour is the last 30 s of wall time), stamped with its usual minute. The price at the wall
clock's now is the same in the candles and in every ticker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from feeds.errors import SimulatorConfigError
from feeds.market import unit

__all__ = [
    "CANDLE_SECONDS", "SCENARIOS", "TIME_SCALE", "Phase", "Scenario", "ScenarioClock", "scenario_named",
]

# Market minutes per wall minute in the candle history while a scenario runs.
TIME_SCALE = 120
CANDLE_SECONDS = 60 / TIME_SCALE
# The realized-volatility window (60 candles) in wall seconds under the scenario clock.
WINDOW_SECONDS = 60 * CANDLE_SECONDS

_NO_OUTAGES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Phase:
    """What the market does from ``start_s`` seconds after the scenario started to the next phase.

    ``extra_return`` is the amplitude of an extra seeded return per candle (a uniform draw in
    [-extra_return, extra_return], one per ``CANDLE_SECONDS``), added to the calm walk;
    ``level_step`` moves the price level at the phase's start for good (-0.10 is a 10 % drop,
    all at once); ``implied_vol_multiplier`` scales the implied-vol index; ``outages`` maps a
    venue to the fault it answers with (simulated venue faults, feeds/simulated/venue.py)."""

    name: str
    start_s: float
    description: str
    extra_return: Decimal = Decimal(0)
    level_step: Decimal = Decimal(0)
    implied_vol_multiplier: Decimal = Decimal(1)
    outages: Mapping[str, str] = field(default_factory=lambda: _NO_OUTAGES)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    phases: tuple[Phase, ...]


# A calm 1-minute return of the simulated market is about 0.14 % (realized vol near 1.0): an
# extra uniform return of +-1.2 % per candle (standard deviation 0.7 %) takes realized vol to
# about 5 over a full window.
SCENARIOS: Mapping[str, Scenario] = MappingProxyType({
    "calm": Scenario("calm", "the seeded market as it is, nothing added", (
        Phase("calm", 0, "the seeded market"),
    )),
    "vol-spike": Scenario("vol-spike", "volatility rises several-fold for 20 s, then falls back", (
        Phase("calm", 0, "the seeded market"),
        Phase("spike", 20, "extra +-1.2 % per candle, implied vol x3",
              extra_return=Decimal("0.012"), implied_vol_multiplier=Decimal(3)),
        Phase("settling", 40, "calm again; the spike's candles leave the 1-hour window (30 s)"),
        Phase("calm-again", 40 + WINDOW_SECONDS, "the window holds calm candles only"),
    )),
    "crash": Scenario("crash", "every instrument drops 10 % at once, then the market settles", (
        Phase("calm", 0, "the seeded market"),
        Phase("crash", 25, "price level -10 % at once (past the 5 % spot breaker), implied vol x2",
              level_step=Decimal("-0.10"), implied_vol_multiplier=Decimal(2)),
        Phase("settled", 30, "calm at the new level; a tripped breaker waits for the owner's resetBreaker"),
    )),
    "venue-outage": Scenario("venue-outage", "two spot venues stop answering for 30 s, then recover", (
        Phase("calm", 0, "every venue answers"),
        Phase("outage", 20, "kraken times out, coinbase answers HTTP 500",
              outages=MappingProxyType({"kraken": "timeout", "coinbase": "http500"})),
        Phase("recovered", 50, "every venue answers again"),
    )),
})


def scenario_named(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SimulatorConfigError(
            f"expected a scenario among {', '.join(SCENARIOS)}, got {name!r}"
        ) from None


class ScenarioClock:
    """A scenario started at a wall-clock time: the phase, price factor and faults at any time.

    Before ``started_at`` (or with no start yet) the market is calm. Deterministic for a
    given (seed, scenario, started_at), so a separate process with the same three agrees."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.started_at: float | None = None
        # Per instrument: the extra walk at candle knot n (the sum of the first n extra returns).
        self._walks: dict[str, list[Decimal]] = {}
        # The walk stops moving where the last phase with extra returns ends (None: it never does),
        # so a long-running devnet keeps a bounded list.
        phases = scenario.phases
        moving = [i for i, phase in enumerate(phases) if phase.extra_return]
        self._last_knot: int | None = 0 if not moving else (
            None if moving[-1] + 1 == len(phases) else math.ceil(phases[moving[-1] + 1].start_s / CANDLE_SECONDS))

    def start(self, at: float) -> None:
        if not math.isfinite(at):
            raise SimulatorConfigError(f"expected a finite start time, got {at!r}")
        self.started_at = at
        self._walks.clear()

    def elapsed(self, t: float) -> float | None:
        """Seconds since the scenario started, or None before it has."""
        if self.started_at is None or t < self.started_at:
            return None
        return t - self.started_at

    def phase_at(self, t: float) -> Phase | None:
        since = self.elapsed(t)
        if since is None:
            return None
        current = self.scenario.phases[0]
        for phase in self.scenario.phases:
            if phase.start_s <= since:
                current = phase
        return current

    def schedule(self) -> list[dict[str, Any]]:
        """Each phase with its offset and, once started, its wall-clock start and end (unix s)."""
        out = []
        phases = self.scenario.phases
        for i, phase in enumerate(phases):
            end_s = phases[i + 1].start_s if i + 1 < len(phases) else None
            out.append({
                "name": phase.name, "offset_s": phase.start_s, "end_offset_s": end_s,
                "starts_at": None if self.started_at is None else self.started_at + phase.start_s,
                "ends_at": None if self.started_at is None or end_s is None else self.started_at + end_s,
                "description": phase.description,
                **({"outages": dict(phase.outages)} if phase.outages else {}),
            })
        return out

    def fault(self, venue: str, t: float) -> str | None:
        phase = self.phase_at(t)
        return None if phase is None else phase.outages.get(venue)

    def implied_vol_multiplier(self, t: float) -> Decimal:
        phase = self.phase_at(t)
        return Decimal(1) if phase is None else phase.implied_vol_multiplier

    def price_factor(self, instrument: str, t: float) -> Decimal:
        """The multiplier on the seeded price at scenario time ``t`` (wall clock): the level
        steps of every phase begun, times one plus the extra walk (interpolated between candle
        knots)."""
        since = self.elapsed(t)
        if since is None:
            return Decimal(1)
        level = Decimal(1)
        for phase in self.scenario.phases:
            if phase.level_step and phase.start_s <= since:
                level *= 1 + phase.level_step
        position = since / CANDLE_SECONDS
        knot = math.floor(position)
        left, right = self._walk(instrument, knot), self._walk(instrument, knot + 1)
        walk = left + (right - left) * Decimal(position - knot)
        return (level * (1 + walk)).quantize(Decimal("1e-12"))

    def _walk(self, instrument: str, knot: int) -> Decimal:
        if self._last_knot is not None:
            knot = min(knot, self._last_knot)
        walk = self._walks.setdefault(instrument, [Decimal(0)])
        while len(walk) <= knot:
            n = len(walk) - 1
            phase = self.phase_at(self.started_at + n * CANDLE_SECONDS) if self.started_at is not None else None
            step = Decimal(0) if phase is None or not phase.extra_return else (
                phase.extra_return * unit(self.seed, "scenario", self.scenario.name, instrument, n))
            walk.append(walk[-1] + step)
        return walk[knot]
