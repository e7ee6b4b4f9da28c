"""MarginVault's pull path on a real anvil: ``submitAndCall`` brings a report the committee
signed and one vault action in one transaction, the action running as the caller. Stale stored
data no longer blocks new risk when a fresh report comes with it; a report someone else landed
first does not block the action; a refused report reverts with the oracle's own error; only the
vault's own actions run; the action limit and the cool-down apply through it as to a direct call."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from relayer.chain.errors import ChainError
from relayer.chain.vault import MarginVaultClient, requirement

from .conftest import Deployment
from .test_margin_vault import BTC_PERP, MAX_AGE, PARAMETERS, Desk, _desk, btc, usd8

pytestmark = pytest.mark.integration

Report = tuple[int, int, bytes, list[tuple[int, bytes]]]
# The BTC market's feeds at their calm values: the price and RiskGate's two inputs.
CALM_BTC = {"BTC_USD": usd8(60_000), "BTC_RVOL_1H": 550_000, "BTC_DEPTH_50BPS": 3_000_000}


async def signed(desk: Desk, observed_at: int | None = None, **values: int) -> Report:
    """The committee's next report (3 of 4 signatures) carrying ``values`` by catalog feed id,
    not landed: (epoch, round, updates, signatures)."""
    at = observed_at if observed_at is not None else await desk.oracle.now()
    desk.round += 1
    updates = desk.oracle.updates(at, *sorted((desk.feeds[k.replace("_", "-")], v) for k, v in values.items()))
    return 1, desk.round, updates, desk.oracle.sign(1, desk.round, updates, (0, 1, 2))


async def bring(desk: Desk, key: bytes, report: Report, action: bytes) -> dict[str, Any]:
    epoch, round, updates, signatures = report
    return await desk.vault.submit_and_call(key, desk.oracle.config.config_digest, epoch, round, updates, signatures,
                                            action)


async def test_a_fresh_report_brought_with_open_lets_it_pass_on_stale_stored_data(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    vault: MarginVaultClient = desk.vault
    (alice, key), _, _, _ = desk.traders
    price_feed = desk.feeds["BTC-USD"]
    await vault.deposit(key, BTC_PERP, desk.usd(20_000))
    stored = await oracle.client.feed_status(price_feed)
    desk.advance(MAX_AGE + 1)  # nothing pushed since

    refused = await desk.refusal(vault.open(key, BTC_PERP, btc("0.5")))
    assert refused.reason == "FeedStale" and refused.error_args == (price_feed, stored.observed_at, MAX_AGE)

    report = await signed(desk, **CALM_BTC)
    receipt = await bring(desk, key, report, vault.encode_action("open", BTC_PERP, btc("0.5")))
    # One transaction: the oracle stored the report and the vault opened the caller's position.
    emitters = {str(entry["address"]).lower() for entry in receipt["logs"]}
    assert {oracle.client.address.lower(), vault.address.lower()} <= emitters
    stored_now = {u.feed_index for u in oracle.client.feed_updates(receipt["logs"])}
    assert stored_now == {desk.feeds[f] for f in ("BTC-USD", "BTC-RVOL-1H", "BTC-DEPTH-50BPS")}
    assert await oracle.client.latest_epoch_round() == (1, report[1])
    assert (await oracle.client.latest_feed(price_feed)).observed_at == int.from_bytes(report[2][2:6], "big")
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.5")
    assert (await vault.position(oracle.anvil.accounts[28][0], BTC_PERP)).size == 0
    view = await vault.account_view(alice, BTC_PERP)
    assert view.price_usable and view.price == usd8(60_000)
    await desk.solvent()


async def test_a_report_someone_else_landed_first_still_lets_the_action_run(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    vault = desk.vault
    (alice, key), _, _, _ = desk.traders
    price_feed = desk.feeds["BTC-USD"]
    await vault.deposit(key, BTC_PERP, desk.usd(20_000))
    desk.advance(MAX_AGE + 1)
    report = await signed(desk, **CALM_BTC)
    epoch, round, updates, _ = report
    front_run = await oracle.submit(epoch, round, updates)  # another account lands the same report first
    assert front_run.succeeded
    landed = await oracle.client.latest_feed(price_feed)

    receipt = await bring(desk, key, report, vault.encode_action("open", BTC_PERP, btc("0.2")))
    assert oracle.client.feed_updates(receipt["logs"]) == []  # the submit stored nothing
    assert await oracle.client.latest_feed(price_feed) == landed
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.2")

    # An older report than the stored data: skipped too, the action runs on the newer stored value.
    older = await signed(desk, landed.observed_at - 30, **{**CALM_BTC, "BTC_USD": usd8(50_000)})
    await bring(desk, key, older, vault.encode_action("increase", BTC_PERP, btc("0.1")))
    assert await oracle.client.latest_feed(price_feed) == landed
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.3")
    assert (await vault.account_view(alice, BTC_PERP)).price == usd8(60_000)


async def test_a_refused_report_reverts_the_whole_call_with_the_oracles_error(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    vault = desk.vault
    (alice, key), _, _, _ = desk.traders
    await vault.deposit(key, BTC_PERP, desk.usd(20_000))
    desk.advance(MAX_AGE + 1)
    open_action = vault.encode_action("open", BTC_PERP, btc("0.5"))
    epoch, round, updates, signatures = await signed(desk, **CALM_BTC)

    tampered = updates[:-1] + bytes([updates[-1] ^ 1])  # the last feed's value, one unit off
    refused = await desk.refusal(bring(desk, key, (epoch, round, tampered, signatures), open_action))
    assert refused.reason == "SignerMismatch"
    refused = await desk.refusal(bring(desk, key, (epoch, round, updates, signatures[:2]), open_action))
    assert refused.reason == "InsufficientSignatures" and refused.error_args == (2, 3)
    foreign = await desk.refusal(vault.submit_and_call(key, b"\x00\x01" + b"\x07" * 30, epoch, round, updates,
                                                       signatures, open_action))
    assert foreign.reason == "ConfigDigestMismatch"
    await oracle.client.pause(oracle.owner_key)
    refused = await desk.refusal(bring(desk, key, (epoch, round, updates, signatures), open_action))
    assert refused.reason == "Paused"
    assert (await vault.position(alice, BTC_PERP)).size == 0


async def test_only_the_vaults_own_actions_run_through_it(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    vault = desk.vault
    (alice, key), (_, bob_key), _, _ = desk.traders
    report = await signed(desk, **CALM_BTC)
    for action in (vault._function("fundPool").encode((1,)),
                   vault._function("setParameters").encode((PARAMETERS.as_tuple(),)),
                   vault._function("syncFeeds").encode((BTC_PERP,)), b"", b"\x01\x02"):
        refused = await desk.refusal(bring(desk, key, report, action))
        selector = action[:4] if len(action) >= 4 else bytes(4)
        assert refused.reason == "ActionNotAllowed" and refused.error_args == (selector,)
    nested = vault._function("submitAndCall").encode((oracle.config.config_digest, *report[:3], 0, b"", b""))
    assert (await desk.refusal(bring(desk, key, report, nested))).reason == "ActionNotAllowed"
    with pytest.raises(ChainError, match="fundPool"):
        vault.encode_action("fundPool", 1)

    # A deposit through it takes the caller's tokens; the action's own refusals keep their names.
    before = await desk.token.balance_of(alice)
    await bring(desk, key, report, vault.encode_action("deposit", BTC_PERP, desk.usd(5_000)))
    assert await vault.collateral_of(alice, BTC_PERP) == desk.usd(5_000)
    assert await desk.token.balance_of(alice) == before - desk.usd(5_000)
    refused = await desk.refusal(bring(desk, key, report, vault.encode_action("open", BTC_PERP, btc("1"))))
    assert refused.reason == "InsufficientMargin"
    refused = await desk.refusal(bring(desk, bob_key, report, vault.encode_action("close", BTC_PERP)))
    assert refused.reason == "NoPosition"
    await desk.solvent()


async def test_the_action_limit_and_the_cool_down_apply_through_it(oracle: Deployment) -> None:
    cooldown, window = 120, 1_000
    desk = await _desk(oracle, parameters=dataclasses.replace(PARAMETERS, max_actions_per_window=2,
                                                                window_blocks=window, cooldown_s=cooldown))
    vault = desk.vault
    (alice, key), _, _, _ = desk.traders
    price_feed = desk.feeds["BTC-USD"]
    head = await vault.rpc.block_number()
    oracle.anvil.rpc("anvil_mine", [hex(window - (head + 1) % window)])  # the next block opens a window
    await vault.deposit(key, BTC_PERP, desk.usd(50_000))
    await vault.open(key, BTC_PERP, btc("0.1"))

    # Stale data, seen by a reduce: the fresh report brought with increase starts the cool-down.
    stale_round = (await oracle.client.feed_status(price_feed)).round_id
    desk.advance(MAX_AGE + 1)
    await vault.reduce(key, BTC_PERP, btc("0.05"))
    assert await vault.trouble_round(price_feed) == stale_round
    report = await signed(desk, **CALM_BTC)
    refused = await desk.refusal(bring(desk, key, report, vault.encode_action("increase", BTC_PERP, btc("0.1"))))
    observed_at = int.from_bytes(report[2][2:6], "big")
    assert refused.reason == "CoolingDown" and refused.error_args == (price_feed, observed_at + cooldown)

    # A refused call records nothing: the report lands on its own and a keeper records the recovery.
    assert (await oracle.submit(*report[:3])).succeeded
    await vault.sync_feeds(desk.traders[1][1], BTC_PERP)
    assert await vault.recovered_at(price_feed) == observed_at
    desk.advance(cooldown)
    await bring(desk, key, await signed(desk, **CALM_BTC), vault.encode_action("increase", BTC_PERP, btc("0.1")))
    assert await vault.trouble_round(price_feed) == 0
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.15")
    _, count = await vault.actions_in_window(alice)
    assert count == 2  # open, then the increase brought with the report
    refused = await desk.refusal(bring(desk, key, await signed(desk, **CALM_BTC),
                                       vault.encode_action("withdraw", BTC_PERP, desk.usd(1))))
    assert refused.reason == "ActionLimitReached" and refused.error_args[0] == alice
    await bring(desk, key, await signed(desk, **CALM_BTC), vault.encode_action("reduce", BTC_PERP, btc("0.05")))
    assert (await vault.position(alice, BTC_PERP)).size == btc("0.1")


async def test_a_liquidator_brings_the_report_that_makes_the_account_liquidatable(oracle: Deployment) -> None:
    desk = await _desk(oracle)
    vault, usd = desk.vault, desk.usd
    (alice, key), (keeper, keeper_key), _, _ = desk.traders
    await vault.deposit(key, BTC_PERP, usd(8_000))
    await vault.open(key, BTC_PERP, btc("0.5"))  # $30,000 at $60,000
    await desk.calm(btc_price=usd8(56_000))
    await desk.calm(btc_price=usd8(54_000))  # equity $5,000, maintenance $4,131: not yet
    desk.advance(MAX_AGE + 1)
    assert (await desk.refusal(vault.liquidate(keeper_key, alice, BTC_PERP))).reason == "FeedStale"

    # The attested volatility spike (55 % -> 80 %) takes maintenance to $5,346, above the equity.
    spike = await signed(desk, BTC_USD=usd8(54_000), BTC_RVOL_1H=800_000, BTC_DEPTH_50BPS=3_000_000)
    keeper_before = await desk.token.balance_of(keeper)
    await bring(desk, keeper_key, spike, vault.encode_action("liquidate", alice, BTC_PERP))
    reward = requirement(usd(27_000), PARAMETERS.liquidation_reward_bps)
    assert (await vault.position(alice, BTC_PERP)).size == 0
    assert await desk.token.balance_of(keeper) == keeper_before + reward  # paid to the caller
    assert await vault.collateral_of(alice, BTC_PERP) == usd(5_000) - reward
    await desk.solvent()
