"""The `relayer` command: `init`, `check`, `run`, `relay`, `status`, `dkg`, `committee`, `oracle`, `vault`,
`subscriptions`, `verify`, `devnet`, `sources` (`oracle` and `vault`, the guardian's and keeper's
commands, live in relayer/cli_guardian.py).

Every command has `--help`. Exit codes: 0 success, 1 a check or request failed,
2 bad usage or settings, 130 interrupted during start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayer.logs import setup_logging
from relayer.settings import Settings, SettingsError

log = logging.getLogger("relayer")

DEFAULT_DIR = Path("relayer-node")
NO_ORACLE = "0x" + "0" * 40


def _say(text: str) -> None:
    """Progress for the operator: stderr, so stdout stays for data."""
    print(text, file=sys.stderr, flush=True)


# --- init --------------------------------------------------------------------------------

CONFIG_TEMPLATE = """\
# Relayer node configuration (TOML), written by `relayer init`.
# Every setting can be overridden by an environment variable named RELAYER_<SETTING>,
# e.g. RELAYER_RPC_URLS=http://127.0.0.1:8545. Validate with `relayer check --config {config}`.

# A name for this node in logs and the dashboard.
name = "{name}"

# Where the node keeps its store (slashing protection: never delete it while the key is in use).
data_dir = "{data_dir}"

# The encrypted signing key (scrypt). Its password comes from RELAYER_KEYSTORE_PASSWORD,
# or from a file named by RELAYER_KEYSTORE_PASSWORD_FILE (a Docker/Kubernetes secret), or
# from a prompt. Never put the password in this file. Without a key the node is a dry run.
keystore_file = "{keystore}"

# The account that pays for transmissions: a file holding its hex key (mode 0600).
# Leave commented out and the node signs reports but never sends a transaction.
# transmitter_key_file = "/run/secrets/transmitter.key"

# One or more JSON-RPC endpoints of the chain, in order of preference: when one fails (refused,
# timeout, HTTP 5xx/429) the next takes over and the failed one rests for a few seconds.
rpc_urls = [{rpc_urls}]

# The chain id the RPC endpoints must report (`relayer check` refuses any other).
{chain_id_line}

# The QuorumOracle contract whose committee this node serves.
oracle_address = "{oracle}"

# The SubscriptionRegistry of this oracle: subscribers' deviation and heartbeat wishes, which
# the node follows (`relayer subscriptions list`). Without it the catalog's promises hold.
{registry_line}

# A RiskGate reading this oracle: the dashboard and /api/margins show the margins it sets.
{risk_gate_line}

# libp2p: where this node listens, and its committee peers as multiaddrs
# (/ip4/HOST/tcp/PORT/p2p/PEER_ID). Give each operator your multiaddr printed by `relayer init`.
listen_host = "0.0.0.0"
listen_port = {listen_port}
peers = [{peers}]

# HTTP API, dashboard and Prometheus /metrics. Loopback only unless you put a proxy in front.
api_host = "127.0.0.1"
api_port = {api_port}
# What a client may hold: connections at once (one more is answered 503 and closed), event
# streams among them, and seconds to send a request's headers (also the idle limit of a
# kept-alive connection) and to be read and answered (streams are exempt).
api_max_connections = 256
api_max_streams = 32
api_header_timeout_s = 10.0
api_body_timeout_s = 30.0

# Observer relay: attested reports on a read-only libp2p topic for peers outside the committee,
# served by `relayer relay --config THIS_FILE`, a process apart from the node that reads its
# reports from this node's API (docs/operator.md). It needs a port and a key of its own (32
# bytes hex, never the signing key); observer_peers lists the peer ids it admits (empty: anyone).
# observer_listen_port = 9200
# observer_key_file = "observer-relay.key"
# observer_peers = []

# Logs: plain text for a terminal, JSON lines for a collector.
log_json = false
log_level = "INFO"

# Venue polling (seconds).
poll_interval = 1.0
source_timeout = 2.0

# Venue base URLs, to point a source at a mirror or the simulator; omit for the real venues.
[source_urls]
{source_urls}
# The feeds this node observes; feed_id must be registered on the oracle.
[[feeds]]
feed_id = "BTC-USD"
instrument = "BTC-USD"
sources = ["binance", "coinbase", "kraken"]
min_sources = 2
decimals = 8

[[feeds]]
feed_id = "ETH-USD"
instrument = "ETH-USD"
sources = ["binance", "coinbase", "kraken"]
min_sources = 2
decimals = 8
"""


def _cmd_init(args: argparse.Namespace) -> int:
    from relayer.keystore import MIN_PASSWORD_LEN, KeystoreError, new_key, resolve_password, write_keystore
    from relayer.p2p.identity import peer_id_of
    from relayer.settings import read_key_file

    directory: Path = args.dir.resolve()
    args.peers, args.source_urls = [], {}
    args.registry = getattr(args, "registry", None)
    risk_gate = None
    if args.devnet is not None:
        try:
            info = json.loads((args.devnet / "devnet.json").read_text())
            args.rpc_url = args.rpc_url or [info["rpc_url"]]
            args.chain_id = args.chain_id or int(info["chain_id"])
            if args.oracle == NO_ORACLE:
                args.oracle = info["oracle"]
            args.registry = args.registry or info.get("subscription_registry")
            risk_gate = info.get("risk_gate")
            args.peers, args.source_urls = list(info["peers"]), dict(info["source_urls"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"relayer init: cannot read {args.devnet / 'devnet.json'} ({exc}); start `relayer devnet "
                  f"--data-dir {args.devnet}` first", file=sys.stderr)
            return 2
    args.rpc_url = args.rpc_url or ["http://127.0.0.1:8545"]
    keystore = directory / "keystore.json"
    config = directory / "relayer.toml"
    existing = [p for p in (keystore, config) if p.exists()]
    if existing and not args.force:
        print(f"relayer init: {', '.join(map(str, existing))} already exist; pass --force to overwrite "
              "(a new key loses the old key's committee seat)", file=sys.stderr)
        return 1
    try:
        key = read_key_file(args.import_key) if args.import_key else new_key()
        password = resolve_password(confirm=True, prompt="New keystore password: ")
    except (KeystoreError, SettingsError) as exc:
        print(f"relayer init: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("\nrelayer init: cancelled; nothing written", file=sys.stderr)
        return 130
    if len(password) < MIN_PASSWORD_LEN:
        print(f"relayer init: the password must have at least {MIN_PASSWORD_LEN} characters", file=sys.stderr)
        return 2
    _say(f"encrypting the key with scrypt (a second or two) into {keystore} ...")
    address = write_keystore(keystore, key, password, scrypt_n=args.scrypt_n)
    rpc = ", ".join(json.dumps(u) for u in args.rpc_url)
    config.write_text(CONFIG_TEMPLATE.format(
        config=config, name=args.name, data_dir=directory / "data", keystore=keystore, rpc_urls=rpc,
        chain_id_line=f"chain_id = {args.chain_id}" if args.chain_id else "# chain_id = 1",
        oracle=args.oracle, listen_port=args.listen_port, api_port=args.api_port,
        registry_line=(f'subscription_registry_address = "{args.registry}"' if args.registry
                       else '# subscription_registry_address = "0x..."'),
        risk_gate_line=f'risk_gate_address = "{risk_gate}"' if risk_gate else '# risk_gate_address = "0x..."',
        peers="".join(f"\n    {json.dumps(p)}," for p in args.peers) + ("\n" if args.peers else ""),
        source_urls="".join(f"{name} = {json.dumps(url)}\n" for name, url in sorted(args.source_urls.items())),
    ))
    peer_id = peer_id_of(key)
    del key
    print(f"signer address  {address}")
    print(f"peer id         {peer_id}")
    print(f"multiaddr       /ip4/<your public IP>/tcp/{args.listen_port}/p2p/{peer_id}")
    print(f"keystore        {keystore}")
    print(f"config          {config}")
    print("next: send the signer address to the oracle owner to be added to the committee, "
          f"then `relayer check --config {config}` and `relayer run --config {config}`")
    return 0


# --- check -------------------------------------------------------------------------------


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""


class Checker:
    def __init__(self, settings: Settings, *, timeout: float) -> None:
        self.s = settings
        self.timeout = timeout
        self.results: list[CheckResult] = []

    def record(self, name: str, ok: bool, detail: str, fix: str = "") -> bool:
        result = CheckResult(name, ok, detail, fix)
        self.results.append(result)
        print(f"{'PASS' if ok else 'FAIL'}  {name:<11} {detail}", flush=True)
        if not ok and fix:
            print(f"      fix: {fix}", flush=True)
        return ok

    async def run(self) -> bool:
        from relayer.chain.contract import disconnect

        self._clients: list[Any] = []
        try:
            return await self._run()
        finally:
            for w3 in self._clients:
                await disconnect(w3)

    async def _run(self) -> bool:
        from web3 import AsyncHTTPProvider, AsyncWeb3

        from relayer.chain.codec import address_of
        from relayer.chain.contract import HttpWeb3
        from relayer.chain.oracle import QuorumOracleClient
        from relayer.keystore import KeystoreError, load_signing_key

        s = self.s
        address: str | None = None
        try:
            key, dry = load_signing_key(s)
            address = address_of(key)
            del key
            self.record("key", True, f"signer {address}" if not dry else
                        "no keystore_file or signing_key_file: `relayer run` will be a dry run, signing nothing")
            if dry:
                address = None
        except (KeystoreError, SettingsError) as exc:
            self.record("key", False, str(exc), "run `relayer init`, or set the password through "
                        "RELAYER_KEYSTORE_PASSWORD or RELAYER_KEYSTORE_PASSWORD_FILE")

        w3: HttpWeb3 | None = None
        chain_ids: set[int] = set()
        for url in s.rpc_urls:
            candidate = AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": self.timeout}))
            self._clients.append(candidate)
            try:
                chain_id = await asyncio.wait_for(candidate.eth.chain_id, self.timeout)
            except Exception as exc:
                self.record("rpc", False, f"{url} unreachable: {type(exc).__name__}: {str(exc)[:120]}",
                            "check the URL, that the node is up and that this machine may reach it (rpc_urls)")
                continue
            chain_ids.add(chain_id)
            self.record("rpc", True, f"{url} answers, chain id {chain_id}")
            w3 = w3 or candidate
        if w3 is None:
            self.record("contract", False, "skipped: no RPC endpoint answered", "fix rpc_urls first")
            return self._summary()
        expected = s.chain_id
        if expected is not None and chain_ids != {expected}:
            self.record("chain id", False, f"expected {expected}, the RPC endpoints report {sorted(chain_ids)}",
                        "point rpc_urls at the intended chain, or correct chain_id in the config")
        elif len(chain_ids) > 1:
            self.record("chain id", False, f"the RPC endpoints disagree: {sorted(chain_ids)}",
                        "every URL in rpc_urls must serve the same chain")
        else:
            self.record("chain id", True, f"{next(iter(chain_ids))}" + (" as configured" if expected else
                                                                     " (set chain_id to pin it)"))
        oracle = QuorumOracleClient(w3, s.oracle_address)
        try:
            code = await w3.eth.get_code(oracle.address)
            if not code:
                raise ValueError(f"no contract at {oracle.address} on this chain")
            config = await oracle.config()
        except Exception as exc:
            self.record("contract", False, f"{s.oracle_address}: {str(exc)[:160]}",
                        "set oracle_address to the QuorumOracle deployed on this chain")
            return self._summary()
        signers = [a.lower() for a in config.signers]
        self.record("contract", True, f"QuorumOracle {oracle.address}, config digest 0x{config.config_digest.hex()}, "
                    f"n={len(signers)} f={config.f} threshold={config.threshold}")
        if address is not None:
            if address.lower() in signers:
                self.record("committee", True, f"{address} is signer {signers.index(address.lower())}")
                await self._check_share(oracle, config, signers.index(address.lower()), next(iter(chain_ids)))
            else:
                self.record("committee", False, f"{address} is not in the committee ({len(signers)} signers)",
                            "send your signer address to the oracle owner to be added with setConfig; "
                            "until then `relayer run` only watches")
        for feed in s.feeds:
            try:
                index = await oracle.feed_index(feed.feed_id)
                self.record("feed", True, f"{feed.feed_id} registered at index {index}")
            except Exception as exc:
                self.record("feed", False, f"{feed.feed_id}: {str(exc)[:120]}",
                            "ask the owner to addFeed it, or remove it from feeds")
        if s.subscription_registry_address is not None:
            await self._check_registry(w3, s.subscription_registry_address, oracle.address)
        await self._check_venues()
        await self._check_peers()
        return self._summary()

    async def _check_share(self, oracle: Any, config: Any, member: int, chain_id: int) -> None:
        """Under scheme 0x0002, this member's key share: readable, for this committee, of the
        installed group key (what the node checks before it signs)."""
        from relayer.chain.errors import ChainError
        from relayer.keygen import installed_share
        from relayer.keystore import KeystoreError, keystore_password
        from relayer.protocol.signer import THRESHOLD_SCHNORR, scheme_of

        if scheme_of(config.config_digest) != THRESHOLD_SCHNORR:
            return
        path = self.s.threshold_share_file
        if path is None:
            self.record("share", False, "the committee signs with threshold Schnorr (scheme 0x0002) and no "
                        "threshold_share_file is set", "run `relayer dkg` with the committee and set threshold_share_file")
            return
        try:
            record = await installed_share(path, keystore_password(self.s), chain_id=chain_id, oracle=oracle,
                                           signers=config.signers, threshold=config.threshold, member=member)
        except (KeystoreError, ChainError, SettingsError) as exc:
            self.record("share", False, str(exc), "run `relayer dkg` for the installed config (every member at once)")
            return
        self.record("share", True, f"{path}: member {record.member}'s share of the installed group key "
                    f"(transcript 0x{record.transcript_hash.hex()[:12]}..)")

    async def _check_registry(self, w3: Any, address: str, oracle: str) -> None:
        from relayer.chain.subscriptions import SubscriptionRegistryClient

        registry = SubscriptionRegistryClient(w3, address)
        try:
            reads = await registry.oracle()
            count = len(await registry.subscriptions())
        except Exception as exc:
            self.record("registry", False, f"{address}: {str(exc)[:160]}",
                        "set subscription_registry_address to the SubscriptionRegistry of this oracle, or remove it")
            return
        if reads.lower() != oracle.lower():
            self.record("registry", False, f"SubscriptionRegistry {address} serves oracle {reads}, not {oracle}",
                        "set subscription_registry_address to the registry deployed for oracle_address")
            return
        self.record("registry", True, f"SubscriptionRegistry {registry.address}, {count} subscription(s)")

    async def _check_venues(self) -> None:
        import aiohttp

        from feeds.registry import make_source

        from feeds.kinds import KINDS, FactorKind

        s = self.s
        # Per venue, each (factor, instrument) the configured feeds poll from it, as the node's
        # cache does: a derived factor (dispersion) reads spot.
        wanted: dict[str, set[tuple[FactorKind, str]]] = {}
        for feed in s.feeds:
            kind = FactorKind(feed.kind)
            polled = FactorKind.SPOT if KINDS[kind].derived else kind
            for name in feed.sources:
                wanted.setdefault(name, set()).add((polled, feed.instrument))
        async with aiohttp.ClientSession() as session:
            for name in sorted(wanted):
                probes = sorted(wanted[name], key=lambda p: (p[0].value, p[1]))
                done: list[str] = []
                what = "its source"
                try:
                    source = make_source(name, s.source_urls.get(name), timeout=min(s.source_timeout, self.timeout))
                    for kind, instrument in probes:
                        what = f"{kind.value} {instrument}"
                        reading = await asyncio.wait_for(source.fetch(session, kind, instrument), self.timeout + 1)
                        done.append(f"{what} {reading.value}")
                    self.record("venue", True, f"{name}: " + "; ".join(done))
                except Exception as exc:
                    self.record("venue", False, f"{name}: {what}: {str(exc)[:160]}",
                                "check network access to the venue or its source_urls entry; a feed needs "
                                "min_sources healthy venues")

    async def _check_peers(self) -> None:
        if not self.s.peers:
            self.record("peers", True, "none configured (add committee peers' multiaddrs to peers)")
            return
        for addr in self.s.peers:
            parts = addr.strip("/").split("/")
            try:
                host, port = parts[1], int(parts[parts.index("tcp") + 1])
            except (IndexError, ValueError):
                self.record("peers", False, f"{addr} is not a multiaddr",
                            "expected /ip4/HOST/tcp/PORT/p2p/PEER_ID or /dns4/NAME/tcp/PORT/p2p/PEER_ID")
                continue
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout)
                writer.close()
                self.record("peers", True, f"{host}:{port} accepts connections")
            except Exception as exc:
                self.record("peers", False, f"{host}:{port} unreachable: {type(exc).__name__}",
                            "the peer may not be running yet, or a firewall blocks its listen_port")

    def _summary(self) -> bool:
        failed = [r for r in self.results if not r.ok]
        print(f"{len(self.results) - len(failed)} passed, {len(failed)} failed", flush=True)
        return not failed


def _cmd_check(args: argparse.Namespace) -> int:
    setup_logging(node="check", json_lines=False, level="ERROR")
    try:
        settings = Settings.load(args.config)
    except SettingsError as exc:
        print(f"FAIL  config      {exc}")
        print("      fix: correct the named settings (see the comments `relayer init` writes)")
        return 1
    print(f"PASS  config      {args.config or 'environment'} is valid")
    try:
        ok = asyncio.run(Checker(settings, timeout=args.timeout).run())
    except KeyboardInterrupt:
        print("\nrelayer check: interrupted", file=sys.stderr)
        return 130
    return 0 if ok else 1


# --- run ---------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from relayer.chain.errors import ChainError
    from relayer.keystore import KeystoreError
    from relayer.p2p.errors import P2PError

    try:
        settings = Settings.load(args.config)
    except SettingsError as exc:
        print(f"relayer run: {exc}", file=sys.stderr)
        return 2
    setup_logging(node=settings.name, json_lines=settings.log_json or args.json_logs, level=settings.log_level)
    from relayer.node import Node

    try:
        node = Node(settings)
        log.info("starting: connecting to %s", ", ".join(settings.rpc_urls))
        asyncio.run(node.run())
    except (SettingsError, KeystoreError) as exc:
        log.error("%s", exc)
        return 2
    except ChainError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except P2PError as exc:
        log.error("cannot start: %s; check listen_host/listen_port (is another process using the port?)", exc)
        return 1
    except OSError as exc:  # the HTTP API's port, the data directory
        log.error("cannot start: %s; check api_host/api_port and data_dir", exc)
        return 1
    except KeyboardInterrupt:
        print("relayer: interrupted during start-up; nothing was left running", file=sys.stderr)
        return 130
    print("relayer: stopped cleanly", file=sys.stderr)
    return 0


# --- status ------------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    url = args.api
    if url is None:
        try:
            settings = Settings.load(args.config)
        except SettingsError as exc:
            print(f"relayer status: {exc}", file=sys.stderr)
            return 2
        host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
        url = f"http://{host}:{settings.api_port}"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/status", timeout=args.timeout) as response:
            status = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"relayer status: no node answers at {url} ({getattr(exc, 'reason', exc)}); "
              "is `relayer run` up, and api_host/api_port as configured?", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    c = status.get("committee") or {}
    member = c.get("member_index")
    print(f"node        {status['name']}  {status['address']}{'  (dry run)' if status['dry_run'] else ''}")
    print(f"ready       {'yes' if status['ready'] else 'no'}")
    print(f"chain       id {status['chain_id']}  oracle {status['oracle']}")
    if c:
        print(f"committee   digest {c['digest'][:18]}…  n={c['n']} f={c['f']} threshold={c['threshold']}  "
              + (f"member #{member}" if member is not None else "NOT A MEMBER (watching)"))
    print(f"peers       {len(status['peers'])} connected")
    print(f"round       epoch {status['epoch']} round {status['round']}  last landed {status['last_landed']}")
    t = status["transmission"]
    print(f"transmit    {t['transmitted']} landed, {t['superseded']} superseded, {t['failed']} failed, "
          f"gas {t['gas_used']:,}")
    for name, h in status["sources"].items():
        print(f"source      {name:<10} {'healthy' if h['healthy'] else 'FAILING'}  ok {h['ok']}  errors {h['errors']}")
    return 0


# --- committee (oracle owner) -------------------------------------------------------------


class CommitteeError(Exception):
    """A committee change that cannot be made; the message says why and what to do."""


def _run_chain_command(name: str, command: Coroutine[Any, Any, int], refused: type[Exception], state_hint: str) -> int:
    """Run an on-chain command: a refusal prints one line and exits 2, Ctrl-C says where to look."""
    try:
        return asyncio.run(command)
    except refused as exc:
        print(f"relayer {name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nrelayer {name}: interrupted; {state_hint}", file=sys.stderr)
        return 130


def _cmd_committee(args: argparse.Namespace) -> int:
    return _run_chain_command("committee", _committee(args), CommitteeError,
                              "check `relayer committee show` for the state")


def _devnet_info(data_dir: Path, refused: type[Exception]) -> dict[str, Any]:
    """A running `relayer devnet --data-dir DIR`'s devnet.json, or ``refused`` saying why not."""
    try:
        info: dict[str, Any] = json.loads((data_dir / "devnet.json").read_text())
    except (OSError, ValueError) as exc:
        raise refused(f"cannot read {data_dir / 'devnet.json'} ({exc}); is the devnet running "
                      f"with --data-dir {data_dir}?") from None
    return info


def _committee_target(args: argparse.Namespace) -> tuple[str, str, Path | None]:
    """(rpc url, oracle address, owner key file) from the flags, else from --devnet DIR."""
    rpc, oracle, key_file = args.rpc_url, args.oracle, args.owner_key_file
    if args.devnet is not None:
        info = _devnet_info(args.devnet, CommitteeError)
        rpc, oracle = rpc or info.get("rpc_url"), oracle or info.get("oracle")
        key_file = key_file or (Path(info["owner_key_file"]) if info.get("owner_key_file") else None)
    if not rpc or not oracle:
        raise CommitteeError("give --rpc-url and --oracle (or --devnet DIR for a local devnet)")
    return rpc, oracle, key_file


async def _committee(args: argparse.Namespace) -> int:
    from relayer.chain.contract import disconnect
    from relayer.chain.errors import ChainError
    from relayer.chain.oracle import QuorumOracleClient, connect
    from relayer.settings import read_key_file

    rpc, oracle, key_file = _committee_target(args)
    w3 = connect(rpc)
    try:
        client = QuorumOracleClient(w3, oracle)
        try:
            cfg = await client.config()
        except ChainError as exc:
            raise CommitteeError(f"cannot read the committee of {oracle} at {rpc}: {exc}") from None
        if args.action == "show":
            _print_committee(cfg)
            return 0
        if args.action == "install-threshold":
            return await _install_threshold(args, client, cfg, key_file)
        if not args.signer:
            raise CommitteeError(f"`relayer committee {args.action}` needs --signer ADDRESS")
        if key_file is None:
            raise CommitteeError("changing the committee needs the oracle owner's key: --owner-key-file FILE")
        try:
            owner_key = read_key_file(key_file)
        except SettingsError as exc:
            raise CommitteeError(str(exc)) from None
        signers, transmitters = list(cfg.signers), list(cfg.transmitters)
        lowered = [a.lower() for a in signers]
        target = _address(args.signer, "--signer")
        if args.action == "add":
            if target.lower() in lowered:
                raise CommitteeError(f"{target} is already signer {lowered.index(target.lower())}")
            transmitter = _address(args.transmitter, "--transmitter") if args.transmitter else target
            if args.replace:
                old = args.replace.lower()
                if old not in lowered:
                    raise CommitteeError(f"{args.replace} is not in the committee; `relayer committee show` lists it")
                i = lowered.index(old)
                signers[i], transmitters[i] = target, transmitter
            else:
                signers.append(target)
                transmitters.append(transmitter)
        else:  # remove
            if target.lower() not in lowered:
                raise CommitteeError(f"{target} is not in the committee")
            i = lowered.index(target.lower())
            del signers[i], transmitters[i]
        if len(signers) < 3 * cfg.f + 1:
            raise CommitteeError(f"{len(signers)} signers cannot tolerate f={cfg.f} faults (n must be >= "
                                 f"{3 * cfg.f + 1}); add a member before removing one, or use --replace")
        _say(f"sending setConfig to {oracle} ({len(signers)} signers, f={cfg.f}, threshold={cfg.threshold}) ...")
        try:
            new = await client.set_config(owner_key, signers, transmitters, cfg.f, cfg.threshold,
                                          cfg.offchain_config)
        except ChainError as exc:
            raise CommitteeError(f"setConfig failed: {exc}") from None
        _print_committee(new)
        print("nodes switch to the new committee when they next read the chain (config_poll_interval)")
        return 0
    finally:
        await disconnect(w3)


async def _install_threshold(args: argparse.Namespace, client: Any, cfg: Any, key_file: Path | None) -> int:
    """setThresholdConfig with the members' approvals that `relayer dkg` wrote: the config they
    approved, exactly, and the group key their key generation made."""
    from relayer.chain.errors import ChainError
    from relayer.keygen import KeygenError, NextConfig, check_approvals
    from relayer.settings import read_key_file

    if not args.approval:
        raise CommitteeError("`relayer committee install-threshold` needs --approval FILE for each member's "
                             "`relayer dkg` output (at least the threshold's number)")
    approvals = []
    for path in args.approval:
        try:
            approvals.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise CommitteeError(f"cannot read the approval {path}: {exc}") from None
    try:
        config = NextConfig.from_json(approvals[0].get("config") or {})
        if any(NextConfig.from_json(a.get("config") or {}) != config for a in approvals):
            raise KeygenError("the approvals are for different configs: collect the ones of one `relayer dkg` run")
        if config.oracle.lower() != client.address.lower() or config.config_count != cfg.config_count + 1:
            raise KeygenError(f"the approvals are for config #{config.config_count} of {config.oracle}; the next "
                              f"config of {client.address} is #{cfg.config_count + 1}: run `relayer dkg` again")
        key, packed = check_approvals(config, approvals)
    except KeygenError as exc:
        raise CommitteeError(str(exc)) from None
    if key_file is None:
        raise CommitteeError("installing a group key needs the oracle owner's key: --owner-key-file FILE")
    try:
        owner_key = read_key_file(key_file)
    except SettingsError as exc:
        raise CommitteeError(str(exc)) from None
    _say(f"sending setThresholdConfig to {client.address} ({config.n} signers, f={config.f}, "
         f"threshold={config.threshold}, {len(approvals)} approvals) ...")
    try:
        new = await client.set_threshold_config(owner_key, list(config.signers), list(config.transmitters), config.f,
                                                config.threshold, config.offchain_config, key, packed)
    except ChainError as exc:
        raise CommitteeError(f"setThresholdConfig failed: {exc}") from None
    _print_committee(new)
    print(f"group key x 0x{key.x:064x} (y parity {key.y_parity}), transcript 0x{key.transcript_hash.hex()}")
    print("members sign with threshold Schnorr (scheme 0x0002) once they read the new config")
    return 0


# --- dkg (every member of the next committee at once) ------------------------------------


class DkgUsage(Exception):
    """`relayer dkg` cannot run; the message says why and what to do."""


def _cmd_dkg(args: argparse.Namespace) -> int:
    return _run_chain_command("dkg", _dkg(args), DkgUsage, "no share was written; run it again with every member")


async def _dkg(args: argparse.Namespace) -> int:
    from relayer.chain.errors import ChainError
    from relayer.crypto.dkg import DkgError
    from relayer.keygen import KeygenError, keygen_command, next_config_from_chain
    from relayer.keystore import KeystoreError
    from relayer.p2p.errors import P2PError

    try:
        settings = Settings.load(args.config)
    except SettingsError as exc:
        raise DkgUsage(str(exc)) from None
    setup_logging(node=settings.name, json_lines=False, level="WARNING")
    try:
        signers = [_address(a, "--signers") for a in args.signers.split(",")] if args.signers else None
        transmitters = ([_address(a, "--transmitters") for a in args.transmitters.split(",")]
                        if args.transmitters else None)
    except CommitteeError as exc:
        raise DkgUsage(str(exc)) from None
    try:
        config = await next_config_from_chain(settings.rpc_urls[0], settings.oracle_address, signers=signers,
                                              transmitters=transmitters, f=args.f, threshold=args.threshold)
        result = await keygen_command(settings, config, phase_timeout=args.phase_timeout,
                                      connect_timeout=args.connect_timeout, scrypt_n=args.scrypt_n)
    except (KeygenError, DkgError, KeystoreError, P2PError, ChainError) as exc:
        raise DkgUsage(str(exc)) from None
    out = args.approval_out or settings.data_dir / "dkg-approval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
        return 0
    excluded = ", ".join(f"member {m}: {why}" for m, why in result["excluded"].items()) or "none"
    print(f"group key        {result['group_key']}")
    print(f"transcript hash  {result['transcript_hash']}")
    print(f"member {result['member']} of {len(config.signers)}, threshold {config.threshold}, excluded: {excluded}")
    print(f"share written to {settings.threshold_share_file}; approval of config #{config.config_count} "
          f"({result['config_digest']}) written to {out}")
    print("give the approval file to the oracle owner: `relayer committee install-threshold --approval FILE ...`")
    return 0


def _address(text: str, flag: str) -> str:
    from web3 import AsyncWeb3

    try:
        return str(AsyncWeb3.to_checksum_address(text))
    except ValueError:
        raise CommitteeError(f"{flag} {text!r} is not an address (0x followed by 40 hex digits)") from None


def _print_committee(cfg: Any) -> None:
    from relayer.protocol.committee import OffchainConfig

    print(f"config digest  0x{cfg.config_digest.hex()}  (config #{cfg.config_count})")
    print(f"n={len(cfg.signers)}  f={cfg.f}  threshold={cfg.threshold}")
    try:
        o = OffchainConfig.decode(cfg.offchain_config)
        print(f"round every {o.round_interval_ms} ms, progress timeout {o.progress_timeout_ms} ms, "
              f"grace {o.grace_ms} ms, transmit stage {o.transmit_stage_ms} ms")
    except Exception:  # noqa: BLE001 - an unreadable offchain config must not hide the committee
        print(f"offchain config: {len(cfg.offchain_config)} bytes (not readable by this version)")
    for i, (signer, transmitter) in enumerate(zip(cfg.signers, cfg.transmitters)):
        print(f"  {i:>2}  signer {signer}  transmitter {transmitter}")


# --- subscriptions (subscribers and the registry owner) ------------------------------------


class SubscriptionsError(Exception):
    """A subscriptions command that cannot be done; the message says why and what to do."""


# What to do about each refusal of the registry, by its custom error.
REFUSAL_HINTS = {
    "NotApproved": "this account is not an approved subscriber: ask the registry owner to run "
                   "`relayer subscriptions approve --subscriber {sender}`",
    "BelowFloor": "governance floors forbid a tighter wish: ask for at least the floors `relayer subscriptions "
                  "list` shows",
    "UnknownFeed": "the oracle does not serve this feed: `relayer subscriptions list` names the served ones",
    "TooManySubscriptions": "this subscriber holds all the subscriptions it was approved for: remove one, or ask "
                            "the registry owner to approve more",
    "InvalidSubscription": "the deviation must be 1..10000 bps and the heartbeat at least 1 s",
    "NotSubscribed": "this account has no subscription to that feed: `relayer subscriptions list` shows who asked "
                     "for what",
    "NotOwner": "only the registry owner may approve or revoke: give its key with --owner-key-file",
}


def _cmd_subscriptions(args: argparse.Namespace) -> int:
    return _run_chain_command("subscriptions", _subscriptions(args), SubscriptionsError,
                              "`relayer subscriptions list` shows the state")


@dataclass
class _SubscriptionsTarget:
    rpc: str
    registry: str
    feeds: list[tuple[str, int, int]]  # (feed id, catalog deviation bps, catalog heartbeat s)
    key_file: Path | None  # the subscriber's key (add, remove)
    owner_key_file: Path | None  # the registry owner's key (approve, revoke)


def _subscriptions_target(args: argparse.Namespace) -> _SubscriptionsTarget:
    """RPC, registry, served feeds and keys from the flags, else --config FILE, else --devnet DIR."""
    rpc, registry, key_file, owner_key_file = args.rpc_url, args.registry, args.key_file, args.owner_key_file
    feeds: list[tuple[str, int, int]] = []
    if args.devnet is not None:
        info = _devnet_info(args.devnet, SubscriptionsError)
        rpc, registry = rpc or info.get("rpc_url"), registry or info.get("subscription_registry")
        key_file = key_file or (Path(info["subscriber_key_file"]) if info.get("subscriber_key_file") else None)
        owner_key_file = owner_key_file or (Path(info["owner_key_file"]) if info.get("owner_key_file") else None)
        feeds = [(f["feed_id"], int(f.get("deviation_bps", 0)), int(f.get("heartbeat_s", 0)))
                 for f in info.get("feeds", [])]
    elif args.config is not None:
        try:
            settings = Settings.load(args.config)
        except SettingsError as exc:
            raise SubscriptionsError(str(exc)) from None
        rpc, registry = rpc or settings.rpc_urls[0], registry or settings.subscription_registry_address
        feeds = [(f.feed_id, f.deviation_bps, f.heartbeat_s) for f in settings.feeds]
    if not feeds:
        from feeds.catalog import load_catalog
        from feeds.errors import FeedsError

        try:
            feeds = [(f.feed_id, f.deviation_bps, f.heartbeat_s) for f in load_catalog(args.catalog)]
        except FeedsError as exc:
            raise SubscriptionsError(str(exc)) from None
    if not rpc or not registry:
        raise SubscriptionsError("give --rpc-url and --registry (or --config FILE, or --devnet DIR for a local devnet)")
    return _SubscriptionsTarget(rpc, registry, feeds, key_file, owner_key_file)


def read_key_or(path: Path, refused: type[Exception]) -> bytes:
    """The key in a hex key file, or ``refused`` carrying the settings' message."""
    from relayer.settings import read_key_file

    try:
        return read_key_file(path)
    except SettingsError as exc:
        raise refused(str(exc)) from None


def revert_shown(exc: Exception) -> tuple[str | None, str]:
    """A contract refusal's error name (None for another failure) and its arguments as text."""
    args = getattr(exc, "error_args", ())
    return getattr(exc, "reason", None), ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)


def _key(path: Path | None, flag: str, who: str) -> bytes:
    if path is None:
        raise SubscriptionsError(f"this needs {who}'s key: {flag} FILE (a hex key file)")
    return read_key_or(path, SubscriptionsError)


def _refusal(exc: Exception, sender: str) -> SubscriptionsError:
    reason, shown = revert_shown(exc)
    hint = REFUSAL_HINTS.get(reason or "")
    if hint is None:
        return SubscriptionsError(f"failed: {exc}")
    return SubscriptionsError(f"refused with {reason}({shown}): {hint.format(sender=sender)}")


async def _subscriptions(args: argparse.Namespace) -> int:
    from relayer.chain.codec import address_of
    from relayer.chain.contract import disconnect
    from relayer.chain.errors import ChainError
    from relayer.chain.oracle import connect
    from relayer.chain.subscriptions import SubscriptionRegistryClient

    target = _subscriptions_target(args)
    w3 = connect(target.rpc)
    try:
        registry = SubscriptionRegistryClient(w3, target.registry)
        if args.action == "list":
            return await _print_subscriptions(registry, target)
        if args.action in ("add", "remove"):
            if not args.feed:
                raise SubscriptionsError(f"`relayer subscriptions {args.action}` needs --feed ID")
            key = _key(target.key_file, "--key-file", "the subscriber")
            sender = address_of(key)
            try:
                if args.action == "add":
                    if args.deviation_bps is None or args.heartbeat is None:
                        raise SubscriptionsError("`relayer subscriptions add` needs --deviation-bps N and --heartbeat S")
                    await registry.subscribe(key, args.feed, args.deviation_bps, args.heartbeat)
                    print(f"subscribed {sender} to {args.feed}: {args.deviation_bps} bps / {args.heartbeat} s")
                else:
                    await registry.unsubscribe(key, args.feed)
                    print(f"unsubscribed {sender} from {args.feed}")
            except ChainError as exc:
                raise _refusal(exc, sender) from None
            print("nodes follow the change within two config polls (config_poll_interval)")
            return 0
        # approve, revoke: the registry owner
        if not args.subscriber:
            raise SubscriptionsError(f"`relayer subscriptions {args.action}` needs --subscriber ADDRESS")
        subscriber = _subscriber_address(args.subscriber)
        owner_key = _key(target.owner_key_file, "--owner-key-file", "the registry owner")
        try:
            if args.action == "approve":
                await registry.approve(owner_key, subscriber, args.max)
                print(f"approved {subscriber} for up to {args.max} subscriptions")
            else:
                await registry.revoke(owner_key, subscriber)
                print(f"revoked {subscriber}; its subscriptions are removed")
        except ChainError as exc:
            raise _refusal(exc, address_of(owner_key)) from None
        return 0
    except ChainError as exc:
        raise SubscriptionsError(f"cannot read the registry {target.registry} at {target.rpc}: {exc}") from None
    finally:
        await disconnect(w3)


def _subscriber_address(text: str) -> str:
    try:
        return _address(text, "--subscriber")
    except CommitteeError as exc:
        raise SubscriptionsError(str(exc)) from None


async def _print_subscriptions(registry: Any, target: _SubscriptionsTarget) -> int:
    from aggregation.trigger import Promise
    from relayer.chain.codec import feed_id_bytes

    defaults = {feed_id_bytes(fid): Promise(max(dev, 1), hb) for fid, dev, hb in target.feeds}
    promise_set = await registry.promise_set(defaults)
    default_floors = await registry.floors(bytes(32))
    print(f"registry {registry.address}  default floors {default_floors.min_deviation_bps} bps / "
          f"{default_floors.min_heartbeat_s} s  subscriptions {len(promise_set.subscriptions)}")
    width = max(len(fid) for fid, _, _ in target.feeds)
    for fid, _, _ in target.feeds:
        key = feed_id_bytes(fid)
        p, d, fl = promise_set.promises[key], promise_set.defaults[key], promise_set.floors[key]
        askers = promise_set.subscribers_of(key)
        asked = "; ".join(f"{s.subscriber} {s.deviation_bps} bps / {s.heartbeat} s" for s in askers) or "nobody"
        print(f"{fid:<{width}}  promise {p.deviation_bps} bps / {p.heartbeat_s} s  (catalog {d.deviation_bps} bps / "
              f"{d.heartbeat_s} s, floors {fl.min_deviation_bps} bps / {fl.min_heartbeat_s} s)  asked: {asked}")
    served = {feed_id_bytes(fid) for fid, _, _ in target.feeds}
    for s in promise_set.subscriptions:
        if s.feed_id not in served:
            print(f"(not in this catalog) 0x{s.feed_id.hex()}  asked: {s.subscriber} {s.deviation_bps} bps / "
                  f"{s.heartbeat} s")
    return 0


# --- verify (a subscriber's check of a node's report) -------------------------------------


class VerifyUsage(Exception):
    """`relayer verify` was not told where the nodes, the chain or the oracle are."""


def _verify_target(args: argparse.Namespace) -> tuple[list[str], str, str]:
    nodes, rpc, oracle = list(args.node), args.rpc_url, args.oracle
    if args.devnet is not None:
        info = _devnet_info(args.devnet, VerifyUsage)
        nodes = nodes or [str(n["api"]) for n in info.get("nodes", [])]
        rpc, oracle = rpc or info.get("rpc_url"), oracle or info.get("oracle")
    if not nodes or not rpc or not oracle:
        raise VerifyUsage("give --node URL (repeat it for failover), --rpc-url and --oracle, or --devnet DIR")
    if (args.epoch is None) != (args.round is None):
        raise VerifyUsage("--epoch and --round go together (without both: the latest report)")
    return nodes, rpc, oracle


async def _verify(args: argparse.Namespace, nodes: list[str], rpc: str, oracle: str) -> int:
    from relayer.client import ChainUnavailable, NodesUnavailable, ReportFetcher, ReportRejected, ReportVerifier

    digest = bytes.fromhex(args.config_digest.removeprefix("0x")) if args.config_digest else None
    async with ReportFetcher(nodes, timeout=args.timeout) as fetcher, \
            ReportVerifier.connect(rpc, oracle, timeout=args.timeout) as verifier:
        try:
            report = await (fetcher.latest() if args.epoch is None
                            else fetcher.at(args.epoch, args.round, config_digest=digest))
        except NodesUnavailable as exc:
            print(f"relayer verify: {exc}", file=sys.stderr)
            return 1
        try:
            verified = await verifier.verify(report)
        except ReportRejected as exc:
            if args.json:
                print(json.dumps({"verified": False, "reason": exc.reason, "cause": type(exc).__name__,
                                  "message": str(exc), "epoch": report.epoch, "round": report.round,
                                  "source": report.source}))
            else:
                print(f"REFUSED {exc.reason} ({type(exc).__name__}): epoch {report.epoch} round {report.round} "
                      f"from {report.source}: {exc}")
            return 2
        except ChainUnavailable as exc:
            print(f"relayer verify: {exc}", file=sys.stderr)
            return 1
    values = [{"feed_id": v.feed_id, "feed_index": v.feed_index, "value": str(v.value), "raw_value": str(v.raw_value),
               "decimals": v.decimals, "observed_at": v.observed_at, "num_sources": v.num_sources}
              for v in verified.values]
    if args.json:
        print(json.dumps({"verified": True, "epoch": report.epoch, "round": report.round, "source": report.source,
                          "chain_id": verified.chain_id, "oracle": verified.oracle, "block": verified.block_number,
                          "config_digest": "0x" + report.config_digest.hex(), "scheme": report.scheme,
                          "signers": list(verified.signers), "values": values}))
        return 0
    # Scheme 0x0002's one signature names no member: it took at least the threshold of them.
    signed_by = (f"{len(verified.signers)} signers" if report.schnorr is None
                 else f"one threshold signature (scheme 0x{report.scheme:04x})")
    print(f"VERIFIED epoch {report.epoch} round {report.round} from {report.source}: chain {verified.chain_id} "
          f"oracle {verified.oracle} at block {verified.block_number}, {signed_by}")
    for v in verified.values:
        name = v.feed_id or f"feed #{v.feed_index} (0x{v.feed_key.hex()[:12]}…)"
        print(f"  {name:<20} {v.value:>24}  observed {verified.block_timestamp - v.observed_at:+d} s before the "
              f"block  {v.num_sources} sources")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        nodes, rpc, oracle = _verify_target(args)
        if args.config_digest is not None:
            bytes.fromhex(args.config_digest.removeprefix("0x"))
    except VerifyUsage as exc:
        print(f"relayer verify: {exc}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"relayer verify: --config-digest must be hex, got {args.config_digest!r}", file=sys.stderr)
        return 2
    return asyncio.run(_verify(args, nodes, rpc, oracle))


# --- devnet ------------------------------------------------------------------------------


def _cmd_relay(args: argparse.Namespace) -> int:
    from relayer.relay import relay_options, run_relay

    try:
        settings = Settings.load(args.config)
        options = relay_options(settings, node_url=args.node_url, key_file=args.key_file, stats_file=args.stats_file,
                                metrics_port=args.metrics_port)
    except SettingsError as exc:
        print(f"relayer relay: {exc}", file=sys.stderr)
        return 2
    setup_logging(node=f"{settings.name}-relay", json_lines=settings.log_json or args.json_logs,
                  level=settings.log_level)
    asyncio.run(run_relay(options))
    return 0


def _cmd_devnet(args: argparse.Namespace) -> int:
    setup_logging(node="devnet", json_lines=False, level="WARNING")
    from feeds.errors import FeedsError
    from relayer.devnet import DevnetOptions, run_devnet

    if args.nodes < 4:
        print("relayer devnet: --nodes must be at least 4 (n >= 3f+1 with f >= 1)", file=sys.stderr)
        return 2
    options = DevnetOptions(
        nodes=args.nodes, rounds=args.rounds, json_lines=args.json, data_dir=args.data_dir,
        seed=args.seed, round_interval_ms=args.round_interval_ms, grace_ms=args.grace_ms,
        store_sync=args.store_sync,
        venue_faults=dict(args.venue_fault), catalog=args.catalog, feed_selection=args.feed_selection,
        stop_on_exit=args.stop_on_exit, observers=args.observers, relay_nice=args.relay_nice,
        scenario=args.scenario, scheme=int(args.scheme, 16),
    )
    try:
        return asyncio.run(run_devnet(options))
    except KeyboardInterrupt:
        print("relayer devnet: stopped", file=sys.stderr)
        return 0
    except FeedsError as exc:  # the catalog, or a source or simulated-venue plugin
        print(f"relayer devnet: {exc}", file=sys.stderr)
        return 2


def _venue_fault(text: str) -> tuple[str, str]:
    venue, sep, fault = text.partition("=")
    if not sep or not venue or not fault:
        raise argparse.ArgumentTypeError(f"expected VENUE=FAULT such as kraken=garbage, got {text!r}")
    return venue, fault


def _add_sources(sub: Any) -> None:
    try:
        from feeds.cli import add_sources_commands
    except ImportError:
        return
    add_sources_commands(sub)


def build_parser() -> argparse.ArgumentParser:
    from feeds.scenarios import SCENARIOS
    from relayer.cli_guardian import add_guardian_commands

    parser = argparse.ArgumentParser(prog="relayer", description="Zero-trust oracle relayer node")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="create an encrypted keystore and a commented config file",
                          description="Create DIR/keystore.json (scrypt) and DIR/relayer.toml. The password comes "
                          "from RELAYER_KEYSTORE_PASSWORD_FILE, RELAYER_KEYSTORE_PASSWORD, or a prompt.")
    init.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where to write (default ./{DEFAULT_DIR})")
    init.add_argument("--name", default="relayer", help="node name in logs and the dashboard")
    init.add_argument("--rpc-url", action="append", default=None, metavar="URL",
                      help="chain JSON-RPC endpoint; repeat for fallbacks (default http://127.0.0.1:8545)")
    init.add_argument("--chain-id", type=int, default=None, help="the chain id `check` must find")
    init.add_argument("--oracle", default=NO_ORACLE, help="QuorumOracle address (can be set later)")
    init.add_argument("--registry", default=None, metavar="ADDRESS",
                      help="the oracle's SubscriptionRegistry (optional; --devnet fills it in)")
    init.add_argument("--devnet", type=Path, default=None, metavar="DIR",
                      help="join a local `relayer devnet --data-dir DIR`: take its RPC URL, chain id, oracle, "
                           "peers and simulated venue URLs from DIR/devnet.json")
    init.add_argument("--listen-port", type=int, default=9000, help="libp2p port (default 9000)")
    init.add_argument("--api-port", type=int, default=8788, help="HTTP API/dashboard port (default 8788)")
    init.add_argument("--import-key", type=Path, default=None, metavar="HEXFILE",
                      help="encrypt this existing hex key instead of generating one")
    init.add_argument("--force", action="store_true", help="overwrite an existing keystore and config")
    init.add_argument("--scrypt-n", type=int, default=None, help=argparse.SUPPRESS)  # tests only
    init.set_defaults(func=_cmd_init)

    check = sub.add_parser("check", help="validate config, key, RPC, chain id, contract, committee, venues, peers",
                           description="One PASS or FAIL line per check, with the fix for each failure. "
                           "Exit 0 when everything passes.")
    check.add_argument("--config", type=Path, help="node config (TOML or JSON); RELAYER_* variables override it")
    check.add_argument("--timeout", type=float, default=5.0, help="seconds per network check (default 5)")
    check.set_defaults(func=_cmd_check)

    run = sub.add_parser("run", help="run one relayer node (a dry run, signing nothing, when no key is given)")
    run.add_argument("--config", type=Path, help="node config (TOML or JSON); RELAYER_* variables override it")
    run.add_argument("--json-logs", action="store_true", help="log JSON lines instead of plain text")
    run.set_defaults(func=_cmd_run)

    relay = sub.add_parser(
        "relay", help="run a node's observer relay: its attested reports on a read-only libp2p topic for peers "
                      "outside the committee, in a process apart from the node",
        description="Follow the node's report stream (/api/reports/stream) and publish each report on the observer "
                    "topic, with the observer_* settings of the node's config (port, key, allow-list, limits). "
                    "The node's consensus host never sees an observer.")
    relay.add_argument("--config", type=Path, help="the node's config (TOML or JSON); RELAYER_* variables override it")
    relay.add_argument("--node-url", default=None, metavar="URL",
                       help="the node's API (default: from api_host and api_port)")
    relay.add_argument("--key-file", type=Path, default=None, help="the relay's key (default: observer_key_file)")
    relay.add_argument("--stats-file", type=Path, default=None, help="keep the relay's counters in this JSON file")
    relay.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on 127.0.0.1:PORT")
    relay.add_argument("--json-logs", action="store_true", help="log JSON lines instead of plain text")
    relay.set_defaults(func=_cmd_relay)

    status = sub.add_parser("status", help="ask a running node for its state (through its HTTP API)")
    status.add_argument("--config", type=Path, help="find the node's API from this config")
    status.add_argument("--api", default=None, metavar="URL", help="the node's API, e.g. http://127.0.0.1:8788")
    status.add_argument("--json", action="store_true", help="print the raw JSON state")
    status.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    status.set_defaults(func=_cmd_status)

    committee = sub.add_parser(
        "committee", help="show the oracle's committee, or (as its owner) add, replace or remove a member",
        description="Read the committee of a QuorumOracle, or change it with setConfig (owner only). f, the "
                    "threshold and the off-chain timings stay as they are; nodes follow the change on their own.")
    committee.add_argument("action", choices=("show", "add", "remove", "install-threshold"))
    committee.add_argument("--signer", default=None, metavar="ADDRESS", help="the member to add or remove")
    committee.add_argument("--transmitter", default=None, metavar="ADDRESS",
                           help="its transmitting account (default: the signer address, which never transmits)")
    committee.add_argument("--replace", default=None, metavar="ADDRESS",
                           help="with add: the member whose seat the new signer takes")
    committee.add_argument("--rpc-url", default=None, metavar="URL", help="chain JSON-RPC endpoint")
    committee.add_argument("--oracle", default=None, metavar="ADDRESS", help="QuorumOracle address")
    committee.add_argument("--owner-key-file", type=Path, default=None, metavar="FILE",
                           help="hex private key of the oracle owner (needed for add, remove and install-threshold)")
    committee.add_argument("--approval", action="append", default=[], type=Path, metavar="FILE",
                           help="install-threshold: a member's approval written by `relayer dkg` (repeat it)")
    committee.add_argument("--devnet", type=Path, default=None, metavar="DIR",
                           help="a local `relayer devnet --data-dir DIR`: RPC, oracle and owner key from it")
    committee.set_defaults(func=_cmd_committee)
    add_guardian_commands(sub)

    keygen = sub.add_parser(
        "dkg", help="run the committee's key generation for threshold Schnorr (scheme 0x0002)",
        description="Every member of the next committee runs this at the same time: they make one FROST group key "
                    "over libp2p (Pedersen DKG with proofs of knowledge and complaints), each keeps its share in "
                    "threshold_share_file (encrypted with the keystore password) and writes its approval of the key "
                    "for the oracle owner's `relayer committee install-threshold`. The next committee is the "
                    "installed one unless --signers and the other options say otherwise.")
    keygen.add_argument("--config", type=Path, help="node config (TOML or JSON): key, listen address, peers, chain")
    keygen.add_argument("--phase-timeout", type=float, default=10.0, metavar="S",
                        help="deadline of each phase; a member silent past it is excluded (default 10)")
    keygen.add_argument("--connect-timeout", type=float, default=120.0, metavar="S",
                        help="how long to wait for every member to be reachable (default 120)")
    keygen.add_argument("--signers", default=None, metavar="A,B,...", help="the next committee's signers, in order")
    keygen.add_argument("--transmitters", default=None, metavar="A,B,...",
                        help="with --signers: their transmitters, in order (default: each staying member's own; "
                             "required when a signer is new)")
    keygen.add_argument("--f", type=int, default=None, help="the next config's f (default: the installed one)")
    keygen.add_argument("--threshold", type=int, default=None,
                        help="the next config's threshold (default: the installed one)")
    keygen.add_argument("--approval-out", type=Path, default=None, metavar="FILE",
                        help="where to write this member's approval (default DATA_DIR/dkg-approval.json)")
    keygen.add_argument("--json", action="store_true", help="print the approval as one JSON object, nothing else")
    keygen.add_argument("--scrypt-n", type=int, default=None, help=argparse.SUPPRESS)  # tests only
    keygen.set_defaults(func=_cmd_dkg)

    subs = sub.add_parser(
        "subscriptions", help="the promise per feed and who asked for it; subscribe or unsubscribe; approve or "
                              "revoke subscribers (registry owner)",
        description="list: per served feed the effective promise (the tightest of the catalog default and the "
                    "subscriptions, never tighter than the floors) and who asked for what. add/remove: a "
                    "subscriber's wish for one feed, sent with its key. approve/revoke: the registry owner. "
                    "A refusal by the registry prints one line saying what to do and exits 2.")
    subs.add_argument("action", choices=("list", "add", "remove", "approve", "revoke"))
    subs.add_argument("--feed", default=None, metavar="ID", help="add/remove: the feed id, e.g. BTC-USD")
    subs.add_argument("--deviation-bps", type=int, default=None, metavar="N",
                      help="add: write the feed when it moves by N bps (1..10000)")
    subs.add_argument("--heartbeat", type=int, default=None, metavar="S",
                      help="add: write the feed at least every S seconds")
    subs.add_argument("--key-file", type=Path, default=None, metavar="FILE",
                      help="add/remove: hex private key of the subscriber (the devnet's subscriber.key by default)")
    subs.add_argument("--subscriber", default=None, metavar="ADDRESS", help="approve/revoke: the subscriber")
    subs.add_argument("--max", type=int, default=4, metavar="N",
                      help="approve: how many subscriptions it may hold (default 4)")
    subs.add_argument("--owner-key-file", type=Path, default=None, metavar="FILE",
                      help="approve/revoke: hex private key of the registry owner")
    subs.add_argument("--rpc-url", default=None, metavar="URL", help="chain JSON-RPC endpoint")
    subs.add_argument("--registry", default=None, metavar="ADDRESS", help="SubscriptionRegistry address")
    subs.add_argument("--config", type=Path, default=None, metavar="FILE",
                      help="a node config: its RPC, registry and served feeds (with their catalog promises)")
    subs.add_argument("--catalog", type=Path, default=None, metavar="FILE",
                      help="list: the served feeds' catalog when neither --config nor --devnet gives them "
                           "(default: the packaged devnet catalog)")
    subs.add_argument("--devnet", type=Path, default=None, metavar="DIR",
                      help="a local `relayer devnet --data-dir DIR`: RPC, registry, feeds, the example "
                           "subscriber's key and the owner key from it")
    subs.set_defaults(func=_cmd_subscriptions)

    verify = sub.add_parser(
        "verify", help="fetch a report from nodes (with failover) and verify it against the on-chain committee",
        description="Fetch the latest attested report (or one by --epoch/--round) from the first node that "
                    "answers, and check it as QuorumOracle.verifyReport would at the latest block: committee, "
                    "threshold, signatures, chain, feeds. Prints the values, or the refusal with the contract's "
                    "error name. Exit 0 verified, 2 refused (or bad usage), 1 no node or RPC answered.")
    verify.add_argument("--node", action="append", default=[], metavar="URL",
                        help="a node's API, e.g. http://127.0.0.1:8788; repeat for failover, in order")
    verify.add_argument("--rpc-url", default=None, metavar="URL", help="chain JSON-RPC endpoint")
    verify.add_argument("--oracle", default=None, metavar="ADDRESS", help="QuorumOracle address")
    verify.add_argument("--devnet", type=Path, default=None, metavar="DIR",
                        help="a local `relayer devnet --data-dir DIR`: its nodes, RPC and oracle")
    verify.add_argument("--epoch", type=int, default=None, help="with --round: that report, not the latest")
    verify.add_argument("--round", type=int, default=None, help="with --epoch: that report, not the latest")
    verify.add_argument("--config-digest", default=None, metavar="HEX",
                        help="with --epoch/--round: the committee's digest the round belongs to")
    verify.add_argument("--json", action="store_true", help="one JSON object: the values or the refusal")
    verify.add_argument("--timeout", type=float, default=5.0, help="seconds per node or RPC request (default 5)")
    verify.set_defaults(func=_cmd_verify)

    devnet = sub.add_parser("devnet", help="run a local chain, simulated venues and several relayers")
    devnet.add_argument("--nodes", type=int, default=4, help="relayer processes (default 4)")
    devnet.add_argument("--scenario", choices=list(SCENARIOS), default="calm",
                        help="market scenario, started with the first landed report; its phases are printed and "
                             "written to devnet.json (docs/operator.md, \"Market scenarios\"; default calm)")
    devnet.add_argument("--rounds", type=int, default=None, help="exit 0 after this many landed reports")
    devnet.add_argument("--json", action="store_true", help="print one JSON object per landed report on stdout")
    devnet.add_argument("--data-dir", type=Path, default=None, help="keep keys, stores and logs here")
    devnet.add_argument("--seed", type=int, default=7, help="seed of the simulated market")
    devnet.add_argument("--round-interval-ms", type=int, default=1000, help="time between rounds")
    devnet.add_argument("--feed-selection", choices=("all", "trigger"), default="all",
                        help="the committee's report policy: every feed every round (all, default: a landing "
                             "a round to watch), or only feeds past their deviation threshold or heartbeat, or "
                             "landing their first value (trigger: rounds where nothing triggers send no "
                             "transaction; on the simulated market most rounds are quiet)")
    devnet.add_argument("--scheme", choices=("0x0001", "0x0002"), default="0x0001",
                        help="report signatures: 0x0001 one ECDSA signature per member (default), 0x0002 threshold "
                             "Schnorr under a key the relayers make at start (`relayer dkg`)")
    devnet.add_argument("--observers", action="store_true",
                        help="run an observer relay beside each relayer (`relayer relay`, its own process: read-only "
                             "reports over libp2p for peers outside the committee; scripts/observer.mjs); listed in "
                             "devnet.json")
    devnet.add_argument("--relay-nice", type=int, default=0, metavar="N",
                        help="with --observers: run the relays at this niceness (19: as if on another machine)")
    devnet.add_argument("--stop-on-exit", action="store_true",
                        help="stop the whole devnet when one relayer exits (by default it says so and keeps going)")
    devnet.add_argument("--grace-ms", type=int, default=20,
                        help="how long a leader waits for more observations after 2f+1 (default 20)")
    devnet.add_argument("--store-sync", choices=("full", "normal"), default="full",
                        help="fsync each signature (full, default) or leave it to the OS (normal)")
    devnet.add_argument("--venue-fault", type=_venue_fault, action="append", default=[], metavar="VENUE=FAULT",
                        help="make one simulated venue misbehave, e.g. kraken=garbage or binance=timeout")
    devnet.add_argument("--catalog", type=Path, default=None, metavar="FILE",
                        help="serve the feeds of this catalog (TOML, [[feed]] tables) instead of the packaged "
                             "devnet catalog; every source it names needs an installed simulated venue")
    devnet.set_defaults(func=_cmd_devnet)

    _add_sources(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int | Awaitable[int]] = args.func
    return int(func(args))  # type: ignore[arg-type]
