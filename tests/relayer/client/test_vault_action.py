"""The SDK's pull path into a MarginVault, on a real anvil and real node APIs: the newest report
any node serves is fetched, verified and sent with a vault action in one transaction; a report
the chain would refuse and an action the vault would refuse are raised typed, nothing sent."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from relayer.client import (
    ActionRefused,
    NodesUnavailable,
    ReplacedCommittee,
    ReportFetcher,
    ReportNotFound,
    ReportVerifier,
    TamperedReport,
    act_with_freshest_report,
)
from relayer.ports import free_port

from tests.relayer.chain.conftest import Deployment
from tests.relayer.chain.test_margin_vault import BTC_PERP, MAX_AGE, _desk, btc, usd8
from tests.relayer.client.test_pull_from_api import serving

pytestmark = pytest.mark.integration


async def test_the_freshest_report_of_any_node_comes_with_the_action(oracle: Deployment, tmp_path: Path) -> None:
    desk = await _desk(oracle)
    vault = desk.vault
    (alice, key), _, _, _ = desk.traders
    price_feed, vol_feed, depth_feed = (desk.feeds[f] for f in ("BTC-USD", "BTC-RVOL-1H", "BTC-DEPTH-50BPS"))
    await vault.deposit(key, BTC_PERP, desk.usd(20_000))
    desk.advance(MAX_AGE + 1)
    refused = await desk.refusal(vault.open(key, BTC_PERP, btc("0.5")))
    assert refused.reason == "FeedStale"

    async with AsyncExitStack() as stack:
        behind = await stack.enter_async_context(serving(oracle, tmp_path / "behind"))
        ahead = await stack.enter_async_context(serving(oracle, tmp_path / "ahead"))
        now = await oracle.now()
        first, second = desk.round + 1, desk.round + 2
        desk.round = second

        def updates(at: int, price: int) -> bytes:
            return oracle.updates(at, (price_feed, price), (vol_feed, 550_000), (depth_feed, 3_000_000))

        behind.attest(1, first, updates(now - 5, usd8(59_000)))
        ahead.attest(1, second, updates(now, usd8(60_000)))
        nodes = await stack.enter_async_context(ReportFetcher([behind.url, ahead.url], timeout=2))
        assert (await nodes.latest()).round == first  # the first node's, older
        verifier = ReportVerifier(oracle.client)
        done = await act_with_freshest_report(nodes, verifier, vault, key, vault.encode_action("open", BTC_PERP,
                                                                                                btc("0.5")))
        assert (done.report.report.round, done.report.report.source) == (second, ahead.url)
        assert done.receipt["status"] == 1 and done.gas_used > 0
        assert (await vault.position(alice, BTC_PERP)).size == btc("0.5")
        assert (await vault.account_view(alice, BTC_PERP)).price == usd8(60_000)

        # The vault's refusal of the action, named; then a tampered report on the freshest node.
        with pytest.raises(ActionRefused) as action_refused:
            await act_with_freshest_report(nodes, verifier, vault, key, vault.encode_action("open", BTC_PERP, 1))
        assert action_refused.value.reason == "PositionOpen"
        block = await vault.rpc.block_number()
        good = updates(now + 1, usd8(61_000))
        signatures = oracle.sign(1, second + 1, good, (0, 1, 2))
        tampered = updates(now + 1, usd8(71_000))
        assert ahead.store.record_attested("0x" + oracle.config.config_digest.hex(), 1, second + 1, tampered,
                                           list(signatures), None, None)
        with pytest.raises(TamperedReport) as tampered_refused:
            await act_with_freshest_report(nodes, verifier, vault, key, vault.encode_action("increase", BTC_PERP, 1))
        assert tampered_refused.value.reason == "SignerMismatch"
        assert await vault.rpc.block_number() == block  # nothing was sent
        assert (await vault.position(alice, BTC_PERP)).size == btc("0.5")


async def test_freshest_says_why_no_node_gave_a_report(oracle: Deployment, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with serving(oracle, tmp_path) as empty:
        async with ReportFetcher([down, empty.url], timeout=2) as nodes:
            with pytest.raises(ReportNotFound) as missing:  # one node answered: it keeps none yet
                await nodes.freshest()
            assert [f.url for f in missing.value.failures] == [down, empty.url]
            empty.attest(1, 1, oracle.updates(await oracle.now(), (0, 3_000 * 10**8)))
            assert (await nodes.freshest()).source == empty.url
    async with ReportFetcher([down], timeout=2) as dead:
        with pytest.raises(NodesUnavailable) as unavailable:
            await dead.freshest()
    assert not isinstance(unavailable.value, ReportNotFound) and down in str(unavailable.value)


async def test_a_node_serving_a_replaced_committees_newer_round_is_passed_over(
    oracle: Deployment, tmp_path: Path,
) -> None:
    desk = await _desk(oracle)
    vault = desk.vault
    (alice, key), _, _, _ = desk.traders
    price_feed, vol_feed, depth_feed = (desk.feeds[f] for f in ("BTC-USD", "BTC-RVOL-1H", "BTC-DEPTH-50BPS"))
    await vault.deposit(key, BTC_PERP, desk.usd(20_000))
    async with AsyncExitStack() as stack:
        replaced = await stack.enter_async_context(serving(oracle, tmp_path / "replaced"))
        current = await stack.enter_async_context(serving(oracle, tmp_path / "current"))
        now = await oracle.now()
        good_round = desk.round + 1
        desk.round = good_round
        updates = oracle.updates(now, (price_feed, usd8(60_000)), (vol_feed, 550_000), (depth_feed, 3_000_000))
        current.attest(1, good_round, updates)
        # A higher round, signed by the same keys under another committee's digest.
        old_digest = bytes.fromhex("0001") + b"\x11" * 30
        assert replaced.store.record_attested(
            "0x" + old_digest.hex(), 1, good_round + 5, updates,
            list(oracle.sign(1, good_round + 5, updates, (0, 1, 2), config_digest=old_digest)), None, None)
        nodes = await stack.enter_async_context(ReportFetcher([replaced.url, current.url], timeout=2))
        assert (await nodes.freshest()).source == replaced.url  # it ranks first by round
        verifier = ReportVerifier(oracle.client)
        done = await act_with_freshest_report(nodes, verifier, vault, key,
                                              vault.encode_action("open", BTC_PERP, btc("0.5")))
        assert (done.report.report.round, done.report.report.source) == (good_round, current.url)
        assert (await vault.position(alice, BTC_PERP)).size == btc("0.5")
        # Only replaced reports: refused by name, nothing sent.
        only_old = await stack.enter_async_context(ReportFetcher([replaced.url], timeout=2))
        block = await vault.rpc.block_number()
        with pytest.raises(ReplacedCommittee):
            await act_with_freshest_report(only_old, verifier, vault, key, vault.encode_action("increase", BTC_PERP, 1))
        assert await vault.rpc.block_number() == block
