"""Messages for an epoch this node has not reached yet, kept until it gets there.

A leader that moved to a new epoch a moment earlier than this node sends its observe
request before this node follows; dropping it would cost the round. Such messages are
kept, a bounded number per sender and in total (by default every member's share fits,
so f faulty members cannot take the honest ones' room), and handed back in arrival order when the node enters their epoch; those of an
epoch the node skipped are dropped as stale.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from relayer.protocol.errors import Ignored
from relayer.protocol.messages import Envelope, Epoch
from relayer.protocol.round_state import Stats

PER_SENDER = 16


@dataclass(frozen=True)
class Kept:
    env: Envelope
    sender: int
    body: BaseModel


class FutureEpochBuffer:
    def __init__(self, stats: Stats, *, members: int, per_sender: int = PER_SENDER, total: int | None = None) -> None:
        self.stats = stats
        self.per_sender = per_sender
        self.total = total if total is not None else per_sender * members
        self._kept: defaultdict[Epoch, list[Kept]] = defaultdict(list)
        self._per_sender: defaultdict[int, int] = defaultdict(int)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def keep(self, env: Envelope, sender: int, body: BaseModel, current: Epoch) -> None:
        """Keep a message of a future epoch; raises Ignored when the sender's share or the buffer is full."""
        if self._per_sender[sender] >= self.per_sender:
            raise Ignored("future_epoch_full", f"{self.per_sender} messages of future epochs kept for this sender "
                                               f"(epoch {env.epoch}, this node is in {current})")
        if self._size >= self.total:
            raise Ignored("future_epoch_full", f"{self.total} messages of future epochs kept "
                                               f"(epoch {env.epoch}, this node is in {current})")
        self._kept[env.epoch].append(Kept(env, sender, body))
        self._per_sender[sender] += 1
        self._size += 1
        self.stats.future_buffered += 1

    def enter(self, epoch: Epoch, handle: Callable[[Kept], None]) -> None:
        """The node is now in `epoch`: drop what is older, hand back what is for it."""
        for e in sorted(k for k in self._kept if k <= epoch):
            for kept in self._release(e):
                if e == epoch:
                    self.stats.future_replayed += 1
                    handle(kept)
                else:
                    self.stats.drop(kept.env.sender, Ignored("stale_epoch", f"kept for epoch {e}, skipped to {epoch}"),
                                    epoch=e, round=kept.env.round)

    def _release(self, epoch: Epoch) -> list[Kept]:
        kept = self._kept.pop(epoch)
        for item in kept:
            self._per_sender[item.sender] -= 1
        self._size -= len(kept)
        return kept
