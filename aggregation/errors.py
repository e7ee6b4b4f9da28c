"""The aggregation package's exception tree, rooted at :class:`AggregationError`."""

from __future__ import annotations


class AggregationError(Exception):
    """Root of every error the aggregation package raises on purpose."""


class InsufficientData(AggregationError):
    """Fewer usable inputs than the aggregate needs."""


class InvalidInput(AggregationError, ValueError):
    """An input no aggregate may be computed from: NaN, inf, non-positive price, bad parameter."""


class DuplicateSource(InvalidInput):
    """The same source appears twice; counting it twice would fake a quorum of sources."""


class FixedPointRangeError(InvalidInput):
    """A value does not fit the on-chain fixed-point integer range."""
