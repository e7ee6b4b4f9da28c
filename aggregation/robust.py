"""Robust statistics over Decimal values: median and MAD outlier filtering.

Pure and deterministic: the result depends only on the multiset of inputs (never
their order, never the process-wide decimal context), so every node computing it
on the same values gets the same answer. Arithmetic runs in an exact context;
nothing here rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact
from functools import cmp_to_key

from aggregation.errors import InsufficientData, InvalidInput

__all__ = [
    "median",
    "median_int",
    "weighted_median",
    "trimmed_mean",
    "mad_filter",
    "within_mad",
    "DEFAULT_MAD_K",
    "DEFAULT_REL_FLOOR",
]

_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact])
_HALF = Decimal("0.5")

DEFAULT_MAD_K = Decimal(5)
# 5 bps of the median. See within_mad for why a floor is needed at all.
DEFAULT_REL_FLOOR = Decimal("0.0005")


def _checked(values: Sequence[Decimal], what: str) -> list[Decimal]:
    checked = list(values)
    for index, value in enumerate(checked):
        if not isinstance(value, Decimal):
            raise InvalidInput(
                f"{what}: expected Decimal values, got {type(value).__name__} {value!r} at "
                f"index {index}; parse values with Decimal, never float"
            )
        if not value.is_finite():
            raise InvalidInput(
                f"{what}: expected finite values, got {value} at index {index}; the source "
                f"that produced it must be dropped before aggregating"
            )
    return checked


def _sorted(values: list[Decimal]) -> list[Decimal]:
    # compare_total orders equal values by representation too (1.0 vs 1.00, -0 vs 0),
    # so even the representation of the result is independent of input order.
    return sorted(values, key=cmp_to_key(_compare_total))


def _compare_total(a: Decimal, b: Decimal) -> int:
    return int(a.compare_total(b))


def _compare_pairs(a: tuple[Decimal, Decimal], b: tuple[Decimal, Decimal]) -> int:
    return _compare_total(a[0], b[0]) or _compare_total(a[1], b[1])


def median(values: Sequence[Decimal]) -> Decimal:
    """The median; for an even count the exact mean of the two middle values."""
    ordered = _sorted(_checked(values, "median"))
    count = len(ordered)
    if count == 0:
        raise InsufficientData("median: expected at least one value, got none")
    middle = count // 2
    if count % 2:
        return ordered[middle]
    return _EXACT.multiply(_EXACT.add(ordered[middle - 1], ordered[middle]), _HALF)


def median_int(values: Sequence[int]) -> int:
    """``sorted(values)[len(values) // 2]``: always a value some input actually has (as in OCR)."""
    checked = list(values)
    for index, value in enumerate(checked):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(
                f"median_int: expected int values, got {type(value).__name__} {value!r} at index {index}"
            )
    if not checked:
        raise InsufficientData("median_int: expected at least one value, got none")
    return sorted(checked)[len(checked) // 2]


def within_mad(
    values: Sequence[Decimal],
    k: Decimal = DEFAULT_MAD_K,
    *,
    rel_floor: Decimal = DEFAULT_REL_FLOOR,
    abs_floor: Decimal = Decimal(0),
) -> list[bool]:
    """For each value, whether it is within ``k * spread`` of the median.

    ``spread = max(MAD, |median| * rel_floor, abs_floor)`` where MAD is the median absolute
    deviation from the median (raw, not scaled to a normal sigma).

    The floor is the rule for a zero or tiny MAD. With three venues the MAD is the
    smaller of the two gaps around the middle value, so two venues printing the same
    last trade give MAD = 0 and a bare ``k * MAD`` test would drop the third for a
    one-cent difference, leaving too few sources. With the floor, anything within
    ``k * rel_floor`` of the median (25 bps by default) is always kept; with
    ``rel_floor = 0`` and MAD = 0 only values equal to the median are kept.
    ``k >= 1`` is required: below one MAD the filter would drop members of the
    agreeing majority itself.
    """
    if not isinstance(k, Decimal) or not k.is_finite() or k < 1:
        raise InvalidInput(f"within_mad: expected a finite Decimal k >= 1, got {k!r}")
    if not isinstance(rel_floor, Decimal) or not rel_floor.is_finite() or rel_floor < 0:
        raise InvalidInput(f"within_mad: expected a finite Decimal rel_floor >= 0, got {rel_floor!r}")
    if not isinstance(abs_floor, Decimal) or not abs_floor.is_finite() or abs_floor < 0:
        raise InvalidInput(f"within_mad: expected a finite Decimal abs_floor >= 0, got {abs_floor!r}")
    checked = _checked(values, "within_mad")
    if not checked:
        raise InsufficientData("within_mad: expected at least one value, got none")
    center = median(checked)
    deviations = [abs(_EXACT.subtract(value, center)) for value in checked]
    spread = max(median(deviations), _EXACT.multiply(abs(center), rel_floor), abs_floor)
    limit = _EXACT.multiply(k, spread)
    return [deviation <= limit for deviation in deviations]


def mad_filter(
    values: Sequence[Decimal],
    k: Decimal = DEFAULT_MAD_K,
    *,
    rel_floor: Decimal = DEFAULT_REL_FLOOR,
    abs_floor: Decimal = Decimal(0),
) -> list[Decimal]:
    """The values within ``k`` MADs of the median (rule in :func:`within_mad`), in input order."""
    checked = list(values)
    keep = within_mad(checked, k, rel_floor=rel_floor, abs_floor=abs_floor)
    return [value for value, kept in zip(checked, keep, strict=True) if kept]


def weighted_median(values: Sequence[Decimal], weights: Sequence[Decimal]) -> Decimal:
    """The weighted median: the smallest value whose cumulative weight reaches half the total.

    When the cumulative weight lands exactly on half, the result is the exact mean of
    that value and the next one, so equal weights give the plain :func:`median`.
    Ties in value are ordered by ``compare_total`` so the result never depends on
    input order. Weights must be positive finite Decimals.
    """
    checked = _checked(values, "weighted_median")
    ws = _checked(weights, "weighted_median weights")
    if len(checked) != len(ws):
        raise InvalidInput(
            f"weighted_median: expected one weight per value, got {len(ws)} weights for {len(checked)} values"
        )
    if not checked:
        raise InsufficientData("weighted_median: expected at least one value, got none")
    for index, weight in enumerate(ws):
        if weight <= 0:
            raise InvalidInput(f"weighted_median: expected positive weights, got {weight} at index {index}")
    pairs = sorted(
        zip(checked, ws),
        key=cmp_to_key(_compare_pairs),
    )
    total = _EXACT.add(Decimal(0), sum(ws, Decimal(0)))
    half = _EXACT.multiply(total, _HALF)
    running = Decimal(0)
    for index, (value, weight) in enumerate(pairs):
        running = _EXACT.add(running, weight)
        if running > half:
            return value
        if running == half:
            return _EXACT.multiply(_EXACT.add(value, pairs[index + 1][0]), _HALF)
    raise AssertionError("unreachable: cumulative weight reaches the total")  # pragma: no cover


def trimmed_mean(values: Sequence[Decimal], trim: Decimal) -> Decimal:
    """Mean after dropping ``floor(n * trim)`` values from each end (``0 <= trim < 0.5``).

    Exact sum; the one division is done at 50 significant digits, half-even, so the
    result is the same on every node. ``trim = 0`` is the plain mean.
    """
    if not isinstance(trim, Decimal) or not trim.is_finite() or not 0 <= trim < _HALF:
        raise InvalidInput(f"trimmed_mean: expected a Decimal trim in [0, 0.5), got {trim!r}")
    ordered = _sorted(_checked(values, "trimmed_mean"))
    if not ordered:
        raise InsufficientData("trimmed_mean: expected at least one value, got none")
    cut = int(_EXACT.multiply(Decimal(len(ordered)), trim).to_integral_value(rounding="ROUND_FLOOR"))
    kept = ordered[cut : len(ordered) - cut]
    total = Decimal(0)
    for value in kept:
        total = _EXACT.add(total, value)
    return Context(prec=50, rounding="ROUND_HALF_EVEN").divide(total, len(kept))
