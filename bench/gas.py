"""Gas per report and per feed of QuorumOracle.transmit, on a real anvil (default hardfork).

For reports of 1, 10 and 50 feeds signed by 4, 7, 10, 16 and 31 committee members (every
member signs: n = signatures, threshold = n), prints the first-write gas (feed slots still
zero) and the steady-state gas (slots already non-zero, the cost of every later report),
and checks the goals of the contracts issue. Feeds have a 10% circuit breaker, no history
and their FeedUpdated events off; extra rows show the cost of keeping history for
getRoundData and of the per-feed FeedUpdated event (on by default for a new feed).

Scheme 0x0002 (FROST threshold Schnorr): the same reports of 1, 10 and 100 feeds under a group
key of committees of 4, 7, 10, 16 and 31 members (threshold 2f + 1; a dealer makes the key, as
the gas does not depend on how it was made), one signature (R, z) each; FeedUpdated off, as in
the main table, plus 1 and 10 feeds at n = 10 with it on.

The pull path: a keeper's submit-and-read (PullKeeper: submit a report, read the feed
through its FeedProxy, one transaction) and verifyReport (eth_estimateGas of the call, 21,000
base included), for 1 and 10 feeds at 10 signatures.

With ``--risk-gate``, RiskGate instead: setCurve (first and replacing) and a margins() /
checkAction() read (eth_estimateGas of the call, 21,000 base included) for a market on two
inputs (realized vol, depth), on four (plus implied vol and dispersion) and on six (plus
funding rate and open interest), each at the catalog's decimals for its kind.

With ``--vault``, MarginVault actions (receipts' gasUsed, 21,000 base included) on a BTC
market priced by an 8-decimal spot feed, with RiskGate reading a 6-decimal realized
volatility and a USD depth feed: deposit, open, increase, reduce, close, withdraw and
liquidate, and the pull path's submit + open (submitAndCall: a report of the market's three
feeds signed by two members, then open, one transaction), with the heuristics off and then on
(action limit counting, cool-down record read).

With ``--scheme 0x0001`` only the ECDSA tables (and the pull path), with ``--scheme 0x0002``
only the FROST table: the rows a change to one scheme's path needs, in a fraction of the time.

    .venv/bin/python bench/gas.py [--json] [--risk-gate | --vault] [--scheme 0x0001 | 0x0002]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from web3 import AsyncWeb3  # noqa: E402

from relayer.chain.anvil import AnvilNode  # noqa: E402
from relayer.chain.codec import (  # noqa: E402
    FeedUpdate,
    PackedSignatures,
    ThresholdKey,
    address_of,
    config_digest,
    encode_updates,
    keccak,
    pack_approvals,
    pack_signatures,
    sign_digest,
)
from relayer.chain.contract import HttpWeb3, disconnect, send_call  # noqa: E402
from relayer.chain.oracle import (  # noqa: E402
    OnchainConfig,
    QuorumOracleClient,
    ReportSignatures,
    connect,
    deploy_oracle,
)

FEED_COUNTS = (1, 10, 50)
SIGNER_COUNTS = (4, 7, 10, 16, 31)
GOAL_PER_FEED_10x10 = 12_000
GOAL_SINGLE_FEED_10 = 80_000
SCHNORR_FEED_COUNTS = (1, 10, 100)
GOAL_SCHNORR_SINGLE_FEED = 40_000
GOAL_SCHNORR_FLATNESS = 0.01  # the spread of 1-feed gas over n = 4..31
GOAL_SCHNORR_PER_FEED_10 = 6_000
BASE_VALUE = 3_000 * 10**8


@dataclass(frozen=True)
class Measurement:
    feeds: int
    signatures: int
    first_write: int
    steady: int
    history_depth: int = 0
    events: bool = False
    scheme: int = 0x0001

    @property
    def per_feed(self) -> float:
        return self.steady / self.feeds


async def _setup(
    w3: AsyncWeb3, anvil: AnvilNode, feeds: int, history_depth: int, events: bool = False
) -> QuorumOracleClient:
    owner = anvil.accounts[0][1]
    client = QuorumOracleClient(w3, await deploy_oracle(w3, owner))
    for i in range(feeds):
        await client.add_feed(owner, f"BENCH{i}/USD", 8, f"bench {i}", 1, 10**18,
                              breaker_bps=1_000, heartbeat=3_600, history_depth=history_depth,
                              update_events=events)
    return client


async def _measure(
    w3: AsyncWeb3, anvil: AnvilNode, client: QuorumOracleClient, feeds: int, n: int, history_depth: int,
    events: bool = False,
) -> Measurement:
    owner = anvil.accounts[0][1]
    keys, transmitters = _committee(anvil, n)
    config = await client.set_config(owner, [address_of(k) for k in keys], transmitters, (n - 1) // 3, n, b"bench")
    gas = await _three_rounds(
        w3, anvil, client, config, feeds, lambda digest: [(i, sign_digest(k, digest)) for i, k in enumerate(keys)])
    # Round 2 still pays for the history ring's first fill when history is on; round 3
    # is the steady state in both cases for depth <= 1; deeper rings are filled by then
    # only for the slots they reuse, which is what a long-running feed pays.
    return Measurement(feeds, n, gas[0], gas[2], history_depth, events)


def _committee(anvil: AnvilNode, n: int) -> tuple[list[bytes], list[str]]:
    """n signing keys, and n transmitters of which only the first (a funded account) sends."""
    keys = [keccak(f"bench signer {i}".encode()) for i in range(n)]
    transmitters = [anvil.accounts[1][0]] + [address_of(keccak(f"bench transmitter {i}".encode())) for i in range(1, n)]
    return keys, transmitters


async def _three_rounds(
    w3: HttpWeb3, anvil: AnvilNode, client: QuorumOracleClient, config: OnchainConfig, feeds: int,
    sign: Callable[[bytes], ReportSignatures],
) -> list[int]:
    """Gas of three reports of `feeds` feeds in a row, each signed by `sign(report digest)`."""
    domain = client.domain(anvil.chain_id)
    now = int((await w3.eth.get_block("latest"))["timestamp"])
    gas: list[int] = []
    for round_ in (1, 2, 3):
        updates = encode_updates([
            FeedUpdate(feed_index=i, observed_at=now + round_, num_sources=3, value=BASE_VALUE + 1_000 * round_ + i)
            for i in range(feeds)
        ])
        digest = domain.report_digest(config.config_digest, 1, round_, updates)
        receipt = await client.transmit(anvil.accounts[1][1], config.config_digest, 1, round_, updates, sign(digest))
        gas.append(receipt.gas_used)
    return gas


async def _measure_schnorr(
    w3: HttpWeb3, anvil: AnvilNode, client: QuorumOracleClient, feeds: int, n: int, events: bool = False
) -> Measurement:
    """As _measure, under scheme 0x0002: a group key for n members (threshold 2f + 1) approved
    by threshold of them, reports signed by the first threshold members' shares."""
    import secrets

    from relayer.crypto import frost
    from relayer.protocol.signer import FrostReportAggregator, approve_group_key, frost_identifier

    owner = anvil.accounts[0][1]
    f = (n - 1) // 3
    threshold = 2 * f + 1
    keys, transmitters = _committee(anvil, n)
    while True:  # the contract takes x below the order (ecrecover's r): odds 2^-128 otherwise
        dealt, vss = frost.trusted_dealer_keygen(secrets.randbelow(frost.ORDER - 1) + 1, n, threshold)
        if dealt[0].group_public_key.point()[0] < frost.ORDER:
            break
    key = ThresholdKey.from_point(dealt[0].group_public_key, keccak(b"bench transcript"))
    domain = client.domain(anvil.chain_id)
    current = await client.config()
    signers = [address_of(k) for k in keys]
    digest = config_digest(chain_id=anvil.chain_id, contract=client.address, config_count=current.config_count + 1,
                           signers=signers, transmitters=transmitters, f=f, threshold=threshold,
                           offchain_config=b"bench", group_key=key)
    approvals = pack_approvals([approve_group_key(k, domain, digest, key) for k in keys[:threshold]])
    config = await client.set_threshold_config(owner, signers, transmitters, f, threshold, b"bench", key, approvals)
    aggregator = FrostReportAggregator(
        dealt[0].group_public_key,
        {m: frost.public_key_share(vss, frost_identifier(m)) for m in range(n)}, threshold)

    def sign(report: bytes) -> PackedSignatures:
        chosen = list(range(threshold))
        nonces = {m: frost.commit(dealt[m].secret) for m in chosen}
        commitments = {m: nonces[m].commitment(frost_identifier(m)) for m in chosen}
        shares = {m: frost.sign(dealt[m], nonces[m], list(commitments.values()), report) for m in chosen}
        return aggregator.aggregate(report, commitments, shares)

    gas = await _three_rounds(w3, anvil, client, config, feeds, sign)
    return Measurement(feeds, n, gas[0], gas[2], events=events, scheme=0x0002)


async def run(schemes: frozenset[int] = frozenset({0x0001, 0x0002})) -> list[Measurement]:
    results: list[Measurement] = []
    with AnvilNode.start() as anvil:
        w3 = connect(anvil.rpc_url)
        try:
            if 0x0001 in schemes:
                results.extend(await _ecdsa_rows(w3, anvil))
            if 0x0002 in schemes:
                results.extend(await _schnorr_rows(w3, anvil))
        finally:
            await disconnect(w3)
    return results


async def _each_committee(anvil: AnvilNode, measure: Callable[..., Awaitable[Measurement]]) -> list[Measurement]:
    """``measure(n=n)`` for every committee size, each from the same chain state."""
    results: list[Measurement] = []
    snapshot = anvil.rpc("evm_snapshot")
    for n in SIGNER_COUNTS:
        results.append(await measure(n=n))
        anvil.rpc("evm_revert", [snapshot])
        snapshot = anvil.rpc("evm_snapshot")
    return results


async def _ecdsa_rows(w3: HttpWeb3, anvil: AnvilNode) -> list[Measurement]:
    results: list[Measurement] = []
    for feeds in FEED_COUNTS:
        client = await _setup(w3, anvil, feeds, 0)
        results.extend(await _each_committee(anvil, partial(_measure, w3, anvil, client, feeds, history_depth=0)))
    # History for getRoundData: depth 2, so round 3 overwrites a ring slot.
    client = await _setup(w3, anvil, 10, 2)
    results.append(await _measure(w3, anvil, client, 10, 10, 2))
    client = await _setup(w3, anvil, 1, 2)
    results.append(await _measure(w3, anvil, client, 1, 10, 2))
    # The per-feed FeedUpdated event (a feed's default): what it adds per stored feed.
    for feeds in FEED_COUNTS:
        client = await _setup(w3, anvil, feeds, 0, events=True)
        results.append(await _measure(w3, anvil, client, feeds, 10, 0, events=True))
    return results


async def _schnorr_rows(w3: HttpWeb3, anvil: AnvilNode) -> list[Measurement]:
    """Scheme 0x0002: one Schnorr signature whatever n."""
    results: list[Measurement] = []
    for feeds in SCHNORR_FEED_COUNTS:
        client = await _setup(w3, anvil, feeds, 0)
        results.extend(await _each_committee(anvil, partial(_measure_schnorr, w3, anvil, client, feeds)))
    # FeedUpdated on (a new feed's default): what the per-feed event adds under this scheme.
    for feeds in SCHNORR_FEED_COUNTS[:2]:
        client = await _setup(w3, anvil, feeds, 0, events=True)
        results.append(await _measure_schnorr(w3, anvil, client, feeds, 10, events=True))
    return results


def print_table(results: list[Measurement]) -> bool:
    schnorr = [m for m in results if m.scheme == 0x0002]
    results = [m for m in results if m.scheme == 0x0001]
    if not results:
        return print_schnorr_table(schnorr)
    print("QuorumOracle.transmit gas (anvil default hardfork; every committee member signs)")
    print(f"{'feeds':>5} {'sigs':>4} {'history':>7} {'events':>6} {'first write':>11} {'steady':>8} {'per feed':>9}")
    for m in results:
        print(f"{m.feeds:>5} {m.signatures:>4} {m.history_depth:>7} {'on' if m.events else 'off':>6} "
              f"{m.first_write:>11,} {m.steady:>8,} {m.per_feed:>9,.0f}")
    by_key = {(m.feeds, m.signatures, m.history_depth, m.events): m for m in results}
    ten = by_key[(10, 10, 0, False)]
    one = by_key[(1, 10, 0, False)]
    ok_ten = ten.per_feed <= GOAL_PER_FEED_10x10
    ok_one = one.steady <= GOAL_SINGLE_FEED_10
    print()
    print(f"goal: 10 feeds, 10 sigs <= {GOAL_PER_FEED_10x10:,} gas/feed: {ten.per_feed:,.0f} "
          f"{'OK' if ok_ten else 'MISSED'}")
    print(f"goal: 1 feed, 10 sigs <= {GOAL_SINGLE_FEED_10:,} gas: {one.steady:,} {'OK' if ok_one else 'MISSED'}")
    print("reference (published): Schnorr-aggregate oracle 106,395 gas for 1 feed at 10 signers; "
          "signed-data-package oracle 130,226 gas for 1 symbol at 10 signers")
    ok_schnorr = print_schnorr_table(schnorr) if schnorr else True
    return ok_ten and ok_one and ok_schnorr


def print_schnorr_table(results: list[Measurement]) -> bool:
    print()
    print("scheme 0x0002 (FROST threshold Schnorr, one signature (R, z); n members, threshold 2f + 1)")
    print(f"{'feeds':>5} {'n':>4} {'events':>6} {'first write':>11} {'steady':>8} {'per feed':>9}")
    for m in results:
        print(f"{m.feeds:>5} {m.signatures:>4} {'on' if m.events else 'off':>6} {m.first_write:>11,} {m.steady:>8,} "
              f"{m.per_feed:>9,.0f}")
    # The goals are those of the main table's basis: FeedUpdated off (a feed's opt-out).
    single = [m.steady for m in results if m.feeds == 1 and not m.events]
    ten = [m.per_feed for m in results if m.feeds == 10 and not m.events]
    spread = (max(single) - min(single)) / min(single)
    ok_single = max(single) <= GOAL_SCHNORR_SINGLE_FEED
    ok_flat = spread <= GOAL_SCHNORR_FLATNESS
    ok_ten = max(ten) <= GOAL_SCHNORR_PER_FEED_10
    print()
    print(f"goal: 1 feed <= {GOAL_SCHNORR_SINGLE_FEED:,} gas for every n: {min(single):,} .. {max(single):,} "
          f"{'OK' if ok_single else 'MISSED'}")
    print(f"goal: 1 feed the same for n = 4..31 within {GOAL_SCHNORR_FLATNESS:.0%}: spread {spread:.2%} "
          f"{'OK' if ok_flat else 'MISSED'}")
    print(f"goal: 10 feeds <= {GOAL_SCHNORR_PER_FEED_10:,} gas/feed: {min(ten):,.0f} .. {max(ten):,.0f} "
          f"{'OK' if ok_ten else 'MISSED'}")
    return ok_single and ok_flat and ok_ten


class OneSignerOracle:
    """An oracle with the smallest committee the contract takes (4 signers, f = 1, threshold
    2), the owner transmitting: the cheapest way to land values for benchmarks of what reads
    them."""

    def __init__(self, w3: HttpWeb3, anvil: AnvilNode, client: QuorumOracleClient, config: OnchainConfig) -> None:
        self.w3, self.client, self.config = w3, client, config
        self.owner = anvil.accounts[0][1]
        self.domain = client.domain(anvil.chain_id)
        self.round = 0

    @classmethod
    async def deploy(cls, w3: HttpWeb3, anvil: AnvilNode, feeds: list[tuple[str, int, int, int]]) -> OneSignerOracle:
        """``feeds``: (feed id, decimals, breaker bps, history depth) each, bounds 0 .. 10^15."""
        owner, caller = anvil.accounts[0][1], anvil.accounts[0][0]
        client = QuorumOracleClient(w3, await deploy_oracle(w3, owner))
        for feed_id, decimals, breaker, history in feeds:
            await client.add_feed(owner, feed_id, decimals, feed_id, 0, 10**15, breaker_bps=breaker,
                                  heartbeat=3_600, history_depth=history)
        others = [address_of(keccak(f"bench transmitter {i}".encode())) for i in range(3)]
        config = await client.set_config(owner, [address_of(k) for k in _BENCH_SIGNERS], [caller, *others], 1, 2,
                                         b"bench")
        return cls(w3, anvil, client, config)

    async def signed(self, values: list[tuple[int, int]]) -> tuple[int, int, bytes, list[tuple[int, bytes]]]:
        """The next report of (feed index, value) pairs, observed now, signed by two members and
        not landed: (epoch, round, updates, signatures)."""
        self.round += 1
        now = int((await self.w3.eth.get_block("latest"))["timestamp"])
        updates = encode_updates([FeedUpdate(feed_index=i, observed_at=now, num_sources=3, value=v)
                                  for i, v in sorted(values)])
        digest = self.domain.report_digest(self.config.config_digest, 1, self.round, updates)
        return 1, self.round, updates, [(i, sign_digest(k, digest)) for i, k in enumerate(_BENCH_SIGNERS[:2])]

    async def land(self, values: list[tuple[int, int]]) -> None:
        """One report of (feed index, value) pairs, observed now, transmitted by the owner."""
        epoch, round, updates, signatures = await self.signed(values)
        await self.client.transmit(self.owner, self.config.config_digest, epoch, round, updates, signatures)


_BENCH_SIGNERS = [keccak(f"risk signer {i}".encode()) for i in range(4)]


async def pull_rows() -> list[dict[str, int | str]]:
    """Gas of the pull path: a keeper's submit-and-read in one transaction, and verifyReport."""
    from relayer.chain.contract import deploy_contract
    from relayer.chain.oracle import deploy_proxy, load_artifact

    rows: list[dict[str, int | str]] = []
    n = 10
    with AnvilNode.start() as anvil:
        w3 = connect(anvil.rpc_url)
        try:
            for feeds in (1, 10):
                for events in (False, True):
                    owner = anvil.accounts[0][1]
                    client = await _setup(w3, anvil, feeds, 0, events=events)
                    keys = [keccak(f"bench signer {i}".encode()) for i in range(n)]
                    transmitters = [address_of(keccak(f"bench transmitter {i}".encode())) for i in range(n)]
                    config = await client.set_config(owner, [address_of(k) for k in keys], transmitters, 3, n, b"bench")
                    domain = client.domain(anvil.chain_id)
                    proxy = await deploy_proxy(w3, owner, client.address, 0)
                    keeper_address = await deploy_contract(w3, owner, "PullKeeper", client.address, proxy, 3_600)
                    keeper = w3.eth.contract(address=keeper_address, abi=load_artifact("PullKeeper")["abi"])
                    oracle = w3.eth.contract(address=client.address, abi=load_artifact("QuorumOracle")["abi"])
                    caller, caller_key = anvil.accounts[2]
                    now = int((await w3.eth.get_block("latest"))["timestamp"])
                    for round_ in (1, 2):  # round 1 writes the feed slots the first time
                        updates = encode_updates([
                            FeedUpdate(feed_index=i, observed_at=now + round_, num_sources=3,
                                       value=BASE_VALUE + 1_000 * round_ + i) for i in range(feeds)])
                        digest = domain.report_digest(config.config_digest, 1, round_, updates)
                        bitmask, packed = pack_signatures([(i, sign_digest(k, digest)) for i, k in enumerate(keys)])
                        args = (config.config_digest, 1, round_, updates, bitmask, packed)
                        verify = int(await oracle.functions.verifyReport(*args).estimate_gas({"from": caller}))
                        receipt = await send_call(w3, caller_key, keeper.functions.submitAndRead(*args), "submitAndRead")
                    label = f"{feeds} feed{'s' if feeds > 1 else ''}, events {'on' if events else 'off'}"
                    rows.append({"report": label, "what": "keeper submit+read (steady)", "gas": int(receipt["gasUsed"])})
                    rows.append({"report": label, "what": "verifyReport (call)", "gas": verify})
        finally:
            await disconnect(w3)
    return rows


async def risk_gate_rows() -> list[dict[str, int | str]]:
    from aggregation.margin import MarginCurve
    from relayer.chain.oracle import load_artifact
    from relayer.chain.risk_gate import MarketInputs, RiskGateClient, deploy_risk_gate, market_id_bytes

    curve = MarginCurve(200, 3_000, 10_000, 1_000, 10_000_000, 300, 5_000, 6_000, 150,
                        funding_slope_bps=1_000_000, funding_threshold_ppm=100, open_interest_slope_bps=1_000,
                        open_interest_ref_usd=5_000_000_000)
    rows: list[dict[str, int | str]] = []
    with AnvilNode.start() as anvil:
        w3 = connect(anvil.rpc_url)
        try:
            owner, caller = anvil.accounts[0][1], anvil.accounts[0][0]
            # Realized and implied vol, depth, dispersion, funding rate, open interest at the catalog's decimals.
            decimals = (6, 6, 0, 2, 8, 0)
            oracle = await OneSignerOracle.deploy(w3, anvil, [(f"RISK{i}", d, 0, 0) for i, d in enumerate(decimals)])
            feeds = list(range(len(decimals)))
            gate = RiskGateClient(w3, await deploy_risk_gate(w3, owner, oracle.client.address))
            contract = w3.eth.contract(address=gate.address, abi=load_artifact("RiskGate")["abi"])
            await oracle.land([(i, 500_000) for i in feeds])
            for label, inputs in (
                ("2 inputs", MarketInputs(feeds[0], 600, depth_feed=feeds[2])),
                ("4 inputs", MarketInputs(feeds[0], 600, implied_vol_feed=feeds[1], depth_feed=feeds[2],
                                          dispersion_feed=feeds[3])),
                ("6 inputs", MarketInputs(feeds[0], 600, *feeds[1:])),
            ):
                market = market_id_bytes(label)
                for step in ("setCurve first", "setCurve replace"):
                    call = contract.functions.setCurve(market, inputs.as_tuple(), curve.as_tuple())
                    receipt = await send_call(w3, owner, call, "setCurve")
                    rows.append({"market": label, "what": step, "gas": int(receipt["gasUsed"])})
                for what, call in (("margins()", contract.functions.margins(market)),
                                   ("checkAction(increase)", contract.functions.checkAction(market, True))):
                    rows.append({"market": label, "what": what, "gas": int(await call.estimate_gas({"from": caller}))})
        finally:
            await disconnect(w3)
    return rows


async def vault_rows() -> list[dict[str, int | str]]:
    from aggregation.margin import MarginCurve
    from relayer.chain.risk_gate import MarketInputs, RiskGateClient, deploy_risk_gate, market_id_bytes
    from relayer.chain.vault import (
        CollateralClient,
        MarginVaultClient,
        VaultParameters,
        deploy_test_collateral,
        deploy_vault,
    )

    curve = MarginCurve(200, 3_000, 0, 1_000, 10_000_000, 300, 5_000, 6_000, 150)
    market, size = market_id_bytes("BTC-PERP"), 10**17  # 0.1 BTC
    rows: list[dict[str, int | str]] = []
    with AnvilNode.start() as anvil:
        w3 = connect(anvil.rpc_url)
        try:
            owner, caller = anvil.accounts[0][1], anvil.accounts[0][0]
            oracle = await OneSignerOracle.deploy(
                w3, anvil, [("BTC-USD", 8, 5_000, 4), ("BTC-RVOL-1H", 6, 5_000, 0), ("BTC-DEPTH", 0, 5_000, 0)])
            price, vol, depth = 0, 1, 2

            async def land(btc_usd: int, rvol: int) -> None:
                await oracle.land([(price, btc_usd), (vol, rvol), (depth, 3_000_000)])

            gate = RiskGateClient(w3, await deploy_risk_gate(w3, owner, oracle.client.address))
            await gate.set_curve(owner, market, MarketInputs(vol, 600, depth_feed=depth), curve)
            token = CollateralClient(w3, await deploy_test_collateral(w3, owner, 6))
            vault = MarginVaultClient(w3, await deploy_vault(w3, owner, gate.address, token.address))
            await vault.list_market(owner, market, price)
            await vault.set_parameters(owner, VaultParameters(liquidation_reward_bps=100))
            trader_address, trader = anvil.accounts[1]
            keeper = anvil.accounts[2][1]
            for address, k in ((caller, owner), (trader_address, trader)):
                await token.mint(k, address, 10**12)
                await token.approve(k, vault.address, 2**256 - 1)
            await vault.fund_pool(owner, 10**11)
            # Four reports fill the price feed's history ring (depth 4): the submit + open rows
            # then show the steady state, not a ring slot written for the first time (+17k).
            for _ in range(4):
                await land(60_000 * 10**8, 550_000)

            async def row(label: str, receipt: dict[str, object]) -> None:
                rows.append({"market": "BTC-PERP", "what": label, "gas": int(str(receipt["gasUsed"]))})

            for heuristics in ("off", "on"):
                await row(f"deposit (first) [{heuristics}]", await vault.deposit(trader, market, 2_400 * 10**6))
                await row(f"open [{heuristics}]", await vault.open(trader, market, size))
                await row(f"increase [{heuristics}]", await vault.increase(trader, market, size // 2))
                await row(f"reduce [{heuristics}]", await vault.reduce(trader, market, size // 2))
                await row(f"withdraw [{heuristics}]", await vault.withdraw(trader, market, 800 * 10**6))
                await land(54_500 * 10**8, 800_000)  # -9 %, volatility 80 %: below maintenance
                await row(f"liquidate [{heuristics}]", await vault.liquidate(keeper, trader_address, market))
                await land(60_000 * 10**8, 550_000)
                await vault.deposit(trader, market, 2_000 * 10**6)
                await vault.open(trader, market, size)
                await row(f"close [{heuristics}]", await vault.close(trader, market))
                await vault.withdraw(trader, market, await vault.collateral_of(trader_address, market))
                # The pull path: a report of the market's three feeds (2 signatures) and open, in one transaction.
                await vault.deposit(trader, market, 2_000 * 10**6)
                epoch, round, updates, signatures = await oracle.signed(
                    [(price, 60_000 * 10**8), (vol, 550_000), (depth, 3_000_000)])
                await row(f"submit + open [{heuristics}]", await vault.submit_and_call(
                    trader, oracle.config.config_digest, epoch, round, updates, signatures,
                    vault.encode_action("open", market, size)))
                await vault.close(trader, market)
                await vault.withdraw(trader, market, await vault.collateral_of(trader_address, market))
                await vault.set_parameters(owner, VaultParameters(1_000, 100, 60, 100))
        finally:
            await disconnect(w3)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print measurements as JSON lines instead")
    parser.add_argument("--risk-gate", action="store_true", help="measure RiskGate instead of transmit")
    parser.add_argument("--vault", action="store_true", help="measure MarginVault actions instead of transmit")
    parser.add_argument("--scheme", choices=("0x0001", "0x0002"),
                        help="only this signature scheme's transmit rows (0x0001 with the pull path)")
    args = parser.parse_args()
    schemes = frozenset({int(args.scheme, 16)}) if args.scheme else frozenset({0x0001, 0x0002})
    pull = asyncio.run(pull_rows()) if not (args.vault or args.risk_gate) and 0x0001 in schemes else []
    if args.vault or args.risk_gate:
        title, rows = (
            ("MarginVault gas (anvil default hardfork; receipts, 21,000 base included; RiskGate on 2 inputs)",
             asyncio.run(vault_rows())) if args.vault else
            ("RiskGate gas (anvil default hardfork; reads: eth_estimateGas, 21,000 base included)",
             asyncio.run(risk_gate_rows())))
        print(title)
        for row in rows:
            print(json.dumps(row) if args.json else f"{row['market']:>9} {row['what']:<24} {row['gas']:>8,}")
        return 0
    results = asyncio.run(run(schemes))
    if args.json:
        for m in results:
            print(json.dumps({**asdict(m), "per_feed": m.per_feed}))
        for row in pull:
            print(json.dumps(row))
        return 0
    ok = print_table(results)
    if not pull:
        return 0 if ok else 1
    print()
    print("pull path, 10 signatures (keeper: one transaction; verifyReport: eth_estimateGas, 21,000 base included)")
    for row in pull:
        print(f"{row['report']:>20} {row['what']:<28} {row['gas']:>8,}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
