"""Fixed-point encoding: exact round trips, half-even rounding, refusal of the unencodable."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregation.errors import AggregationError, FixedPointRangeError, InvalidInput
from aggregation.fixed import INT256_MAX, from_fixed, to_fixed

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

decimals_st = st.integers(min_value=0, max_value=30)


@given(value=st.integers(min_value=-(10**40), max_value=10**40), decimals=decimals_st)
def test_int_to_decimal_and_back_is_identity(value: int, decimals: int) -> None:
    assert to_fixed(from_fixed(value, decimals), decimals) == value


@given(data=st.data(), decimals=decimals_st)
def test_decimal_with_at_most_decimals_places_round_trips_exactly(data: st.DataObject, decimals: int) -> None:
    value = data.draw(
        st.decimals(min_value=-(10**12), max_value=10**12, places=decimals, allow_nan=False, allow_infinity=False)
    )
    assert from_fixed(to_fixed(value, decimals), decimals) == value


@given(
    value=st.decimals(min_value=-(10**12), max_value=10**12, allow_nan=False, allow_infinity=False),
    decimals=decimals_st,
)
def test_rounding_error_is_at_most_half_a_unit(value: Decimal, decimals: int) -> None:
    with localcontext() as ctx:
        ctx.prec = 200
        error = abs(Decimal(to_fixed(value, decimals)) - value.scaleb(decimals))
    assert error <= Decimal("0.5")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.5", 0), ("1.5", 2), ("2.5", 2), ("-0.5", 0), ("-1.5", -2), ("2.5000001", 3), ("64000.125", 64000)],
)
def test_ties_round_to_even(value: str, expected: int) -> None:
    assert to_fixed(Decimal(value), 0) == expected


def test_known_price_encodings() -> None:
    assert to_fixed(Decimal("64000.12"), 8) == 6_400_012_000_000
    assert to_fixed(Decimal("3200.123456785"), 8) == 320_012_345_678
    assert from_fixed(6_400_012_000_000, 8) == Decimal("64000.12")


def test_result_does_not_depend_on_the_callers_decimal_context() -> None:
    expected = to_fixed(Decimal("123456789012345678901234567890.123456789"), 18)
    with localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = ROUND_DOWN
        assert to_fixed(Decimal("123456789012345678901234567890.123456789"), 18) == expected
        assert from_fixed(expected, 18) == Decimal("123456789012345678901234567890.123456789")


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_values_are_refused(value: Decimal) -> None:
    with pytest.raises(InvalidInput, match="expected a finite Decimal"):
        to_fixed(value, 8)


def test_floats_are_refused() -> None:
    with pytest.raises(InvalidInput, match="expected a Decimal, got float"):
        to_fixed(0.1, 8)  # type: ignore[arg-type]


def test_values_beyond_int256_are_refused() -> None:
    assert to_fixed(Decimal(INT256_MAX), 0) == INT256_MAX
    with pytest.raises(FixedPointRangeError, match="fit int256"):
        to_fixed(Decimal(INT256_MAX + 1), 0)
    with pytest.raises(FixedPointRangeError):
        to_fixed(Decimal("1e70"), 18)
    with pytest.raises(FixedPointRangeError):
        to_fixed(Decimal("1e999999"), 8)


@pytest.mark.parametrize("decimals", [-1, 78, True, 1.0])
def test_bad_decimals_are_refused(decimals: object) -> None:
    with pytest.raises(InvalidInput, match=r"decimals as an int in \[0, 77\]"):
        to_fixed(Decimal(1), decimals)  # type: ignore[arg-type]
    with pytest.raises(AggregationError):
        from_fixed(1, decimals)  # type: ignore[arg-type]
