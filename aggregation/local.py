"""A node's local aggregate of one instrument over its venue readings.

Pure: takes anything with ``.source`` and ``.price`` (a Protocol, so this package
never imports ``feeds``) and returns the scaled value the node will sign as its
observation, plus how many sources agreed and how far apart they were.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction
from typing import Protocol

from aggregation.errors import DuplicateSource, InsufficientData, InvalidInput
from aggregation.fixed import to_fixed
from aggregation.robust import (
    DEFAULT_MAD_K,
    DEFAULT_REL_FLOOR,
    median,
    trimmed_mean,
    weighted_median,
    within_mad,
)

__all__ = ["PricedReading", "LocalAggregate", "aggregate_readings", "spread_bps", "METHODS"]


class PricedReading(Protocol):
    @property
    def source(self) -> str: ...

    @property
    def price(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class LocalAggregate:
    value: int  # aggregate (median by default) scaled by 10**decimals, ROUND_HALF_EVEN
    num_sources: int  # sources that agree (after outlier removal)
    dispersion_bps: int  # max |price - median| over agreeing sources, bps of the median, rounded up
    sources: tuple[str, ...]  # agreeing sources, sorted
    outliers: tuple[str, ...] = ()  # sources dropped as outliers, sorted


METHODS = ("median", "weighted_median", "trimmed_mean")


def aggregate_readings(
    readings: Sequence[PricedReading],
    *,
    min_sources: int,
    decimals: int,
    mad_k: Decimal = DEFAULT_MAD_K,
    rel_floor: Decimal = DEFAULT_REL_FLOOR,
    abs_floor: Decimal = Decimal(0),
    method: str = "median",
    weights: Mapping[str, Decimal] | None = None,
    trim: Decimal = Decimal("0.2"),
    sign: str = "positive",
    now: float | None = None,
    max_age: float | None = None,
) -> LocalAggregate:
    """A robust aggregate over the readings; outliers (``robust.within_mad``) do not count as sources.

    The value is computed over *all* fresh readings, not the outlier-filtered ones.
    The plain median provably stays inside the range of the honest readings while
    fewer than half are wrong; filtering first loses that: with honest 10, 20, 30
    and wrong 9, 9.5 the filter keeps 9, 9.5, 10 and their median 9.5 lies below
    every honest value. So the filter decides which sources agree (``num_sources``
    against ``min_sources``, ``dispersion_bps``), and the method decides the value:

    - ``median``: the median (the mean of the two middle values for an even count);
    - ``weighted_median``: :func:`robust.weighted_median` with ``weights`` per source
      (default 1); robust while the wrong sources hold less than half the weight;
    - ``trimmed_mean``: :func:`robust.trimmed_mean` dropping ``floor(n * trim)``
      readings at each end; robust while at most that many are wrong.

    ``sign`` is ``positive`` (prices, vol, OI, depth), ``non_negative`` or ``any``
    (funding rates). With ``now`` and ``max_age``, a reading whose ``observed_at`` is
    older than ``max_age`` seconds is stale and does not count (staleness rule).
    """
    if isinstance(min_sources, bool) or not isinstance(min_sources, int) or min_sources < 1:
        raise InvalidInput(f"aggregate_readings: expected min_sources as an int >= 1, got {min_sources!r}")
    if method not in METHODS:
        raise InvalidInput(f"aggregate_readings: expected a method among {', '.join(METHODS)}, got {method!r}")
    if sign not in ("positive", "non_negative", "any"):
        raise InvalidInput(f"aggregate_readings: expected sign positive, non_negative or any, got {sign!r}")
    if (now is None) != (max_age is None):
        raise InvalidInput("aggregate_readings: expected both now and max_age, or neither")
    items = list(readings)
    seen: set[str] = set()
    for reading in items:
        if reading.source in seen:
            raise DuplicateSource(
                f"aggregate_readings: expected one reading per source, got {reading.source!r} "
                f"twice; pass only the latest reading of each source"
            )
        seen.add(reading.source)
        price = reading.price
        bad = not isinstance(price, Decimal) or not price.is_finite()
        if not bad and sign == "positive":
            bad = price <= 0
        elif not bad and sign == "non_negative":
            bad = price < 0
        if bad:
            wanted = {"positive": "a positive", "non_negative": "a non-negative", "any": "a"}[sign]
            raise InvalidInput(
                f"aggregate_readings: expected {wanted} finite Decimal price from "
                f"{reading.source!r}, got {price!r}; drop that reading before aggregating"
            )
    stale: list[str] = []
    if now is not None and max_age is not None:
        fresh = []
        for reading in items:
            observed = getattr(reading, "observed_at", None)
            if observed is not None and now - observed > max_age:
                stale.append(reading.source)
            else:
                fresh.append(reading)
        items = fresh
    present = ", ".join(sorted(r.source for r in items)) or "none"
    stale_note = f"; stale (older than {max_age:g}s): {', '.join(sorted(stale))}" if stale else ""
    if len(items) < min_sources:
        raise InsufficientData(
            f"expected readings from at least {min_sources} sources, got {len(items)} "
            f"({present}){stale_note}; check the failing sources' health"
        )
    prices = [reading.price for reading in items]
    if method == "weighted_median":
        chosen = weights or {}
        center = weighted_median(prices, [Decimal(chosen.get(r.source, 1)) for r in items])
    elif method == "trimmed_mean":
        center = trimmed_mean(prices, trim)
    else:
        center = median(prices)
    keep = within_mad(prices, mad_k, rel_floor=rel_floor, abs_floor=abs_floor)
    agreeing = [reading for reading, kept in zip(items, keep, strict=True) if kept]
    outliers = tuple(sorted(r.source for r, kept in zip(items, keep, strict=True) if not kept))
    if len(agreeing) < min_sources:
        dropped = ", ".join(
            f"{r.source}={r.price}" for r, kept in zip(items, keep, strict=True) if not kept
        )
        raise InsufficientData(
            f"expected at least {min_sources} agreeing sources, got {len(agreeing)} of "
            f"{len(items)} ({present}); outliers against median {median(prices)}: {dropped}; "
            f"check those venues"
        )
    max_deviation = max(abs(Fraction(r.price) - Fraction(center)) for r in agreeing)
    # Exact rational arithmetic, rounded up: dispersion is reported as "at least",
    # and no decimal context can make two nodes disagree on it. Relative to |center|,
    # or to 1 when the center is 0 (a funding rate can be exactly zero).
    scale = abs(Fraction(center)) or Fraction(1)
    dispersion_bps = math.ceil(max_deviation * 10_000 / scale)
    return LocalAggregate(
        value=to_fixed(center, decimals),
        num_sources=len(agreeing),
        dispersion_bps=dispersion_bps,
        sources=tuple(sorted(r.source for r in agreeing)),
        outliers=outliers,
    )


def spread_bps(prices: Sequence[Decimal]) -> Decimal:
    """Cross-venue dispersion: ``(max - min) / median * 10_000`` at 50 digits, half-even.

    The manipulation signal: one venue printing away from the others widens it at
    once, while the median price itself does not move.
    """
    values = list(prices)
    if len(values) < 2:
        raise InsufficientData(f"spread_bps: expected at least 2 prices, got {len(values)}")
    for value in values:
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise InvalidInput(f"spread_bps: expected positive finite Decimal prices, got {value!r}")
    center = median(values)
    ctx = Context(prec=50, rounding=ROUND_HALF_EVEN)
    return ctx.divide(ctx.multiply(ctx.subtract(max(values), min(values)), 10_000), center)
