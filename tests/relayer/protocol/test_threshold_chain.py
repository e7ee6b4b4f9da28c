"""A 0x0002 round on the in-process bus lands through `QuorumOracle.transmit` on anvil, under a
threshold config installed with the members' approvals of their own group key."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import AsyncWeb3

from relayer.chain.anvil import AnvilNode
from relayer.chain.codec import decode_updates
from relayer.protocol.committee import Committee
from tests.relayer.chain.conftest import anvil, deploy, w3  # noqa: F401  (fixtures)
from tests.relayer.chain.test_threshold_oracle import install
from tests.relayer.protocol.network import network
from tests.relayer.protocol.threshold_net import OFFCHAIN, group_of, verifies

pytestmark = pytest.mark.integration


async def test_an_attested_report_of_a_frost_round_lands_on_chain(
    anvil: AnvilNode, w3: AsyncWeb3, tmp_path: Path,  # noqa: F811
) -> None:
    d = await deploy(anvil, w3, n=4, f=1, threshold=3)
    outcome, shares = group_of(4, 3)
    config = await install(d, outcome, [0, 2, 3])
    assert config.config_digest[:2] == b"\x00\x02"
    committee = Committee(config_digest=config.config_digest, signers=tuple(config.signers),
                          transmitters=tuple(config.transmitters), f=1, threshold=3, offchain=OFFCHAIN)
    net = network(tmp_path, d.signer_keys, committee, [3_000_00000000, 3_001_00000000, 3_002_00000000, 10],
                  threshold_keys=shares, domain=d.domain, observed_at=await d.now())
    net.start()
    await net.clock.advance(0.15)
    await net.stop()
    reports = net.attested[committee.leader(0)]
    assert reports
    report = reports[-1]
    assert report.schnorr is not None
    digest = d.domain.report_digest(committee.config_digest, report.epoch, report.round, report.updates)
    assert verifies(outcome, report.schnorr, digest)
    receipt = await d.client.transmit(d.transmitter_keys[0], committee.config_digest, report.epoch, report.round,
                                      report.updates, report.contract_signatures())
    assert receipt.succeeded
    assert (await d.client.latest_feed(0)).value == decode_updates(report.updates)[0].value == 3_001_00000000
    assert await d.client.latest_epoch_round() == (report.epoch, report.round)
