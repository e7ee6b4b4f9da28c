"""The devnet's margin desk: a RiskGate with a curve per perpetual market (BTC and ETH, built
from the catalog feeds the devnet serves), a test collateral, and a MarginVault wired to both;
and the margins each landed report line shows, read from the deployed RiskGate.

The curves are governance's choice, in plain units (volatility and funding as fractions,
depth and open interest in USD, dispersion in bps); why each number is what it is, is said
where it is set. The devnet's simulated market (feeds/market.py) shows realized volatility
near 1.0, implied volatility near 0.5 (BTC) and 0.6 (ETH), +-50 bps depth near $40M (BTC)
and $20M (ETH), a dispersion of about 5 bps in its calm and normal regimes, a funding rate
of 0.01 % per 8 h +-0.04 % and a median venue's open interest near $2.8B (BTC) +-10 %.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aggregation.margin import MarginCurve
from feeds.kinds import FactorKind
from relayer.chain.codec import address_of
from relayer.chain.contract import HttpWeb3
from relayer.chain.errors import ChainError
from relayer.chain.oracle import FeedStatus, QuorumOracleClient
from relayer.chain.risk_gate import MarketInputs, MarketMargins, RiskGateClient, deploy_risk_gate, market_id_bytes
from relayer.chain.vault import (
    CollateralClient,
    MarginVaultClient,
    VaultParameters,
    deploy_test_collateral,
    deploy_vault,
)

__all__ = [
    "COLLATERAL_DECIMALS", "MARKETS", "SPOT_BREAKER_BPS", "DevnetMarket", "FeedWatch", "ListedMarket", "MarginDesk",
    "VaultKeeper", "deploy_margin_desk", "format_margins", "listable", "market_max_age", "read_margins", "sync_due",
]

# The oracle's circuit breaker on the devnet's spot feeds: a jump of more than 5 % from the last
# good value is held back. The simulated market's whole walk stays within about +-1.6 % of its
# base price (layers, regimes and jumps together, feeds/market.py), so no two of its prices are
# more than about 3.2 % apart and a calm (or stressed) market never trips it, however long the
# committee pauses; a crash of 5 % or more does.
SPOT_BREAKER_BPS = 500
# USDC-like test collateral.
COLLATERAL_DECIMALS = 6
# The pool that pays traders' profits, and what the example trader starts with (whole tUSD).
POOL_USD = 10_000_000
TRADER_USD = 1_000_000
# Heuristics: at most 10 risk-increasing actions per account per 20 blocks (about 10 s on a devnet
# that mines a block a second plus one per transmission), 30 s of cool-down after a feed of a
# market was seen in trouble, 1 % of the notional to a liquidator.
VAULT_PARAMETERS = VaultParameters(max_actions_per_window=10, window_blocks=20, cooldown_s=30,
                                   liquidation_reward_bps=100)
# Data older than this many rounds refuses new risk when every round carries every feed, and
# never less than the governance floor heartbeat (devnet.FLOOR_HEARTBEAT_S).
MAX_AGE_ROUNDS = 30
MIN_MAX_AGE_S = 60


@dataclass(frozen=True)
class DevnetMarket:
    """One perpetual market the devnet lists, on one instrument of the catalog."""

    name: str
    instrument: str
    # Where the book is deep enough to need no depth penalty: about half the simulated market's
    # normal +-50 bps depth, so a stressed regime (half the liquidity) starts to cost margin.
    depth_ref_usd: int
    # Crowding inputs (funding rate, open interest): the open interest the market absorbs without
    # extra margin; None: the market reads neither.
    open_interest_ref_usd: int | None = None

    def curve(self) -> MarginCurve:
        """2 % at rest; +10 % of margin per 1.0 (100 %) of annualized volatility, realized or
        implied, the higher; each bps of cross-venue dispersion adds 2 bps (venues disagreeing is
        a price the market cannot be sure of); up to +10 % as depth falls below the reference.
        Within 3 % .. 50 %; maintenance 60 % of initial, at least 1.5 %. On the calm simulated
        market that is about 12 % / 7.2 %: 8x leverage, as a venue asks of a coin at 100 %
        volatility; a volatility of 2.0 takes it to about 22 %.

        With crowding inputs: a funding rate beyond 0.01 % per 8 h either way (the usual resting
        rate) adds 5 bps of margin per 0.001 % (500,000 bps per 1.0), so the simulated walk's
        extreme, 0.05 %, adds 2 %; open interest beyond the reference adds 10 % per 100 % over
        it (the reference sits just above the simulated market's normal level, so a calm market
        adds a few bps at most)."""
        crowding = self.open_interest_ref_usd is not None
        return MarginCurve(
            base_im_bps=200, vol_slope_bps=1_000, dispersion_multiplier_bps=20_000, depth_penalty_bps=1_000,
            depth_ref_usd=self.depth_ref_usd, floor_im_bps=300, cap_im_bps=5_000, mm_ratio_bps=6_000,
            floor_mm_bps=150, funding_slope_bps=500_000 if crowding else 0, funding_threshold_ppm=100 if crowding else 0,
            open_interest_slope_bps=1_000 if crowding else 0, open_interest_ref_usd=self.open_interest_ref_usd or 0,
        )

    def optional_kinds(self) -> tuple[FactorKind, ...]:
        """The RiskGate inputs beside realized volatility this market reads when served, in
        ``MarketInputs`` order."""
        kinds = (FactorKind.IMPLIED_VOL, FactorKind.DEPTH, FactorKind.DISPERSION)
        crowding = (FactorKind.FUNDING_RATE, FactorKind.OPEN_INTEREST) if self.open_interest_ref_usd is not None else ()
        return (*kinds, *crowding)


MARKETS: tuple[DevnetMarket, ...] = (
    # BTC-PERP also reads the catalog's BTC funding rate and open interest; ETH-PERP does not, so
    # trouble on those feeds holds back new BTC risk only.
    DevnetMarket("BTC-PERP", "BTC-USD", depth_ref_usd=20_000_000, open_interest_ref_usd=3_000_000_000),
    DevnetMarket("ETH-PERP", "ETH-USD", depth_ref_usd=10_000_000),
)


def market_max_age(round_interval_ms: int, feed_selection: str, heartbeats_s: Sequence[int]) -> int:
    """The oldest data (seconds) a devnet market accepts for new risk.

    With every feed in every round (``all``), a value is normally one round old: 30 rounds, and
    at least 60 s, outlast a leader change (a progress timeout of 4 s or so) or a killed node,
    but not a stopped committee. With the trigger policy a feed lands only when it moves past its
    threshold or its heartbeat runs out, so a quiet feed is rightly as old as its heartbeat: the
    longest heartbeat of the market's feeds."""
    if feed_selection == "trigger":
        return max(heartbeats_s)
    return max(MIN_MAX_AGE_S, -(-MAX_AGE_ROUNDS * round_interval_ms // 1000))


@dataclass(frozen=True)
class ListedMarket:
    """A market as deployed: its RiskGate id, the oracle feeds it reads and its data age limit."""

    name: str
    instrument: str
    market_id: bytes
    price_feed: int
    inputs: MarketInputs
    curve: MarginCurve

    def as_json(self, feeds_by_index: Mapping[int, str]) -> dict[str, Any]:
        i = self.inputs
        def named(index: int | None) -> str | None:
            return None if index is None else feeds_by_index[index]
        return {
            "name": self.name, "instrument": self.instrument, "market_id": "0x" + self.market_id.hex(),
            "price_feed": feeds_by_index[self.price_feed], "realized_vol_feed": named(i.realized_vol_feed),
            "implied_vol_feed": named(i.implied_vol_feed), "depth_feed": named(i.depth_feed),
            "dispersion_feed": named(i.dispersion_feed), "funding_feed": named(i.funding_feed),
            "open_interest_feed": named(i.open_interest_feed), "max_age": i.max_age,
            "curve": dataclasses.asdict(self.curve),
        }


@dataclass(frozen=True)
class MarginDesk:
    gate: RiskGateClient
    vault: MarginVaultClient
    collateral: CollateralClient
    markets: tuple[ListedMarket, ...]
    skipped: tuple[str, ...]  # why a market of MARKETS was not listed, one line each


def listable(market: DevnetMarket, feeds: Sequence[Mapping[str, Any]], round_interval_ms: int,
              feed_selection: str) -> tuple[int, MarketInputs] | str:
    """The price feed and RiskGate inputs of ``market`` among the served ``feeds``, or why not."""
    by_kind = {fd["kind"]: fd for fd in feeds if fd["instrument"] == market.instrument}
    missing = [str(k) for k in (FactorKind.SPOT, FactorKind.REALIZED_VOL) if str(k) not in by_kind]
    if missing:
        return (f"no {market.name}: the catalog serves no {' and no '.join(missing)} feed for "
                f"{market.instrument}")
    optional = {k: by_kind.get(str(k)) for k in market.optional_kinds()}
    used = [by_kind[str(FactorKind.SPOT)], by_kind[str(FactorKind.REALIZED_VOL)],
            *(fd for fd in optional.values() if fd is not None)]
    inputs = MarketInputs(
        by_kind[str(FactorKind.REALIZED_VOL)]["index"],
        market_max_age(round_interval_ms, feed_selection, [fd["heartbeat_s"] for fd in used]),
        *(fd["index"] if fd is not None else None for fd in optional.values()),
    )
    return by_kind[str(FactorKind.SPOT)]["index"], inputs


async def deploy_margin_desk(
    w3: HttpWeb3, owner_key: bytes, oracle: str, feeds: Sequence[Mapping[str, Any]], *,
    round_interval_ms: int, feed_selection: str, trader: str,
) -> MarginDesk:
    """RiskGate over ``oracle`` with a curve per listable market of MARKETS, a 6-decimal test
    collateral, a MarginVault over both with VAULT_PARAMETERS and a funded pool, and
    TRADER_USD of collateral minted to ``trader``. ``feeds`` are the devnet's served feeds
    (``feed_id``, ``instrument``, ``kind``, ``index``, ``heartbeat_s``)."""
    gate = RiskGateClient(w3, await deploy_risk_gate(w3, owner_key, oracle))
    collateral = CollateralClient(w3, await deploy_test_collateral(w3, owner_key, COLLATERAL_DECIMALS))
    vault = MarginVaultClient(w3, await deploy_vault(w3, owner_key, gate.address, collateral.address))
    listed, skipped = [], []
    for market in MARKETS:
        found = listable(market, feeds, round_interval_ms, feed_selection)
        if isinstance(found, str):
            skipped.append(found)
            continue
        price_feed, inputs = found
        entry = ListedMarket(market.name, market.instrument, market_id_bytes(market.name), price_feed, inputs,
                             market.curve())
        await gate.set_curve(owner_key, entry.market_id, inputs, entry.curve)
        await vault.list_market(owner_key, entry.market_id, price_feed)
        listed.append(entry)
    await vault.set_parameters(owner_key, VAULT_PARAMETERS)
    unit = 10**COLLATERAL_DECIMALS
    owner = address_of(owner_key)
    await collateral.mint(owner_key, owner, POOL_USD * unit)
    await collateral.approve(owner_key, vault.address, POOL_USD * unit)
    await vault.fund_pool(owner_key, POOL_USD * unit)
    await collateral.mint(owner_key, trader, TRADER_USD * unit)
    return MarginDesk(gate, vault, collateral, tuple(listed), tuple(skipped))


async def read_margins(gate: RiskGateClient, markets: Sequence[ListedMarket], block: int) -> dict[str, MarketMargins]:
    """RiskGate's ``margins`` of each market as of ``block``: what the contract says, no local maths."""
    return {m.name: await gate.margins(m.market_id, block=hex(block)) for m in markets}


def _percent(bps: int) -> str:
    return f"{bps // 100}.{bps % 100:02d}%"


def format_margins(margins: Mapping[str, MarketMargins]) -> str:
    """``BTC-PERP IM 12.07% MM 7.24%`` per market; a market whose inputs are stale or tripped
    says that it refuses new risk."""
    return "  ".join(
        f"{name} IM {_percent(m.initial_bps)} MM {_percent(m.maintenance_bps)}"
        + ("" if m.usable else " (refuses new risk)")
        for name, m in margins.items()
    )


# --- the vault keeper ----------------------------------------------------------------------

# How often the keeper looks when no report lands (staleness comes with the clock, not with a
# report); a landed report makes it look at once.
KEEPER_INTERVAL_S = 1.0


@dataclass(frozen=True)
class FeedWatch:
    """One feed of a market as the keeper sees it: the oracle's status of it and the vault's
    cool-down record (``troubleRound``, ``recoveredAt``)."""

    feed: int
    status: FeedStatus
    trouble_round: int
    recovered_at: int


def sync_due(watch: FeedWatch, max_age: int, now: int) -> str | None:
    """What ``syncFeeds`` would record for this feed now, as MarginVault's ``_record`` decides
    (``trouble``, ``recovery``), or None: the keeper sends only a transaction that records
    something."""
    s = watch.status
    if not (s.usable and now <= s.observed_at + max_age):
        # Round 0 is a feed never written: the vault records no trouble for it.
        return "trouble" if s.round_id != 0 and watch.trouble_round != s.round_id else None
    if watch.trouble_round != 0 and watch.recovered_at == 0 and s.round_id > watch.trouble_round:
        return "recovery"
    return None


class VaultKeeper:
    """Calls the vault's ``syncFeeds`` for a devnet market when one of its feeds is in trouble
    the vault has not recorded (tripped, stale for the market), or usable again after trouble
    it recorded: so the cool-down after a breaker clears runs on a devnet without hand calls,
    and ends ``cooldownSeconds`` after the recovery whatever a feed's history depth. Anyone may
    call ``syncFeeds``; the keeper sends from an account of its own. It looks when a report
    lands and at least every KEEPER_INTERVAL_S; a failed call is said and tried again on the
    next look, never fatal."""

    def __init__(self, desk: MarginDesk, oracle: QuorumOracleClient, key: bytes,
                 names: Mapping[int, str] | None = None) -> None:
        self.desk, self.oracle, self.key = desk, oracle, key
        self.names = dict(names or {})
        self.last_look = float("-inf")

    async def poll(self, now_s: float, *, landed: bool) -> list[str]:
        """One look if due; returns a line per market synced (``BTC-PERP: BTC-USD trouble``)."""
        if not landed and now_s - self.last_look < KEEPER_INTERVAL_S:
            return []
        self.last_look = now_s
        chain_now = int((await self.oracle.w3.eth.get_block("latest"))["timestamp"])
        lines = []
        for market in self.desk.markets:
            feeds = [market.price_feed, *(f for f in market.inputs.feeds() if f is not None)]
            try:
                watches = [FeedWatch(f, await self.oracle.feed_status(f), await self.desk.vault.trouble_round(f),
                                     await self.desk.vault.recovered_at(f)) for f in feeds]
                due = [(w.feed, why) for w in watches
                       if (why := sync_due(w, market.inputs.max_age, chain_now)) is not None]
                if due:
                    await self.desk.vault.sync_feeds(self.key, market.market_id)
                    lines.append(f"{market.name}: " + ", ".join(f"{self.names.get(f, f'feed {f}')} {why}"
                                                                for f, why in due))
            except ChainError as exc:
                lines.append(f"{market.name}: syncFeeds failed ({exc}); trying again on the next look")
        return lines
