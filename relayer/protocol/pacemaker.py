"""The pacemaker: which epoch this node is in, and when it moves to another.

No attested report of the current epoch within the progress timeout: the node announces
the next epoch (`NewEpoch`) and moves there. Every message a member sends tells which
epoch that member is in; when f+1 distinct members are at or past an epoch above ours,
at least one of them is honest, so the node follows them there. The epoch is kept in the
store so that a restarted node resumes where it left off.

Everything about epoch changes lives in this file.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from relayer.protocol.clock import Clock, Timer
from relayer.protocol.committee import Committee
from relayer.protocol.errors import Ignored
from relayer.protocol.messages import Envelope, Epoch, Kind, NewEpoch, RoundId
from relayer.protocol.outbox import Outbox
from relayer.protocol.round_state import Stats
from relayer.store import Store

log = logging.getLogger(__name__)


class Pacemaker:
    def __init__(self, *, committee: Committee, store: Store, clock: Clock, outbox: Outbox, stats: Stats) -> None:
        self.committee = committee
        self.store = store
        self.clock = clock
        self.outbox = outbox
        self.stats = stats
        self.epoch = Epoch(0)
        self._epoch_senders: defaultdict[Epoch, set[int]] = defaultdict(set)
        self._last_progress = 0.0
        self._timer: Timer | None = None
        # Called with the new epoch after every move (the leader, the future-epoch buffer).
        self.on_enter: list[Callable[[Epoch], None]] = []

    @property
    def _state_key(self) -> str:
        return f"epoch:{self.committee.digest_hex}"

    def start(self) -> None:
        saved = self.store.get_state(self._state_key)
        if saved is not None:
            # Resume in the epoch we left: rounds of it we already signed stay refused by the store.
            self.epoch = Epoch(int(saved))
        self._last_progress = self.clock.monotonic()
        self._arm(self._timeout())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timeout(self) -> float:
        return self.committee.offchain.progress_timeout_ms / 1000

    def _arm(self, delay: float) -> None:
        self._timer = self.clock.call_later(delay, self._check_progress)

    def _check_progress(self) -> None:
        # Progress only moves a timestamp; the one timer re-arms itself for the time left.
        left = self._last_progress + self._timeout() - self.clock.monotonic()
        if left > 0:
            self._arm(left)
            return
        target = Epoch(self.epoch + 1)
        # Not to ourselves: we are about to be there.
        self.outbox.broadcast(Kind.NEW_EPOCH, target, RoundId(0), NewEpoch(), to_self=False)
        self._move_to(target, "progress timeout")
        self._arm(self._timeout())

    def progress(self, epoch: Epoch) -> None:
        """A report of `epoch` was attested."""
        if epoch == self.epoch:
            self._last_progress = self.clock.monotonic()

    def _move_to(self, epoch: Epoch, why: str) -> None:
        if epoch <= self.epoch:
            return
        log.info("moving to epoch %d (%s); leader is %d", epoch, why, self.committee.leader(epoch),
                 extra={"epoch": epoch, "round": 0})
        self.epoch = epoch
        self.stats.epoch_changes += 1
        self._last_progress = self.clock.monotonic()
        self.store.set_state(self._state_key, str(epoch))
        for stale in [e for e in self._epoch_senders if e <= epoch]:
            del self._epoch_senders[stale]
        for listener in self.on_enter:
            listener(epoch)

    def note_sender(self, epoch: Epoch, sender: int) -> None:
        """Any message from member `sender` says it has reached `epoch`."""
        if epoch <= self.epoch:
            return
        self._epoch_senders[epoch].add(sender)
        # The highest epoch that f+1 distinct members have reached or passed.
        seen: set[int] = set()
        for e in sorted(self._epoch_senders, reverse=True):
            seen |= self._epoch_senders[e]
            if len(seen) >= self.committee.f + 1:
                self._move_to(e, f"{len(seen)} members are there")
                break

    def on_new_epoch(self, env: Envelope, sender: int, body: NewEpoch) -> None:
        # The announcement itself was noted with every other message; an old one is of no use.
        if env.epoch < self.epoch:
            raise Ignored("stale_epoch", f"new_epoch {env.epoch} while in epoch {self.epoch}")
