"""The subscriber SDK against a live devnet (one for the module: anvil, simulated venues and
4 relayer processes): live reports from the nodes' APIs verify, with the contract's verdict;
tampered, below-threshold and replaced-committee reports are refused by name; a dead first
URL fails over; a fetched report goes through `submit`; `relayer verify` reads the devnet."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from relayer.chain.anvil import dev_accounts
from relayer.chain.contract import disconnect
from relayer.chain.errors import ReportRefused
from relayer.chain.oracle import QuorumOracleClient, connect
from relayer.cli import main
from relayer.client import (
    BelowThreshold,
    ReplacedCommittee,
    ReportFetcher,
    ReportNotFound,
    ReportVerifier,
    SignedReport,
    TamperedReport,
    VerifiedReport,
)
from relayer.ports import free_port
from tests.devnet_proc import DevnetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUBMITTER_ACCOUNT = 27  # an anvil dev account that is neither owner, transmitter nor subscriber


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    dn = DevnetProcess(tmp_path_factory.mktemp("sdk-devnet"))
    try:
        dn.wait_first_report()
        yield dn
    finally:
        dn.stop()


@pytest.fixture
async def verifier(devnet: DevnetProcess) -> AsyncIterator[ReportVerifier]:
    info = devnet.info
    async with ReportVerifier.connect(info["rpc_url"], info["oracle"]) as v:
        yield v


def apis(devnet: DevnetProcess) -> list[str]:
    return [str(n["api"]) for n in devnet.info["nodes"]]


async def latest(nodes: ReportFetcher) -> SignedReport:
    """The latest report; a node that joined the gossip mesh late may not hold one yet."""
    async with asyncio.timeout(30):
        while True:
            try:
                return await nodes.latest()
            except ReportNotFound:
                await asyncio.sleep(0.5)


async def contract_verdict(verifier: ReportVerifier, report: SignedReport, block: int) -> str | list[int]:
    """verifyReport's answer at ``block``: the raw values, or the error's name."""
    try:
        feeds = await verifier.oracle.verify_report(report.config_digest, report.epoch, report.round, report.updates,
                                                    report.signatures, block=hex(block))
    except ReportRefused as exc:
        return str(exc.reason)
    return [f.value for f in feeds]


async def test_a_live_report_verifies_as_the_contract_says(devnet: DevnetProcess, verifier: ReportVerifier) -> None:
    info = devnet.info
    async with ReportFetcher(apis(devnet)) as nodes:
        report = await latest(nodes)
    assert report.source == apis(devnet)[0]
    verified = await verifier.verify(report)
    by_feed = verified.by_feed()
    assert {"BTC-USD", "ETH-USD"} <= set(by_feed)
    assert set(by_feed) == {f["feed_id"] for f in info["feeds"]}
    assert by_feed["BTC-USD"].value > 1_000 and by_feed["BTC-USD"].decimals == 8
    assert len(verified.signers) >= info["threshold"]
    assert set(verified.signers) <= {n["address"] for n in info["nodes"]}
    assert await contract_verdict(verifier, report, verified.block_number) == [v.raw_value for v in verified.values]


async def test_tampered_and_below_threshold_reports_are_refused_by_name(
        devnet: DevnetProcess, verifier: ReportVerifier) -> None:
    async with ReportFetcher(apis(devnet)[1:]) as nodes:
        report = await latest(nodes)
    word = bytearray(report.updates[:32])
    word[-1] ^= 1  # the first feed's value, off by a unit or so
    tampered = dataclasses.replace(report, updates=bytes(word) + report.updates[32:])
    below = dataclasses.replace(report, signatures=report.signatures[: devnet.info["threshold"] - 1])
    for forged, kind, reason in ((tampered, TamperedReport, "SignerMismatch"),
                                 (below, BelowThreshold, "InsufficientSignatures")):
        block = await verifier.oracle.rpc.block_number()
        with pytest.raises(kind) as refused:
            await verifier.verify(forged, block=block)
        assert refused.value.reason == reason
        assert await contract_verdict(verifier, forged, block) == reason


async def test_a_dead_first_url_fails_over_to_the_next(devnet: DevnetProcess, verifier: ReportVerifier) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    second = apis(devnet)[2]
    async with ReportFetcher([down, second], timeout=2) as nodes:
        report = await latest(nodes)
        by_round = await nodes.at(report.epoch, report.round)
    assert report.source == second and by_round.source == second
    assert by_round.updates == report.updates and by_round.config_digest == report.config_digest
    assert isinstance(await verifier.verify(report), VerifiedReport)


async def test_a_streamed_report_goes_through_submit_and_reads_back(
        devnet: DevnetProcess, verifier: ReportVerifier) -> None:
    info = devnet.info
    async with ReportFetcher(apis(devnet)[3:]) as nodes, asyncio.timeout(30):
        report = await anext(aiter(nodes.stream()))
    sender_key = dev_accounts(SUBMITTER_ACCOUNT + 1)[SUBMITTER_ACCOUNT][1]
    verified, receipt = await verifier.submit(report, sender_key)
    assert receipt.succeeded
    # The committee's transmitters race the submitter for the same report: either this submit
    # stored the feeds (then exactly the report's values), or they were there already; either
    # way the chain now holds this report's observation or a newer one, never an older one.
    signed = {v.feed_index: v for v in verified.values}
    for update in receipt.updated:
        assert (update.value, update.updated_at) == (signed[update.feed_index].raw_value,
                                                    min(signed[update.feed_index].observed_at,
                                                        _block_time(devnet, receipt.block_number)))
    for value in verified.values:
        # Stored is min(observation, its block's time); blocks follow the wall clock, which the
        # nodes stamp their observations with (to the second), so one second is the slack.
        stored = await verifier.oracle.latest_feed(value.feed_index)
        assert stored.observed_at >= value.observed_at - 1, (stored, value)
    events = await verifier.oracle.contract.events.ReportSubmitted().get_logs(from_block=receipt.block_number,
                                                                             to_block=receipt.block_number)
    assert [(e["args"]["epoch"], e["args"]["round"], e["args"]["feedsStored"]) for e in events] == \
        [(report.epoch, report.round, len(receipt.updated))]
    assert info["oracle"] == verifier.oracle.address


def _block_time(devnet: DevnetProcess, number: int) -> int:
    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber",
                          "params": [hex(number), False]}).encode()
    request = urllib.request.Request(devnet.info["rpc_url"], payload, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(json.loads(response.read())["result"]["timestamp"], 16)


def test_relayer_verify_reads_the_devnet(devnet: DevnetProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--devnet", str(devnet.data_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True and out["oracle"] == devnet.info["oracle"]
    assert {"BTC-USD", "ETH-USD"} <= {v["feed_id"] for v in out["values"]}


async def test_a_report_of_a_replaced_committee_is_refused_and_the_new_ones_verify(
        devnet: DevnetProcess, verifier: ReportVerifier) -> None:
    """Last in the module: it rotates the devnet's committee (same members, a new config)."""
    info = devnet.info
    async with ReportFetcher(apis(devnet)) as nodes:
        old = await latest(nodes)
    w3 = connect(info["rpc_url"])
    try:
        owner = QuorumOracleClient(w3, info["oracle"])
        config = await owner.config()
        owner_key = bytes.fromhex(Path(info["owner_key_file"]).read_text().strip().removeprefix("0x"))
        new = await owner.set_config(owner_key, config.signers, config.transmitters, config.f, config.threshold,
                                     config.offchain_config)
    finally:
        await disconnect(w3)
    assert new.config_digest != old.config_digest
    block = await verifier.oracle.rpc.block_number()
    with pytest.raises(ReplacedCommittee) as refused:
        await verifier.verify(old, block=block)
    assert refused.value.reason == "ConfigDigestMismatch" == await contract_verdict(verifier, old, block)
    assert refused.value.error_args == (new.config_digest, old.config_digest)
    # The nodes follow the new committee on their own; its reports verify.
    async with ReportFetcher(apis(devnet)) as nodes, asyncio.timeout(60):
        while True:
            fresh = await latest(nodes)
            if fresh.config_digest == new.config_digest:
                break
            await asyncio.sleep(0.5)
    assert isinstance(await verifier.verify(fresh), VerifiedReport)
