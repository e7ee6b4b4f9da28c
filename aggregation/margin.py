"""Margins from attested risk data: the Python mirror of ``contracts/RiskGate.sol``.

Same inputs as the contract (raw feed values and their feeds' decimals), same integer
arithmetic with floor division per term, so an off-chain risk engine, the simulator or a
node checking what a market will demand gets the contract's numbers bit for bit;
``tests/relayer/chain/test_risk_gate_and_consumers.py`` proves it against the deployed
contract on thousands of random inputs.

The curve is in plain units: volatility and funding rate as fractions (1.0 = 100 %), depth
and open interest in USD, dispersion in bps. ``x`` is a raw feed value, ``d`` its decimals;
negative inputs count as 0, a funding rate by its absolute value:

    volTerm   = max(rv * volSlopeBps // 10**d_rv, iv * volSlopeBps // 10**d_iv)   (iv: 0 if unused)
    dispTerm  = disp * dispersionMultiplierBps // (10000 * 10**d_disp)             (0 if unused)
    ref       = depthRefUsd * 10**d_depth
    depthTerm = 0 if depth >= ref else depthPenaltyBps * (ref - depth) // ref      (0 if unused)
    over      = max(|fund| * 10**6 - fundingThresholdPpm * 10**d_fund, 0)
    fundTerm  = over * fundingSlopeBps // 10**(d_fund + 6)                       (0 if unused)
    oiRef     = openInterestRefUsd * 10**d_oi
    oiTerm    = openInterestSlopeBps * (oi - oiRef) // oiRef if oi > oiRef > 0 else 0  (0 if unused)
    im        = min(max(baseImBps + volTerm + dispTerm + depthTerm + fundTerm + oiTerm,
                        floorImBps), capImBps)
    mm        = max(im * mmRatioBps // 10000, floorMmBps)

Margins rise (tighten) as volatility, dispersion, |funding rate| or open interest rises or
depth falls, and stay within
``floorMmBps <= mm <= im <= capImBps``. Computing margins never fails on market inputs
(negative, absurd): that is the contract's rule that reducing risk always passes.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

from aggregation.errors import InvalidInput

__all__ = ["BPS", "MAX_DECIMALS", "PPM", "MarginCurve", "Margins", "Reading", "compute_margins"]

BPS = 10_000
PPM = 1_000_000
MAX_DECIMALS = 18  # RiskGate.MAX_DECIMALS: setCurve refuses feeds with more (UnsupportedDecimals)
UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_POW10: tuple[int, ...] = tuple(10**d for d in range(MAX_DECIMALS + 1))


@dataclass(frozen=True, slots=True)
class MarginCurve:
    """One market's curve, field for field the contract's ``RiskGate.Curve``.

    ``vol_slope_bps``: initial margin (bps) per 1.0 of annualized volatility (the higher of
    realized and implied). ``dispersion_multiplier_bps``: initial margin per bps of cross-venue
    dispersion, in bps (10000 = one for one). ``depth_penalty_bps``: added in full at zero
    depth, linearly less up to ``depth_ref_usd``. ``funding_slope_bps``: initial margin per 1.0
    of |funding rate| beyond ``funding_threshold_ppm`` (millionths of 1.0 per the feed's funding
    period). ``open_interest_slope_bps``: initial margin per 100 % of open interest beyond
    ``open_interest_ref_usd``. The last four default to 0 (no such term).
    """

    base_im_bps: int
    vol_slope_bps: int
    dispersion_multiplier_bps: int
    depth_penalty_bps: int
    depth_ref_usd: int
    floor_im_bps: int
    cap_im_bps: int
    mm_ratio_bps: int
    floor_mm_bps: int
    funding_slope_bps: int = 0
    funding_threshold_ppm: int = 0
    open_interest_slope_bps: int = 0
    open_interest_ref_usd: int = 0

    def __post_init__(self) -> None:
        for f, value in zip(fields(self), astuple(self)):
            limit = UINT64_MAX if f.name in ("depth_ref_usd", "open_interest_ref_usd") else UINT32_MAX
            if not isinstance(value, int) or not 0 <= value <= limit:
                raise InvalidInput(f"{f.name} must be an integer in [0, {limit}], got {value!r}")
        # RiskGate.validateCurve's rules, in its order, named as its errors are.
        if self.cap_im_bps > BPS:
            raise InvalidInput(f"CapAboveFull: cap_im_bps must be <= {BPS}, got {self.cap_im_bps}")
        if self.floor_im_bps == 0 or self.floor_mm_bps == 0:
            raise InvalidInput(f"ZeroFloor: floor_im_bps and floor_mm_bps must be > 0, got {self.floor_im_bps} "
                               f"and {self.floor_mm_bps}")
        if self.floor_im_bps > self.cap_im_bps:
            raise InvalidInput(f"FloorAboveCap: floor_im_bps {self.floor_im_bps} must be <= cap_im_bps "
                               f"{self.cap_im_bps}")
        if self.mm_ratio_bps > BPS or self.floor_mm_bps > self.floor_im_bps:
            raise InvalidInput(f"MaintenanceAboveInitial: need mm_ratio_bps <= {BPS} and floor_mm_bps <= "
                               f"floor_im_bps, got {self.mm_ratio_bps}, {self.floor_mm_bps}, {self.floor_im_bps}")
        if self.funding_threshold_ppm > PPM:
            raise InvalidInput(f"FundingThresholdAboveFull: funding_threshold_ppm must be <= {PPM} (1.0), got "
                               f"{self.funding_threshold_ppm}")

    def as_tuple(self) -> tuple[int, ...]:
        """The ABI tuple for ``RiskGate.setCurve`` / ``computeMargins``."""
        return astuple(self)


@dataclass(frozen=True, slots=True)
class Reading:
    """One input as the oracle holds it: the raw int64 value and its feed's decimals."""

    value: int
    decimals: int

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or not INT64_MIN <= self.value <= INT64_MAX:
            raise InvalidInput(f"a reading is an int64 as the oracle stores it, got {self.value!r}")
        if not isinstance(self.decimals, int) or not 0 <= self.decimals <= MAX_DECIMALS:
            raise InvalidInput(f"decimals must be in [0, {MAX_DECIMALS}] (RiskGate refuses others at setCurve), "
                               f"got {self.decimals!r}")

    def as_abi(self, used: bool = True) -> tuple[int, int, bool]:
        """The contract's ``Reading`` tuple."""
        return (self.value, self.decimals, used)


@dataclass(frozen=True, slots=True)
class Margins:
    initial_bps: int
    maintenance_bps: int


def _scaled(reading: Reading, factor: int, divisor: int) -> int:
    return max(reading.value, 0) * factor // (divisor * _POW10[reading.decimals])


def compute_margins(
    curve: MarginCurve,
    realized_vol: Reading,
    *,
    implied_vol: Reading | None = None,
    depth: Reading | None = None,
    dispersion: Reading | None = None,
    funding: Reading | None = None,
    open_interest: Reading | None = None,
) -> Margins:
    """Initial and maintenance margin (bps), as ``RiskGate.computeMargins``; an input left
    as None is one the market does not use."""
    vol_term = _scaled(realized_vol, curve.vol_slope_bps, 1)
    if implied_vol is not None:
        vol_term = max(vol_term, _scaled(implied_vol, curve.vol_slope_bps, 1))
    raw = curve.base_im_bps + vol_term
    if dispersion is not None:
        raw += _scaled(dispersion, curve.dispersion_multiplier_bps, BPS)
    if depth is not None:
        ref = curve.depth_ref_usd * _POW10[depth.decimals]
        have = max(depth.value, 0)
        if have < ref:
            raw += curve.depth_penalty_bps * (ref - have) // ref
    if funding is not None:
        scale = _POW10[funding.decimals]
        over = abs(funding.value) * PPM - curve.funding_threshold_ppm * scale
        if over > 0:
            raw += over * curve.funding_slope_bps // (PPM * scale)
    if open_interest is not None:
        ref = curve.open_interest_ref_usd * _POW10[open_interest.decimals]
        have = max(open_interest.value, 0)
        if ref != 0 and have > ref:
            raw += curve.open_interest_slope_bps * (have - ref) // ref
    initial = min(max(raw, curve.floor_im_bps), curve.cap_im_bps)
    maintenance = max(initial * curve.mm_ratio_bps // BPS, curve.floor_mm_bps)
    return Margins(initial_bps=initial, maintenance_bps=maintenance)
