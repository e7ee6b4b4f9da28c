"""MarginVault on a real anvil with the oracle fixture and attested reports of the devnet
catalog's own feeds (BTC-USD and ETH-USD spot at 8 decimals, realized volatility as a
6-decimal fraction, depth in USD): units, margin checks against RiskGate, refusals on stale
or tripped data with reductions passing, market isolation, liquidation at the attested price,
the per-account action limit and the cool-down after a breaker clears."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal

import pytest

from aggregation.margin import MarginCurve
from feeds.catalog import load_catalog
from relayer.chain.errors import ContractRevert, VaultRevert
from relayer.chain.risk_gate import MarketInputs, RiskGateClient, deploy_risk_gate, market_id_bytes
from relayer.chain.vault import (
    SIZE_DECIMALS,
    CollateralClient,
    MarginVaultClient,
    VaultParameters,
    VaultPosition,
    deploy_test_collateral,
    deploy_vault,
    position_value,
    requirement,
)

from .conftest import Deployment

pytestmark = pytest.mark.integration

BTC_PERP, ETH_PERP = market_id_bytes("BTC-PERP"), market_id_bytes("ETH-PERP")
# 2 % at rest, +30 % of margin per 1.0 of volatility, up to +10 % as depth falls below $10M;
# within 3 % .. 50 %; maintenance 60 % of initial.
CURVE = MarginCurve(
    base_im_bps=200, vol_slope_bps=3_000, dispersion_multiplier_bps=0, depth_penalty_bps=1_000,
    depth_ref_usd=10_000_000, floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000, floor_mm_bps=150,
)
MAX_AGE = 600
PRICE_BREAKER_BPS, VOL_BREAKER_BPS = 1_000, 5_000  # 10 % for spot, 50 % for volatility
PARAMETERS = VaultParameters(liquidation_reward_bps=100)
POOL_USD = 1_000_000
# BTC at 55 % volatility and $3M depth: 200 + 1650 + 700 = 2550 bps initial, 1530 maintenance.
CALM_BTC_IM, CALM_BTC_MM = 2_550, 1_530


def btc(amount: str) -> int:
    """A size in base units (18 decimals)."""
    return int(Decimal(amount) * 10**SIZE_DECIMALS)


def usd8(amount: int | str) -> int:
    """A USD spot price as the catalog's 8-decimal feed stores it."""
    return int(Decimal(amount) * 10**8)


@dataclass
class Desk:
    """An oracle carrying the catalog's BTC and ETH feeds, a RiskGate with a curve per market,
    a vault over it taking a test collateral, and funded traders."""

    oracle: Deployment
    gate: RiskGateClient
    vault: MarginVaultClient
    token: CollateralClient
    feeds: dict[str, int]
    decimals: int
    traders: list[tuple[str, bytes]]
    round: int = 0

    @property
    def owner(self) -> bytes:
        return self.oracle.owner_key

    def usd(self, amount: int | str) -> int:
        """An amount of collateral in token units."""
        return int(Decimal(amount) * 10**self.decimals)

    async def land(self, observed_at: int | None = None, **values: int) -> None:
        """One attested report (signed by 3 of 4) carrying ``values`` by catalog feed id
        (``BTC_USD=...``)."""
        at = observed_at if observed_at is not None else await self.oracle.now()
        self.round += 1
        updates = sorted((self.feeds[k.replace("_", "-")], v) for k, v in values.items())
        receipt = await self.oracle.transmit(1, self.round, self.oracle.updates(at, *updates))
        assert receipt.succeeded

    async def calm(self, btc_price: int = usd8(60_000), eth_price: int = usd8(3_000)) -> None:
        await self.land(BTC_USD=btc_price, ETH_USD=eth_price, BTC_RVOL_1H=550_000, ETH_RVOL_1H=600_000,
                        BTC_DEPTH_50BPS=3_000_000, ETH_DEPTH_50BPS=3_000_000)

    def advance(self, seconds: int) -> None:
        self.oracle.anvil.rpc("evm_increaseTime", [seconds])
        self.oracle.anvil.rpc("evm_mine")

    async def refusal(self, action: Awaitable[object]) -> VaultRevert:
        with pytest.raises(VaultRevert) as caught:
            await action
        return caught.value

    async def solvent(self) -> None:
        """The token balance of the vault is exactly every account's collateral plus the pool."""
        held = sum([await self.vault.collateral_of(a, m) for a, _ in self.traders for m in (BTC_PERP, ETH_PERP)])
        assert await self.token.balance_of(self.vault.address) == held + await self.vault.pool()


async def _desk(oracle: Deployment, *, decimals: int = 6, parameters: VaultParameters = PARAMETERS) -> Desk:
    catalog = {f.feed_id: f for f in load_catalog()}
    feeds: dict[str, int] = {}
    for asset in ("BTC", "ETH"):
        for feed_id, breaker, history in ((f"{asset}-USD", PRICE_BREAKER_BPS, 4), (f"{asset}-RVOL-1H", VOL_BREAKER_BPS, 0),
                                          (f"{asset}-DEPTH-50BPS", 0, 0)):
            spec = catalog[feed_id]
            low, high = spec.bounds_fixed
            feeds[feed_id] = await oracle.client.add_feed(
                oracle.owner_key, feed_id, spec.decimals, spec.description, low, high,
                breaker_bps=breaker, heartbeat=spec.heartbeat_s, history_depth=history)
    assert (catalog["BTC-USD"].decimals, catalog["BTC-RVOL-1H"].decimals, catalog["BTC-DEPTH-50BPS"].decimals) == (8, 6, 0)
    gate = RiskGateClient(oracle.w3, await deploy_risk_gate(oracle.w3, oracle.owner_key, oracle.client.address))
    token = CollateralClient(oracle.w3, await deploy_test_collateral(oracle.w3, oracle.owner_key, decimals))
    vault = MarginVaultClient(oracle.w3, await deploy_vault(oracle.w3, oracle.owner_key, gate.address, token.address))
    for market, asset in ((BTC_PERP, "BTC"), (ETH_PERP, "ETH")):
        inputs = MarketInputs(feeds[f"{asset}-RVOL-1H"], MAX_AGE, depth_feed=feeds[f"{asset}-DEPTH-50BPS"])
        await gate.set_curve(oracle.owner_key, market, inputs, CURVE)
        await vault.list_market(oracle.owner_key, market, feeds[f"{asset}-USD"])
    await vault.set_parameters(oracle.owner_key, parameters)
    traders = [oracle.anvil.accounts[i] for i in (5, 6, 7, 8)]
    desk = Desk(oracle, gate, vault, token, feeds, decimals, traders)
    for address, key in [*traders, oracle.anvil.accounts[0]]:
        await token.mint(key, address, desk.usd(POOL_USD + 100_000))
        await token.approve(key, vault.address, 2**256 - 1)
    await vault.fund_pool(oracle.owner_key, desk.usd(POOL_USD))
    await desk.calm()
    return desk


@pytest.mark.parametrize("decimals", [6, 18])
async def test_collateral_and_positions_settle_in_token_units(oracle: Deployment, decimals: int) -> None:
    desk = await _desk(oracle, decimals=decimals)
    alice, key = desk.traders[0]
    vault, usd = desk.vault, desk.usd
    market = await vault.market(BTC_PERP)
    assert (market.price_feed, market.price_decimals, market.value_exponent, market.listed) == (
        desk.feeds["BTC-USD"], 8, 18 + 8 - decimals, True)
    start = await desk.token.balance_of(alice)

    await vault.deposit(key, BTC_PERP, usd(10_000))
    assert await vault.collateral_of(alice, BTC_PERP) == usd(10_000)
    assert await desk.token.balance_of(alice) == start - usd(10_000)
    # 1 BTC at $60,000 needs 25.5 % = $15,300 initial margin: refused, by name, with the numbers.
    refused = await desk.refusal(vault.open(key, BTC_PERP, btc("1")))
    assert refused.reason == "InsufficientMargin" and refused.error_args == (usd(10_000), usd(15_300))
    await vault.open(key, BTC_PERP, btc("0.5"))
    assert position_value(btc("0.5"), usd8(60_000), 8, decimals) == usd(30_000)
    view = await vault.account_view(alice, BTC_PERP)
    assert (view.size, view.open_notional, view.equity, view.price, view.price_usable) == (
        btc("0.5"), usd(30_000), usd(10_000), usd8(60_000), True)
    assert (view.initial_requirement, view.maintenance_requirement) == (
        requirement(usd(30_000), CALM_BTC_IM), requirement(usd(30_000), CALM_BTC_MM)) == (usd(7_650), usd(4_590))

    # Withdrawals keep the initial margin: $3,000 would leave $7,000 < $7,650.
    refused = await desk.refusal(vault.withdraw(key, BTC_PERP, usd(3_000)))
    assert refused.reason == "InsufficientMargin" and refused.error_args == (usd(7_000), usd(7_650))
    await vault.withdraw(key, BTC_PERP, usd(1_000))

    await desk.calm(btc_price=usd8(62_000))  # +$1,000 unrealized
    await vault.increase(key, BTC_PERP, btc("0.1"))  # 0.6 BTC, paid 30,000 + 6,200
    assert await vault.position(alice, BTC_PERP) == VaultPosition(btc("0.6"), usd(36_200))
    await vault.reduce(key, BTC_PERP, btc("0.3"))  # half the basis (18,100) out at 18,600: +500
    assert await vault.collateral_of(alice, BTC_PERP) == usd(9_500)
    await desk.calm(btc_price=usd8(61_000))
    await vault.close(key, BTC_PERP)  # 0.3 at 61,000 = 18,300 against 18,100: +200
    assert (await vault.position(alice, BTC_PERP)).size == 0
    assert await vault.collateral_of(alice, BTC_PERP) == usd(9_700)
    await vault.withdraw(key, BTC_PERP, usd(9_700))
    assert await desk.token.balance_of(alice) == start + usd(700)
    assert await vault.pool() == usd(POOL_USD - 700)
    await desk.solvent()

    for action, reason in ((vault.close(key, BTC_PERP), "NoPosition"), (vault.increase(key, BTC_PERP, 1), "NoPosition"),
                           (vault.deposit(key, market_id_bytes("SOL-PERP"), 1), "MarketNotListed"),
                           (vault.deposit(key, BTC_PERP, 0), "ZeroAmount"), (vault.open(key, BTC_PERP, 0), "ZeroSize"),
                           (vault.withdraw(key, BTC_PERP, 1), "InsufficientCollateral")):
        assert (await desk.refusal(action)).reason == reason
    await vault.deposit(key, BTC_PERP, usd(5_000))
    await vault.open(key, BTC_PERP, -btc("0.1"))  # a short
    refused = await desk.refusal(vault.open(key, BTC_PERP, btc("0.1")))
    assert refused.reason == "PositionOpen" and refused.error_args == (BTC_PERP, -btc("0.1"))
    assert (await desk.refusal(vault.reduce(key, BTC_PERP, btc("0.2")))).reason == "ReduceTooLarge"
    await desk.calm(btc_price=usd8(59_000))
    await vault.close(key, BTC_PERP)  # short 0.1 from 61,000 to 59,000: +200
    assert await vault.collateral_of(alice, BTC_PERP) == usd(5_200)


async def test_open_and_withdraw_refused_on_stale_or_tripped_data_while_reduce_and_close_pass(
    oracle: Deployment,
) -> None:
    desk = await _desk(oracle)
    vault, usd, price_feed = desk.vault, desk.usd, desk.feeds["BTC-USD"]
    (alice, alice_key), (bob, bob_key), (carol, carol_key), _ = desk.traders
    await desk.calm(btc_price=usd8(58_000))
    for key in (alice_key, bob_key, carol_key):
        await vault.deposit(key, BTC_PERP, usd(20_000))
    await vault.open(alice_key, BTC_PERP, btc("0.5"))
    await vault.open(bob_key, BTC_PERP, btc("0.2"))
    await desk.calm(btc_price=usd8(60_000))  # longs up $1,000 and $400

    # A crash beyond the 10 % breaker: the oracle holds the last good value, $60,000.
    await desk.land(BTC_USD=usd8(48_000))
    assert (await oracle.client.feed_status(price_feed)).tripped
    for action in (vault.open(carol_key, BTC_PERP, btc("0.1")), vault.increase(alice_key, BTC_PERP, btc("0.1")),
                   vault.withdraw(alice_key, BTC_PERP, usd(1))):
        refused = await desk.refusal(action)
        assert refused.reason == "FeedTripped" and refused.error_args == (price_feed,)
    pool = await vault.pool()
    await vault.reduce(alice_key, BTC_PERP, btc("0.25"))  # passes; its +$500 at a held-back price is not paid
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.25")
    assert await vault.collateral_of(alice, BTC_PERP) == usd(20_000) and await vault.pool() == pool
    await vault.close(bob_key, BTC_PERP)
    assert (await vault.position(bob, BTC_PERP)).size == 0 and await vault.collateral_of(bob, BTC_PERP) == usd(20_000)
    await vault.deposit(carol_key, BTC_PERP, usd(1))  # adding collateral never needs data

    # Cleared by two in-limit reports; then nothing lands for longer than the market's maxAge.
    await desk.land(BTC_USD=usd8(59_000))
    await desk.calm(btc_price=usd8(59_000))
    assert not (await oracle.client.feed_status(price_feed)).tripped
    await vault.open(carol_key, BTC_PERP, btc("0.1"))
    observed_at = (await oracle.client.feed_status(price_feed)).observed_at
    desk.advance(MAX_AGE + 1)
    for action in (vault.open(bob_key, BTC_PERP, btc("0.1")), vault.withdraw(alice_key, BTC_PERP, usd(1))):
        refused = await desk.refusal(action)
        assert refused.reason == "FeedStale" and refused.error_args == (price_feed, observed_at, MAX_AGE)
    await vault.reduce(alice_key, BTC_PERP, btc("0.05"))
    await vault.close(carol_key, BTC_PERP)
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.2") and (await vault.position(carol, BTC_PERP)).size == 0

    # A fresh price is not enough: RiskGate's own inputs (here volatility) must be fresh too.
    await desk.land(BTC_USD=usd8(59_000))
    refused = await desk.refusal(vault.open(bob_key, BTC_PERP, btc("0.1")))
    assert refused.reason == "FeedStale" and refused.error_args[0] == desk.feeds["BTC-RVOL-1H"]
    await desk.calm(btc_price=usd8(59_000))
    await vault.open(bob_key, BTC_PERP, btc("0.1"))

    # A paused oracle makes every value stale: new risk waits, reductions pass.
    await oracle.client.pause(oracle.owner_key)
    assert (await desk.refusal(vault.increase(bob_key, BTC_PERP, btc("0.1")))).reason == "FeedStale"
    await vault.reduce(bob_key, BTC_PERP, btc("0.05"))
    await oracle.client.unpause(oracle.owner_key)
    assert (await vault.position(bob, BTC_PERP)).size == btc("0.05")
    await desk.solvent()


async def test_a_stale_eth_feed_does_not_block_the_btc_market(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    vault, usd = desk.vault, desk.usd
    (_, key), (eth_trader, eth_key), _, _ = desk.traders
    await vault.deposit(key, BTC_PERP, usd(20_000))
    await vault.deposit(eth_key, ETH_PERP, usd(20_000))
    await vault.open(eth_key, ETH_PERP, btc("1"))  # 1 ETH
    desk.advance(MAX_AGE - 100)
    await desk.land(BTC_USD=usd8(60_100), BTC_RVOL_1H=550_000, BTC_DEPTH_50BPS=3_000_000)  # only BTC lands again
    desk.advance(200)

    eth_status = await oracle.client.feed_status(desk.feeds["ETH-USD"])
    refused = await desk.refusal(vault.open(key, ETH_PERP, btc("1")))
    assert refused.reason == "FeedStale" and refused.error_args == (desk.feeds["ETH-USD"], eth_status.observed_at, MAX_AGE)
    assert (await desk.refusal(vault.withdraw(eth_key, ETH_PERP, usd(1)))).reason == "FeedStale"
    await vault.open(key, BTC_PERP, btc("0.2"))  # BTC's own feeds are fresh: new risk passes
    await vault.withdraw(key, BTC_PERP, usd(1_000))
    await vault.reduce(eth_key, ETH_PERP, btc("0.5"))  # and the ETH holder can still reduce
    assert (await vault.position(eth_trader, ETH_PERP)).size == btc("0.5")


async def test_liquidation_at_the_attested_price_only_below_maintenance(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    vault, usd = desk.vault, desk.usd
    (alice, key), (keeper, keeper_key), _, _ = desk.traders
    await vault.deposit(key, BTC_PERP, usd(8_000))
    await vault.open(key, BTC_PERP, btc("0.5"))  # $30,000 at $60,000; initial $7,650
    refused = await desk.refusal(vault.liquidate(keeper_key, alice, BTC_PERP))
    assert refused.reason == "NotLiquidatable" and refused.error_args == (usd(8_000), usd(4_590))

    await desk.calm(btc_price=usd8(56_000))
    await desk.calm(btc_price=usd8(54_000))  # -$3,000: equity $5,000, maintenance 15.3 % of $27,000
    refused = await desk.refusal(vault.liquidate(keeper_key, alice, BTC_PERP))
    assert refused.reason == "NotLiquidatable" and refused.error_args == (usd(5_000), usd(4_131))

    # Volatility spikes (55 % -> 80 %): maintenance rises to 60 % of 33 % = 19.8 %, $5,346.
    await desk.land(BTC_RVOL_1H=800_000, BTC_DEPTH_50BPS=3_000_000, BTC_USD=usd8(54_000))
    view = await vault.account_view(alice, BTC_PERP)
    assert (view.equity, view.maintenance_requirement) == (usd(5_000), usd(5_346))
    keeper_before, pool_before = await desk.token.balance_of(keeper), await vault.pool()
    receipt = await vault.liquidate(keeper_key, alice, BTC_PERP)
    assert receipt["status"] == 1
    reward = requirement(usd(27_000), PARAMETERS.liquidation_reward_bps)  # 1 % of the notional: $270
    assert (await vault.position(alice, BTC_PERP)).size == 0
    assert await vault.collateral_of(alice, BTC_PERP) == usd(5_000) - reward
    assert await desk.token.balance_of(keeper) == keeper_before + reward
    assert await vault.pool() == pool_before + usd(3_000)  # the loss, settled at $54,000
    (event,) = await vault.contract.events.Liquidated().get_logs(from_block=receipt["blockNumber"])
    assert (event["args"]["price"], event["args"]["size"], event["args"]["reward"]) == (usd8(54_000), btc("0.5"), reward)
    assert (await desk.refusal(vault.liquidate(keeper_key, alice, BTC_PERP))).reason == "NoPosition"

    # Never at a stale price, even for an account far below maintenance.
    await vault.deposit(keeper_key, BTC_PERP, usd(5_000))
    await vault.open(keeper_key, BTC_PERP, btc("0.2"))
    desk.advance(MAX_AGE + 1)
    assert (await desk.refusal(vault.liquidate(key, keeper, BTC_PERP))).reason == "FeedStale"
    await desk.solvent()


async def test_a_loss_beyond_the_collateral_is_bad_debt_the_pool_absorbs(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    vault, usd = desk.vault, desk.usd
    (alice, key), (keeper, keeper_key), _, _ = desk.traders
    await vault.deposit(key, BTC_PERP, usd(15_300))
    await vault.open(key, BTC_PERP, btc("1"))  # exactly the initial margin, 25.5 % of $60,000
    for price in (54_100, 48_700, 43_900):  # each step inside the 10 % breaker, no liquidation in between
        await desk.calm(btc_price=usd8(price))
    view = await vault.account_view(alice, BTC_PERP)
    assert view.equity == usd(15_300 - 16_100) < 0
    pool, keeper_before = await vault.pool(), await desk.token.balance_of(keeper)
    await vault.liquidate(keeper_key, alice, BTC_PERP)
    reward = requirement(usd(43_900), PARAMETERS.liquidation_reward_bps)  # $439, all from the pool
    assert await vault.collateral_of(alice, BTC_PERP) == 0
    assert await vault.pool() == pool + usd(15_300) - reward  # the pool got the collateral, not the whole loss
    assert await desk.token.balance_of(keeper) == keeper_before + reward
    (event,) = await vault.contract.events.BadDebt().get_logs(from_block=0)
    assert event["args"]["amount"] == usd(800)
    await desk.solvent()


async def test_the_action_limit_refuses_the_extra_risk_increasing_action_in_a_window(oracle: Deployment) -> None:
    window = 20
    desk = await _desk(oracle, parameters=dataclasses.replace(PARAMETERS, max_actions_per_window=3,
                                                                window_blocks=window))
    vault, usd = desk.vault, desk.usd
    (alice, key), (_, other_key), _, _ = desk.traders
    await vault.deposit(key, BTC_PERP, usd(50_000))
    await vault.deposit(other_key, BTC_PERP, usd(50_000))
    head = await vault.rpc.block_number()
    oracle.anvil.rpc("anvil_mine", [hex(window - (head + 1) % window)])  # the next block opens a window
    start = (await vault.rpc.block_number() + 1) // window

    await vault.open(key, BTC_PERP, btc("0.1"))
    await vault.increase(key, BTC_PERP, btc("0.1"))
    await vault.withdraw(key, BTC_PERP, usd(100))  # a withdrawal counts too
    assert await vault.actions_in_window(alice) == (start, 3)
    refused = await desk.refusal(vault.increase(key, BTC_PERP, btc("0.1")))
    assert refused.reason == "ActionLimitReached" and refused.error_args == (alice, start, 3)
    await vault.reduce(key, BTC_PERP, btc("0.05"))  # risk-reducing actions are never counted
    await vault.deposit(key, BTC_PERP, usd(100))
    await vault.open(other_key, BTC_PERP, btc("0.1"))  # the limit is per account
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.15")

    head = await vault.rpc.block_number()
    oracle.anvil.rpc("anvil_mine", [hex(window - (head + 1) % window)])
    await desk.calm()  # the first block of the next window
    await vault.increase(key, BTC_PERP, btc("0.1"))
    assert await vault.actions_in_window(alice) == (start + 1, 1)
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.25")


async def test_parameters_are_governance_only_and_bounded(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    stranger = desk.traders[0][1]
    for key, parameters, reason in (
        (stranger, PARAMETERS, "NotOwner"),
        (desk.owner, VaultParameters(max_actions_per_window=0, window_blocks=10), "InvalidActionLimit"),
        (desk.owner, VaultParameters(liquidation_reward_bps=1_001), "RewardTooHigh"),
    ):
        with pytest.raises(VaultRevert) as caught:
            await desk.vault.set_parameters(key, parameters)
        assert caught.value.reason == reason
    with pytest.raises(VaultRevert) as caught:
        await desk.vault.list_market(stranger, BTC_PERP, 0)
    assert caught.value.reason == "NotOwner"
    with pytest.raises(ContractRevert) as unknown:  # RiskGate's refusal passes through the vault
        await desk.vault.list_market(desk.owner, market_id_bytes("SOL-PERP"), 0)
    assert unknown.value.reason == "UnknownMarket"
    wanted = VaultParameters(max_actions_per_window=5, window_blocks=10, cooldown_s=60, liquidation_reward_bps=50)
    await desk.vault.set_parameters(desk.owner, wanted)
    assert await desk.vault.parameters() == wanted


async def test_new_risk_waits_out_a_cool_down_after_a_breaker_clears_or_data_is_fresh_again(
    oracle: Deployment,
) -> None:
    cooldown = 120
    desk = await _desk(oracle, parameters=dataclasses.replace(PARAMETERS, cooldown_s=cooldown))
    vault, usd, price_feed = desk.vault, desk.usd, desk.feeds["BTC-USD"]
    (alice, key), (_, keeper_key), (_, eth_key), _ = desk.traders
    await vault.deposit(key, BTC_PERP, usd(20_000))
    await vault.open(key, BTC_PERP, btc("0.1"))
    last_good = (await oracle.client.feed_status(price_feed)).round_id

    # A crash trips the breaker; a keeper records it (a refused open reverts, recording nothing).
    await desk.land(BTC_USD=usd8(45_000))
    assert (await desk.refusal(vault.open(desk.traders[3][1], BTC_PERP, btc("0.1")))).reason == "FeedTripped"
    assert await vault.trouble_round(price_feed) == 0
    await vault.sync_feeds(keeper_key, BTC_PERP)
    assert await vault.trouble_round(price_feed) == last_good

    # The guardian resets the breaker: the feed looks healthy but still holds the pre-crash value.
    await oracle.client.reset_breaker(oracle.owner_key, price_feed)
    assert (await oracle.client.feed_status(price_feed)).usable
    refused = await desk.refusal(vault.increase(key, BTC_PERP, btc("0.1")))
    assert refused.reason == "AwaitingFreshRound" and refused.error_args == (price_feed, last_good)

    recovered_at = await oracle.now()
    await desk.calm(btc_price=usd8(45_500))  # the re-anchoring value: the cool-down runs from its time
    refused = await desk.refusal(vault.increase(key, BTC_PERP, btc("0.1")))
    assert refused.reason == "CoolingDown" and refused.error_args == (price_feed, recovered_at + cooldown)
    desk.advance(60)
    await desk.calm(btc_price=usd8(46_000))  # a later value does not restart nor end it
    refused = await desk.refusal(vault.withdraw(key, BTC_PERP, usd(1)))
    assert refused.reason == "CoolingDown" and refused.error_args == (price_feed, recovered_at + cooldown)
    await vault.reduce(key, BTC_PERP, btc("0.05"))  # reducing risk is never held back
    desk.advance(cooldown - 60)
    await vault.increase(key, BTC_PERP, btc("0.1"))
    assert await vault.trouble_round(price_feed) == 0
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.15")

    # Stale data: a reduce sees the ETH price stale and records it; fresh data starts the cool-down.
    await vault.deposit(eth_key, ETH_PERP, usd(20_000))
    await vault.open(eth_key, ETH_PERP, btc("1"))
    eth_feed = desk.feeds["ETH-USD"]
    stale_round = (await oracle.client.feed_status(eth_feed)).round_id
    desk.advance(MAX_AGE + 1)
    await vault.reduce(eth_key, ETH_PERP, btc("0.5"))
    assert await vault.trouble_round(eth_feed) == stale_round
    fresh_at = await oracle.now()
    await desk.calm(btc_price=usd8(46_000))
    refused = await desk.refusal(vault.open(key, ETH_PERP, btc("1")))
    assert refused.reason == "CoolingDown" and refused.error_args == (eth_feed, fresh_at + cooldown)
    await vault.increase(key, BTC_PERP, btc("0.01"))  # BTC is not cooling down
    desk.advance(cooldown)
    await desk.calm(btc_price=usd8(46_000))
    await vault.increase(eth_key, ETH_PERP, btc("0.1"))
    assert await vault.trouble_round(eth_feed) == 0


async def test_the_cool_down_ends_on_a_feed_without_history_that_lands_every_round(oracle: Deployment) -> None:
    """The vault records when the feed recovered: a feed keeping no past rounds (history depth
    0) whose values keep landing after the trouble cleared still lets new risk in once
    ``cooldown_s`` has run from that recovery."""
    cooldown, step = 120, 30
    desk = await _desk(oracle, parameters=dataclasses.replace(PARAMETERS, cooldown_s=cooldown))
    vault, usd, vol_feed = desk.vault, desk.usd, desk.feeds["BTC-RVOL-1H"]
    (_, key), (_, keeper_key), _, _ = desk.traders
    await vault.deposit(key, BTC_PERP, usd(20_000))
    await desk.land(BTC_RVOL_1H=900_000)  # +64 % against a 50 % breaker: tripped
    assert (await oracle.client.feed_status(vol_feed)).tripped
    held = (await oracle.client.feed_status(vol_feed)).round_id
    await vault.sync_feeds(keeper_key, BTC_PERP)
    assert (await vault.trouble_round(vol_feed), await vault.recovered_at(vol_feed)) == (held, 0)

    await oracle.client.reset_breaker(oracle.owner_key, vol_feed)
    await desk.calm()  # the re-anchoring value: the feed is usable again
    recovered = (await oracle.client.feed_status(vol_feed)).observed_at
    await vault.sync_feeds(keeper_key, BTC_PERP)  # the keeper's next poll records the recovery
    assert (await vault.trouble_round(vol_feed), await vault.recovered_at(vol_feed)) == (held, recovered)
    await vault.sync_feeds(keeper_key, BTC_PERP)  # recorded once: a later poll changes nothing
    assert await vault.recovered_at(vol_feed) == recovered

    for _ in range(cooldown // step - 1):  # a value lands every step, none restarts the cool-down
        desk.advance(step)
        await desk.calm()
        await vault.sync_feeds(keeper_key, BTC_PERP)
        refused = await desk.refusal(vault.open(key, BTC_PERP, btc("0.1")))
        assert refused.reason == "CoolingDown" and refused.error_args == (vol_feed, recovered + cooldown)
    desk.advance(step)
    await desk.calm()
    assert await oracle.now() >= recovered + cooldown
    await vault.open(key, BTC_PERP, btc("0.1"))
    assert await vault.trouble_round(vol_feed) == 0 and await vault.recovered_at(vol_feed) == 0
