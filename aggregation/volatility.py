"""Risk-factor arithmetic on Decimal: realized volatility and order-book depth. Pure; no I/O.

Every operation runs in an explicit context so the result never depends on the
process-wide decimal context: the same candles give the same volatility on every node.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal

from aggregation.errors import InsufficientData, InvalidInput

__all__ = ["annualized_realized_vol", "depth_within_band", "SECONDS_PER_YEAR"]

SECONDS_PER_YEAR = 365 * 24 * 3600
_CTX = Context(prec=50, rounding=ROUND_HALF_EVEN)
_OUT = Decimal("1e-12")


def annualized_realized_vol(closes: Sequence[Decimal], sampling_seconds: int) -> Decimal:
    """Sample standard deviation of log returns of ``closes`` (oldest first), annualized.

    ``sqrt(sum((r - mean)^2) / (n - 1) * periods_per_year)`` with
    ``periods_per_year = SECONDS_PER_YEAR / sampling_seconds``; quantized to 1e-12.
    """
    if isinstance(sampling_seconds, bool) or not isinstance(sampling_seconds, int) or sampling_seconds <= 0:
        raise InvalidInput(f"expected a positive int sampling period in seconds, got {sampling_seconds!r}")
    if len(closes) < 3:
        raise InsufficientData(f"realized vol: expected at least 3 closes, got {len(closes)}")
    for close in closes:
        if not isinstance(close, Decimal) or not close.is_finite() or close <= 0:
            raise InvalidInput(f"realized vol: expected positive finite Decimal closes, got {close!r}")
    returns = [_CTX.ln(_CTX.divide(b, a)) for a, b in zip(closes, closes[1:])]
    n = len(returns)
    mean = _CTX.divide(sum(returns, Decimal(0)), n)
    squares = sum((_CTX.power(_CTX.subtract(r, mean), 2) for r in returns), Decimal(0))
    variance = _CTX.divide(squares, n - 1)
    annual = _CTX.multiply(variance, _CTX.divide(SECONDS_PER_YEAR, sampling_seconds))
    return _CTX.sqrt(annual).quantize(_OUT, context=_CTX)


def depth_within_band(
    bids: Sequence[tuple[Decimal, Decimal]],
    asks: Sequence[tuple[Decimal, Decimal]],
    band_bps: int,
    *,
    contract_value: Decimal = Decimal(1),
    inverse: bool = False,
) -> Decimal:
    """USD notional of every (price, size) level priced within +-``band_bps`` of mid.

    Linear books: notional = price * size * contract_value. Inverse books (size in USD
    contracts, as Deribit's): notional = size * contract_value. Quantized to 1e-8.
    """
    if not bids or not asks:
        raise InsufficientData("depth: expected at least one bid and one ask")
    mid = _CTX.divide(_CTX.add(max(p for p, _ in bids), min(p for p, _ in asks)), 2)
    band = _CTX.divide(_CTX.multiply(mid, band_bps), 10_000)
    low, high = _CTX.subtract(mid, band), _CTX.add(mid, band)
    total = Decimal(0)
    for price, size in [*bids, *asks]:
        if low <= price <= high:
            notional = size if inverse else _CTX.multiply(price, size)
            total = _CTX.add(total, _CTX.multiply(notional, contract_value))
    return total.quantize(Decimal("1e-8"), context=_CTX)
