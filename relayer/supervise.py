"""Long-lived tasks of the node, supervised: a failure is logged at ERROR with its cause,
counted, shown by readiness (``task_failed``) while the task waits to restart, and the task
is restarted with a growing pause (1 s, doubling, at most 30 s; back to 1 s once it has run
a minute without failing). Cancellation stops it as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping

log = logging.getLogger(__name__)

FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 30.0
STEADY_AFTER_S = 60.0


async def supervised(name: str, run: Callable[[], Awaitable[None]], *, failed: MutableMapping[str, str],
                     failures: Counter[str], first_pause: float = FIRST_PAUSE_S, max_pause: float = MAX_PAUSE_S,
                     steady_after: float = STEADY_AFTER_S) -> None:
    """Run ``run()`` until it returns; restart it after each failure."""
    loop = asyncio.get_running_loop()
    pause = first_pause
    while True:
        started = loop.time()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the point: any failure is logged, counted and restarted
            if loop.time() - started >= steady_after:
                pause = first_pause
            failures[name] += 1
            failed[name] = f"{type(exc).__name__}: {exc}"[:200]
            log.error("task %s failed (%s: %s); restarting it in %g s", name, type(exc).__name__, exc, pause,
                      exc_info=failures[name] == 1)
            await asyncio.sleep(pause)
            pause = min(max_pause, pause * 2)
            failed.pop(name, None)
