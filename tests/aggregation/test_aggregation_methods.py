"""Weighted median, trimmed mean, staleness, signed kinds, dispersion and realized vol: properties."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation.errors import InsufficientData, InvalidInput
from aggregation.local import aggregate_readings, spread_bps
from aggregation.robust import median, trimmed_mean, weighted_median
from aggregation.volatility import annualized_realized_vol, depth_within_band

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

values = st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=6, allow_nan=False, allow_infinity=False)
positive = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e6"), places=4, allow_nan=False, allow_infinity=False)
weights = st.decimals(min_value=Decimal("0.1"), max_value=Decimal(10), places=2)


@dataclass(frozen=True)
class R:
    source: str
    price: Decimal
    observed_at: float = 100.0


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 9))
def test_weighted_median_and_trimmed_mean_ignore_input_order(data: st.DataObject, n: int) -> None:
    xs = data.draw(st.lists(values, min_size=n, max_size=n))
    ws = data.draw(st.lists(weights, min_size=n, max_size=n))
    perm = data.draw(st.permutations(range(n)))
    assert weighted_median(xs, ws) == weighted_median([xs[i] for i in perm], [ws[i] for i in perm])
    assert trimmed_mean(xs, Decimal("0.2")) == trimmed_mean([xs[i] for i in perm], Decimal("0.2"))


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(values, min_size=1, max_size=9))
def test_equal_weights_give_the_plain_median(xs: list[Decimal]) -> None:
    assert weighted_median(xs, [Decimal(1)] * len(xs)) == median(xs)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), honest=st.lists(positive, min_size=2, max_size=8))
def test_a_minority_of_wrong_sources_cannot_move_any_method_outside_the_honest_range(
    data: st.DataObject, honest: list[Decimal]
) -> None:
    bad_count = data.draw(st.integers(0, (len(honest) - 1) // 2 if len(honest) % 2 else len(honest) // 2 - 1))
    bad = data.draw(st.lists(st.sampled_from([Decimal("1e-6"), Decimal("1e9")]) | positive,
                             min_size=bad_count, max_size=bad_count))
    readings = [R(f"h{i}", p) for i, p in enumerate(honest)] + [R(f"b{i}", p) for i, p in enumerate(bad)]
    low, high = min(honest), max(honest)
    total = len(readings)
    # Median: any minority. Weighted median with equal weights: the same.
    for method in ("median", "weighted_median"):
        local = aggregate_readings(readings, min_sources=1, decimals=4, method=method, mad_k=Decimal(1000))
        assert to_dec(local.value) >= low.quantize(Decimal("1e-4"), rounding="ROUND_FLOOR")
        assert to_dec(local.value) <= high.quantize(Decimal("1e-4"), rounding="ROUND_CEILING")
    # Trimmed mean: robust while the wrong ones are no more than the trimmed count.
    trim = Decimal(bad_count) / total if bad_count else Decimal(0)
    cut_trim = (trim + Decimal("1e-9")) if trim < Decimal("0.5") else None
    if cut_trim is not None and cut_trim < Decimal("0.5"):
        local = aggregate_readings(readings, min_sources=1, decimals=4, method="trimmed_mean", trim=cut_trim,
                                   mad_k=Decimal(1000))
        assert low.quantize(Decimal("1e-4"), rounding="ROUND_FLOOR") <= to_dec(local.value)
        assert to_dec(local.value) <= high.quantize(Decimal("1e-4"), rounding="ROUND_CEILING")


def to_dec(value: int) -> Decimal:
    return Decimal(value).scaleb(-4)


@settings(max_examples=100, deadline=None)
@given(xs=st.lists(values, min_size=1, max_size=7), method=st.sampled_from(["median", "weighted_median", "trimmed_mean"]))
def test_signed_values_aggregate_identically_across_runs(xs: list[Decimal], method: str) -> None:
    readings = [R(f"s{i}", x) for i, x in enumerate(xs)]
    runs = {aggregate_readings(readings, min_sources=1, decimals=8, method=method, sign="any",
                               abs_floor=Decimal("0.0001")) for _ in range(3)}
    assert len(runs) == 1


def test_negative_values_need_sign_any() -> None:
    readings = [R("a", Decimal("-0.0001")), R("b", Decimal("-0.0002"))]
    with pytest.raises(InvalidInput, match="expected a positive finite Decimal price from 'a'"):
        aggregate_readings(readings, min_sources=2, decimals=8)
    local = aggregate_readings(readings, min_sources=2, decimals=8, sign="any", abs_floor=Decimal("0.0001"))
    assert local.value == -15000


def test_stale_readings_do_not_count_and_are_named() -> None:
    readings = [R("a", Decimal(1), 100.0), R("b", Decimal(1), 80.0), R("c", Decimal(1), 99.0)]
    with pytest.raises(InsufficientData, match=r"got 2 \(a, c\); stale \(older than 10s\): b"):
        aggregate_readings(readings, min_sources=3, decimals=2, now=101.0, max_age=10.0)
    assert aggregate_readings(readings, min_sources=2, decimals=2, now=101.0, max_age=10.0).sources == ("a", "c")


def test_weighted_median_follows_the_weight_majority() -> None:
    assert weighted_median([Decimal(1), Decimal(2), Decimal(3)], [Decimal(1), Decimal(1), Decimal(5)]) == 3
    with pytest.raises(InvalidInput, match="positive weights"):
        weighted_median([Decimal(1)], [Decimal(0)])


def test_trimmed_mean_drops_floor_n_trim_at_each_end() -> None:
    assert trimmed_mean([Decimal(1), Decimal(2), Decimal(3), Decimal(100)], Decimal("0.25")) == Decimal("2.5")
    with pytest.raises(InvalidInput, match=r"\[0, 0.5\)"):
        trimmed_mean([Decimal(1)], Decimal("0.5"))


def test_spread_bps_is_max_minus_min_over_median() -> None:
    assert spread_bps([Decimal(100), Decimal("100.1"), Decimal("99.9")]) == Decimal(20)
    with pytest.raises(InsufficientData):
        spread_bps([Decimal(1)])


def test_realized_vol_of_alternating_moves_is_known() -> None:
    closes = [Decimal(100)]
    for i in range(60):
        closes.append(closes[-1] * (Decimal("1.001") if i % 2 == 0 else 1 / Decimal("1.001")))
    vol = annualized_realized_vol(closes, 60)
    r = math.log(1.001)
    expected = math.sqrt(60 * r * r / 59 * 525_600)
    assert abs(float(vol) - expected) < 1e-9
    assert vol == annualized_realized_vol(closes, 60)


def test_depth_counts_only_levels_within_the_band() -> None:
    bids = [(Decimal(99), Decimal(1)), (Decimal("99.6"), Decimal(2))]
    asks = [(Decimal("100.4"), Decimal(1)), (Decimal(102), Decimal(5))]
    # mid 100, +-50 bps -> [99.5, 100.5]
    assert depth_within_band(bids, asks, 50) == Decimal("99.6") * 2 + Decimal("100.4")
