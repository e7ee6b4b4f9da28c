"""The embedded default network: a local chain, simulated venues and several relayer processes.

`relayer devnet` starts anvil, deploys and configures the contracts, serves the
simulated venues, launches one OS process per relayer and prints every report as it
lands on-chain. Every child is tied to this process (SIGTERM on parent death), and
Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from web3 import AsyncHTTPProvider, AsyncWeb3

from aggregation.fixed import from_fixed
from feeds.simulator import MarketModel, VenueSimulator
from relayer.chain.anvil import AnvilNode, die_with_parent
from relayer.chain.codec import address_of, decode_updates
from relayer.chain.oracle import QuorumOracleClient, deploy_oracle, deploy_proxy
from relayer.p2p.identity import peer_id_of
from relayer.protocol.committee import Committee, OffchainConfig

log = logging.getLogger(__name__)

DEFAULT_FEEDS: tuple[tuple[str, str, int], ...] = (
    # feed id, instrument, decimals
    ("BTC-USD", "BTC-USD", 8),
    ("ETH-USD", "ETH-USD", 8),
)
VENUES = ("binance", "coinbase", "kraken")


@dataclass
class DevnetOptions:
    nodes: int = 4
    rounds: int | None = None
    json_lines: bool = False
    data_dir: Path | None = None
    seed: int = 7
    round_interval_ms: int = 1000
    progress_timeout_ms: int = 4000
    grace_ms: int = 20
    transmit_stage_ms: int = 1000
    poll_interval: float = 0.5
    threshold: int | None = None
    venue_faults: dict[str, str] = field(default_factory=dict)
    node_env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NodeProcess:
    index: int
    address: str
    data_dir: Path
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relayer", "run", "--config", str(self.config_path)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, preexec_fn=die_with_parent,
        )
        log_file.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Devnet:
    def __init__(self, options: DevnetOptions, out: TextIO = sys.stdout) -> None:
        self.o = options
        self.out = out
        self.anvil: AnvilNode | None = None
        self.simulator: VenueSimulator | None = None
        self.nodes: list[NodeProcess] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.landed: list[dict[str, Any]] = []

    def _say(self, text: str) -> None:
        # With --json, stdout carries only the report objects; progress goes to stderr.
        stream = sys.stderr if self.o.json_lines else self.out
        print(text, file=stream, flush=True)

    async def setup(self) -> None:
        o = self.o
        if o.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="relayer-devnet-")
            o.data_dir = Path(self._tmp.name)
        o.data_dir.mkdir(parents=True, exist_ok=True)
        f = (o.nodes - 1) // 3
        threshold = o.threshold or f + 1
        self._say(f"devnet: starting anvil, {o.nodes} relayers (f={f}, threshold={threshold}), data in {o.data_dir}")
        # Blocks every second besides automine: block.timestamp follows the clock as on a live chain.
        self.anvil = AnvilNode.start(block_time=1)
        self.w3 = AsyncWeb3(AsyncHTTPProvider(self.anvil.rpc_url))
        owner_key = self.anvil.accounts[0][1]
        oracle_address = await deploy_oracle(self.w3, owner_key)
        self.client = QuorumOracleClient(self.w3, oracle_address)
        self.feeds: list[dict[str, Any]] = []
        for feed_id, instrument, decimals in DEFAULT_FEEDS:
            index = await self.client.add_feed(owner_key, feed_id, decimals, f"{instrument} spot median", 1, 10**30)
            proxy = await deploy_proxy(self.w3, owner_key, oracle_address, index)
            self.feeds.append({"feed_id": feed_id, "instrument": instrument, "decimals": decimals,
                               "index": index, "proxy": proxy})
        keys = [secrets.token_bytes(32) for _ in range(o.nodes)]
        transmitters = [self.anvil.accounts[1 + i] for i in range(o.nodes)]
        offchain = OffchainConfig(
            round_interval_ms=o.round_interval_ms, progress_timeout_ms=o.progress_timeout_ms,
            grace_ms=o.grace_ms, transmit_stage_ms=o.transmit_stage_ms,
        )
        onchain = await self.client.set_config(
            owner_key, [address_of(k) for k in keys], [a for a, _ in transmitters], f, threshold, offchain.encode()
        )
        self.committee = Committee.from_onchain(onchain)
        self.chain_id = self.anvil.chain_id

        self.model = MarketModel(o.seed)
        self.simulator = VenueSimulator(self.model, venues=VENUES)
        await self.simulator.start()
        for venue, fault in o.venue_faults.items():
            self.simulator.set_fault(venue, fault)
            self._say(f"devnet: venue {venue} answers with fault {fault!r}")
        ports = [free_port() for _ in keys]
        peers = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(k)}" for port, k in zip(ports, keys)]
        for i, key in enumerate(keys):
            node_dir = o.data_dir / f"node-{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            (node_dir / "signing.key").write_text(key.hex())
            (node_dir / "transmitter.key").write_text(transmitters[i][1].hex())
            for secret in ("signing.key", "transmitter.key"):
                os.chmod(node_dir / secret, 0o600)
            config = {
                "name": f"node-{i}",
                "data_dir": str(node_dir),
                "signing_key_file": str(node_dir / "signing.key"),
                "transmitter_key_file": str(node_dir / "transmitter.key"),
                "rpc_urls": [self.anvil.rpc_url],
                "oracle_address": oracle_address,
                "listen_port": ports[i],
                "peers": [p for j, p in enumerate(peers) if j != i],
                "feeds": [{"feed_id": fd["feed_id"], "instrument": fd["instrument"], "sources": list(VENUES),
                           "min_sources": 2, "decimals": fd["decimals"]} for fd in self.feeds],
                "source_urls": {v: self.simulator.venue_url(v) for v in VENUES},
                "poll_interval": o.poll_interval,
            }
            config_path = node_dir / "config.json"
            config_path.write_text(json.dumps(config, indent=2))
            self.nodes.append(NodeProcess(i, address_of(key), node_dir, config_path, node_dir / "node.log"))
        (o.data_dir / "devnet.json").write_text(json.dumps({
            "rpc_url": self.anvil.rpc_url, "chain_id": self.chain_id, "oracle": oracle_address,
            "config_digest": self.committee.digest_hex, "simulator": self.simulator.base_url,
            "feeds": self.feeds, "threshold": threshold, "f": f,
            "nodes": [{"index": n.index, "address": n.address, "data_dir": str(n.data_dir),
                       "transmitter": transmitters[n.index][0]} for n in self.nodes],
        }, indent=2))
        env = {**os.environ, **o.node_env}
        for node in self.nodes:
            node.start(env)
        self._say(f"devnet: oracle {oracle_address} on {self.anvil.rpc_url}; waiting for reports to land")

    def _round_started_at(self, epoch: int, round: int) -> float | None:
        """The round's start as the leader recorded it in its own store."""
        leader = self.nodes[self.committee.leader(epoch)]
        try:
            with sqlite3.connect(f"file:{leader.data_dir / 'node.sqlite'}?mode=ro", uri=True, timeout=1) as conn:
                row = conn.execute(
                    "SELECT started_at FROM attested WHERE epoch = ? AND round = ?", [epoch, round]
                ).fetchone()
        except sqlite3.Error:
            return None
        return float(row[0]) if row and row[0] is not None else None

    async def _report_landed(self, event: Any, seen_at: float) -> dict[str, Any]:
        args = event["args"]
        epoch, round_id = int(args["epoch"]), int(args["round"])
        tx = await self.w3.eth.get_transaction(event["transactionHash"])
        receipt = await self.w3.eth.get_transaction_receipt(event["transactionHash"])
        updates = decode_updates(self.client.decode_transmit_input(tx["input"])["updates"])
        signer_indexes = [i for i in range(self.committee.n) if int(args["signerBitmask"]) >> i & 1]
        by_index = {fd["index"]: fd for fd in self.feeds}
        feeds = []
        for update in updates:
            fd = by_index[update.feed_index]
            state = await self.client.latest_feed(update.feed_index)
            truth = self.model.true_price(fd["instrument"], float(update.observed_at))
            feeds.append({
                "feed_id": fd["feed_id"], "value": str(from_fixed(state.value, fd["decimals"])),
                "raw_value": state.value, "decimals": fd["decimals"], "observed_at": update.observed_at,
                "num_sources": update.num_sources, "true_price": str(truth),
            })
        started = self._round_started_at(epoch, round_id)
        return {
            "epoch": epoch, "round": round_id, "feeds": feeds,
            "signers": [self.committee.signers[i] for i in signer_indexes],
            "signer_count": len(signer_indexes), "gas_used": int(receipt["gasUsed"]),
            "transmitter": tx["from"], "tx_hash": "0x" + bytes(event["transactionHash"]).hex(),
            "block": int(event["blockNumber"]),
            "latency_ms": round((seen_at - started) * 1000, 1) if started else None,
        }

    def _print_report(self, report: dict[str, Any]) -> None:
        if self.o.json_lines:
            print(json.dumps(report), file=self.out, flush=True)
            return
        values = "  ".join(
            f"{f['feed_id']} {Decimal(f['value']):,.2f} (sim {Decimal(f['true_price']):,.2f})" for f in report["feeds"]
        )
        latency = f"{report['latency_ms']:.0f} ms" if report["latency_ms"] is not None else "n/a"
        print(
            f"landed epoch {report['epoch']} round {report['round']:>3}  {values}  "
            f"signers {report['signer_count']}/{self.committee.n}  gas {report['gas_used']:,}  latency {latency}",
            file=self.out, flush=True,
        )

    async def watch(self, stop: asyncio.Event) -> int:
        from_block = await self.w3.eth.block_number
        while not stop.is_set():
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    self._say(f"devnet: node-{node.index} exited with {node.proc.returncode}; see {node.log_path}")
                    return 1
            head = await self.w3.eth.block_number
            if head >= from_block:
                events = await self.client.transmission_events(from_block, head)
                seen_at = time.time()
                for event in events:
                    report = await self._report_landed(event, seen_at)
                    self.landed.append(report)
                    self._print_report(report)
                    if self.o.rounds is not None and len(self.landed) >= self.o.rounds:
                        return 0
                from_block = head + 1
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.05)
            except TimeoutError:
                pass
        return 130

    async def teardown(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            node.stop()
        if self.simulator is not None:
            await self.simulator.stop()
        if self.anvil is not None:
            self.anvil.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


async def run_devnet(options: DevnetOptions) -> int:
    devnet = Devnet(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await devnet.setup()
        code = await devnet.watch(stop)
        if code == 130:
            devnet._say("devnet: stopping on signal")
            code = 0
        return code
    finally:
        await devnet.teardown()
