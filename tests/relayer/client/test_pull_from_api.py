"""From a node's store to a subscriber's transaction, on a real anvil and a real API server:
the node serves attested reports (latest, by round, streamed), the SDK fetches them with
failover, verifies them against the oracle, submits one and reads it back; `relayer verify`
prints the values or the refusal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from feeds.kinds import FactorKind
from relayer.api import ApiServer
from relayer.cli import main
from relayer.client import (
    NodesUnavailable,
    ReportFetcher,
    ReportNotFound,
    ReportVerifier,
    TamperedReport,
)
from relayer.metrics import ChainContext, NodeIdentity, Telemetry
from relayer.node import ServedFeed
from relayer.ports import free_port
from relayer.protocol.engine import AttestedReport
from relayer.settings import FeedSpec
from relayer.store import Store

from tests.relayer.chain.conftest import BTC_USD, ETH_USD, Deployment

pytestmark = pytest.mark.integration

ETH = 3_000 * 10**8
BTC = 60_000 * 10**8


def spec(feed_id: str, instrument: str) -> FeedSpec:
    return FeedSpec(feed_id=feed_id, instrument=instrument, kind=FactorKind("spot"),
                    sources=("binance", "coinbase", "kraken"), min_sources=2, decimals=8)


@dataclass
class Node:
    """A node's store, telemetry and API, without the rest of the node."""

    oracle: Deployment
    store: Store
    telemetry: Telemetry
    api: ApiServer

    @property
    def url(self) -> str:
        assert self.api.url is not None
        return self.api.url

    def attest(self, epoch: int, round: int, updates: bytes, signers: tuple[int, ...] = (0, 1, 2)) -> AttestedReport:
        """Sign with the committee's keys and keep the report, as attestation does."""
        signatures = tuple(self.oracle.sign(epoch, round, updates, signers))
        digest = self.oracle.config.config_digest
        assert self.store.record_attested("0x" + digest.hex(), epoch, round, updates, list(signatures), None, None)
        return AttestedReport(digest, epoch, round, updates, signatures)  # type: ignore[arg-type]


@asynccontextmanager
async def serving(oracle: Deployment, tmp_path: Path) -> AsyncIterator[Node]:
    """A node's store, telemetry and API for ``oracle``, serving ETH/USD and BTC/USD."""
    store = Store(tmp_path / "node.sqlite")
    identity = NodeIdentity(name="n0", address="0x" + "aa" * 20, dry_run=True, oracle=oracle.client.address,
                            store_retention_hours=72.0)
    telemetry = Telemetry(identity, store)
    telemetry.chain = ChainContext(oracle=oracle.client, chain_id=oracle.anvil.chain_id,
                                   feeds=[ServedFeed(spec(ETH_USD, "ETH-USD"), 0), ServedFeed(spec(BTC_USD, "BTC-USD"), 1)])
    api = ApiServer(telemetry, "127.0.0.1", 0)
    await api.start()
    try:
        yield Node(oracle, store, telemetry, api)
    finally:
        await api.stop()
        store.close()


@pytest.fixture
async def node(oracle: Deployment, tmp_path: Path) -> AsyncIterator[Node]:
    async with serving(oracle, tmp_path) as served:
        yield served


async def test_fetch_fails_over_verify_submit_and_read_back(node: Node) -> None:
    oracle = node.oracle
    now = await oracle.now()
    node.attest(1, 1, oracle.updates(now - 9, (0, ETH - 7), (1, BTC - 7)))
    node.attest(1, 2, oracle.updates(now - 2, (0, ETH), (1, BTC)))
    down = f"http://127.0.0.1:{free_port()}"
    async with ReportFetcher([down, node.url], timeout=2) as nodes:
        report = await nodes.latest()
        assert report.source == node.url and (report.epoch, report.round) == (1, 2)
        verifier = ReportVerifier(oracle.client)
        verified = await verifier.verify(report)
        assert {k: str(v.value) for k, v in verified.by_feed().items()} == {ETH_USD: "3000.00000000", BTC_USD: "60000.00000000"}
        _, receipt = await verifier.submit(report, oracle.anvil.accounts[28][1])
        assert receipt.succeeded and [(u.feed_index, u.value) for u in receipt.updated] == [(0, ETH), (1, BTC)]
        state = await oracle.client.latest_feed(1)
        assert (state.value, state.observed_at, state.round_id) == (BTC, now - 2, 1)
        assert await oracle.client.latest_epoch_round() == (1, 2)

        # By round: the older report is still kept; submitting it stores nothing (older per feed).
        older = await nodes.at(1, 1)
        assert older.updates == oracle.updates(now - 9, (0, ETH - 7), (1, BTC - 7))
        _, late = await verifier.submit(older, oracle.anvil.accounts[28][1])
        assert late.succeeded and late.updated == ()
        assert (await oracle.client.latest_feed(0)).value == ETH

        with pytest.raises(ReportNotFound) as missing:
            await nodes.at(9, 9)
        assert [f.url for f in missing.value.failures] == [down, node.url]
        assert "epoch 9 round 9" in str(missing.value) and "72 h" in str(missing.value)

    async with ReportFetcher([down, f"http://127.0.0.1:{free_port()}"], timeout=2) as dead:
        with pytest.raises(NodesUnavailable) as unavailable:
            await dead.latest()
    assert not isinstance(unavailable.value, ReportNotFound)
    assert [f.url for f in unavailable.value.failures] == list(dead.urls)
    assert all(u in str(unavailable.value) for u in dead.urls)


async def test_the_api_answers_by_round_with_a_clear_404_and_checks_the_digest(node: Node) -> None:
    oracle = node.oracle
    node.attest(2, 4, oracle.updates(await oracle.now(), (0, ETH)))
    digest = "0x" + oracle.config.config_digest.hex()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.url}/api/reports/2/4?config_digest={digest}") as r:
            assert r.status == 200 and (await r.json())["signer_bitmask"] == 0b111
        async with http.get(f"{node.url}/api/reports/2/4?config_digest=0x{'00' * 32}") as r:
            assert r.status == 404
        async with http.get(f"{node.url}/api/reports/2/5") as r:
            body = await r.json()
            assert r.status == 404 and body["latest_kept"]["round"] == 4 and body["retention_hours"] == 72.0
        async with http.get(f"{node.url}/api/reports/2/4?config_digest=nothex") as r:
            assert r.status == 400 and "config_digest" in (await r.json())["error"]


async def test_the_stream_delivers_each_attested_report_and_the_sdk_verifies_it(node: Node) -> None:
    oracle = node.oracle
    now = await oracle.now()
    received = []

    async def listen() -> None:
        async with ReportFetcher([node.url]) as nodes:
            async for report in nodes.stream():
                received.append(report)
                if len(received) == 2:
                    return

    task = asyncio.create_task(listen())
    async with asyncio.timeout(10):
        while node.telemetry.reports.clients == 0:
            await asyncio.sleep(0.01)
        for round_ in (1, 2):
            node.telemetry.on_attested(node.attest(1, round_, oracle.updates(now, (0, ETH + round_))),
                                       oracle.config.signers)
        await task
    assert [(r.epoch, r.round) for r in received] == [(1, 1), (1, 2)]
    verified = await ReportVerifier(oracle.client).verify(received[1])
    assert verified.values[0].raw_value == ETH + 2
    async with asyncio.timeout(5):
        while node.telemetry.reports.clients:  # the client left: its buffer is gone
            await asyncio.sleep(0.01)


async def test_relayer_verify_prints_the_values_or_the_refusal(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    oracle = node.oracle
    now = await oracle.now()
    node.attest(1, 1, oracle.updates(now, (0, ETH)))
    # A node that changed a value after signing: the signatures no longer hold.
    signed = oracle.updates(now, (0, ETH), (1, BTC))
    signatures = oracle.sign(1, 2, signed, (0, 1, 2))
    node.store.record_attested("0x" + oracle.config.config_digest.hex(), 1, 2,
                               oracle.updates(now, (0, ETH), (1, BTC * 2)), signatures, None, None)
    target = ["--node", f"http://127.0.0.1:{free_port()}", "--node", node.url, "--rpc-url", oracle.anvil.rpc_url,
              "--oracle", oracle.client.address]

    assert await asyncio.to_thread(main, ["verify", *target, "--epoch", "1", "--round", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("VERIFIED epoch 1 round 1 from " + node.url) and ETH_USD in out and "3000.00000000" in out

    assert await asyncio.to_thread(main, ["verify", *target]) == 2  # the latest is the tampered one
    out = capsys.readouterr().out
    assert out.startswith("REFUSED SignerMismatch (TamperedReport): epoch 1 round 2")

    assert await asyncio.to_thread(main, ["verify", *target, "--json", "--epoch", "1", "--round", "2"]) == 2
    refusal = json.loads(capsys.readouterr().out)
    assert refusal["verified"] is False and refusal["reason"] == "SignerMismatch"
    with pytest.raises(TamperedReport):
        async with ReportFetcher([node.url]) as nodes:
            await ReportVerifier(oracle.client).verify(await nodes.latest())

    assert await asyncio.to_thread(main, ["verify", "--node", node.url]) == 2  # no chain named
    assert "--rpc-url" in capsys.readouterr().err


async def test_a_stream_reader_that_falls_behind_gets_the_newest_reports_and_the_count_it_missed(node: Node) -> None:
    oracle = node.oracle
    now = await oracle.now()
    node.telemetry.reports.depth = 2
    received = []
    fetcher = ReportFetcher([node.url])

    async def listen() -> None:
        async for report in fetcher.stream():
            received.append(report.round)
            if report.round == 5:
                return

    task = asyncio.create_task(listen())
    try:
        async with asyncio.timeout(10):
            while node.telemetry.reports.clients == 0:
                await asyncio.sleep(0.01)
            # Five reports before the node's handler runs once: its buffer holds two.
            for round_ in range(1, 6):
                node.telemetry.on_attested(node.attest(1, round_, oracle.updates(now, (0, ETH + round_))),
                                           oracle.config.signers)
            await task
    finally:
        await fetcher.close()
    assert received == [4, 5] and fetcher.missed == 3
