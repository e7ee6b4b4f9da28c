"""Factors a source computes from venue data rather than reads: realized vol and book depth.

This module checks that the venue's candles and book are fit to compute from (a
full window, no gaps, positive closes; a two-sided, uncrossed book) and states the
method (:mod:`feeds.kinds`); the arithmetic itself is pure and lives in
:mod:`aggregation.volatility`, the same on every node.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from aggregation.volatility import annualized_realized_vol, depth_within_band
from feeds.body import Candle
from feeds.errors import Origin, SourceValueError
from feeds.kinds import DEPTH_BAND_BPS, RV_CANDLE_SECONDS, RV_RETURNS

__all__ = ["book_depth", "realized_vol"]


def _broken(origin: Origin, expected: str, got: str, what: str) -> SourceValueError:
    return SourceValueError(
        f"{origin.source} {origin.instrument}: expected {expected}, got {got}; the venue published "
        f"a broken {what} — the feed uses the other sources",
        source=origin.source,
        instrument=origin.instrument,
    )


def _fill_quiet(ordered: list[Candle]) -> tuple[list[Candle], set[float]]:
    """Candles with each missing whole minute between two candles filled by the previous close.

    A venue that leaves out a minute without trades (Coinbase) says its price did not
    move: the same candle another venue (Binance) publishes with zero volume.
    """
    filled: list[Candle] = ordered[:1]
    quiet: set[float] = set()
    for opened, close in ordered[1:]:
        previous_open, previous_close = filled[-1]
        gap = opened - previous_open
        missing = round(gap / RV_CANDLE_SECONDS) - 1
        if missing > 0 and abs(gap - (missing + 1) * RV_CANDLE_SECONDS) < 1e-6:
            for k in range(1, missing + 1):
                stamp = previous_open + k * RV_CANDLE_SECONDS
                filled.append((stamp, previous_close))
                quiet.add(stamp)
        filled.append((opened, close))
    return filled, quiet


def realized_vol(
    candles: Sequence[Candle], origin: Origin, fetched_at: float, *, max_quiet: int = 0
) -> tuple[Decimal, float]:
    """(annualized realized vol, observed_at) from (open time, close) candles in any order.

    Uses the newest ``RV_RETURNS + 1`` closes of ``RV_CANDLE_SECONDS`` candles;
    fewer, gaps, duplicates or a non-positive close are errors, never a guess.
    With ``max_quiet`` > 0 (a venue that leaves out minutes without trades), up to that
    many missing minutes inside the window are filled with the previous close; more
    is an error saying the market is too thin. observed_at is the close time of the
    newest candle (clamped to fetch time).
    """
    need = RV_RETURNS + 1
    ordered = sorted(candles, key=lambda c: c[0])
    if len({t for t, _ in ordered}) != len(ordered):
        raise origin.format_error("candles with distinct open times", "duplicate open times")
    quiet: set[float] = set()
    if max_quiet > 0:
        ordered, quiet = _fill_quiet(ordered)
    window = ordered[-need:]
    filled = sum(1 for t, _ in window if t in quiet)
    if filled > max_quiet:
        raise SourceValueError(
            f"{origin.source} {origin.instrument}: expected at most {max_quiet} minutes without trades "
            f"among the newest {need}, got {filled}; the market is too thin for a realized vol from this "
            f"venue — the feed uses the other sources",
            source=origin.source,
            instrument=origin.instrument,
        )
    if len(window) < need:
        raise origin.format_error(f"at least {need} candles of {RV_CANDLE_SECONDS}s", f"{len(window)} candles")
    for (t0, _), (t1, _) in zip(window, window[1:]):
        if abs((t1 - t0) - RV_CANDLE_SECONDS) > 1e-6:
            raise origin.format_error(
                f"consecutive {RV_CANDLE_SECONDS}s candles", f"a gap of {t1 - t0:g}s after open time {t0:.0f}"
            )
    closes = [close for _, close in window]
    for close in closes:
        if not close.is_finite() or close <= 0:
            raise _broken(origin, "positive finite candle closes", str(close), "candle")
    vol = annualized_realized_vol(closes, RV_CANDLE_SECONDS)
    # The newest candle is usually still open: its close time is in the future.
    return vol, min(window[-1][0] + RV_CANDLE_SECONDS, fetched_at)


def book_depth(
    bids: Sequence[tuple[Decimal, Decimal]],
    asks: Sequence[tuple[Decimal, Decimal]],
    origin: Origin,
    *,
    contract_value: Decimal = Decimal(1),
    inverse: bool = False,
) -> Decimal:
    """USD notional of levels within +-DEPTH_BAND_BPS of mid (see kinds)."""
    for price, size in [*bids, *asks]:
        if not price.is_finite() or not size.is_finite() or price <= 0 or size < 0:
            raise _broken(origin, "positive finite book levels", f"price {price} size {size}", "book")
    if not bids or not asks:
        raise SourceValueError(
            f"{origin.source} {origin.instrument}: expected bids and asks, got {len(bids)} bids and "
            f"{len(asks)} asks; the book is one-sided — the feed uses the other sources",
            source=origin.source,
            instrument=origin.instrument,
        )
    best_bid = max(p for p, _ in bids)
    best_ask = min(p for p, _ in asks)
    if best_bid >= best_ask:
        raise SourceValueError(
            f"{origin.source} {origin.instrument}: expected best bid below best ask, got bid "
            f"{best_bid} >= ask {best_ask}; the book is crossed — the feed uses the other sources",
            source=origin.source,
            instrument=origin.instrument,
        )
    return depth_within_band(bids, asks, DEPTH_BAND_BPS, contract_value=contract_value, inverse=inverse)
