"""Identical warning and error lines are written once a window, with a count of those held back."""

from __future__ import annotations

import logging

import pytest

from relayer.logs import RepeatFilter

pytestmark = pytest.mark.unit


def _record(msg: str, level: int = logging.ERROR, *args: object) -> logging.LogRecord:
    return logging.LogRecord("asyncio", level, __file__, 1, msg, args or None, None)


def test_a_storm_of_identical_errors_costs_one_line_a_window() -> None:
    now = [0.0]
    f = RepeatFilter(window=60, clock=lambda: now[0])
    written = []
    for i in range(133_000):
        now[0] = i * 0.0002  # 133,000 lines in about 27 s
        record = _record("socket.accept() out of system resource")
        if f.filter(record):
            written.append(record.getMessage())
    assert written == ["socket.accept() out of system resource"]
    now[0] = 61.0
    record = _record("socket.accept() out of system resource")
    assert f.filter(record)
    assert record.getMessage() == ("socket.accept() out of system resource "
                                   "(132999 identical lines held back in the last 61 s)")


def test_different_lines_and_info_lines_pass() -> None:
    f = RepeatFilter(window=60, clock=lambda: 0.0)
    assert f.filter(_record("peer %s dropped", logging.WARNING, "a"))
    assert f.filter(_record("peer %s dropped", logging.WARNING, "b"))  # another text
    assert not f.filter(_record("peer %s dropped", logging.WARNING, "a"))
    assert all(f.filter(_record("round landed", logging.INFO)) for _ in range(5))
