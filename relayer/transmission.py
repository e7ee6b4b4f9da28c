"""Staged transmission of attested reports, through the node's transaction manager.

Every node derives the same transmitter order from (config digest, epoch, round); the
k-th waits k stages and then hands the report to its transaction manager
(`relayer.chain.txmanager`), which sends only the newest report it holds: an older one
still waiting is dropped, one in flight is replaced on its nonce. Before every broadcast
the manager asks whether the chain already holds this round or a newer one; one honest
transmitter is enough, and the others cost a read.

A landed report is looked at again `reorg_check_s` later, unless a newer report came
meanwhile (the newer one makes it moot): if its block left the canonical chain (a reorg)
and the chain holds nothing as new, it is sent again. The check runs beside the round's
path, never on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from relayer.chain.contract import revert_error
from relayer.chain.errors import ChainError, TransmitError
from relayer.chain.oracle import QuorumOracleClient
from relayer.chain.txmanager import Status, TxManager, TxOutcome, TxRequest
from relayer.protocol.committee import Committee
from relayer.protocol.engine import AttestedReport
from relayer.store import Store

log = logging.getLogger(__name__)

# Reverts that mean someone else already did the job, or a newer report did.
_SUPERSEDED = {"StaleRound"}


@dataclass
class TransmissionStats:
    transmitted: int = 0
    superseded: int = 0
    failed: int = 0
    gas_used: int = 0
    reorged: int = 0
    empty: int = 0


class Transmitter:
    def __init__(
        self,
        *,
        oracle: QuorumOracleClient,
        committee: Committee,
        index: int,
        txmanager: TxManager | None,
        store: Store,
        generation: int = 0,
        reorg_check_s: float = 2.0,
    ) -> None:
        # The transaction manager orders requests by key; a later committee's reports (whose
        # rounds start again at 0) must still count as newer than an earlier committee's.
        self.oracle = oracle
        self.committee = committee
        self.index = index
        self.txmanager = txmanager
        self.store = store
        self.generation = generation
        self.reorg_check_s = reorg_check_s
        self.stats = TransmissionStats()
        self._watch: asyncio.Task[None] | None = None

    async def _onchain_key(self) -> tuple[int, int]:
        epoch, round = await self.oracle.latest_epoch_round()
        return (int(epoch), int(round))

    async def handle(self, report: AttestedReport) -> None:
        """Wait our stage, then transmit unless the chain has this round already. Never raises."""
        extra = {"epoch": report.epoch, "round": report.round}
        if not report.updates:
            self.stats.empty += 1  # nothing triggered this round: attested for progress, never sent
            return
        if self._watch is not None:
            self._watch.cancel()  # a newer report: whether the last landing survives no longer matters
            self._watch = None
        try:
            order = self.committee.transmitter_order(report.epoch, report.round)
            stage = order.index(self.index)
            await asyncio.sleep(stage * self.committee.offchain.transmit_stage_ms / 1000)
            if self.txmanager is None:
                log.info("dry run: would transmit at stage %d", stage, extra=extra)
                return
            await self._send(report, stage)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.failed += 1
            log.exception("transmission crashed", extra=extra)

    async def _send(self, report: AttestedReport, stage: int, *, again: bool = False) -> None:
        assert self.txmanager is not None
        extra = {"epoch": report.epoch, "round": report.round}
        digest = "0x" + report.config_digest.hex()

        async def still_wanted() -> bool:
            return await self._onchain_key() < report.key

        started = time.monotonic()
        data = self.oracle.transmit_calldata(
            report.config_digest, report.epoch, report.round, report.updates, report.contract_signatures()
        )
        request = TxRequest((self.generation, *report.key), self.oracle.address, data, still_wanted)
        outcome = await self.txmanager.submit(request, again=again)
        self.stats.gas_used += outcome.gas_used
        tx_hash, block, gas = (outcome.tx_hash or "").removeprefix("0x"), outcome.block_number or 0, outcome.gas_used
        if outcome.status is Status.LANDED:
            self.stats.transmitted += 1
            self._watch = asyncio.get_running_loop().create_task(self._recheck_landed(report, outcome))
            self.store.record_transmission(digest, report.epoch, report.round, "landed", tx_hash=tx_hash,
                                           block=block, gas_used=gas)
            log.info("transmitted at stage %d: gas %d, %.0f ms", stage, outcome.gas_used,
                     (time.monotonic() - started) * 1000, extra=extra)
            return
        reason = self._revert_reason(outcome)
        if outcome.status is Status.SUPERSEDED or reason in _SUPERSEDED or (
            outcome.status is Status.REVERTED and await self._onchain_key() >= report.key
        ):
            self.stats.superseded += 1
            self.store.record_transmission(digest, report.epoch, report.round, "superseded", tx_hash=tx_hash,
                                           block=block, gas_used=gas,
                                           detail=f"reverted with {reason}" if reason else outcome.detail or "")
            return
        self.stats.failed += 1
        detail = f"reverted with {reason}" if reason else outcome.detail
        self.store.record_transmission(digest, report.epoch, report.round, "failed", tx_hash=tx_hash, block=block,
                                       gas_used=gas, detail=detail)
        log.warning("transmission failed: %s", detail, extra=extra)

    @staticmethod
    def _revert_reason(outcome: TxOutcome) -> str | None:
        if outcome.status is not Status.REVERTED or not outcome.revert_data:
            return None
        return revert_error(outcome.revert_data, outcome.detail, "transmit", TransmitError).reason

    async def _recheck_landed(self, report: AttestedReport, outcome: TxOutcome) -> None:
        """If this landing was reorged out and nothing newer holds its place on-chain, send
        it again. Never raises."""
        txmanager = self.txmanager
        assert txmanager is not None
        extra = {"epoch": report.epoch, "round": report.round}
        try:
            await asyncio.sleep(self.reorg_check_s)
            if await txmanager.is_canonical(outcome) or await self._onchain_key() >= report.key:
                return  # still there, or another transmitter's copy (or a newer report) holds it
            self.stats.reorged += 1
            txmanager.resync_nonce()
            log.warning("report left the canonical chain with block %s; sending it again", outcome.block_hash,
                        extra=extra)
            await self._send(report, stage=0, again=True)
        except asyncio.CancelledError:
            raise
        except ChainError as exc:
            log.warning("cannot check the last landing: %s", exc, extra=extra)
        except Exception:
            log.exception("checking the last landing crashed", extra=extra)
