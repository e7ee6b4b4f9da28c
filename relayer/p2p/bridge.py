"""The bridge between the node's asyncio loop and one trio event loop in its own thread.

py-libp2p is trio-only and the node is asyncio; measured (notes/libp2p.md), one trio
thread per process bridged to asyncio is the arrangement that works. This module is
the only one in the project that knows both event loops:

- asyncio -> trio: ``TrioToken.run_sync_soon`` (never blocks the caller);
- trio -> asyncio: ``loop.call_soon_threadsafe``;
- an asyncio caller awaiting a trio coroutine, with a timeout;
- the start/stop handshake: ``start()`` returns once the trio side says it serves,
  ``stop()`` asks for an orderly teardown and cancels the whole trio run if that
  overruns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar, cast

import trio

from relayer.p2p.errors import P2PError, P2PStartError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# After stop is requested, the whole trio run is cancelled past this, whatever is pending.
STOP_HARD_S = 4.0

State = Literal["new", "starting", "running", "stopping", "stopped"]



class StopRequested(Protocol):
    """What a service waits on (a ``trio.Event``), named so callers need not import trio."""

    async def wait(self) -> None: ...


# What runs in the trio thread: called with ``ready`` (call once serving) and the stop
# request (return once it is set, having torn down in order).
Service = Callable[[Callable[[], None], StopRequested], Awaitable[None]]


class TrioThread:
    """One trio event loop in a daemon thread, driven from the caller's asyncio loop.

    ``label`` names the service in errors and logs; ``thread_name`` names the thread.
    """

    def __init__(self, *, label: str, thread_name: str) -> None:
        self.label = label
        self.thread_name = thread_name
        self.state: State = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        # Trio-side objects, set while the thread runs.
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_requested: trio.Event | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def require_running(self, what: str) -> None:
        if self.state != "running":
            raise P2PError(f"cannot {what}: {self.label} is {self.state}, call start() first")

    # ------------------------------------------------------------------ lifecycle (asyncio)

    async def start(self, service: Service, timeout: float) -> None:
        """Run ``service`` in a new trio thread; return once it called ``ready``.

        Raises P2PStartError with the reason when the service fails or is not ready
        within ``timeout``; the thread is stopped before raising.
        """
        if self.state != "new":
            raise P2PStartError(f"{self.label} was already started (state {self.state})")
        self.state = "starting"
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._started = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(service,),
            name=self.thread_name,
            daemon=True,  # a wedged trio thread must not keep the process alive
        )
        self._thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except TimeoutError:
            await self.stop()
            raise P2PStartError(f"{self.label} did not come up within {timeout} s") from None
        except BaseException:
            await self.stop()
            raise
        self.state = "running"

    async def stop(self) -> None:
        """Ask the service to tear down, wait for the thread to end.

        Idempotent and bounded: STOP_HARD_S after the request the trio run is cancelled.
        """
        if self.state in ("new", "stopped"):
            self.state = "stopped"
            return
        first = self.state != "stopping"
        # Set before reading _stop_requested: if the trio side has not created the
        # event yet, it sees "stopping" right after creating it.
        self.state = "stopping"
        stop_requested = self._stop_requested
        if first and stop_requested is not None:
            self.call_soon(stop_requested.set)
        stopped = self._stopped
        if stopped is not None:
            try:
                await asyncio.wait_for(asyncio.shield(stopped), STOP_HARD_S + 2.0)
            except TimeoutError:
                logger.error("%s: trio thread did not end in time", self.label)
        thread = self._thread
        if thread is not None:
            # The thread signalled its end just before returning: this join is short.
            thread.join(timeout=1.0)
            if thread.is_alive():
                logger.error("%s: thread %s still alive", self.label, thread.name)
        self.state = "stopped"

    # ------------------------------------------------------------------ crossing

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Schedule a sync callable on the trio thread (from any thread); False if it has ended."""
        token = self._token
        if token is None:
            return False

        def guarded() -> None:
            # An exception escaping a run_sync_soon callback crashes the trio run.
            try:
                fn(*args)
            except Exception:
                logger.exception("%s: callback %r failed", self.label, fn)

        try:
            token.run_sync_soon(guarded)
        except trio.RunFinishedError:
            return False
        return True

    def to_asyncio(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule a sync callable on the asyncio loop (from the trio thread)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            # The asyncio loop is closed: the node is gone, nothing to deliver to.
            pass

    async def run(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run a trio coroutine function from asyncio and await its result.

        Its exception is raised here; P2PError when the thread stops first or
        ``timeout`` passes.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(cast(T, result))

        async def runner() -> None:
            try:
                result = await fn()
            except trio.Cancelled:
                self.to_asyncio(settle, None, P2PError(f"{self.label} is stopping"))
                raise
            except Exception as exc:
                self.to_asyncio(settle, None, exc)
            else:
                self.to_asyncio(settle, result, None)

        def spawn() -> None:
            nursery = self._nursery
            if nursery is None:
                self.to_asyncio(settle, None, P2PError(f"{self.label} is not running"))
                return
            nursery.start_soon(runner)

        if not self.call_soon(spawn):
            raise P2PError(f"{self.label} has stopped")
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise P2PError(f"{self.label}: operation timed out after {timeout} s") from None

    # ------------------------------------------------------------------ trio thread

    def _thread_main(self, service: Service) -> None:
        try:
            trio.run(self._trio_main, service)
        except BaseException as exc:
            logger.exception("%s: trio run ended with an error", self.label)
            self._report_started(exc)
        finally:
            self._token = None
            self.to_asyncio(self._mark_stopped)

    async def _trio_main(self, service: Service) -> None:
        self._token = trio.lowlevel.current_trio_token()
        stop_requested = self._stop_requested = trio.Event()
        if self.state == "stopping":  # stop() arrived before the token existed
            stop_requested.set()
        try:
            # Outermost, so bridged calls (run()) work for as long as the service does.
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._hard_stop_watchdog, nursery.cancel_scope, stop_requested)
                await service(lambda: self._report_started(None), stop_requested)
                nursery.cancel_scope.cancel()
        except Exception as exc:
            logger.exception("%s failed", self.label)
            self._report_started(exc)
        finally:
            self._nursery = None
        # Reached after a hard-stop cancellation too: start() must not wait forever.
        self._report_started(P2PStartError("stopped before it was ready"))

    async def _hard_stop_watchdog(self, scope: trio.CancelScope, stop_requested: trio.Event) -> None:
        await stop_requested.wait()
        await trio.sleep(STOP_HARD_S)
        logger.warning("%s: orderly stop overran %s s, cancelling", self.label, STOP_HARD_S)
        scope.cancel()

    def _report_started(self, error: BaseException | None) -> None:
        started = self._started
        if started is None:
            return

        def settle() -> None:
            if started.done():
                return
            if error is None:
                started.set_result(None)
            else:
                cause = _innermost(error)
                started.set_exception(
                    P2PStartError(f"{self.label} failed to start: {type(cause).__name__}: {cause}")
                )

        self.to_asyncio(settle)

    def _mark_stopped(self) -> None:
        """Runs on the asyncio loop once the trio thread is about to return."""
        if self.state == "running":
            # Nobody called stop(): the service died; make every later call say so.
            logger.error("%s stopped unexpectedly; see the errors above", self.label)
            self.state = "stopped"
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)


def _innermost(error: BaseException) -> BaseException:
    """The one error a chain of single-member exception groups (trio nurseries) wraps."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
