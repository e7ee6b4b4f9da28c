"""Staged transmission of attested reports.

Every node derives the same transmitter order from (config digest, epoch, round); the
k-th waits k stages and then transmits only if the chain does not already hold this
round or a newer one. One honest transmitter is enough; the others cost a read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from relayer.chain.errors import ChainError, TransmitError
from relayer.chain.oracle import QuorumOracleClient
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


class Transmitter:
    def __init__(
        self,
        *,
        oracle: QuorumOracleClient,
        committee: Committee,
        index: int,
        transmitter_key: bytes | None,
        store: Store,
        attempts: int = 4,
    ) -> None:
        self.oracle = oracle
        self.committee = committee
        self.index = index
        self._key = transmitter_key
        self.store = store
        self.attempts = attempts
        self.stats = TransmissionStats()
        self._lock = asyncio.Lock()

    async def _already_onchain(self, report: AttestedReport) -> bool:
        return await self.oracle.latest_epoch_round() >= report.key

    async def handle(self, report: AttestedReport) -> None:
        """Wait our stage, then transmit unless the chain has this round already. Never raises."""
        extra = {"epoch": report.epoch, "round": report.round}
        digest = "0x" + report.config_digest.hex()
        try:
            order = self.committee.transmitter_order(report.epoch, report.round)
            stage = order.index(self.index)
            await asyncio.sleep(stage * self.committee.offchain.transmit_stage_ms / 1000)
            if self._key is None:
                log.info("dry run: would transmit at stage %d", stage, extra=extra)
                return
            for attempt in range(1, self.attempts + 1):
                try:
                    # One transaction at a time per node keeps its nonces in order.
                    async with self._lock:
                        if await self._already_onchain(report):
                            self.stats.superseded += 1
                            self.store.record_transmission(digest, report.epoch, report.round, "superseded")
                            return
                        started = time.monotonic()
                        receipt = await self.oracle.transmit(
                            self._key, report.config_digest, report.epoch, report.round,
                            report.updates, list(report.signatures),
                        )
                    self.stats.gas_used += receipt.gas_used
                    if not receipt.succeeded:
                        # Passed the static call, reverted in the block: someone landed first.
                        if await self._already_onchain(report):
                            self.stats.superseded += 1
                            self.store.record_transmission(
                                digest, report.epoch, report.round, "superseded", tx_hash=receipt.tx_hash.hex(),
                                block=receipt.block_number, gas_used=receipt.gas_used, detail="reverted in block",
                            )
                            return
                        raise TransmitError(f"transaction 0x{receipt.tx_hash.hex()} reverted in block", reason=None)
                    self.stats.transmitted += 1
                    self.store.record_transmission(
                        digest, report.epoch, report.round, "landed", tx_hash=receipt.tx_hash.hex(),
                        block=receipt.block_number, gas_used=receipt.gas_used,
                    )
                    log.info(
                        "transmitted at stage %d: gas %d, %.0f ms", stage, receipt.gas_used,
                        (time.monotonic() - started) * 1000, extra=extra,
                    )
                    return
                except TransmitError as exc:
                    if exc.reason in _SUPERSEDED:
                        self.stats.superseded += 1
                        self.store.record_transmission(digest, report.epoch, report.round, "superseded", detail=str(exc))
                        return
                    log.warning("transmit attempt %d failed: %s", attempt, exc, extra=extra)
                    last = str(exc)
                except ChainError as exc:
                    log.warning("transmit attempt %d: chain error: %s", attempt, exc, extra=extra)
                    last = str(exc)
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            self.stats.failed += 1
            self.store.record_transmission(digest, report.epoch, report.round, "failed", detail=last)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.failed += 1
            log.exception("transmission crashed", extra=extra)
