"""The margin vault on a running devnet (`relayer devnet`), as a trader would use it: deposit the
test collateral, open a BTC position within RiskGate's initial margin (refused above it), close
it; and once the attested price is older than the market's maxAge, new risk and withdrawals are
refused by name while closing passes.

One devnet for the module. The stale test moves the chain's clock past maxAge for good (the
relayers' later reports carry wall-clock observation times), so it runs last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from relayer.chain.anvil import dev_accounts
from relayer.chain.contract import disconnect
from relayer.chain.errors import ContractRevert, VaultRevert
from relayer.chain.oracle import QuorumOracleClient
from relayer.chain.risk_gate import RiskGateClient
from relayer.chain.vault import SIZE_DECIMALS, CollateralClient, MarginVaultClient
from tests.devnet_proc import DevnetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    dn = DevnetProcess(tmp_path_factory.mktemp("margin-devnet"))
    try:
        dn.wait_first_report()
        yield dn
    finally:
        dn.stop()


@dataclass
class Desk:
    """The devnet's BTC-PERP market as a trader reaches it, from devnet.json alone."""

    info: dict[str, Any]
    gate: RiskGateClient
    vault: MarginVaultClient
    token: CollateralClient
    oracle: QuorumOracleClient
    market_id: bytes
    price_feed: int
    max_age: int

    def usd(self, amount: int) -> int:
        return amount * 10 ** self.info["collateral_decimals"]

    def size_for(self, notional: int, price: int) -> int:
        """Base units (18 decimals) worth ``notional`` collateral units at ``price`` (8 decimals)."""
        return notional * 10 ** (SIZE_DECIMALS + 8 - self.info["collateral_decimals"]) // price

    async def fund(self, key: bytes, address: str, amount: int) -> None:
        """Mint (TestCollateral lets anyone), approve and deposit ``amount`` into BTC-PERP."""
        await self.token.mint(key, address, amount)
        await self.token.approve(key, self.vault.address, amount)
        await self.vault.deposit(key, self.market_id, amount)


@asynccontextmanager
async def _desk(info: dict[str, Any]) -> AsyncIterator[Desk]:
    w3 = AsyncWeb3(AsyncHTTPProvider(info["rpc_url"]))
    try:
        market = next(m for m in info["markets"] if m["name"] == "BTC-PERP")
        price_feed = next(fd["index"] for fd in info["feeds"] if fd["feed_id"] == market["price_feed"])
        yield Desk(info, RiskGateClient(w3, info["risk_gate"]), MarginVaultClient(w3, info["vault"]),
                   CollateralClient(w3, info["collateral"]), QuorumOracleClient(w3, info["oracle"]),
                   bytes.fromhex(market["market_id"][2:]), price_feed, market["max_age"])
    finally:
        await disconnect(w3)


async def _refusal(action: Awaitable[object]) -> VaultRevert:
    with pytest.raises(VaultRevert) as caught:
        await action
    return caught.value


async def test_deposit_open_within_initial_margin_and_close(devnet: DevnetProcess) -> None:
    info = devnet.info
    trader, key = info["trader"], bytes.fromhex(Path(info["trader_key_file"]).read_text())
    async with _desk(info) as d:
        assert info["collateral_decimals"] == await d.token.decimals()
        deposit = d.usd(10_000)
        assert await d.token.balance_of(trader) >= deposit  # the devnet funded its example trader
        await d.token.approve(key, d.vault.address, deposit)
        await d.vault.deposit(key, d.market_id, deposit)
        assert await d.vault.collateral_of(trader, d.market_id) == deposit

        price = (await d.oracle.feed_status(d.price_feed)).value
        initial = (await d.gate.margins(d.market_id)).initial_bps
        largest = deposit * 10_000 // initial  # the notional this deposit carries at the initial margin
        refused = await _refusal(d.vault.open(key, d.market_id, d.size_for(2 * largest, price)))
        assert refused.reason == "InsufficientMargin"
        equity, required = refused.error_args
        assert isinstance(equity, int) and isinstance(required, int) and equity < required

        size = d.size_for(largest // 2, price)
        await d.vault.open(key, d.market_id, size)
        view = await d.vault.account_view(trader, d.market_id)
        assert view.size == size and view.price_usable
        assert view.equity >= view.initial_requirement > 0

        await d.vault.close(key, d.market_id)
        assert (await d.vault.position(trader, d.market_id)).size == 0
        left = await d.vault.collateral_of(trader, d.market_id)
        assert abs(left - deposit) < deposit // 100  # a few seconds of BTC moves on half the leverage
        await d.vault.withdraw(key, d.market_id, left)
        assert await d.vault.collateral_of(trader, d.market_id) == 0


async def test_stale_price_refuses_open_and_withdraw_and_close_passes(devnet: DevnetProcess) -> None:
    info = devnet.info
    (holder, holder_key), (flat, flat_key) = dev_accounts()[-3], dev_accounts()[-4]
    async with _desk(info) as d:
        await d.fund(holder_key, holder, d.usd(10_000))
        await d.fund(flat_key, flat, d.usd(10_000))
        price = (await d.oracle.feed_status(d.price_feed)).value
        await d.vault.open(holder_key, d.market_id, d.size_for(d.usd(5_000), price))

        # The chain's clock jumps past the market's maxAge: every value on-chain is now too old.
        await d.oracle.rpc.request("evm_increaseTime", [d.max_age + 30])
        await d.oracle.rpc.request("evm_mine", [])
        assert (await d.gate.margins(d.market_id)).usable is False

        refused = await _refusal(d.vault.open(flat_key, d.market_id, d.size_for(d.usd(1_000), price)))
        assert refused.reason == "FeedStale"
        assert (refused.error_args[0], refused.error_args[2]) == (d.price_feed, d.max_age)
        refused = await _refusal(d.vault.withdraw(holder_key, d.market_id, 1))
        assert refused.reason == "FeedStale"
        with pytest.raises(ContractRevert) as caught:  # RiskGate refuses new risk on its own inputs too
            await d.gate.check_action(d.market_id, True)
        assert caught.value.reason == "FeedStale"

        await d.vault.close(holder_key, d.market_id)  # reducing risk always passes
        assert (await d.vault.position(holder, d.market_id)).size == 0
