"""The pacemaker: which epoch this node is in, and when it moves to another (after OCR's).

A node never leaves its epoch alone. No attested report of the current epoch within the
progress timeout makes it *announce* the epoch it wants (`NewEpoch`, the wish in the body,
the epoch it is in on the envelope), again every progress timeout while the wish stands.
Each member's latest wish is kept:

- when f+1 members wish for more than this node has announced, at least one of them is
  honest and timed out: this node joins the wish (announces the highest epoch f+1 wish for);
- when 2f+1 members wish for an epoch above the current one, the node moves there (the
  highest epoch 2f+1 wish for): a quorum gave up on the current leader, so the honest
  members among them will all get there;
- every message a member sends says which epoch it is in: when f+1 members are at or past
  an epoch above ours, at least one honest member is there, and the node follows. That is
  how a node that was cut off, paused or restarted rejoins a committee that moved on; and
  since a follower's messages go to the leader alone, a member that hears a wish from an
  epoch it has left answers that member directly with its own epoch (once per timeout);
- an attested report of the current epoch is progress: the timeout starts again, and a
  standing wish is withdrawn (announced as the current epoch), so a node that was cut off
  and is back in the rounds does not help a later faulty member force an epoch change.

So one node, cut off or paused past the timeout, stays where the committee is and signs
again as soon as it hears the rounds; the epoch only ever grows, and signing history never
goes back (the store refuses anything at or below what was signed). The epoch is kept in
the store so that a restarted node resumes where it left off; a store that cannot write
costs the saved epoch (logged and counted), never the pacemaker.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from relayer.protocol.clock import Clock, Timer
from relayer.protocol.committee import Committee
from relayer.protocol.errors import Ignored, InvalidMessage
from relayer.protocol.messages import Envelope, Epoch, Kind, NewEpoch, RoundId
from relayer.protocol.outbox import Outbox
from relayer.protocol.round_state import Stats
from relayer.store import Store

log = logging.getLogger(__name__)


class Pacemaker:
    def __init__(self, *, committee: Committee, index: int, store: Store, clock: Clock, outbox: Outbox,
                 stats: Stats) -> None:
        self.committee = committee
        self.index = index
        self.store = store
        self.clock = clock
        self.outbox = outbox
        self.stats = stats
        self.epoch = Epoch(0)
        # The epoch this node last announced it wants (OCR's "ne"); above `epoch` while a wish stands.
        self.wanted = Epoch(0)
        # Each member's latest announced wish, this node's own included.
        self._wishes: dict[int, Epoch] = {}
        # When each member behind us was last told our epoch: (our epoch then, clock.monotonic()).
        self._nudged: dict[int, tuple[Epoch, float]] = {}
        # Members seen (by any message) in each epoch above ours.
        self._epoch_senders: defaultdict[Epoch, set[int]] = defaultdict(set)
        self._last_progress = 0.0
        self._last_check = 0.0
        # When the standing wish (wanted > epoch) was first announced (clock.monotonic()).
        self.wish_started: float | None = None
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
            self.epoch = self.wanted = Epoch(int(saved))
        self._last_progress = self._last_check = self.clock.monotonic()
        self._arm(self._timeout())

    def alive(self) -> bool:
        """The progress timer runs: it was armed and has looked within the last two timeouts."""
        return self._timer is not None and self.clock.monotonic() - self._last_check <= 2 * self._timeout() + 1.0

    def wishing_for(self) -> float | None:
        """Seconds since this node first asked for another epoch; None when it does not."""
        return None if self.wish_started is None else self.clock.monotonic() - self.wish_started

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
        self._last_check = self.clock.monotonic()
        left = self._last_progress + self._timeout() - self.clock.monotonic()
        if left > 0:
            self._arm(left)
            return
        # Re-armed first: whatever the announcement meets, the timer keeps running.
        self._arm(self._timeout())
        self.stats.progress_timeouts += 1
        wish = max(self.wanted, Epoch(self.epoch + 1))
        log.info("no attested report in epoch %d within %.1f s; asking for epoch %d", self.epoch, self._timeout(),
                 wish, extra={"epoch": self.epoch, "round": 0})
        self._announce(wish)

    def _announce(self, wish: Epoch) -> None:
        """Tell every member the epoch this node wants (its current one: no wish)."""
        self._set_wanted(wish)
        # Not to ourselves: our own wish is recorded above.
        self.outbox.broadcast(Kind.NEW_EPOCH, self.epoch, RoundId(0), NewEpoch(epoch=wish), to_self=False)
        self._reconsider()

    def progress(self, epoch: Epoch) -> None:
        """A report of `epoch` was attested."""
        if epoch != self.epoch:
            return
        self._last_progress = self.clock.monotonic()
        if self.wanted > self.epoch:
            log.info("epoch %d makes progress again; withdrawing the wish for epoch %d", self.epoch, self.wanted,
                     extra={"epoch": self.epoch, "round": 0})
            self._announce(self.epoch)

    def on_new_epoch(self, env: Envelope, sender: int, body: NewEpoch) -> None:
        wish = Epoch(body.epoch)
        if wish < env.epoch:
            raise InvalidMessage("bad_new_epoch", f"wishes for epoch {wish} while in epoch {env.epoch}")
        self._wishes[sender] = wish
        if env.epoch < self.epoch:
            self._nudge(sender)
        if wish <= self.epoch:
            raise Ignored("stale_epoch", f"new_epoch wish {wish} while in epoch {self.epoch}")
        self._reconsider()

    def _nudge(self, member: int) -> None:
        """A member asks from an epoch we have left (it joined late, or missed the move): tell
        it, to it alone, which epoch we are in. With f+1 such answers it follows us there; the
        moment we moved, our wishes went out before it could hear them. At most once per
        progress timeout per member, whatever it sends."""
        now = self.clock.monotonic()
        last = self._nudged.get(member)
        if last is not None and last[0] == self.epoch and now - last[1] < self._timeout():
            return
        self._nudged[member] = (self.epoch, now)
        self.stats.epoch_nudges += 1
        self.outbox.send_to(member, self.outbox.seal(Kind.NEW_EPOCH, self.epoch, RoundId(0),
                                                      NewEpoch(epoch=max(self.wanted, self.epoch))))

    def _reconsider(self) -> None:
        f = self.committee.f
        wishes = sorted(self._wishes.values(), reverse=True)
        # f+1 members want more than we announced: at least one honest member timed out.
        above_ours = [w for w in wishes if w > self.wanted]
        if len(above_ours) >= f + 1:
            joined = above_ours[f]
            log.info("%d members ask for epoch %d or later; asking too", len(above_ours), joined,
                     extra={"epoch": self.epoch, "round": 0})
            self._set_wanted(joined)
            self.outbox.broadcast(Kind.NEW_EPOCH, self.epoch, RoundId(0), NewEpoch(epoch=joined), to_self=False)
            wishes = sorted(self._wishes.values(), reverse=True)
        above_current = [w for w in wishes if w > self.epoch]
        if len(above_current) >= 2 * f + 1:
            self._move_to(above_current[2 * f], f"{len(above_current)} members ask for it")

    def _set_wanted(self, wish: Epoch) -> None:
        self.wanted = wish
        self._wishes[self.index] = wish
        if wish <= self.epoch:
            self.wish_started = None
        elif self.wish_started is None:
            self.wish_started = self.clock.monotonic()

    def _move_to(self, epoch: Epoch, why: str) -> None:
        if epoch <= self.epoch:
            return
        log.info("moving to epoch %d (%s); leader is %d", epoch, why, self.committee.leader(epoch),
                 extra={"epoch": epoch, "round": 0})
        self.epoch = epoch
        self._set_wanted(max(self.wanted, epoch))
        if self.wanted > epoch:
            self.wish_started = self.clock.monotonic()  # a wish beyond the new epoch starts afresh
        self.stats.epoch_changes += 1
        self._last_progress = self.clock.monotonic()
        try:
            self.store.set_state(self._state_key, str(epoch))
        except Exception as exc:  # noqa: BLE001 - a lost saved epoch costs a catch-up after a restart, no more
            self.stats.store_errors += 1
            log.error("cannot save epoch %d (%s); a restart will resume an older epoch and catch up", epoch, exc,
                      extra={"epoch": epoch, "round": 0})
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
