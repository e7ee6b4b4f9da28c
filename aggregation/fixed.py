"""Fixed-point encoding: Decimal values <-> scaled integers as carried on the wire and on-chain.

Every node must produce the same integer from the same Decimal, whatever the
process-wide decimal context says, so all arithmetic here runs in an explicit
context wide enough to be exact, and the one rounding step is ROUND_HALF_EVEN.
"""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, Inexact

from aggregation.errors import FixedPointRangeError, InvalidInput

__all__ = ["INT256_MAX", "MAX_DECIMALS", "to_fixed", "from_fixed"]

# Reports are ABI-encoded as int256.
INT256_MAX = 2**255 - 1
# 10**77 is the largest power of ten below 2**255.
MAX_DECIMALS = 77

# Exact: scaleb and addition never round in this context (prec is a bound, not an allocation).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact])


def _check_decimals(decimals: int) -> None:
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= MAX_DECIMALS:
        raise InvalidInput(
            f"expected decimals as an int in [0, {MAX_DECIMALS}], got {decimals!r}; "
            f"fix the feed's decimals setting"
        )


def to_fixed(value: Decimal, decimals: int) -> int:
    """``round_half_even(value * 10**decimals)`` as an int; raises on NaN/inf or int256 overflow."""
    _check_decimals(decimals)
    if not isinstance(value, Decimal):
        raise InvalidInput(
            f"expected a Decimal, got {type(value).__name__} {value!r}; parse venue values "
            f"with Decimal, never float"
        )
    if not value.is_finite():
        raise InvalidInput(
            f"expected a finite Decimal to encode, got {value}; drop the reading that produced it"
        )
    # Cheap guard before building a huge integer: adjusted() is the power of ten
    # of the leading digit, so beyond 77 digits it cannot fit int256.
    if value and value.adjusted() + decimals > MAX_DECIMALS:
        raise FixedPointRangeError(
            f"expected |value| * 10**{decimals} to fit int256, got {value}; the value is "
            f"absurd or the feed's decimals are too many"
        )
    scaled = value.scaleb(decimals, context=_EXACT)
    result = int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN, context=_EXACT))
    if not -INT256_MAX - 1 <= result <= INT256_MAX:
        raise FixedPointRangeError(
            f"expected |value| * 10**{decimals} to fit int256, got {value}; the value is "
            f"absurd or the feed's decimals are too many"
        )
    return result


def from_fixed(value: int, decimals: int) -> Decimal:
    """The exact Decimal ``value / 10**decimals``."""
    _check_decimals(decimals)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"expected an int fixed-point value, got {type(value).__name__} {value!r}")
    return Decimal(value).scaleb(-decimals, context=_EXACT)
