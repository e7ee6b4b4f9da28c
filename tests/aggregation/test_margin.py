"""The margin curve mirror: monotone in the right directions, within floor and cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregation.errors import InvalidInput
from aggregation.margin import MarginCurve, compute_margins

pytestmark = pytest.mark.unit

CURVE = MarginCurve(
    base_im_bps=200, vol_multiplier_bps=2_500, depth_penalty_bps=800, depth_ref=10**9,
    floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
)


def test_known_values() -> None:
    m = compute_margins(CURVE, 6_000, 4 * 10**8)
    # 200 + 6000*0.25 = 1700; + 800 * 0.6 = 480 -> 2180; mm = 2180 * 0.6 = 1308
    assert (m.initial_bps, m.maintenance_bps) == (2_180, 1_308)
    assert compute_margins(CURVE, 0, 10**12).initial_bps == 300  # floor
    assert compute_margins(CURVE, 10**9, 0).initial_bps == 5_000  # cap


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12))
def test_tighter_as_volatility_rises_or_depth_falls(v1: int, v2: int, d1: int, d2: int) -> None:
    lo_vol, hi_vol = sorted((v1, v2))
    lo_depth, hi_depth = sorted((d1, d2))
    calm = compute_margins(CURVE, lo_vol, hi_depth)
    stressed = compute_margins(CURVE, hi_vol, lo_depth)
    assert calm.initial_bps <= stressed.initial_bps and calm.maintenance_bps <= stressed.maintenance_bps
    for m in (calm, stressed):
        assert CURVE.floor_mm_bps <= m.maintenance_bps <= m.initial_bps <= CURVE.cap_im_bps


def test_invalid_curves_and_inputs_are_refused() -> None:
    with pytest.raises(InvalidInput, match="floor_im"):
        MarginCurve(0, 0, 0, 1, floor_im_bps=600, cap_im_bps=500, mm_ratio_bps=0, floor_mm_bps=1)
    with pytest.raises(InvalidInput, match="depth_ref"):
        MarginCurve(0, 0, 0, -1, 1, 1, 0, 1)
    with pytest.raises(InvalidInput, match="non-negative"):
        compute_margins(CURVE, -1, 0)
