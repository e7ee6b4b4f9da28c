"""The embedded default network: a local chain, simulated venues and several relayer processes.

`relayer devnet` starts anvil, deploys and configures the contracts, serves the
simulated venues, launches one OS process per relayer and prints every report as it
lands on-chain. A market scenario (``--scenario``, feeds/scenarios.py) starts with the first
landed report, so its calm phase is on-chain before anything happens; its phases are printed
as they begin and written to devnet.json (``scenario``). Every child is tied to this process
(SIGTERM on parent death), and Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from web3 import AsyncHTTPProvider, AsyncWeb3

from aggregation.fixed import from_fixed
from feeds.catalog import FeedDefinition, load_catalog
from feeds.errors import CatalogError
from feeds.scenarios import TIME_SCALE, ScenarioClock, scenario_named
from feeds.simulator import MarketModel, VenueSimulator, describe_schedule, simulated_venue_names
from relayer.chain.anvil import AnvilNode, die_with_parent
from relayer.chain.codec import address_of, decode_updates
from relayer.chain.contract import disconnect
from relayer.ports import free_port
from relayer.chain.oracle import QuorumOracleClient, Transmission, deploy_oracle, deploy_proxy
from relayer.chain.risk_gate import MarketMargins
from relayer.chain.subscriptions import SubscriptionRegistryClient, deploy_subscription_registry
from relayer.devnet_margin import (
    COLLATERAL_DECIMALS,
    SPOT_BREAKER_BPS,
    VaultKeeper,
    deploy_margin_desk,
    format_margins,
    read_margins,
)
from relayer.p2p.identity import observer_relay_key, peer_id_of
from relayer.p2p.observers import REPORTS_TOPIC
from relayer.protocol.committee import Committee, OffchainConfig
from relayer.settings import Settings
from relayer.store import Store

if TYPE_CHECKING:
    from relayer.keygen import NextConfig

log = logging.getLogger(__name__)

# Governance floors of the devnet's SubscriptionRegistry: nobody may ask for less.
THRESHOLD_SCHEME = 2
# scrypt cost of the devnet's share files: the devnet keeps its signing keys in hex files.
DEVNET_SCRYPT_N = 1 << 12
FLOOR_DEVIATION_BPS = 5
FLOOR_HEARTBEAT_S = 60
# The example subscriber (anvil's last dev account, kept in DATA_DIR/subscriber.key) and how
# many subscriptions the owner approved it for.
SUBSCRIBER_ACCOUNT = -1
SUBSCRIBER_LIMIT = 4
# The example trader of the margin vault (anvil's second-to-last dev account, its key kept in
# DATA_DIR/trader.key), given test collateral at start.
TRADER_ACCOUNT = -2
# The vault keeper (relayer/devnet_margin.py, VaultKeeper): a dev account of its own (the tenth
# from the end: past every transmitter, before the accounts examples and tests trade from), so its
# syncFeeds never races another sender's nonces.
KEEPER_ACCOUNT = -10


def devnet_catalog(path: Path | None) -> list[FeedDefinition]:
    """The feeds a devnet serves: the packaged catalog (14 feeds over 7 risk-factor kinds,
    feeds/catalogs/devnet.toml) or the operator's ``--catalog FILE``.

    Checked against the installed sources, and every source it names must have an
    installed simulated venue: a devnet never asks a real venue.
    """
    catalog = load_catalog(path)
    simulated = set(simulated_venue_names())
    missing = sorted({name for feed in catalog for name in feed.sources} - simulated)
    if missing:
        raise CatalogError(
            f"{path or 'the devnet catalog'}: expected every source to have a simulated venue "
            f"(installed: {', '.join(sorted(simulated))}), got {', '.join(missing)} without one; install "
            f"the package that simulates it (relayer.simulated_venues) or remove it from the catalog"
        )
    return catalog


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
    share_timeout_ms: int = OffchainConfig.model_fields["share_timeout_ms"].default
    poll_interval: float = 1.0  # the node default: venues are polled once a second
    store_sync: str = "full"  # relayer Settings.store_sync
    threshold: int | None = None
    venue_faults: dict[str, str] = field(default_factory=dict)
    # Test-only: node index -> fault name (relayer/testing/faults.py), started through
    # `python -m relayer.testing run`; the key "leader" stands for whichever node leads
    # epoch 0, "follower" for the first node that leads neither epoch 0 nor 1 and
    # "second_follower" for the next one, all known only once the committee is set.
    node_faults: dict[int | str, str] = field(default_factory=dict)
    # A relayer that exits stops the whole devnet (else the devnet says so and keeps going).
    stop_on_exit: bool = False
    # Each relayer also gets its observer relay (`relayer relay`, a process of its own: read-only
    # reports over libp2p for non-members), at this niceness (19 stands for another machine).
    observers: bool = False
    relay_nice: int = 0
    # Relayers started outside the committee (for rotation): they watch until added.
    spare_nodes: int = 0
    node_env: dict[str, str] = field(default_factory=dict)
    # A feed catalog file (TOML) instead of the packaged devnet catalog.
    catalog: Path | None = None
    # The committee's report policy (OffchainConfig.feed_selection): every feed every round
    # ("all": a devnet that shows a landing a round, and measures the protocol round), or only
    # the feeds past their deviation threshold or heartbeat ("trigger", what a network that pays
    # for gas runs; on the simulated market most rounds then land nothing).
    feed_selection: str = "all"
    # The simulated market's scenario (feeds/scenarios.py); "calm" is the seeded market alone.
    scenario: str = "calm"
    # The report signature scheme: 0x0001 (each member's ECDSA signature) or 0x0002 (threshold
    # Schnorr: the committee runs the key generation at start and the owner installs its key).
    scheme: int = 1


@dataclass
class NodeProcess:
    index: int
    address: str
    data_dir: Path
    config_path: Path
    log_path: Path
    api: str = ""
    proc: subprocess.Popen[bytes] | None = None

    relay: subprocess.Popen[bytes] | None = None  # its observer relay, with --observers

    def start(self, env: dict[str, str], fault: str | None = None) -> None:
        command = ["relayer", "run"] if fault is None else ["relayer.testing", "run", "--fault", fault]
        self.proc = _spawn([*command, "--config", str(self.config_path)], self.log_path, env)

    def start_relay(self, env: dict[str, str], nice: int = 0) -> None:
        self.relay = _spawn(["relayer", "relay", "--config", str(self.config_path), "--stats-file",
                             str(self.data_dir / RELAY_STATS)], self.data_dir / "relay.log", env, nice)

    def stop(self, timeout: float = 5.0) -> None:
        for proc in (self.proc, self.relay):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# Each relay's counters (relayer/relay.py), in its node's directory.
RELAY_STATS = "relay-stats.json"


def _spawn(module_args: list[str], log_path: Path, env: dict[str, str], nice: int = 0) -> subprocess.Popen[bytes]:
    """``python -m module_args`` logging to ``log_path``, gone with the devnet, at ``nice``."""
    def prepare() -> None:
        die_with_parent()
        if nice:
            os.nice(nice)

    with open(log_path, "ab") as log_file:
        return subprocess.Popen([sys.executable, "-m", *module_args], stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, preexec_fn=prepare)


class Devnet:
    def __init__(self, options: DevnetOptions, out: TextIO = sys.stdout) -> None:
        self.o = options
        self.out = out
        self.anvil: AnvilNode | None = None
        self.simulator: VenueSimulator | None = None
        self.nodes: list[NodeProcess] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.landed: list[dict[str, Any]] = []
        self.scenario = ScenarioClock(scenario_named(options.scenario), options.seed)
        self._phase: str | None = None

    def _say(self, text: str) -> None:
        # With --json, stdout carries only the report objects; progress goes to stderr.
        stream = sys.stderr if self.o.json_lines else self.out
        print(text, file=stream, flush=True)

    async def setup(self) -> None:
        o = self.o
        # Before anything starts: a catalog the devnet cannot serve fails at once.
        self.catalog = devnet_catalog(o.catalog)
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
        for spec in self.catalog:
            low, high = spec.bounds_fixed
            # Spot feeds get the circuit breaker (see SPOT_BREAKER_BPS); derived factors such as
            # volatility legitimately jump by more than any fixed share, so theirs stay off.
            breaker = SPOT_BREAKER_BPS if str(spec.kind) == "spot" else 0
            # Spot feeds, the vault's prices, keep history (feeds.catalog.SPOT_HISTORY_DEPTH says why).
            index = await self.client.add_feed(owner_key, spec.feed_id, spec.decimals,
                                               spec.description or f"{spec.instrument} {spec.kind}", low, high,
                                               breaker_bps=breaker, heartbeat=spec.heartbeat_s,
                                               history_depth=spec.onchain_history_depth)
            proxy = await deploy_proxy(self.w3, owner_key, oracle_address, index)
            self.feeds.append({"feed_id": spec.feed_id, "instrument": spec.instrument, "decimals": spec.decimals,
                               "kind": str(spec.kind), "index": index, "proxy": proxy, "breaker_bps": breaker,
                               "history_depth": spec.onchain_history_depth,
                               "deviation_bps": spec.deviation_bps, "heartbeat_s": spec.heartbeat_s})
        keys = [secrets.token_bytes(32) for _ in range(o.nodes + o.spare_nodes)]
        transmitters = [self.anvil.accounts[1 + i] for i in range(len(keys))]
        self.owner_key = owner_key
        # anvil's well-known first account: the oracle owner of this local network only.
        owner_key_path = o.data_dir / "owner.key"
        owner_key_path.write_text(owner_key.hex())
        owner_key_path.chmod(0o600)
        # The registry of subscribers' wishes, gated by the owner; one example subscriber approved.
        registry_address = await deploy_subscription_registry(
            self.w3, owner_key, oracle_address, FLOOR_DEVIATION_BPS, FLOOR_HEARTBEAT_S)
        self.registry = SubscriptionRegistryClient(self.w3, registry_address)
        subscriber, subscriber_key = self.anvil.accounts[SUBSCRIBER_ACCOUNT]
        await self.registry.approve(owner_key, subscriber, SUBSCRIBER_LIMIT)
        subscriber_key_path = o.data_dir / "subscriber.key"
        subscriber_key_path.write_text(subscriber_key.hex())
        subscriber_key_path.chmod(0o600)
        # RiskGate, the test collateral and the margin vault, with a market per instrument the
        # catalog serves the feeds of.
        trader, trader_key = self.anvil.accounts[TRADER_ACCOUNT]
        self.desk = await deploy_margin_desk(
            self.w3, owner_key, oracle_address, self.feeds, round_interval_ms=o.round_interval_ms,
            feed_selection=o.feed_selection, trader=trader)
        for reason in self.desk.skipped:
            self._say(f"devnet: {reason}")
        trader_key_path = o.data_dir / "trader.key"
        trader_key_path.write_text(trader_key.hex())
        trader_key_path.chmod(0o600)
        self.keeper = VaultKeeper(self.desk, self.client, self.anvil.accounts[KEEPER_ACCOUNT][1],
                                  {fd["index"]: fd["feed_id"] for fd in self.feeds})
        self.transmitter_accounts = transmitters
        offchain = OffchainConfig(
            round_interval_ms=o.round_interval_ms, progress_timeout_ms=o.progress_timeout_ms,
            grace_ms=o.grace_ms, transmit_stage_ms=o.transmit_stage_ms, share_timeout_ms=o.share_timeout_ms,
            feed_selection="trigger" if o.feed_selection == "trigger" else "all",
        )
        onchain = await self.client.set_config(
            owner_key, [address_of(k) for k in keys[: o.nodes]], [a for a, _ in transmitters[: o.nodes]], f, threshold,
            offchain.encode(),
        )
        self.offchain = offchain
        self.committee = Committee.from_onchain(onchain)
        self.chain_id = self.anvil.chain_id

        self.model = MarketModel(o.seed, scenario=self.scenario)
        self.simulator = VenueSimulator(self.model)
        await self.simulator.start()
        for venue, fault in o.venue_faults.items():
            self.simulator.set_fault(venue, fault)
            self._say(f"devnet: venue {venue} answers with fault {fault!r}")
        ports = [free_port() for _ in keys]
        api_ports = [free_port() for _ in keys]
        peers = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(k)}" for port, k in zip(ports, keys)]
        # With --observers, each node's observer relay (`relayer relay`, a process apart from the
        # node): reports for peers outside the committee (docs/subscribers.md). Off by default: a
        # libp2p host per relay costs CPU on a small machine (bench/observers.py).
        observer_ports = [free_port() for _ in keys] if o.observers else []
        observer_relays = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(observer_relay_key(k))}"
                           for port, k in zip(observer_ports, keys)]
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
                "subscription_registry_address": registry_address,
                "risk_gate_address": self.desk.gate.address,
                "listen_port": ports[i],
                "peers": [p for j, p in enumerate(peers) if j != i],
                "feeds": [spec.model_dump(mode="json") for spec in self.catalog],
                "source_urls": {v: self.simulator.venue_url(v) for v in self.simulator.venues},
                "poll_interval": o.poll_interval,
                "store_sync": o.store_sync,
                "api_port": api_ports[i],
            }
            if o.observers:
                # The relay's own key (never the signing key), derived so its peer id is known now.
                (node_dir / "observer-relay.key").write_text(observer_relay_key(key).hex())
                os.chmod(node_dir / "observer-relay.key", 0o600)
                config["observer_listen_port"] = observer_ports[i]
                config["observer_key_file"] = str(node_dir / "observer-relay.key")
            if o.scheme == THRESHOLD_SCHEME:
                # The share file is encrypted with a password, as on a real network; here it sits
                # beside the node's hex signing key, which is no more secret.
                (node_dir / "keystore.password").write_text(secrets.token_hex(16))
                os.chmod(node_dir / "keystore.password", 0o600)
                config["keystore_password_file"] = str(node_dir / "keystore.password")
                config["threshold_share_file"] = str(node_dir / "threshold-share.json")
            config_path = node_dir / "config.json"
            config_path.write_text(json.dumps(config, indent=2))
            self.nodes.append(NodeProcess(i, address_of(key), node_dir, config_path, node_dir / "node.log",
                                          api=f"http://127.0.0.1:{api_ports[i]}"))
        self.info: dict[str, Any] = {
            "rpc_url": self.anvil.rpc_url, "chain_id": self.chain_id, "oracle": oracle_address,
            "config_digest": self.committee.digest_hex, "simulator": self.simulator.base_url,
            "feeds": self.feeds, "threshold": threshold, "f": f,
            "nodes": [{"index": n.index, "address": n.address, "data_dir": str(n.data_dir), "api": n.api,
                       "transmitter": transmitters[n.index][0]} for n in self.nodes],
            # For an operator joining this network (`relayer init --devnet`, `relayer committee`).
            "peers": peers[:o.nodes],
            # Read-only report relays, one per node (scripts/observer.mjs, docs/subscribers.md).
            "observer_relays": observer_relays[:o.nodes],
            "reports_topic": REPORTS_TOPIC,
            "source_urls": {v: self.simulator.venue_url(v) for v in self.simulator.venues},
            "owner_key_file": str(owner_key_path),
            # For `relayer subscriptions --devnet`: the registry and one approved subscriber.
            "subscription_registry": registry_address,
            "subscription_floors": {"deviation_bps": FLOOR_DEVIATION_BPS, "heartbeat_s": FLOOR_HEARTBEAT_S},
            "subscriber": subscriber, "subscriber_key_file": str(subscriber_key_path),
            "subscriber_limit": SUBSCRIBER_LIMIT,
            # The margin desk (docs/operator.md, "Margins on the devnet").
            "risk_gate": self.desk.gate.address, "vault": self.desk.vault.address,
            "collateral": self.desk.collateral.address, "collateral_decimals": COLLATERAL_DECIMALS,
            "markets": [m.as_json({fd["index"]: fd["feed_id"] for fd in self.feeds}) for m in self.desk.markets],
            "trader": trader, "trader_key_file": str(trader_key_path),
            # The account the devnet's vault keeper sends syncFeeds from.
            "keeper": self.anvil.accounts[KEEPER_ACCOUNT][0],
            "scenario": self._scenario_info(),
        }
        if o.scheme == THRESHOLD_SCHEME:
            from relayer.keygen import next_config_from_chain
            await self._install_threshold_key(
                list(range(o.nodes)), await next_config_from_chain(self.anvil.rpc_url, self.client.address))
        self._write_info()
        for node in self.nodes:
            self.start_node(node.index)
            if o.observers:
                node.start_relay({**os.environ, **o.node_env}, o.relay_nice)
        self._next_block = await self.client.rpc.block_number()
        self._say(f"devnet: oracle {oracle_address} on {self.anvil.rpc_url}; dashboards at "
                  + ", ".join(n.api for n in self.nodes))
        self._say(f"devnet: RiskGate {self.desk.gate.address} ({', '.join(m.name for m in self.desk.markets) or 'no market'}), "
                  f"vault {self.desk.vault.address}, collateral {self.desk.collateral.address}")
        self._say("devnet: relayers started; waiting for peers to connect and the first report to land")

    async def _install_threshold_key(self, members: list[int], config: NextConfig,
                                     held_back: Collection[int] = ()) -> Committee:
        """The key generation among `members` (indexes into self.nodes) for `config` (each
        member's `relayer dkg`, here in one process on ports of their own), then
        `setThresholdConfig` with every member's approval. The share of a member in `held_back`
        goes to `held_back_share_path` instead of its node's share file, as if its operator had
        not yet put it in place (`deliver_share`)."""
        from relayer.keygen import check_approvals, keygen_command

        ports = [free_port() for _ in members]
        peers = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(self._signing_key(i))}" for port, i in zip(ports, members)]
        settings = []
        for k, i in enumerate(members):
            update: dict[str, Any] = {"listen_port": ports[k], "peers": [p for j, p in enumerate(peers) if j != k]}
            if i in held_back:
                update["threshold_share_file"] = self.held_back_share_path(i)
            settings.append(Settings.load(self.nodes[i].config_path).model_copy(update=update))
        self._say(f"devnet: {len(members)} members run the key generation for scheme 0x0002 (config "
                  f"#{config.config_count}, threshold {config.threshold})")
        approvals = await asyncio.gather(*(keygen_command(m, config, phase_timeout=10.0, connect_timeout=60.0,
                                                          scrypt_n=DEVNET_SCRYPT_N) for m in settings))
        key, packed = check_approvals(config, approvals)
        onchain = await self.client.set_threshold_config(
            self.owner_key, list(config.signers), list(config.transmitters), config.f, config.threshold,
            config.offchain_config, key, packed)
        self.committee = Committee.from_onchain(onchain)
        self.info["config_digest"] = self.committee.digest_hex
        self.info["scheme"] = "0x0002"
        self.info["group_key"] = approvals[0]["group_key"]
        self.info["transcript_hash"] = approvals[0]["transcript_hash"]
        self._say(f"devnet: group key {approvals[0]['group_key']} installed (transcript "
                  f"{approvals[0]['transcript_hash'][:18]}..)")
        return self.committee

    def _signing_key(self, index: int) -> bytes:
        return bytes.fromhex((self.nodes[index].data_dir / "signing.key").read_text())

    def held_back_share_path(self, index: int) -> Path:
        return self.nodes[index].data_dir / "threshold-share.next.json"

    def deliver_share(self, index: int) -> None:
        """Put a held-back share where the node reads it (an operator copying it into place)."""
        settings = Settings.load(self.nodes[index].config_path)
        assert settings.threshold_share_file is not None
        self.held_back_share_path(index).replace(settings.threshold_share_file)

    def _scenario_info(self) -> dict[str, Any]:
        return {"name": self.scenario.scenario.name, "description": self.scenario.scenario.description,
                "started_at": self.scenario.started_at, "time_scale": TIME_SCALE,
                "phases": self.scenario.schedule()}

    def _write_info(self) -> None:
        assert self.o.data_dir is not None
        # Written whole and renamed: a reader never sees half a file.
        path = self.o.data_dir / "devnet.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.info, indent=2))
        partial.replace(path)

    def start_scenario(self, at: float) -> None:
        """Start the market scenario at ``at`` (unix s): print its schedule and record it."""
        self.scenario.start(at)
        for line in describe_schedule(self.scenario):
            self._say(f"devnet: {line}")
        self.info["scenario"] = self._scenario_info()
        self._write_info()

    def _announce_phase(self) -> None:
        phase = self.scenario.phase_at(time.time())
        if phase is not None and phase.name != self._phase:
            self._phase = phase.name
            self._say(f"devnet: scenario {self.scenario.scenario.name}: phase {phase.name} begins: "
                      f"{phase.description}")

    def start_node(self, index: int) -> None:
        env = {**os.environ, **self.o.node_env}
        fault = self.o.node_faults.get(index)
        if fault is None and index == self.committee.leader(0):
            fault = self.o.node_faults.get("leader")
        if fault is None and index == self.follower():
            fault = self.o.node_faults.get("follower")
        if fault is None and index == self.follower(1):
            fault = self.o.node_faults.get("second_follower")
        if fault == "spam":
            # The spammer lifts its own size limit so that it can send what others refuse.
            env["RELAYER_MAX_MESSAGE_BYTES"] = str(4 << 20)
        self.nodes[index].start(env, fault)

    def follower(self, nth: int = 0) -> int:
        """The first (``nth``: the next) node that leads neither epoch 0 nor epoch 1 of the
        current committee."""
        leaders = {self.committee.leader(0), self.committee.leader(1)}
        return [i for i in range(self.committee.n) if i not in leaders][nth]

    def kill_node(self, index: int) -> None:
        """SIGKILL one relayer: no chance to flush or say goodbye."""
        proc = self.nodes[index].proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    async def rotate(self, members: list[int], *, f: int | None = None, threshold: int | None = None,
                     held_back: Collection[int] = ()) -> Committee:
        """The owner's setConfig with the relayers at `members` (indexes into self.nodes). Under
        scheme 0x0002 a new committee needs a new group key: its members run the key generation
        and the owner installs the key with their approvals (`held_back`: see
        `_install_threshold_key`)."""
        f = (len(members) - 1) // 3 if f is None else f
        if self.o.scheme == THRESHOLD_SCHEME:
            from relayer.keygen import next_config_from_chain
            assert self.anvil is not None
            config = await next_config_from_chain(
                self.anvil.rpc_url, self.client.address, signers=[self.nodes[i].address for i in members],
                transmitters=[self.transmitter_accounts[i][0] for i in members], f=f, threshold=threshold or f + 1)
            return await self._install_threshold_key(members, config, held_back)
        onchain = await self.client.set_config(
            self.owner_key, [self.nodes[i].address for i in members],
            [self.transmitter_accounts[i][0] for i in members], f, threshold or f + 1, self.offchain.encode(),
        )
        self.committee = Committee.from_onchain(onchain)
        return self.committee

    def _round_started_at(self, epoch: int, round: int) -> float | None:
        """The round's start as the leader recorded it in its own store."""
        leader_address = self.committee.signers[self.committee.leader(epoch)]
        leader = next((n for n in self.nodes if n.address == leader_address), None)
        if leader is None:
            return None
        return Store.round_started_at(leader.data_dir / "node.sqlite", epoch, round)

    async def _report_landed(self, event: Transmission, seen_at: float) -> dict[str, Any]:
        epoch, round_id = event.epoch, event.round
        tx_hash = "0x" + event.tx_hash.hex()
        tx, receipt = await self.client.rpc.batch([
            ("eth_getTransactionByHash", [tx_hash]), ("eth_getTransactionReceipt", [tx_hash]),
        ])
        transmitted = self.client.decode_transmit_input(tx["input"])
        updates = decode_updates(transmitted["updates"])
        signer_indexes = [i for i in range(self.committee.n) if event.signer_bitmask >> i & 1]
        by_index = {fd["index"]: fd for fd in self.feeds}
        feeds = []
        for update in updates:
            fd = by_index[update.feed_index]
            # The market model's truth is a price: only spot feeds are compared with it.
            truth = self.model.true_price(fd["instrument"], float(update.observed_at)) if fd["kind"] == "spot" else None
            # The value the contract verified and accepted in this transaction; reading the
            # feed's slot instead could show a later report that landed before this poll.
            feeds.append({
                "feed_id": fd["feed_id"], "value": str(from_fixed(update.value, fd["decimals"])),
                "raw_value": update.value, "decimals": fd["decimals"], "observed_at": update.observed_at,
                "num_sources": update.num_sources, "true_price": None if truth is None else str(truth),
                "kind": fd["kind"],
            })
        started = self._round_started_at(epoch, round_id)
        # What RiskGate demands as of the block this report landed in (a later report in the
        # same block included).
        margins = await read_margins(self.desk.gate, self.desk.markets, event.block_number)
        return {
            "epoch": epoch, "round": round_id, "feeds": feeds,
            "config_digest": "0x" + bytes(transmitted["configDigest"]).hex(),
            "signers": [self.committee.signers[i] for i in signer_indexes],
            "signer_count": len(signer_indexes), "gas_used": int(receipt["gasUsed"], 16),
            "transmitter": self.w3.to_checksum_address(tx["from"]), "tx_hash": tx_hash,
            "block": event.block_number,
            "latency_ms": round((seen_at - started) * 1000, 1) if started else None,
            "margins": {name: {"initial_bps": m.initial_bps, "maintenance_bps": m.maintenance_bps, "usable": m.usable}
                        for name, m in margins.items()},
        }

    def _print_report(self, report: dict[str, Any]) -> None:
        if self.o.json_lines:
            print(json.dumps(report), file=self.out, flush=True)
            return
        values = "  ".join(
            f"{f['feed_id']} {Decimal(f['value']):,.2f} (sim {Decimal(f['true_price']):,.2f})"
            if f["true_price"] is not None else f"{f['feed_id']} {Decimal(f['value']):,f}"
            for f in report["feeds"]
        )
        kinds = len({f["kind"] for f in report["feeds"]})
        values = f"{len(report['feeds'])} feeds / {kinds} kinds  {values}"
        latency = f"{report['latency_ms']:.0f} ms" if report["latency_ms"] is not None else "n/a"
        margins = format_margins({name: MarketMargins(**m) for name, m in report["margins"].items()})
        # Under 0x0002 the report names no signers: one Schnorr signature of any threshold of them.
        signed = (f"schnorr {self.committee.threshold}-of-{self.committee.n}" if self.o.scheme == THRESHOLD_SCHEME
                  else f"signers {report['signer_count']}/{self.committee.n}")
        print(
            f"landed epoch {report['epoch']} round {report['round']:>3}  {values}  "
            f"{signed}  gas {report['gas_used']:,}  latency {latency}"
            + (f"  margins {margins}" if margins else ""),
            file=self.out, flush=True,
        )

    async def poll_landed(self) -> list[dict[str, Any]]:
        """Reports that landed since the last call, read back from the chain."""
        head = await self.client.rpc.block_number()
        if head < self._next_block:
            return []
        events = await self.client.transmission_events(self._next_block, head)
        seen_at = time.time()
        if events:
            # Someone else (an operator's `relayer committee`) may have changed the committee:
            # signer bitmasks index into the one on-chain now.
            _, _, digest = await self.client.latest_config_details()
            if bytes(digest) != self.committee.config_digest:
                self.committee = Committee.from_onchain(await self.client.config())
        self._next_block = head + 1
        fresh = [await self._report_landed(event, seen_at) for event in events]
        self.landed.extend(fresh)
        return fresh

    async def watch(self, stop: asyncio.Event) -> int:
        exited: set[int] = set()
        while not stop.is_set():
            for node in self.nodes:
                if node.proc is None or node.proc.poll() is None:
                    exited.discard(node.index)  # running (again, after a start_node)
                    continue
                if node.index in exited:
                    continue
                exited.add(node.index)
                running = sum(1 for n in self.nodes if n.proc is not None and n.proc.poll() is None)
                quorum = self.committee.quorum
                self._say(f"devnet: node-{node.index} exited with {node.proc.returncode}; see {node.log_path}")
                if self.o.stop_on_exit or running == 0:
                    return 1
                self._say(f"devnet: {running} of {len(self.nodes)} relayers still run"
                          + ("; keeping going (--stop-on-exit stops instead)" if running >= quorum else
                             f"; fewer than a quorum of {quorum}: no report can land until one comes back"))
            landed = await self.poll_landed()
            if landed and self.scenario.started_at is None:
                self.start_scenario(time.time())
            if self.scenario.started_at is not None:
                self._announce_phase()
            for report in landed:
                self._print_report(report)
                if self.o.rounds is not None and len(self.landed) >= self.o.rounds:
                    return 0
            for line in await self.keeper.poll(time.monotonic(), landed=bool(landed)):
                self._say(f"devnet: keeper syncFeeds {line}")
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.05)
            except TimeoutError:
                pass
        return 130

    async def teardown(self) -> None:
        for node in self.nodes:
            for proc in (node.proc, node.relay):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
        for node in self.nodes:
            node.stop()
        if self.simulator is not None:
            await self.simulator.stop()
        if getattr(self, "w3", None) is not None:
            await disconnect(self.w3)
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
