"""A p2p listener out of file descriptors: trio's accept() complaint, counted and said once,
without a traceback, in words that say what to do."""

from __future__ import annotations

import errno
import logging
import sys

import pytest

from relayer.p2p.stack import ListenerAcceptFailures, accept_failures, apply_process_tuning

pytestmark = pytest.mark.unit


def _trio_says(exc: OSError) -> logging.LogRecord:
    """The record trio's serve_listeners makes when accept() raises `exc` (its own call)."""
    try:
        raise exc
    except OSError:
        return logging.getLogger("trio.serve_listeners").makeRecord(
            "trio.serve_listeners", logging.ERROR, __file__, 1, "accept returned %s (%s); retrying in %s seconds",
            (errno.errorcode[exc.errno], exc.strerror, 0.1), exc_info=sys.exc_info())


def test_an_accept_without_descriptors_is_counted_and_rewritten_as_one_warning_without_traceback() -> None:
    seen = ListenerAcceptFailures()
    record = _trio_says(OSError(errno.EMFILE, "Too many open files"))
    assert seen.filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "ulimit -n" in record.getMessage() and "EMFILE" in record.getMessage()
    again = _trio_says(OSError(errno.EMFILE, "Too many open files"))
    seen.filter(again)
    assert again.getMessage() == record.getMessage()  # the same text: the repeat filter holds it back
    assert seen.failures == {"EMFILE": 2}


def test_other_errors_pass_untouched() -> None:
    seen = ListenerAcceptFailures()
    record = _trio_says(OSError(errno.ECONNABORTED, "Software caused connection abort"))
    assert seen.filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert not seen.failures


def test_the_node_counts_what_trios_listener_logger_says(caplog: pytest.LogCaptureFixture) -> None:
    apply_process_tuning()
    before = accept_failures.failures["ENFILE"]
    log = logging.getLogger("trio.serve_listeners")
    with caplog.at_level(logging.WARNING, logger="trio.serve_listeners"):
        try:
            raise OSError(errno.ENFILE, "Too many open files in system")
        except OSError:
            log.error("accept returned %s (%s); retrying in %s seconds", "ENFILE", "x", 0.1, exc_info=True)
    assert accept_failures.failures["ENFILE"] == before + 1
    assert [r.levelname for r in caplog.records] == ["WARNING"] and caplog.records[0].exc_info is None
