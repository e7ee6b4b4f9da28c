"""Market scenarios on a running devnet (`relayer devnet --scenario ...`), one devnet each: margins
follow a volatility spike up and back down; a crash trips the spot breaker, new risk and
withdrawals are refused by name while reductions pass, the owner's resetBreaker re-anchors the
feed, a liquidation executes at the attested price (and is refused above maintenance), and new
risk is allowed again after the vault's cool-down; a venue outage leaves the feeds landing from
the remaining venues with usable margins.

Phases are read from devnet.json (``scenario.phases``, unix times); a report is placed in a
phase by its feeds' observation time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_utils import keccak

from relayer.chain.anvil import dev_accounts
from tests.devnet_proc import DevnetProcess
from tests.test_margin_devnet import Desk, _desk, _refusal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RVOL = "BTC-RVOL-1H"
LIQUIDATED_TOPIC = "0x" + keccak(text="Liquidated(address,bytes32,address,int256,int256,uint256,uint256)").hex()


def _devnet(tmp_path: Path, scenario: str) -> Iterator[DevnetProcess]:
    dn = DevnetProcess(tmp_path / scenario, "--scenario", scenario)
    try:
        dn.wait_first_report()
        dn.drain()
        yield dn
    finally:
        dn.stop()


def _phases(dn: DevnetProcess) -> dict[str, dict[str, Any]]:
    scenario = dn.info["scenario"]
    assert scenario["started_at"] is not None, "the scenario starts with the first landed report"
    return {phase["name"]: phase for phase in scenario["phases"]}


def _observed(report: dict[str, Any], feed_id: str = "BTC-USD") -> int:
    """When the report's ``feed_id`` value was observed (the feed is in every report: --feed-selection all)."""
    feed = _feed(report, feed_id)
    assert feed is not None, report
    return int(feed["observed_at"])


def _feed(report: dict[str, Any], feed_id: str) -> dict[str, Any] | None:
    return next((feed for feed in report["feeds"] if feed["feed_id"] == feed_id), None)


def _reports_until(dn: DevnetProcess, end: float, feed_id: str = "BTC-USD") -> list[dict[str, Any]]:
    """Every report the devnet prints until one whose ``feed_id`` was observed at or after ``end``."""
    reports: list[dict[str, Any]] = []
    while not reports or _observed(reports[-1], feed_id) < end:
        reports.append(dn.next_report(timeout=30))
    return reports


async def _until(condition: Callable[[], Any], what: str, timeout: float) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {what} within {timeout:g} s")
        await asyncio.sleep(0.25)


@pytest.fixture
def vol_spike(tmp_path: Path) -> Iterator[DevnetProcess]:
    yield from _devnet(tmp_path, "vol-spike")


@pytest.fixture
def crash(tmp_path: Path) -> Iterator[DevnetProcess]:
    yield from _devnet(tmp_path, "crash")


@pytest.fixture
def venue_outage(tmp_path: Path) -> Iterator[DevnetProcess]:
    yield from _devnet(tmp_path, "venue-outage")


def test_vol_spike_raises_btc_initial_margin_and_it_falls_back(vol_spike: DevnetProcess) -> None:
    phases = _phases(vol_spike)
    spike, settled = phases["spike"]["starts_at"], phases["calm-again"]["starts_at"]
    # A report's value is the median of the nodes' latest readings, a poll (15 s) old at worst.
    after_from = settled + 20
    reports = _reports_until(vol_spike, after_from + 5, RVOL)

    def initial(report: dict[str, Any]) -> int:
        margins = report["margins"]["BTC-PERP"]
        assert margins["usable"], report
        return int(margins["initial_bps"])

    # Classified by when realized vol was observed: sources poll candles every 15 s.
    calm = [initial(r) for r in reports if _observed(r, RVOL) < spike]
    during = [initial(r) for r in reports if spike <= _observed(r, RVOL) < settled]
    after = [initial(r) for r in reports if _observed(r, RVOL) >= after_from]
    assert calm and during and after, (len(calm), len(during), len(after))
    calm_level = statistics.median(calm)
    assert max(during) >= 1.5 * calm_level, (calm_level, max(during))
    trace = [(_observed(r, RVOL) - phases["calm"]["starts_at"], _feed(r, RVOL), initial(r)) for r in reports]
    assert max(after) <= 1.2 * calm_level, (calm_level, trace)


async def test_crash_trips_the_breaker_refuses_new_risk_and_recovers(crash: DevnetProcess) -> None:
    info = crash.info
    crash_at = _phases(crash)["crash"]["starts_at"]
    owner_key = bytes.fromhex(Path(info["owner_key_file"]).read_text())
    trader, trader_key = info["trader"], bytes.fromhex(Path(info["trader_key_file"]).read_text())
    (levered, levered_key), (careful, careful_key), (holder, holder_key) = dev_accounts()[-3:-6:-1]
    async with _desk(info) as d:
        # A feed whose sources answer late (implied vol from one venue) may miss the first report.
        await _until(lambda: _usable(d), "every BTC-PERP input to land", 30)
        before = (await d.oracle.feed_status(d.price_feed)).value
        initial = (await d.gate.margins(d.market_id)).initial_bps
        for address, key in ((levered, levered_key), (careful, careful_key), (holder, holder_key),
                             (trader, trader_key)):
            await d.fund(key, address, d.usd(10_000))
        # 90 % of the leverage the initial margin allows: a 10 % drop takes it below maintenance.
        await d.vault.open(levered_key, d.market_id, d.size_for(d.usd(10_000) * 9_000 // initial, before))
        await d.vault.open(careful_key, d.market_id, d.size_for(d.usd(5_000), before))
        await d.vault.open(holder_key, d.market_id, d.size_for(d.usd(20_000), before))
        assert time.time() < crash_at, "positions must be open before the crash phase"

        await _until(lambda: _tripped(d), "the BTC-USD breaker to trip", crash_at + 30 - time.time())
        # The devnet's keeper records the trouble in the vault (syncFeeds), no hand call needed.
        held = (await d.oracle.feed_status(d.price_feed)).round_id
        await _until(lambda: _trouble_recorded(d, held), "the keeper to record the trip in the vault", 10)
        refused = await _refusal(d.vault.open(trader_key, d.market_id, d.size_for(d.usd(1_000), before)))
        assert (refused.reason, refused.error_args[0]) == ("FeedTripped", d.price_feed)
        refused = await _refusal(d.vault.withdraw(careful_key, d.market_id, d.usd(1)))
        assert (refused.reason, refused.error_args[0]) == ("FeedTripped", d.price_feed)
        refused = await _refusal(d.vault.liquidate(trader_key, levered, d.market_id))
        assert refused.reason == "FeedTripped"  # no liquidation at a price known to be out of date
        size = (await d.vault.position(holder, d.market_id)).size
        await d.vault.reduce(holder_key, d.market_id, size // 2)  # reducing risk passes
        assert (await d.vault.position(holder, d.market_id)).size == size - size // 2
        await d.vault.close(holder_key, d.market_id)
        assert (await d.vault.position(holder, d.market_id)).size == 0

        # docs/operator.md: the owner (or guardian) clears the breaker; the next report re-anchors.
        tripped_round = (await d.oracle.feed_status(d.price_feed)).round_id
        await d.oracle.reset_breaker(owner_key, d.price_feed)
        await _until(lambda: _reanchored(d, tripped_round), "a report re-anchoring BTC-USD", 30)
        crashed = (await d.oracle.feed_status(d.price_feed)).value
        assert crashed < before * 95 // 100, (before, crashed)
        await _until(lambda: _recovery_recorded(d), "the keeper to record the recovery in the vault", 10)
        assert (await d.vault.trouble_round(d.price_feed)) == tripped_round

        receipt = await d.vault.liquidate(trader_key, levered, d.market_id)
        attested = (await d.oracle.feed_status(d.price_feed, block=hex(receipt["blockNumber"]))).value
        event = next(log for log in receipt["logs"] if log["topics"][0] == LIQUIDATED_TOPIC)
        _, price, _, _ = abi_decode(["int256", "int256", "uint256", "uint256"], bytes.fromhex(event["data"][2:]))
        assert price == attested
        assert (await d.vault.position(levered, d.market_id)).size == 0
        refused = await _refusal(d.vault.liquidate(trader_key, careful, d.market_id))
        assert refused.reason == "NotLiquidatable"
        equity, required = refused.error_args
        assert isinstance(equity, int) and isinstance(required, int) and equity >= required

        # New risk waits for the vault's cool-down after the trouble it saw, then passes.
        small = d.size_for(d.usd(1_000), crashed)
        refused = await _refusal(d.vault.open(trader_key, d.market_id, small))
        assert (refused.reason, refused.error_args[0]) == ("CoolingDown", d.price_feed)
        until = refused.error_args[1]
        assert isinstance(until, int)
        assert until == await d.vault.recovered_at(d.price_feed) + (await d.vault.parameters()).cooldown_s
        await _until(lambda: _chain_time_past(d, until), "the cool-down to run out", until - time.time() + 15)
        await d.vault.open(trader_key, d.market_id, small)
        assert (await d.vault.position(trader, d.market_id)).size == small


async def _usable(d: Desk) -> bool:
    return (await d.gate.margins(d.market_id)).usable


async def _trouble_recorded(d: Desk, round_id: int) -> bool:
    return await d.vault.trouble_round(d.price_feed) == round_id


async def _recovery_recorded(d: Desk) -> bool:
    return await d.vault.recovered_at(d.price_feed) != 0


async def _tripped(d: Desk) -> bool:
    return (await d.oracle.feed_status(d.price_feed)).tripped


async def _reanchored(d: Desk, tripped_round: int) -> bool:
    status = await d.oracle.feed_status(d.price_feed)
    return not status.tripped and status.round_id > tripped_round


async def _chain_time_past(d: Desk, until: int) -> bool:
    block = await d.oracle.rpc.request("eth_getBlockByNumber", ["latest", False])
    return int(block["timestamp"], 16) > until


async def test_venue_outage_keeps_feeds_landing_from_the_other_venues(venue_outage: DevnetProcess) -> None:
    info = venue_outage.info
    phases = _phases(venue_outage)
    outage, recovered = phases["outage"], phases["recovered"]["starts_at"]
    assert set(outage["outages"]) == {"kraken", "coinbase"}
    # A venue's last spot reading counts for 10 s (feeds/poller.py): the outage shows after that.
    shows = outage["starts_at"] + 12
    reports = _reports_until(venue_outage, shows)
    trader, trader_key = info["trader"], bytes.fromhex(Path(info["trader_key_file"]).read_text())
    async with _desk(info) as d:
        price = (await d.oracle.feed_status(d.price_feed)).value
        await d.fund(trader_key, trader, d.usd(10_000))
        await d.vault.open(trader_key, d.market_id, d.size_for(d.usd(5_000), price))  # margins usable
        assert time.time() < recovered
        await d.vault.close(trader_key, d.market_id)
    reports += _reports_until(venue_outage, recovered + 20)

    during = [r for r in reports if shows <= _observed(r) < recovered]
    assert len(during) >= 10, len(during)  # a report every round or two, as before
    for report in during:
        spot = _feed(report, "BTC-USD")
        assert spot is not None and spot["num_sources"] == 3, spot  # 5 venues less the 2 down (min 3)
        assert report["margins"]["BTC-PERP"]["usable"], report
    after = [_feed(r, "BTC-USD") for r in reports if _observed(r) >= recovered + 10]
    assert any(spot is not None and spot["num_sources"] == 5 for spot in after), after
