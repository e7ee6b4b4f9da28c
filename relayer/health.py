"""Whether the node is ready to do its job, and if not, every reason why.

`/readyz` answers 200 only when none of these holds (each has a short code, counted in
``relayer_not_ready{reason}``, and a message that says what to do):

- ``starting``: the node has not connected to the chain and its peers yet;
- ``rpc_down``: no RPC endpoint has answered for ``rpc_stale_after_s``;
- ``low_balance``: a transmitter's balance is below ``min_balance_eth`` (a warning is
  logged from twice that, before it runs out);
- ``store_unwritable``: the last write to the store failed (a full disk, a read-only mount);
- ``pacemaker_dead``: the round protocol's timer or the leader's loop has stopped;
- ``no_progress``: a member has seen no attested report in its epoch for more than two
  progress timeouts and asks for another epoch (cut off from the leader, or the committee
  cannot agree);
- ``few_peers``: a member is connected to fewer peers than a quorum needs;
- ``task_failed``: a long-lived task of the node failed and is being restarted.

`/healthz` stays the process liveness: it answers while the process serves requests.
The policy is a pure function of a `HealthInputs`, so every cause is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HealthInputs", "NotReady", "Readiness", "readiness", "REASONS"]

REASONS = ("starting", "rpc_down", "low_balance", "store_unwritable", "pacemaker_dead", "no_progress", "few_peers",
           "task_failed")


@dataclass(frozen=True, slots=True)
class NotReady:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Readiness:
    reasons: tuple[NotReady, ...]

    @property
    def ready(self) -> bool:
        return not self.reasons

    def public(self) -> dict[str, object]:
        return {"ready": self.ready, "reasons": [{"reason": r.reason, "message": r.message} for r in self.reasons]}


@dataclass(frozen=True, slots=True)
class HealthInputs:
    now: float
    started: bool  # connected to the chain, peers dialled, telemetry told at least once
    member: bool  # a committee member that signs (not a watcher, not a dry run)
    peers: int
    quorum: int
    rpc_last_ok_at: float | None
    rpc_last_error: str | None
    rpc_stale_after_s: float
    balance_wei: int | None  # None: not read yet, or no transmitter
    min_balance_wei: int
    store_error: str | None  # the last write's error when it failed, else None
    pacemaker_alive: bool
    wishing_for_s: float | None  # how long the node has asked for another epoch; None: it does not
    progress_timeout_s: float
    failed_tasks: dict[str, str] = field(default_factory=dict)  # task name -> its last error


def readiness(h: HealthInputs) -> Readiness:
    out: list[NotReady] = []
    if not h.started:
        return Readiness((NotReady("starting", "the node is still connecting to the chain and its peers"),))
    if h.rpc_last_ok_at is None or h.now - h.rpc_last_ok_at > h.rpc_stale_after_s:
        ago = "never" if h.rpc_last_ok_at is None else f"{h.now - h.rpc_last_ok_at:.0f} s ago"
        out.append(NotReady("rpc_down", f"no RPC endpoint has answered (last answer {ago}; last error: "
                                        f"{h.rpc_last_error or 'none'}); check rpc_urls and the chain node"))
    if h.member and h.balance_wei is not None and h.balance_wei < h.min_balance_wei:
        out.append(NotReady("low_balance", f"the transmitter holds {h.balance_wei / 1e18:.6f} ETH, below "
                                           f"min_balance_eth {h.min_balance_wei / 1e18:g}; fund it"))
    if h.store_error is not None:
        out.append(NotReady("store_unwritable", f"the store cannot write ({h.store_error}); free disk space or "
                                                "fix the data directory's permissions"))
    if h.member and not h.pacemaker_alive:
        out.append(NotReady("pacemaker_dead", "the round protocol's timer or leader loop has stopped; "
                                              "restart the node and report the log's ERROR lines"))
    if h.member and h.wishing_for_s is not None and h.wishing_for_s > 2 * h.progress_timeout_s:
        out.append(NotReady("no_progress", f"no attested report in this node's epoch for {h.wishing_for_s:.0f} s; "
                                           "it asks for another epoch: check its peers and network"))
    if h.member and h.peers < h.quorum - 1:
        out.append(NotReady("few_peers", f"{h.peers} committee peers connected, a quorum needs {h.quorum - 1}"))
    for name, error in sorted(h.failed_tasks.items()):
        out.append(NotReady("task_failed", f"task {name} failed ({error}) and is being restarted"))
    return Readiness(tuple(out))
