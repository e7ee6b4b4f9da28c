"""A node's local aggregate of one instrument over its venue readings.

Pure: takes anything with ``.source`` and ``.price`` (a Protocol, so this package
never imports ``feeds``) and returns the scaled value the node will sign as its
observation, plus how many sources agreed and how far apart they were.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from aggregation.errors import DuplicateSource, InsufficientData, InvalidInput
from aggregation.fixed import to_fixed
from aggregation.robust import DEFAULT_MAD_K, DEFAULT_REL_FLOOR, median, within_mad

__all__ = ["PricedReading", "LocalAggregate", "aggregate_readings"]


class PricedReading(Protocol):
    @property
    def source(self) -> str: ...

    @property
    def price(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class LocalAggregate:
    value: int  # median price scaled by 10**decimals, ROUND_HALF_EVEN
    num_sources: int  # sources that agree (after outlier removal)
    dispersion_bps: int  # max |price - median| over agreeing sources, bps of the median, rounded up
    sources: tuple[str, ...]  # agreeing sources, sorted
    outliers: tuple[str, ...] = ()  # sources dropped as outliers, sorted


def aggregate_readings(
    readings: Sequence[PricedReading],
    *,
    min_sources: int,
    decimals: int,
    mad_k: Decimal = DEFAULT_MAD_K,
    rel_floor: Decimal = DEFAULT_REL_FLOOR,
) -> LocalAggregate:
    """Median over the readings; outliers (see ``robust.within_mad``) do not count as sources.

    The value is the median of *all* readings, not of the outlier-filtered ones.
    The plain median provably stays inside the range of the honest readings while
    fewer than half are wrong; filtering first loses that: with honest 10, 20, 30
    and wrong 9, 9.5 the filter keeps 9, 9.5, 10 and their median 9.5 lies below
    every honest value. So the filter decides which sources agree (``num_sources``
    against ``min_sources``, ``dispersion_bps``), and the median decides the value.
    """
    if isinstance(min_sources, bool) or not isinstance(min_sources, int) or min_sources < 1:
        raise InvalidInput(f"aggregate_readings: expected min_sources as an int >= 1, got {min_sources!r}")
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
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            raise InvalidInput(
                f"aggregate_readings: expected a positive finite Decimal price from "
                f"{reading.source!r}, got {price!r}; drop that reading before aggregating"
            )
    present = ", ".join(sorted(seen)) or "none"
    if len(items) < min_sources:
        raise InsufficientData(
            f"expected readings from at least {min_sources} sources, got {len(items)} "
            f"({present}); check the failing sources' health"
        )
    prices = [reading.price for reading in items]
    center = median(prices)
    keep = within_mad(prices, mad_k, rel_floor=rel_floor)
    agreeing = [reading for reading, kept in zip(items, keep, strict=True) if kept]
    outliers = tuple(sorted(r.source for r, kept in zip(items, keep, strict=True) if not kept))
    if len(agreeing) < min_sources:
        dropped = ", ".join(
            f"{r.source}={r.price}" for r, kept in zip(items, keep, strict=True) if not kept
        )
        raise InsufficientData(
            f"expected at least {min_sources} agreeing sources, got {len(agreeing)} of "
            f"{len(items)} ({present}); outliers against median {center}: {dropped}; "
            f"check those venues"
        )
    max_deviation = max(abs(Fraction(r.price) - Fraction(center)) for r in agreeing)
    # Exact rational arithmetic, rounded up: dispersion is reported as "at least",
    # and no decimal context can make two nodes disagree on it.
    dispersion_bps = math.ceil(max_deviation * 10_000 / Fraction(center))
    return LocalAggregate(
        value=to_fixed(center, decimals),
        num_sources=len(agreeing),
        dispersion_bps=dispersion_bps,
        sources=tuple(sorted(r.source for r in agreeing)),
        outliers=outliers,
    )
