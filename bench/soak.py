"""Soak: a devnet under a schedule of faults for a set number of minutes, and what each cost.

    .venv/bin/python bench/soak.py --minutes 30

One devnet (anvil, the simulated venues, 4 relayer processes, n=4 f=1, every feed every round
so that a landing per round makes recovery visible; the first follower runs the `partition`
test fault so that it can be cut off from the committee, the second the `disk_full` one). The
faults take turns, each for its
own duration, with a quiet spell between them:

    chain_stall      anvil mines nothing (automine and interval mining off)
    dropped_txs      anvil drops every pending transaction, again and again
    fee_spike        the base fee sits above every node's max_fee_per_gas
    reorg            the last two blocks are replaced by empty ones
    rpc_blackhole    anvil (and its launcher) SIGSTOPped: every RPC call hangs
    sigstop_node     one relayer SIGSTOPped
    sigkill_node     one relayer SIGKILLed, started again when the fault ends
    isolated_node    one relayer cut off from its peers (SIGUSR1: the partition fault)
    disk_full        another relayer's every file write fails (SIGUSR1: the disk_full fault,
                     RLIMIT_FSIZE 0: its store and its log cannot write)

Per fault the table shows: when it was injected (s from the start), how long it lasted,
recovery (from its end to the first report landing after it; "-" when reports kept landing
throughout), reports landed while it lasted, and the oldest report that landed as the
latest value while it lasted or during its recovery (the age of its oldest observation when
it was seen on-chain). Over the whole run: wrong values (a spot value more than 50 bps from
the simulated market's truth at its observation time), conflicting signatures (a node's
signature on an attested report that its own store says it did not give), and nonce misuse
(two mined transactions of one transmitter for the same report, or a transmission that
reverted on-chain).

Goal (issue: survive the chain and the network): 0 wrong values, 0 conflicting signatures,
0 nonce misuse, and every fault healed within two progress timeouts of its end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relayer.chain.codec import ReportDomain, recover_address  # noqa: E402
from relayer.devnet import Devnet, DevnetOptions  # noqa: E402

PROGRESS_TIMEOUT_MS = 3000
WRONG_BPS = 50
GWEI = 10**9


@dataclass
class Fault:
    name: str
    duration: float
    inject: Callable[[], Awaitable[None]]
    heal: Callable[[], Awaitable[None]]
    # While it lasts, called every 0.2 s (faults that must be kept up, like dropping transactions).
    keep: Callable[[], Awaitable[None]] | None = None


@dataclass
class Outcome:
    name: str
    injected_at: float
    duration: float
    healed_at: float = 0.0
    landed_during: int = 0
    recovery_s: float | None = None
    oldest_as_latest_s: float = 0.0
    reverted: int = 0  # transmissions that reverted on-chain from its start to the next fault
    notes: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, devnet: Devnet) -> None:
        self.devnet = devnet
        self.anvil = devnet.anvil
        assert self.anvil is not None
        self.started = time.time()
        self.landed: list[tuple[float, dict[str, Any]]] = []
        self.wrong: list[str] = []

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        assert self.anvil is not None
        return self.anvil.rpc(method, params or [])

    async def arpc(self, method: str, params: list[Any] | None = None) -> Any:
        return await asyncio.to_thread(self.rpc, method, params)

    # --- the faults ---------------------------------------------------------------------

    def faults(self) -> list[Fault]:
        follower = self.devnet.follower()
        proc = lambda: self.devnet.nodes[follower].proc  # noqa: E731 - restarted by sigkill_node
        full = self.devnet.nodes[self.devnet.follower(1)]

        async def stall() -> None:
            await self.arpc("evm_setAutomine", [False])
            await self.arpc("evm_setIntervalMining", [0])

        async def unstall() -> None:
            await self.arpc("evm_setAutomine", [True])
            await self.arpc("evm_setIntervalMining", [1])

        async def drop() -> None:
            await self.arpc("anvil_dropAllTransactions")

        async def spike() -> None:
            await self.arpc("anvil_setNextBlockBaseFeePerGas", [hex(2_000 * GWEI)])  # above the 500 gwei cap

        async def calm() -> None:
            await self.arpc("anvil_setNextBlockBaseFeePerGas", [hex(1 * GWEI)])

        async def reorg() -> None:
            await self.arpc("anvil_reorg", [2, []])

        async def nothing() -> None:
            return None

        def send(sig: int) -> Callable[[], Awaitable[None]]:
            async def go() -> None:
                p = proc()
                if p is not None and p.poll() is None:
                    os.kill(p.pid, sig)
            return go

        async def blackhole() -> None:
            assert self.anvil is not None
            self.anvil.send_signal(signal.SIGSTOP)

        async def unblackhole() -> None:
            assert self.anvil is not None
            self.anvil.send_signal(signal.SIGCONT)

        async def toggle_disk() -> None:
            if full.proc is not None and full.proc.poll() is None:
                os.kill(full.proc.pid, signal.SIGUSR1)

        async def kill() -> None:
            self.devnet.kill_node(follower)

        async def restart() -> None:
            self.devnet.start_node(follower)

        return [
            Fault("chain_stall", 20, stall, unstall),
            Fault("dropped_txs", 10, drop, nothing, keep=drop),
            Fault("fee_spike", 10, spike, calm, keep=spike),
            Fault("reorg", 3, reorg, nothing),
            Fault("rpc_blackhole", 10, blackhole, unblackhole),
            Fault("sigstop_node", 10, send(signal.SIGSTOP), send(signal.SIGCONT)),
            Fault("sigkill_node", 10, kill, restart),
            Fault("isolated_node", 10, send(signal.SIGUSR1), send(signal.SIGUSR1)),
            Fault("disk_full", 10, toggle_disk, toggle_disk),
        ]

    # --- watching -------------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                fresh = await asyncio.wait_for(self.devnet.poll_landed(), 5)
            except Exception:  # noqa: BLE001 - the RPC may be the fault (a timeout included)
                await asyncio.sleep(0.2)
                continue
            now = time.time()
            for report in fresh:
                self.landed.append((now, report))
                for feed in report["feeds"]:
                    truth = feed.get("true_price")
                    if truth is None:
                        continue
                    bps = abs(float(feed["value"]) - float(truth)) / float(truth) * 10_000
                    if bps > WRONG_BPS:
                        self.wrong.append(f"{feed['feed_id']} {feed['value']} vs {truth} ({bps:.0f} bps) "
                                          f"round {report['epoch']}/{report['round']}")
            await asyncio.sleep(0.2)

    def age(self, seen: float, report: dict[str, Any]) -> float:
        return seen - min(f["observed_at"] for f in report["feeds"])

    async def run(self, minutes: float, quiet: float) -> list[Outcome]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(self.watch(stop))
        outcomes: list[Outcome] = []
        deadline = self.started + minutes * 60
        faults = self.faults()
        await asyncio.sleep(quiet)
        i = 0
        while time.time() + faults[i % len(faults)].duration + quiet <= deadline or i < len(faults):
            fault = faults[i % len(faults)]
            i += 1
            outcome = Outcome(fault.name, time.time() - self.started, fault.duration)
            print(f"soak: {outcome.injected_at:7.1f} s  injecting {fault.name} for {fault.duration:.0f} s", flush=True)
            before = len(self.landed)
            await fault.inject()
            end = time.time() + fault.duration
            while time.time() < end:
                if fault.keep is not None:
                    await fault.keep()
                await asyncio.sleep(0.2)
            await fault.heal()
            outcome.healed_at = time.time()
            during = self.landed[before:]
            outcome.landed_during = len(during)
            # Recovery: the first report landing after the heal.
            heal_index = len(self.landed)
            limit = time.time() + max(quiet, 60)
            while len(self.landed) == heal_index and time.time() < limit:
                await asyncio.sleep(0.1)
            if len(self.landed) > heal_index:
                outcome.recovery_s = self.landed[heal_index][0] - outcome.healed_at
            else:
                outcome.notes.append("no report landed within 60 s of the end")
            await asyncio.sleep(max(0.0, quiet - (time.time() - outcome.healed_at)))
            window = self.landed[before:]
            outcome.oldest_as_latest_s = max((self.age(seen, r) for seen, r in window), default=0.0)
            outcomes.append(outcome)
            if time.time() >= deadline and i >= len(faults):
                break
        stop.set()
        await watcher
        return outcomes

    # --- after the run -------------------------------------------------------------------

    def conflicting_signatures(self) -> tuple[int, int]:
        """(checked, conflicting): every node's signature on every attested report anywhere,
        against what that node's own store says it signed."""
        devnet = self.devnet
        domain = ReportDomain(devnet.chain_id, devnet.client.address)
        own: dict[str, dict[tuple[str, int, int], str]] = {}
        for node in devnet.nodes:
            with sqlite3.connect(f"file:{node.data_dir / 'node.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
                own[node.address] = {(d, e, r): rd for d, e, r, rd in
                                     conn.execute("SELECT digest, epoch, round, report_digest FROM signed_reports")}
        checked = conflicting = 0
        for node in devnet.nodes:
            with sqlite3.connect(f"file:{node.data_dir / 'node.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
                rows = list(conn.execute("SELECT digest, epoch, round, updates, signatures FROM attested"))
            for digest, epoch, round_, updates, signatures in rows:
                report_digest = domain.report_digest(bytes.fromhex(digest[2:]), epoch, round_, bytes.fromhex(updates))
                for _, sig in json.loads(signatures):
                    signer = recover_address(report_digest, bytes.fromhex(sig))
                    mine = own.get(signer, {}).get((digest, epoch, round_))
                    checked += 1
                    if mine is not None and mine != report_digest.hex():
                        conflicting += 1
        return checked, conflicting

    async def nonce_misuse(self, first_block: int) -> tuple[int, int, list[float]]:
        """(transmissions, same report twice from one transmitter, block times of those that
        reverted on-chain)."""
        devnet = self.devnet
        head = await devnet.client.rpc.block_number()
        oracle = devnet.client.address.lower()
        seen: Counter[tuple[str, int, int]] = Counter()
        reverted: list[float] = []
        total = 0
        for number in range(first_block, head + 1):
            block = await devnet.client.rpc.request("eth_getBlockByNumber", [hex(number), True])
            for tx in block["transactions"]:
                if (tx.get("to") or "").lower() != oracle:
                    continue
                try:
                    decoded = devnet.client.decode_transmit_input(tx["input"])
                except Exception:  # noqa: BLE001 - another function of the oracle
                    continue
                total += 1
                seen[(tx["from"].lower(), int(decoded["epoch"]), int(decoded["round"]))] += 1
                receipt = await devnet.client.rpc.request("eth_getTransactionReceipt", [tx["hash"]])
                if int(receipt["status"], 16) != 1:
                    reverted.append(float(int(block["timestamp"], 16)))
        return total, sum(n - 1 for n in seen.values() if n > 1), reverted


def print_table(outcomes: list[Outcome], heal_goal: float) -> bool:
    print()
    print(f"{'fault':<14} {'at s':>7} {'for s':>6} {'recovery s':>10} {'landed':>7} {'oldest latest s':>15} "
          f"{'reverted':>8}  notes")
    ok = True
    for o in outcomes:
        recovery = "-" if o.recovery_s is None else f"{o.recovery_s:.1f}"
        healed = o.recovery_s is not None and o.recovery_s <= heal_goal
        ok = ok and healed
        print(f"{o.name:<14} {o.injected_at:>7.1f} {o.duration:>6.0f} {recovery:>10} {o.landed_during:>7} "
              f"{o.oldest_as_latest_s:>15.1f} {o.reverted:>8}  {'; '.join(o.notes)}"
              f"{'' if healed else ' (over the goal)'}")
    return ok


async def main_async(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="soak-"))
    devnet = Devnet(DevnetOptions(nodes=4, data_dir=data_dir, progress_timeout_ms=PROGRESS_TIMEOUT_MS,
                                  feed_selection="all", node_faults={"follower": "partition", "second_follower": "disk_full"}), out=io.StringIO())
    try:
        await devnet.setup()
        first_block = await devnet.client.rpc.block_number()
        soak = Soak(devnet)
        outcomes = await soak.run(args.minutes, args.quiet)
        checked, conflicting = soak.conflicting_signatures()
        transmissions, twice, reverted = await soak.nonce_misuse(first_block)
        starts = [soak.started + o.injected_at for o in outcomes] + [float("inf")]
        for at in reverted:  # block time: anvil's clock is the wall clock here
            for o, start, end in zip(outcomes, starts, starts[1:]):
                if start <= at < end:
                    o.reverted += 1
    finally:
        await devnet.teardown()
    heal_goal = 2 * PROGRESS_TIMEOUT_MS / 1000
    ok = print_table(outcomes, heal_goal)
    minutes = (time.time() - soak.started) / 60
    print()
    print(f"run: {minutes:.1f} min, {len(outcomes)} faults, {len(soak.landed)} reports landed; data in {data_dir}")
    print(f"wrong values (> {WRONG_BPS} bps from the simulated truth): {len(soak.wrong)}")
    for line in soak.wrong[:10]:
        print(f"  {line}")
    print(f"conflicting signatures: {conflicting} of {checked} checked")
    print(f"nonce misuse: {twice} same report twice from one transmitter, {len(reverted)} reverted on-chain "
          f"of {transmissions} transmissions")
    print(f"goal: every fault healed within {heal_goal:.0f} s (two progress timeouts) of its end: "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok and not soak.wrong and not conflicting and not twice else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run (at least one pass of faults)")
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds of calm between faults")
    parser.add_argument("--data-dir", default=None, help="keep the devnet's stores and logs here")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
