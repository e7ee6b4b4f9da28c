"""Pure, deterministic aggregation: robust statistics and fixed-point encoding; no I/O.

Never imports ``feeds`` or ``relayer``; errors are under ``aggregation.errors.AggregationError``.
"""
