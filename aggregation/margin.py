"""Margins from attested risk data: the Python mirror of ``contracts/RiskGate.sol``.

Pure integer arithmetic with floor division, exactly as the contract computes it, so an
off-chain risk engine (or a node checking what a market will demand) gets the same numbers
bit for bit; ``tests/relayer/chain/test_risk_gate.py`` proves it against the deployed
contract on hundreds of random inputs.

    volTerm   = vol * volMultiplierBps // 10000
    depthTerm = 0 if depth >= depthRef else depthPenaltyBps * (depthRef - depth) // depthRef
    im        = min(max(baseImBps + volTerm + depthTerm, floorImBps), capImBps)
    mm        = max(im * mmRatioBps // 10000, floorMmBps)

Margins rise (tighten) as volatility rises or depth falls, and stay within
``[floorMmBps, ...] <= mm <= im <= capImBps``.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

from aggregation.errors import InvalidInput

__all__ = ["BPS", "MarginCurve", "Margins", "compute_margins"]

BPS = 10_000
UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class MarginCurve:
    """One market's curve, field for field the contract's ``RiskGate.Curve``."""

    base_im_bps: int
    vol_multiplier_bps: int
    depth_penalty_bps: int
    depth_ref: int
    floor_im_bps: int
    cap_im_bps: int
    mm_ratio_bps: int
    floor_mm_bps: int

    def __post_init__(self) -> None:
        for name, value in zip(self.__slots__, astuple(self)):
            limit = UINT64_MAX if name == "depth_ref" else UINT32_MAX
            if not isinstance(value, int) or not 0 <= value <= limit:
                raise InvalidInput(f"{name} must be an integer in [0, {limit}], got {value!r}")
        # The same rule as RiskGate.validateCurve (which reverts InvalidCurve).
        if (
            self.depth_ref == 0
            or self.floor_im_bps == 0
            or self.floor_im_bps > self.cap_im_bps
            or self.cap_im_bps > BPS
            or self.mm_ratio_bps > BPS
            or self.floor_mm_bps == 0
            or self.floor_mm_bps > self.floor_im_bps
        ):
            raise InvalidInput(
                "curve needs depth_ref > 0, 0 < floor_im <= cap_im <= 10000, mm_ratio <= 10000 "
                f"and 0 < floor_mm <= floor_im; got {self}"
            )

    def as_tuple(self) -> tuple[int, ...]:
        """The ABI tuple for ``RiskGate.setCurve`` / ``computeMargins``."""
        return astuple(self)


@dataclass(frozen=True, slots=True)
class Margins:
    initial_bps: int
    maintenance_bps: int


def compute_margins(curve: MarginCurve, volatility: int, depth: int) -> Margins:
    """Initial and maintenance margin (bps) for an attested volatility (bps) and depth."""
    if volatility < 0 or depth < 0:
        raise InvalidInput(
            f"volatility and depth must be non-negative (the contract reverts NegativeRiskInput), "
            f"got volatility={volatility}, depth={depth}"
        )
    raw = curve.base_im_bps + volatility * curve.vol_multiplier_bps // BPS
    if depth < curve.depth_ref:
        raw += curve.depth_penalty_bps * (curve.depth_ref - depth) // curve.depth_ref
    initial = min(max(raw, curve.floor_im_bps), curve.cap_im_bps)
    maintenance = max(initial * curve.mm_ratio_bps // BPS, curve.floor_mm_bps)
    return Margins(initial_bps=initial, maintenance_bps=maintenance)
