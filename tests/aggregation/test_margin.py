"""The margin curve mirror: feed units and decimals, monotone in the right directions, within
floor and cap, never failing on market inputs, and refusing bad curves by the contract's names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregation.errors import InvalidInput
from aggregation.margin import MAX_DECIMALS, MarginCurve, Reading, compute_margins

pytestmark = pytest.mark.unit

CURVE = MarginCurve(
    base_im_bps=200, vol_slope_bps=3_000, dispersion_multiplier_bps=10_000, depth_penalty_bps=1_000,
    depth_ref_usd=10_000_000, floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
)
INT64 = st.integers(-(2**63), 2**63 - 1)


def test_known_values_in_the_units_the_devnet_feeds_use() -> None:
    # 55 % vol as a 6-decimal fraction, $3M depth (0 decimals), 4.5 bps dispersion (2 decimals).
    m = compute_margins(CURVE, Reading(550_000, 6), depth=Reading(3_000_000, 0), dispersion=Reading(450, 2))
    # 200 + 0.55 * 3000 = 1850; + 1000 * 0.7 = 2550; + 4.5 bps, floored = 2554; mm = 60 % = 1532.
    assert (m.initial_bps, m.maintenance_bps) == (2_554, 1_532)
    # The same quantities at other decimals give the same margins.
    same = compute_margins(CURVE, Reading(55, 2), depth=Reading(3_000_000 * 10**8, 8), dispersion=Reading(45, 1))
    assert same == m
    assert compute_margins(CURVE, Reading(0, 6), depth=Reading(10**9, 0)).initial_bps == 300  # floor
    assert compute_margins(CURVE, Reading(5 * 10**6, 6)).initial_bps == 5_000  # cap


def test_implied_volatility_counts_when_higher() -> None:
    realized = Reading(500_000, 6)
    assert compute_margins(CURVE, realized, implied_vol=Reading(40, 2)).initial_bps == 1_700
    assert compute_margins(CURVE, realized, implied_vol=Reading(90, 2)).initial_bps == 2_900


CROWDING = MarginCurve(
    base_im_bps=200, vol_slope_bps=3_000, dispersion_multiplier_bps=0, depth_penalty_bps=0, depth_ref_usd=0,
    floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
    funding_slope_bps=1_000_000, funding_threshold_ppm=100, open_interest_slope_bps=1_000,
    open_interest_ref_usd=5_000_000_000,
)


def test_funding_counts_by_its_size_beyond_the_threshold_either_side() -> None:
    rv = Reading(500_000, 6)  # 200 + 1500 = 1700 without crowding
    def im(funding: int, decimals: int = 8) -> int:
        return compute_margins(CROWDING, rv, funding=Reading(funding, decimals)).initial_bps
    # The catalog's funding feeds: a fraction per 8 h at 8 decimals. 0.01 % (100 ppm) adds nothing.
    assert im(10_000) == im(-10_000) == im(0) == 1_700
    # 0.05 % per 8 h: 0.0004 beyond the threshold x 1,000,000 bps per 1.0 = 400 bps, either side.
    assert im(50_000) == im(-50_000) == 2_100
    assert im(5, 4) == 2_100  # the same rate at 4 decimals
    assert im(10_001) == 1_700 and im(10_100) == 1_701  # floor division, as the contract does
    assert im(-(2**63)) == CROWDING.cap_im_bps  # int64's minimum by absolute value, capped


def test_open_interest_adds_margin_only_beyond_its_reference() -> None:
    rv = Reading(500_000, 6)
    def im(usd: int, decimals: int = 0) -> int:
        return compute_margins(CROWDING, rv, open_interest=Reading(usd * 10**decimals, decimals)).initial_bps
    assert im(0) == im(5_000_000_000) == 1_700
    assert im(7_500_000_000) == 1_700 + 500  # 50 % over the $5B reference: half the 1,000 bps slope
    assert im(7_500_000_000, 6) == 2_200 and im(-1) == 1_700  # other decimals; negative counts as 0
    no_ref = MarginCurve(**{**{f: getattr(CROWDING, f) for f in MarginCurve.__dataclass_fields__},
                            "open_interest_ref_usd": 0})
    assert compute_margins(no_ref, rv, open_interest=Reading(10**18, 0)).initial_bps == 1_700  # no reference: no term


def test_negative_and_absurd_inputs_never_raise() -> None:
    worst = compute_margins(CURVE, Reading(-(2**63), 0), implied_vol=Reading(-1, 18),
                            depth=Reading(-5, 0), dispersion=Reading(-7, 2))
    assert (worst.initial_bps, worst.maintenance_bps) == (1_200, 720)  # negatives count as 0
    absurd = compute_margins(CURVE, Reading(2**63 - 1, 0), dispersion=Reading(2**63 - 1, 0))
    assert absurd.initial_bps == CURVE.cap_im_bps


@given(INT64, INT64, INT64, INT64, INT64, INT64, st.integers(0, MAX_DECIMALS))
def test_tighter_as_volatility_or_dispersion_rise_or_depth_falls(
    v1: int, v2: int, d1: int, d2: int, s1: int, s2: int, decimals: int
) -> None:
    lo_vol, hi_vol = sorted((v1, v2))
    lo_depth, hi_depth = sorted((d1, d2))
    lo_disp, hi_disp = sorted((s1, s2))
    calm = compute_margins(CURVE, Reading(lo_vol, decimals), depth=Reading(hi_depth, decimals),
                           dispersion=Reading(lo_disp, decimals))
    stressed = compute_margins(CURVE, Reading(hi_vol, decimals), depth=Reading(lo_depth, decimals),
                               dispersion=Reading(hi_disp, decimals))
    assert calm.initial_bps <= stressed.initial_bps and calm.maintenance_bps <= stressed.maintenance_bps
    for m in (calm, stressed):
        assert CURVE.floor_mm_bps <= m.maintenance_bps <= m.initial_bps <= CURVE.cap_im_bps


@pytest.mark.parametrize(("changes", "name"), [
    ({"cap_im_bps": 10_001}, "CapAboveFull"),
    ({"floor_im_bps": 0}, "ZeroFloor"),
    ({"floor_im_bps": 5_001}, "FloorAboveCap"),
    ({"floor_mm_bps": 301}, "MaintenanceAboveInitial"),
    ({"mm_ratio_bps": 10_001}, "MaintenanceAboveInitial"),
    ({"depth_ref_usd": -1}, "depth_ref_usd must be an integer"),
    ({"funding_threshold_ppm": 1_000_001}, "FundingThresholdAboveFull"),
    ({"open_interest_ref_usd": 2**64}, "open_interest_ref_usd must be an integer"),
])
def test_invalid_curves_are_refused_by_the_contracts_names(changes: dict[str, int], name: str) -> None:
    fields = {**{f: getattr(CURVE, f) for f in MarginCurve.__dataclass_fields__}, **changes}
    with pytest.raises(InvalidInput, match=name):
        MarginCurve(**fields)


def test_readings_are_what_the_oracle_can_hold() -> None:
    with pytest.raises(InvalidInput, match="int64"):
        Reading(2**63, 0)
    with pytest.raises(InvalidInput, match="decimals"):
        Reading(1, MAX_DECIMALS + 1)
