"""A transaction manager for one sending key: one transaction in flight, newest first.

After the transaction managers of the Chainlink node and Lido's oracle, for a sender whose
every transaction makes an older one pointless (a newer report supersedes an older one):

- one transaction in flight; the nonce is tracked locally and resynced from the chain
  when a send says it is wrong;
- only the newest request is sent: a request arriving while an older one waits is the only
  one kept, and one arriving while an older one is in flight *replaces* it on the same
  nonce (bumped fees), so an old report is never sent after a newer one;
- a pending transaction that is dropped is re-broadcast, one priced below the base fee is
  replaced with a bumped tip and fee cap, after `resend_after_blocks` blocks without a
  receipt; fees never go above `max_fee_per_gas` (during a spike above it, the manager
  waits at the cap);
- a transaction counts as landed after `confirmations` blocks on top of it, its block still
  canonical; `is_canonical` tells a caller later whether a landing survived a reorg.

Every request carries a static check against the pending block before each broadcast, so a
transaction that would revert is not paid for. The check is one execution of the call
(`eth_createAccessList`, whose `gasUsed` sets the gas limit with headroom) rather than
`eth_estimateGas`, whose search runs it many times (3-7 ms against 0.6 ms for a 14-feed
transmit on anvil); an endpoint without `eth_createAccessList`, or one that reports a revert
inside its answer instead of as an error, gets `eth_estimateGas`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from eth_account import Account

from relayer.chain.codec import address_of
from relayer.chain.errors import ChainError, RpcError
from relayer.chain.rpc import JsonRpcClient, RpcCallError

log = logging.getLogger(__name__)

GAS_HEADROOM = 1.25
# gasUsed from a simulation is after refunds (at most a fifth of the gas, EIP-3529), and a
# call's 63/64 rule wants a little more: 1.25 would be exact at the largest refund.
SIMULATED_GAS_HEADROOM = 1.3
_METHOD_NOT_FOUND = -32601
FIRST_LOOK_S = 0.002  # the first receipt check after a broadcast; then doubling to poll_interval
_ALREADY_KNOWN = ("already known", "known transaction", "already imported")
_NONCE_TOO_LOW = ("nonce too low", "nonce is too low", "invalid nonce")
_UNDERPRICED = ("underpriced", "fee too low", "max fee per gas less than block base fee")


class Status(StrEnum):
    LANDED = "landed"  # mined (status 1) and confirmed
    REVERTED = "reverted"  # mined with status 0, or refused by the static check
    SUPERSEDED = "superseded"  # a newer request took its place, or it was no longer wanted


@dataclass(frozen=True)
class TxRequest:
    """One transaction to send. ``key`` orders requests: a higher key supersedes a lower one.
    ``still_wanted`` is asked before every broadcast (e.g. "the chain does not hold this
    round or a newer one yet")."""

    key: tuple[int, ...]
    to: str
    data: bytes
    still_wanted: Callable[[], Awaitable[bool]] | None = None


@dataclass(frozen=True)
class TxOutcome:
    status: Status
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None
    gas_used: int = 0
    revert_data: bytes = b""
    detail: str = ""
    broadcasts: int = 0


@dataclass
class TxStats:
    broadcasts: int = 0
    rebroadcasts: int = 0
    replacements: int = 0
    fee_capped: int = 0
    nonce_resyncs: int = 0
    landed: int = 0
    reverted: int = 0
    superseded: int = 0


@dataclass
class _Job:
    request: TxRequest
    done: asyncio.Future[TxOutcome]
    broadcasts: int = 0

    def resolve(self, outcome: TxOutcome) -> None:
        if not self.done.done():
            self.done.set_result(outcome)


@dataclass
class _Attempt:
    job: _Job
    tx_hash: str
    raw: str
    max_fee: int
    tip: int


@dataclass
class _InFlight:
    nonce: int
    gas: int
    sent_at_block: int
    attempts: list[_Attempt] = field(default_factory=list)
    sent_at: float = field(default_factory=time.monotonic)
    looks: int = 0  # receipt checks since the last broadcast

    @property
    def latest(self) -> _Attempt:
        return self.attempts[-1]


class FeeCapReached(ChainError):
    """The network's base fee is above the configured ``max_fee_per_gas``: the transaction
    waits at the cap. Raise the cap in the settings if this must land now."""


class TxManager:
    def __init__(
        self,
        rpc: JsonRpcClient,
        key: bytes,
        chain_id: int,
        *,
        max_fee_per_gas: int,
        bump_percent: int = 15,
        resend_after_blocks: int = 3,
        resend_after_s: float = 6.0,
        confirmations: int = 0,
        poll_interval: float = 0.02,
    ) -> None:
        if bump_percent < 10:
            raise ValueError("nodes refuse a replacement bumped by less than 10 %")
        self.rpc = rpc
        self._key = key
        self.sender = address_of(key)
        self.chain_id = chain_id
        self.max_fee_per_gas = max_fee_per_gas
        self.bump_percent = bump_percent
        self.resend_after_blocks = resend_after_blocks
        # Also look after this long without a receipt: a chain that mines only when sent to
        # (a devnet) may never reach `resend_after_blocks` on its own.
        self.resend_after_s = resend_after_s
        self.confirmations = confirmations
        self.poll_interval = poll_interval
        self.stats = TxStats()
        self._nonce: int | None = None
        self._wanted: _Job | None = None
        self._inflight: _InFlight | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        # A newer request that cannot outbid the one in flight within the fee cap waits for
        # it to land instead of being re-tried on every poll.
        self._blocked_key: tuple[int, ...] | None = None
        # Never send a request older than one already broadcast.
        self._highest_sent: tuple[int, ...] | None = None
        self._check_method = "eth_createAccessList"

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"txmanager {self.sender[:10]}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for job in self._jobs():
            job.resolve(TxOutcome(Status.SUPERSEDED, detail="transaction manager stopped"))

    def _jobs(self) -> list[_Job]:
        jobs = [a.job for a in self._inflight.attempts] if self._inflight else []
        return [*jobs, *([self._wanted] if self._wanted else [])]

    @property
    def pending_key(self) -> tuple[int, ...] | None:
        """The key of the newest request not yet landed, if any."""
        keys = [j.request.key for j in self._jobs() if not j.done.done()]
        return max(keys) if keys else None

    # --- requests ---------------------------------------------------------------------

    async def submit(self, request: TxRequest, *, again: bool = False) -> TxOutcome:
        """Send ``request`` as soon as the transaction in flight allows; returns its outcome.
        A newer request submitted meanwhile makes this one ``SUPERSEDED``. A request is never
        sent after a newer one was, nor twice, unless ``again`` (its landing was reorged out)."""
        pending, sent = self.pending_key, self._highest_sent
        if (pending is not None and pending >= request.key) or (
            sent is not None and (sent > request.key or (sent == request.key and not again))
        ):
            newest = max(k for k in (pending, sent) if k is not None)
            self.stats.superseded += 1
            return TxOutcome(Status.SUPERSEDED, detail=f"request {newest} is newer or the same")
        job = _Job(request, asyncio.get_running_loop().create_future())
        if self._wanted is not None:
            self._supersede(self._wanted, f"replaced by request {request.key} before it was sent")
        self._wanted = job
        self.start()
        self._wake.set()
        return await asyncio.shield(job.done)

    def _supersede(self, job: _Job, why: str) -> None:
        if not job.done.done():
            self.stats.superseded += 1
            job.resolve(TxOutcome(Status.SUPERSEDED, detail=why, broadcasts=job.broadcasts))

    # --- the worker -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
                self._last_error = None
            except asyncio.CancelledError:
                raise
            except ChainError as exc:
                message = str(exc)
                if message != self._last_error:  # one line per distinct failure, not a storm
                    log.warning("transaction manager: %s; retrying", message)
                self._last_error = message
            except Exception:
                log.exception("transaction manager step failed; retrying")
            if self._inflight is None and self._wanted is None:
                self._wake.clear()
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._next_look())
                except TimeoutError:
                    pass
                self._wake.clear()

    def _next_look(self) -> float:
        """How long until the next look at the chain. Right after a broadcast the first looks
        come quickly, doubling up to ``poll_interval``: a chain that mines on arrival (a devnet)
        or in fast blocks has the receipt within milliseconds, and a slow chain costs only a
        few extra reads per transaction."""
        inflight = self._inflight
        if inflight is None:
            return self.poll_interval
        inflight.looks += 1
        return min(self.poll_interval, FIRST_LOOK_S * float(2 ** (inflight.looks - 1)))

    async def _step(self) -> None:
        if self._inflight is not None:
            await self._check_inflight()
        wanted = self._wanted
        if wanted is None:
            return
        if self._inflight is None:
            await self._send(wanted, replacing=None)
        elif wanted.request.key > max(a.job.request.key for a in self._inflight.attempts) and (
            self._blocked_key != wanted.request.key
        ):
            await self._send(wanted, replacing=self._inflight)

    async def _still_wanted(self, job: _Job) -> bool:
        check = job.request.still_wanted
        return True if check is None else await check()

    async def _fees(self) -> tuple[int, int]:
        """(base fee of the next block, suggested tip)."""
        block, tip = await self.rpc.batch([
            ("eth_getBlockByNumber", ["pending", False]),
            ("eth_maxPriorityFeePerGas", []),
        ])
        base = int((block or {}).get("baseFeePerGas", "0x0"), 16)
        return base, int(tip, 16)

    async def _sync_nonce(self) -> int:
        # The latest (mined) count, not the pending one: a transaction of ours stuck in the
        # pool from before a restart gets replaced instead of queued behind.
        self._nonce = int(await self.rpc.request("eth_getTransactionCount", [self.sender, "latest"]), 16)
        return self._nonce

    async def _send(self, job: _Job, replacing: _InFlight | None) -> None:
        """Broadcast ``job``: on a fresh nonce, or on the in-flight one with bumped fees (a
        newer request taking its place, or the same one re-priced)."""
        repricing = replacing is not None and replacing.latest.job is job
        # One round trip for what a send needs: the static check (first, so a revert is the
        # error the batch raises), the next block's base fee, the tip, the head (read before
        # sending: nothing may fail between the send and recording it), and the nonce if unknown.
        call = {"from": self.sender, "to": job.request.to, "data": "0x" + job.request.data.hex()}
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getBlockByNumber", ["pending", False]), ("eth_maxPriorityFeePerGas", []), ("eth_blockNumber", []),
        ]
        if not repricing:
            calls.insert(0, (self._check_method, [call, "pending"]))
        if replacing is None and self._nonce is None:
            calls.append(("eth_getTransactionCount", [self.sender, "latest"]))
        # Whether the request is still wanted (a chain read of its own) is asked alongside:
        # one round trip less on every report's path to the chain.
        wanted, prepared = await asyncio.gather(self._still_wanted(job), self.rpc.batch(calls), return_exceptions=True)
        if isinstance(wanted, BaseException):
            raise wanted
        if not wanted:
            self._wanted = None if self._wanted is job else self._wanted
            self._supersede(job, "no longer wanted (the chain holds it or a newer one)")
            return
        if isinstance(prepared, RpcCallError) and prepared.is_revert and not repricing:
            self._refuse(job, prepared)
            return
        if (isinstance(prepared, RpcCallError) and prepared.code == _METHOD_NOT_FOUND
                and self._check_method != "eth_estimateGas"):
            log.info("the RPC endpoint has no %s; checking transactions with eth_estimateGas", self._check_method)
            self._check_method = "eth_estimateGas"
            self._requeue(job)
            return
        if isinstance(prepared, BaseException):
            raise prepared
        answers = prepared
        if not repricing:
            checked, *answers = answers
            try:
                estimate = await self._gas_limit(call, checked)
            except RpcCallError as exc:
                if not exc.is_revert:
                    raise
                self._refuse(job, exc)
                return
        block, tip_hex, head_hex, *nonce_hex = answers
        base, tip, head = int((block or {}).get("baseFeePerGas", "0x0"), 16), int(tip_hex, 16), int(head_hex, 16)
        if nonce_hex:
            self._nonce = int(nonce_hex[0], 16)
        max_fee = min(2 * base + tip, self.max_fee_per_gas)
        if replacing is not None:
            old = replacing.latest
            max_fee = max(max_fee, _bumped(old.max_fee, self.bump_percent))
            tip = max(tip, _bumped(old.tip, self.bump_percent))
            if max_fee > self.max_fee_per_gas:
                # Cannot outbid the one in flight within the cap: this waits until it lands.
                self._blocked_key = job.request.key
                return
        tip = min(tip, max_fee)
        if max_fee < base:
            self._fee_capped(base)
        if repricing:
            assert replacing is not None
            gas = replacing.gas  # checked when first sent; the pending block now holds it
        else:
            gas = estimate
        nonce = replacing.nonce if replacing is not None else self._nonce
        assert nonce is not None
        attempt = self._sign(job, nonce, gas, max_fee, tip)
        if not await self._broadcast(attempt, replacing):
            return
        if self._wanted is job:
            self._wanted = None
        if replacing is None:
            self._inflight = _InFlight(nonce, gas, head, [attempt])
        else:
            for earlier in replacing.attempts:
                if earlier.job is not job:
                    self._supersede(earlier.job, f"replaced on nonce {nonce} by request {job.request.key}")
            replacing.attempts.append(attempt)
            replacing.sent_at_block = head
            replacing.looks = 0
            self.stats.replacements += 1

    async def _gas_limit(self, call: dict[str, Any], checked: Any) -> int:
        """The gas limit from the static check's answer. A simulation that reports a revert in
        its answer (geth's `eth_createAccessList` does) is asked again through
        `eth_estimateGas`, which raises it as an error with the revert data."""
        if self._check_method == "eth_estimateGas":
            return int(int(checked, 16) * GAS_HEADROOM)
        if not isinstance(checked, dict) or checked.get("error") or "gasUsed" not in checked:
            return int(int(await self.rpc.request("eth_estimateGas", [call, "pending"]), 16) * GAS_HEADROOM)
        return int(int(checked["gasUsed"], 16) * SIMULATED_GAS_HEADROOM)

    def _refuse(self, job: _Job, exc: RpcCallError) -> None:
        """The static check says ``job`` would revert: it is not sent."""
        self._wanted = None if self._wanted is job else self._wanted
        self.stats.reverted += 1
        job.resolve(TxOutcome(Status.REVERTED, revert_data=exc.revert_data, detail=exc.rpc_message,
                              broadcasts=job.broadcasts))

    def _sign(self, job: _Job, nonce: int, gas: int, max_fee: int, tip: int) -> _Attempt:
        tx: dict[str, Any] = {
            "type": 2, "chainId": self.chain_id, "nonce": nonce, "to": job.request.to, "value": 0,
            "data": job.request.data, "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip,
        }
        signed = Account.sign_transaction(tx, self._key)
        return _Attempt(job, "0x" + bytes(signed.hash).hex(), "0x" + bytes(signed.raw_transaction).hex(), max_fee, tip)

    def _fee_capped(self, base: int) -> None:
        self.stats.fee_capped += 1
        raise FeeCapReached(
            f"next block's base fee {base / 1e9:.1f} gwei is above max_fee_per_gas "
            f"{self.max_fee_per_gas / 1e9:.1f} gwei; waiting at the cap"
        )

    async def _broadcast(self, attempt: _Attempt, inflight: _InFlight | None) -> bool:
        """Send the raw transaction. False when its nonce turned out to be used already: then
        an attempt of ours that did land is collected, or the nonce is resynced and the
        request queued again."""
        try:
            await self.rpc.request("eth_sendRawTransaction", [attempt.raw])
        except RpcCallError as exc:
            message = exc.rpc_message.lower()
            if any(m in message for m in _ALREADY_KNOWN):
                return True
            if any(m in message for m in _NONCE_TOO_LOW):
                await self._nonce_used(attempt, inflight, exc.rpc_message)
                return False
            if any(m in message for m in _UNDERPRICED):
                raise RpcError(f"transaction underpriced ({exc.rpc_message}); bumping on the next block") from None
            raise
        attempt.job.broadcasts += 1
        self.stats.broadcasts += 1
        key = attempt.job.request.key
        if self._highest_sent is None or key > self._highest_sent:
            self._highest_sent = key
        return True

    async def _nonce_used(self, attempt: _Attempt, inflight: _InFlight | None, why: str) -> None:
        if inflight is not None:
            for earlier in inflight.attempts:
                receipt = await self.rpc.request("eth_getTransactionReceipt", [earlier.tx_hash])
                if receipt is not None:
                    await self._mined(inflight, earlier, receipt, head=None)
                    self._requeue(attempt.job)
                    return
        # Used by a transaction we do not know (another process with this key, or one we
        # lost across a restart): resync and send on the next free nonce.
        self.stats.nonce_resyncs += 1
        self._inflight = None
        await self._sync_nonce()
        log.warning("nonce was used elsewhere (%s); resynced to %d", why, self._nonce)
        self._requeue(attempt.job)

    def _requeue(self, job: _Job) -> None:
        if job.done.done():
            return
        if self._wanted is None or self._wanted.request.key < job.request.key:
            if self._wanted is not None:
                self._supersede(self._wanted, f"replaced by request {job.request.key}")
            self._wanted = job
        elif self._wanted is not job:
            self._supersede(job, f"request {self._wanted.request.key} is newer")

    async def _check_inflight(self) -> None:
        inflight = self._inflight
        assert inflight is not None
        answers = await self.rpc.batch(
            [("eth_blockNumber", [])] + [("eth_getTransactionReceipt", [a.tx_hash]) for a in inflight.attempts]
        )
        head = int(answers[0], 16)
        for attempt, receipt in zip(inflight.attempts, answers[1:]):
            if receipt is not None:
                await self._mined(inflight, attempt, receipt, head)
                return
        if head - inflight.sent_at_block < self.resend_after_blocks and (
            time.monotonic() - inflight.sent_at < self.resend_after_s
        ):
            return
        inflight.sent_at = time.monotonic()
        mined = int(await self.rpc.request("eth_getTransactionCount", [self.sender, "latest"]), 16)
        if mined < inflight.nonce:
            # A gap below our nonce (a reorg took an earlier transaction of ours away): ours can
            # never be mined; send again from the first free nonce.
            log.warning("nonce %d is ahead of the chain's %d; resending from there", inflight.nonce, mined)
            self.stats.nonce_resyncs += 1
            self._inflight, self._nonce = None, mined
            for attempt in inflight.attempts:
                self._requeue(attempt.job)
            return
        latest = inflight.latest
        base, _ = await self._fees()
        if latest.max_fee < base:
            # Priced out by the base fee: replace with bumped fees, up to the cap.
            if _bumped(latest.max_fee, self.bump_percent) > self.max_fee_per_gas:
                inflight.sent_at_block = head
                self._fee_capped(base)
            await self._send(latest.job, replacing=inflight)
            return
        known = await self.rpc.request("eth_getTransactionByHash", [latest.tx_hash])
        if known is None:
            if all(a.job.done.done() for a in inflight.attempts):
                # Dropped, and nobody wants it any more: the nonce is free again.
                self._inflight = None
                return
            log.warning("transaction %s on nonce %d was dropped; re-broadcasting", latest.tx_hash, inflight.nonce)
            self.stats.rebroadcasts += 1
            if not await self._broadcast(latest, inflight):
                return
            inflight.looks = 0
        inflight.sent_at_block = head

    async def _mined(
        self, inflight: _InFlight, attempt: _Attempt, receipt: dict[str, Any], head: int | None
    ) -> None:
        block = int(receipt["blockNumber"], 16)
        if head is not None and head - block < self.confirmations:
            return
        if self.confirmations and not await self._canonical(block, receipt["blockHash"]):
            return  # reorged out under us; the next check finds it again or re-sends
        self._inflight = None
        self._blocked_key = None
        self._nonce = inflight.nonce + 1
        succeeded = int(receipt["status"], 16) == 1
        outcome = TxOutcome(
            Status.LANDED if succeeded else Status.REVERTED, tx_hash=attempt.tx_hash, block_number=block,
            block_hash=receipt["blockHash"], gas_used=int(receipt["gasUsed"], 16),
            detail="" if succeeded else "reverted in its block", broadcasts=attempt.job.broadcasts,
        )
        if succeeded:
            self.stats.landed += 1
        else:
            self.stats.reverted += 1
        attempt.job.resolve(outcome)
        # A replacement that did not land (an older attempt won the race) goes again if wanted.
        for other in inflight.attempts:
            if other.job is not attempt.job and not other.job.done.done():
                self._requeue(other.job)

    async def _canonical(self, block: int, block_hash: str) -> bool:
        canonical = await self.rpc.request("eth_getBlockByNumber", [hex(block), False])
        return canonical is not None and canonical.get("hash") == block_hash

    def resync_nonce(self) -> None:
        """Read the nonce from the chain before the next send (after a reorg took a landed
        transaction of ours away). A transaction in flight keeps its own."""
        if self._inflight is None:
            self._nonce = None

    async def is_canonical(self, outcome: TxOutcome) -> bool:
        """Whether a landed transaction is still in the canonical chain (a reorg may have
        taken its block away)."""
        if outcome.tx_hash is None or outcome.block_number is None:
            return False
        receipt = await self.rpc.request("eth_getTransactionReceipt", [outcome.tx_hash])
        if receipt is None:
            return False
        return await self._canonical(int(receipt["blockNumber"], 16), receipt["blockHash"])


def _bumped(value: int, percent: int) -> int:
    return value + max(1, value * percent // 100)
