"""Supervised tasks: a failure is logged once with its cause, counted, shown while the task
waits, and the task is restarted."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from relayer.supervise import supervised

pytestmark = pytest.mark.unit


async def test_a_failing_task_is_restarted_counted_and_shown_while_it_waits(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    during_pause: list[dict[str, str]] = []
    failed: dict[str, str] = {}
    failures: Counter[str] = Counter()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            during_pause.append(dict(failed))  # cleared just before the restart
        if runs <= 2:
            raise OSError(28, "No space left on device")

    with caplog.at_level(logging.ERROR, logger="relayer.supervise"):
        await asyncio.wait_for(supervised("writer", flaky, failed=failed, failures=failures, first_pause=0.01), 5)
    assert runs == 3 and failures["writer"] == 2 and failed == {}
    assert during_pause == [{}, {}]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "task writer failed" in errors[0].getMessage()
    assert "No space left on device" in errors[0].getMessage()
    assert errors[0].exc_info and not errors[1].exc_info  # the traceback once


async def test_the_failure_is_visible_during_the_pause_and_cancel_stops_it() -> None:
    failed: dict[str, str] = {}
    failures: Counter[str] = Counter()

    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(supervised("broken", broken, failed=failed, failures=failures, first_pause=10))
    await asyncio.sleep(0.05)
    assert failed == {"broken": "RuntimeError: boom"} and failures["broken"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
