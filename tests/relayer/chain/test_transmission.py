"""Transmission through the transaction manager on a real anvil: a report lands once, an
older report never lands after a newer one, and a landing taken away by a reorg is sent
again when the chain no longer holds it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relayer.chain.txmanager import TxManager
from relayer.protocol.attestation import AttestedReport
from relayer.protocol.committee import Committee, OffchainConfig
from relayer.protocol.messages import Epoch, RoundId
from relayer.store import Store
from relayer.transmission import Transmitter

from .conftest import Deployment

pytestmark = pytest.mark.integration

GWEI = 10**9


def _transmitter(oracle: Deployment, tmp_path: Path) -> Transmitter:
    committee = Committee(
        config_digest=oracle.config.config_digest, signers=tuple(oracle.config.signers),
        transmitters=tuple(oracle.config.transmitters), f=1, threshold=3,
        offchain=OffchainConfig(transmit_stage_ms=0),
    )
    txmanager = TxManager(oracle.client.rpc, oracle.transmitter_keys[0], oracle.anvil.chain_id,
                          max_fee_per_gas=100 * GWEI)
    return Transmitter(oracle=oracle.client, committee=committee, index=0, txmanager=txmanager,
                       store=Store(tmp_path / "node.sqlite"), reorg_check_s=0.2)


async def _report(oracle: Deployment, round: int, value: int) -> AttestedReport:
    updates = oracle.updates(await oracle.now(), (0, value))
    signatures = oracle.sign(0, round, updates, (0, 1, 2))
    return AttestedReport(oracle.config.config_digest, Epoch(0), RoundId(round), updates, tuple(signatures))


async def test_a_report_lands_once_and_an_older_one_is_never_sent_after_it(oracle: Deployment, tmp_path: Path) -> None:
    transmitter = _transmitter(oracle, tmp_path)
    try:
        older, newer = await _report(oracle, 1, 3_000 * 10**8), await _report(oracle, 2, 3_001 * 10**8)
        await transmitter.handle(newer)
        await transmitter.handle(older)
        await transmitter.handle(newer)
        assert await oracle.client.latest_epoch_round() == (0, 2)
        assert transmitter.stats.transmitted == 1 and transmitter.stats.superseded == 2
        assert transmitter.txmanager is not None and transmitter.txmanager.stats.broadcasts == 1
    finally:
        assert transmitter.txmanager is not None
        await transmitter.txmanager.stop()


async def test_a_landing_taken_away_by_a_reorg_is_sent_again(oracle: Deployment, tmp_path: Path) -> None:
    transmitter = _transmitter(oracle, tmp_path)
    try:
        await transmitter.handle(await _report(oracle, 1, 3_000 * 10**8))
        assert await oracle.client.latest_epoch_round() == (0, 1)
        oracle.anvil.rpc("anvil_reorg", [1, []])  # the block holding it is replaced by an empty one
        assert await oracle.client.latest_epoch_round() == (0, 0)
        assert transmitter._watch is not None
        await asyncio.wait_for(transmitter._watch, 10)  # the landing is looked at again
        assert transmitter.stats.reorged == 1
        assert await oracle.client.latest_epoch_round() == (0, 1)
        await transmitter.handle(await _report(oracle, 2, 3_001 * 10**8))
        assert transmitter.stats.transmitted == 3  # round 1, round 1 again, round 2
        assert await oracle.client.latest_epoch_round() == (0, 2)
    finally:
        assert transmitter.txmanager is not None
        await transmitter.txmanager.stop()


async def test_a_report_that_carries_no_feed_is_never_sent(oracle: Deployment, tmp_path: Path) -> None:
    transmitter = _transmitter(oracle, tmp_path)
    try:
        empty = AttestedReport(oracle.config.config_digest, Epoch(0), RoundId(1), b"", ())
        await transmitter.handle(empty)
        assert transmitter.stats.empty == 1 and transmitter.stats.transmitted == 0
        assert transmitter.txmanager is not None and transmitter.txmanager.stats.broadcasts == 0
        assert await oracle.client.latest_epoch_round() == (0, 0)
    finally:
        assert transmitter.txmanager is not None
        await transmitter.txmanager.stop()

