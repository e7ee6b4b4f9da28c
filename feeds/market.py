"""The simulated market: one seeded "truth" that every simulated venue quotes from.

:class:`MarketModel` gives deterministic risk factors per instrument as a function of
(seed, instrument, time) only, so separate processes with the same seed agree on
them: a price with volatility regimes (calm, normal, stressed, switching every 10
minutes) and jumps (ramped over 10 s), a perpetual funding rate that can turn
negative, open interest, an implied-vol index and book liquidity that thins in
stressed regimes. How one venue quotes it (noise, latency, JSON shape, faults) is
the simulated venue's business (:mod:`feeds.simulated`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

from feeds.errors import SimulatorConfigError

if TYPE_CHECKING:
    from feeds.scenarios import ScenarioClock

__all__ = ["CTX", "DEFAULT_BASE_PRICES", "MarketModel", "unit"]

DEFAULT_BASE_PRICES: Mapping[str, Decimal] = {"BTC-USD": Decimal(64000), "ETH-USD": Decimal(3200)}
_TOTAL_OI_USD: Mapping[str, Decimal] = {"BTC-USD": Decimal("12e9"), "ETH-USD": Decimal("6e9")}
_BASE_IV: Mapping[str, Decimal] = {"BTC-USD": Decimal("0.55"), "ETH-USD": Decimal("0.70")}
# USD resting per 1-bp level at the reference venue in a normal regime.
_USD_PER_LEVEL: Mapping[str, Decimal] = {"BTC-USD": Decimal(400_000), "ETH-USD": Decimal(200_000)}

# Wide enough that the interpolation of a float time (about 40 significant digits
# when written in decimal) is computed without rounding before the final quantize.
CTX = Context(prec=80, rounding=ROUND_HALF_EVEN)
# Knot spacings (seconds) of the layered walk. Each layer moves at most
# 2 * amplitude / spacing per second; amplitude = 0.00002 * spacing caps that at
# 0.004 % per layer, 0.016 % per second in total, and the whole walk within about
# +-1.2 % of the base price (so "BTC at 64000" stays recognisable).
_LAYERS: tuple[tuple[int, Decimal], ...] = tuple(
    (spacing, Decimal("0.00002") * spacing) for spacing in (1, 8, 64, 512)
)
# Volatility regimes: the fast layers (1 s and 8 s) are scaled by the regime's factor.
_REGIME_SECONDS = 600
_REGIMES: Mapping[str, Decimal] = {"calm": Decimal("0.5"), "normal": Decimal(1), "stressed": Decimal(2)}
# Jumps: in a quarter of the 300 s slots, a jump of 15-35 bps ramps in over 10 s and
# decays linearly to zero by the slot's end (so the level stays near its base).
_JUMP_SLOT = 300
_JUMP_RAMP = 10


def unit(*parts: object) -> Decimal:
    """A deterministic pseudo-random Decimal in [-1, 1] (hashlib: Python's hash() is salted)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return Decimal(int.from_bytes(digest, "big") % 2_000_001 - 1_000_000) / 1_000_000


class MarketModel:
    """One seeded, smooth price process per instrument; a pure function of (seed, instrument, t)."""

    def __init__(
        self, seed: int, base_prices: Mapping[str, Decimal] | None = None, *, scenario: ScenarioClock | None = None,
    ) -> None:
        self.seed = seed
        # A market scenario on top of the seeded walk (feeds/scenarios.py); None is the walk alone.
        self.scenario = scenario
        self.base_prices: dict[str, Decimal] = dict(base_prices or DEFAULT_BASE_PRICES)
        for instrument, price in self.base_prices.items():
            if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
                raise SimulatorConfigError(
                    f"expected a positive Decimal base price for {instrument}, got {price!r}"
                )

    @property
    def instruments(self) -> list[str]:
        return sorted(self.base_prices)

    def true_price(self, instrument: str, t: float, *, market_t: float | None = None) -> Decimal:
        """Base price times (1 + a sum of linearly interpolated seeded random layers), 8 dp;
        times the scenario's price factor at ``market_t`` (default ``t``) while one runs: the
        candle history asks for the scenario's path on its faster clock (feeds/scenarios.py)."""
        try:
            base = self.base_prices[instrument]
        except KeyError:
            raise SimulatorConfigError(
                f"expected an instrument of this market ({', '.join(self.instruments)}), got "
                f"{instrument!r}; pass it in base_prices"
            ) from None
        if not math.isfinite(t):
            raise SimulatorConfigError(f"expected a finite time, got {t!r}")
        price = _true_price(self.seed, base, instrument, t)
        if self.scenario is None:
            return price
        factor = self.scenario.price_factor(instrument, t if market_t is None else market_t)
        return price if factor == 1 else CTX.multiply(price, factor).quantize(Decimal("1e-8"), context=CTX)

    def regime(self, t: float) -> str:
        """calm, normal or stressed; one regime per 10-minute slot, seeded."""
        return _regime_name(self.seed, t)

    def _check(self, instrument: str) -> None:
        self.true_price(instrument, 0.0)

    def funding_rate(self, instrument: str, t: float) -> Decimal:
        """Per 8 h: 1 bp baseline plus a slow walk of +-4 bps, so it turns negative at times."""
        self._check(instrument)
        walk = _walk(self.seed, ("funding", instrument), t, ((600, Decimal(1)), (3600, Decimal(1))))
        return CTX.add(Decimal("0.0001"), CTX.multiply(Decimal("0.0002"), walk)).quantize(Decimal("1e-10"), context=CTX)

    def open_interest_usd(self, instrument: str, t: float) -> Decimal:
        """The whole market's open interest in USD: a base level +-10 % slowly."""
        self._check(instrument)
        walk = _walk(self.seed, ("oi", instrument), t, ((900, Decimal("0.05")), (7200, Decimal("0.05"))))
        return CTX.multiply(_TOTAL_OI_USD.get(instrument, Decimal("1e9")), CTX.add(1, walk))

    def implied_vol(self, instrument: str, t: float) -> Decimal:
        """Annualized implied vol (fraction): higher in stressed regimes, lower in calm ones."""
        self._check(instrument)
        regime = {"calm": Decimal("0.85"), "normal": Decimal(1), "stressed": Decimal("1.4")}[self.regime(t)]
        walk = _walk(self.seed, ("iv", instrument), t, ((300, Decimal("0.05")),))
        base = _BASE_IV.get(instrument, Decimal("0.6"))
        if self.scenario is not None:
            base = CTX.multiply(base, self.scenario.implied_vol_multiplier(t))
        return CTX.multiply(CTX.multiply(base, regime), CTX.add(1, walk)).quantize(Decimal("1e-4"), context=CTX)

    def usd_per_level(self, instrument: str, t: float) -> Decimal:
        """Resting USD per 1-bp book level at the reference venue; thinner when stressed."""
        self._check(instrument)
        factor = {"calm": Decimal("1.2"), "normal": Decimal(1), "stressed": Decimal("0.5")}[self.regime(t)]
        return CTX.multiply(_USD_PER_LEVEL.get(instrument, Decimal(100_000)), factor)


def _walk(seed: int, key: object, t: float, layers: Sequence[tuple[int, Decimal]]) -> Decimal:
    """Sum of linearly interpolated seeded layers, each in [-amplitude, amplitude]."""
    when = Decimal(t)
    offset = Decimal(0)
    for spacing, amplitude in layers:
        position = CTX.divide(when, spacing)
        knot = int(position.to_integral_value(rounding=ROUND_FLOOR))
        fraction = CTX.subtract(position, knot)
        left = unit(seed, key, spacing, knot)
        right = unit(seed, key, spacing, knot + 1)
        level = CTX.add(left, CTX.multiply(CTX.subtract(right, left), fraction))
        offset = CTX.add(offset, CTX.multiply(amplitude, level))
    return offset


def _jump(seed: int, instrument: str, t: float) -> Decimal:
    slot = math.floor(t / _JUMP_SLOT)
    if unit(seed, "jump", instrument, slot) <= Decimal("0.5"):
        return Decimal(0)
    start = slot * _JUMP_SLOT + 30 + int(abs(unit(seed, "jump-at", instrument, slot)) * 200)
    size = CTX.add(Decimal("0.0015"), CTX.multiply(Decimal("0.002"), abs(unit(seed, "jump-size", instrument, slot))))
    if unit(seed, "jump-sign", instrument, slot) < 0:
        size = -size
    if t < start:
        return Decimal(0)
    end = (slot + 1) * _JUMP_SLOT
    elapsed = Decimal(t - start)
    if elapsed < _JUMP_RAMP:
        return CTX.multiply(size, CTX.divide(elapsed, _JUMP_RAMP))
    decay = CTX.divide(Decimal(end - t), Decimal(end - start - _JUMP_RAMP))
    return CTX.multiply(size, max(Decimal(0), decay))


@lru_cache(maxsize=4096)
def _true_price(seed: int, base: Decimal, instrument: str, t: float) -> Decimal:
    regime = _REGIMES[_regime_name(seed, t)]
    fast = _walk(seed, instrument, t, _LAYERS[:2])
    slow = _walk(seed, instrument, t, _LAYERS[2:])
    offset = CTX.add(CTX.add(slow, CTX.multiply(regime, fast)), _jump(seed, instrument, t))
    price = CTX.multiply(base, CTX.add(1, offset))
    return price.quantize(Decimal("1e-8"), context=CTX)


def _regime_name(seed: int, t: float) -> str:
    u = unit(seed, "regime", math.floor(t / _REGIME_SECONDS))
    return "calm" if u < Decimal("-0.4") else "stressed" if u > Decimal("0.6") else "normal"
