"""Risk-factor kinds: what a feed measures, in which unit, with which on-chain scaling.

The oracle stores int64 values, so each kind's decimals are chosen so that any sane
value fits: a price of 10**10 USD at 8 decimals is 10**18 < 2**63. Every kind has a
fixed, stated method (window, sampling, band) so that two nodes reading the same venue
compute the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

__all__ = [
    "FactorKind",
    "KindInfo",
    "KINDS",
    "DEPTH_BAND_BPS",
    "RV_CANDLE_SECONDS",
    "RV_RETURNS",
    "INT64_MAX",
    "INT64_MIN",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# Realized volatility: 60 one-minute log returns (61 closes, the last hour), sample
# standard deviation, annualized by sqrt(minutes per 365-day year = 525,600).
RV_CANDLE_SECONDS = 60
RV_RETURNS = 60
# Order-book depth: USD notional of all bids and asks priced within +-50 bps of mid.
DEPTH_BAND_BPS = 50


class FactorKind(StrEnum):
    SPOT = "spot"
    REALIZED_VOL = "realized_vol"
    IMPLIED_VOL = "implied_vol"
    FUNDING_RATE = "funding_rate"
    OPEN_INTEREST = "open_interest"
    DEPTH = "depth"
    DISPERSION = "dispersion"


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: FactorKind
    unit: str
    decimals: int  # the default; a catalog may choose another that still fits int64
    sign: str  # "positive" (> 0), "non_negative" (>= 0) or "any" (funding may be negative)
    derived: bool  # computed from other readings in the cache, never fetched
    # Per-kind outlier rule defaults (see aggregation.robust.within_mad).
    outlier_k: Decimal
    outlier_rel_floor: Decimal
    outlier_abs_floor: Decimal
    # How often the poller fetches this kind, in seconds (0 = every poll).
    poll_interval: float


KINDS: dict[FactorKind, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo(FactorKind.SPOT, "USD per unit of the base asset", 8, "positive", False,
                 Decimal(5), Decimal("0.0005"), Decimal(0), 0.0),
        KindInfo(FactorKind.REALIZED_VOL,
                 f"annualized volatility as a fraction (0.55 = 55%), {RV_RETURNS} x "
                 f"{RV_CANDLE_SECONDS}s log returns", 6, "positive", False,
                 Decimal(5), Decimal("0.25"), Decimal(0), 15.0),
        KindInfo(FactorKind.IMPLIED_VOL, "annualized implied volatility as a fraction (Deribit DVOL / 100)",
                 6, "positive", False, Decimal(5), Decimal("0.10"), Decimal(0), 5.0),
        KindInfo(FactorKind.FUNDING_RATE, "perpetual funding rate per 8 hours as a fraction (1e-8 units)",
                 8, "any", False, Decimal(5), Decimal(0), Decimal("0.0001"), 5.0),
        KindInfo(FactorKind.OPEN_INTEREST, "open interest, USD notional", 0, "positive", False,
                 Decimal(5), Decimal("1.0"), Decimal(0), 5.0),
        KindInfo(FactorKind.DEPTH, f"USD notional of bids and asks within +-{DEPTH_BAND_BPS} bps of mid",
                 0, "positive", False, Decimal(5), Decimal("1.0"), Decimal(0), 2.0),
        KindInfo(FactorKind.DISPERSION, "cross-venue spot spread (max - min) / median, bps",
                 2, "non_negative", True, Decimal(5), Decimal(0), Decimal(0), 0.0),
    )
}


def kind_info(kind: str) -> KindInfo:
    return KINDS[FactorKind(kind)]
