"""Median and MAD filtering: order-free, exact, and robust to a minority of bad values."""

from __future__ import annotations

from decimal import ROUND_UP, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregation.errors import InsufficientData, InvalidInput
from aggregation.robust import mad_filter, median, median_int, within_mad

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

values_st = st.decimals(
    min_value=Decimal("-1e12"), max_value=Decimal("1e12"), allow_nan=False, allow_infinity=False
)
prices_st = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal("1e9"), places=8, allow_nan=False, allow_infinity=False
)


def honest_and_bad(honest_st: st.SearchStrategy[Decimal]) -> st.SearchStrategy[tuple[list[Decimal], list[Decimal]]]:
    """A non-empty honest list and a strictly smaller list of arbitrary (however wrong) values."""
    wild = st.decimals(min_value=Decimal("-1e30"), max_value=Decimal("1e30"), allow_nan=False, allow_infinity=False)
    return st.lists(honest_st, min_size=1, max_size=15).flatmap(
        lambda honest: st.tuples(st.just(honest), st.lists(wild, max_size=len(honest) - 1))
    )


@given(values=st.lists(values_st, min_size=1, max_size=20), data=st.data())
def test_median_ignores_input_order(values: list[Decimal], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(values))
    assert median(shuffled) == median(values)
    # Same representation too, not just the same value: nodes hash what they sign.
    assert str(median(shuffled)) == str(median(values))


@given(pair=honest_and_bad(values_st), data=st.data())
def test_a_minority_however_wrong_cannot_move_the_median_outside_the_honest_range(
    pair: tuple[list[Decimal], list[Decimal]], data: st.DataObject
) -> None:
    honest, bad = pair
    mixed = data.draw(st.permutations(honest + bad))
    assert min(honest) <= median(mixed) <= max(honest)


@given(a=values_st, b=values_st)
def test_even_median_is_the_exact_mean_of_the_middle_two(a: Decimal, b: Decimal) -> None:
    with localcontext() as ctx:
        ctx.prec = 100
        assert median([a, b]) * 2 == a + b


def test_median_is_exact_where_default_precision_would_round() -> None:
    a = Decimal("12345678901234567890.123456789")
    b = Decimal("12345678901234567890.123456790")
    assert median([a, b]) == Decimal("12345678901234567890.1234567895")
    with localcontext() as ctx:
        ctx.prec = 4
        ctx.rounding = ROUND_UP
        assert median([a, b]) == Decimal("12345678901234567890.1234567895")


def test_median_examples() -> None:
    assert median([Decimal(3), Decimal(1), Decimal(2)]) == 2
    assert median([Decimal(4), Decimal(1), Decimal(3), Decimal(2)]) == Decimal("2.5")
    assert median([Decimal("64000.1")]) == Decimal("64000.1")


@given(values=st.lists(st.integers(min_value=-(2**255), max_value=2**255 - 1), min_size=1, max_size=20), data=st.data())
def test_median_int_is_an_observed_value_independent_of_order(values: list[int], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(values))
    assert median_int(shuffled) == median_int(values) == sorted(values)[len(values) // 2]
    assert median_int(values) in values


@given(pair=honest_and_bad(st.integers(min_value=0, max_value=10**18)), data=st.data())
def test_median_int_breakdown(pair: tuple[list[Decimal], list[Decimal]], data: st.DataObject) -> None:
    honest, bad = pair
    honest_ints, bad_ints = [int(v) for v in honest], [int(v) for v in bad]
    assert min(honest_ints) <= median_int(data.draw(st.permutations(honest_ints + bad_ints))) <= max(honest_ints)


def test_empty_inputs_are_insufficient() -> None:
    with pytest.raises(InsufficientData, match="at least one value, got none"):
        median([])
    with pytest.raises(InsufficientData):
        median_int([])
    with pytest.raises(InsufficientData):
        mad_filter([])


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), 1.5, "2"])
def test_non_finite_or_non_decimal_inputs_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput, match="index 1"):
        median([Decimal(1), bad, Decimal(2)])  # type: ignore[list-item]


def test_median_int_refuses_non_ints() -> None:
    with pytest.raises(InvalidInput):
        median_int([1, True, 3])


# ---- MAD filter -------------------------------------------------------------------


@given(values=st.lists(prices_st, min_size=1, max_size=15), data=st.data())
def test_mad_filter_keeps_the_same_values_whatever_the_order(values: list[Decimal], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(values))
    assert sorted(mad_filter(shuffled)) == sorted(mad_filter(values))


@given(values=st.lists(prices_st, min_size=1, max_size=15))
def test_mad_filter_keeps_at_least_half_and_the_middle(values: list[Decimal]) -> None:
    kept = mad_filter(values)
    assert 2 * len(kept) >= len(values)
    ordered = sorted(values)
    assert ordered[(len(values) - 1) // 2] in kept and ordered[len(values) // 2] in kept


def test_mad_filter_drops_a_far_outlier_and_keeps_input_order() -> None:
    values = [Decimal("64000.5"), Decimal("70000"), Decimal("64001"), Decimal("64000")]
    assert mad_filter(values) == [Decimal("64000.5"), Decimal("64001"), Decimal("64000")]
    assert within_mad(values) == [True, False, True, True]


def test_zero_mad_keeps_close_values_by_the_relative_floor() -> None:
    # Two venues print the same last trade: MAD is 0. The third is one cent off and
    # must not be dropped for it; a value 1% off must be.
    values = [Decimal("64000"), Decimal("64000"), Decimal("64000.01")]
    assert mad_filter(values) == values
    assert mad_filter([*values[:2], Decimal("64640")]) == values[:2]
    # Without the floor, a zero MAD keeps exactly the values equal to the median.
    assert mad_filter(values, rel_floor=Decimal(0)) == values[:2]


@pytest.mark.parametrize("k", [Decimal("0.5"), Decimal("NaN"), Decimal(-1), 5])
def test_mad_k_below_one_or_not_decimal_is_refused(k: object) -> None:
    with pytest.raises(InvalidInput, match="k >= 1"):
        mad_filter([Decimal(1)], k)  # type: ignore[arg-type]


def test_negative_rel_floor_is_refused() -> None:
    with pytest.raises(InvalidInput, match="rel_floor >= 0"):
        mad_filter([Decimal(1)], rel_floor=Decimal("-0.1"))
