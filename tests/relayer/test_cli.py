"""The `relayer` command as an operator meets it: init, check, run, status and --help.

`check` runs against a real anvil with a deployed, configured QuorumOracle and the
simulated venues over HTTP; each likely failure gets its own test.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relayer.chain.anvil import AnvilNode
from relayer.chain.codec import address_of, keccak
from relayer.chain.contract import disconnect
from relayer.chain.oracle import QuorumOracleClient, connect, deploy_oracle
from relayer.cli import build_parser, main
from relayer.ports import free_port
from relayer.keystore import read_keystore, write_keystore
from relayer.protocol.committee import OffchainConfig
from relayer.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


@dataclass
class Chain:
    anvil: AnvilNode
    oracle: str
    member_key: bytes
    simulator: str


def _signer(i: int) -> bytes:
    return keccak(f"cli test signer {i}".encode())


async def _deploy(anvil: AnvilNode) -> str:
    w3 = connect(anvil.rpc_url)
    owner = anvil.accounts[0][1]
    address = await deploy_oracle(w3, owner)
    client = QuorumOracleClient(w3, address)
    for feed in ("BTC-USD", "ETH-USD"):
        await client.add_feed(owner, feed, 8, f"{feed} spot", 1, 10**18)
    await client.set_config(owner, [address_of(_signer(i)) for i in range(4)],
                            [a for a, _ in anvil.accounts[1:5]], 1, 2, OffchainConfig().encode())
    await disconnect(w3)
    return address


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    sim = subprocess.Popen([sys.executable, "-m", "feeds.simulator", "--port", "0"], cwd=REPO,
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        base = sim.stdout.readline().strip().rsplit(" ", 1)[-1]
        with AnvilNode.start() as anvil:
            yield Chain(anvil, asyncio.run(_deploy(anvil)), _signer(0), base)
    finally:
        sim.terminate()
        sim.wait(10)


def _config(tmp_path: Path, chain: Chain, key: bytes | None = None, **over: object) -> Path:
    keystore = tmp_path / "keystore.json"
    write_keystore(keystore, key or chain.member_key, PASSWORD, scrypt_n=1024)
    config = {
        "data_dir": str(tmp_path / "data"), "keystore_file": str(keystore),
        "rpc_urls": [chain.anvil.rpc_url], "chain_id": chain.anvil.chain_id, "oracle_address": chain.oracle,
        "feeds": [{"feed_id": f, "instrument": f, "sources": ["binance", "coinbase", "kraken"]}
                  for f in ("BTC-USD", "ETH-USD")],
        "source_urls": {v: f"{chain.simulator}/{v}" for v in ("binance", "coinbase", "kraken")},
        **over,
    }
    path = tmp_path / "node.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYER_KEYSTORE_PASSWORD", PASSWORD)
    monkeypatch.delenv("RELAYER_KEYSTORE_PASSWORD_FILE", raising=False)


# --- help and init -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["init", "check", "run", "status", "dkg", "committee", "oracle", "vault",
                                     "subscriptions", "devnet"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert f"usage: relayer {command}" in capsys.readouterr().out


def test_top_level_help_lists_the_commands() -> None:
    text = build_parser().format_help()
    for command in ("init", "check", "run", "status", "devnet"):
        assert command in text


def test_init_writes_a_keystore_and_a_commented_config(tmp_path: Path, password: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--dir", str(tmp_path / "n"), "--chain-id", "31337", "--scrypt-n", "1024"]) == 0
    out = capsys.readouterr().out
    address = out.split("signer address", 1)[1].split()[0]
    keystore, config = tmp_path / "n" / "keystore.json", tmp_path / "n" / "relayer.toml"
    assert json.loads(keystore.read_text())["crypto"]["kdf"] == "scrypt"
    assert address_of(read_keystore(keystore, PASSWORD)) == address
    text = config.read_text()
    assert text.count("\n# ") > 10 and PASSWORD not in text
    assert tomllib.loads(text)["keystore_file"] == str(keystore)
    settings = Settings.load(config)  # the file init writes is a valid config as it stands
    assert settings.chain_id == 31337 and settings.keystore_file == keystore
    assert "api_header_timeout_s = 10.0" in text and settings.api_max_connections == 256
    # A second init does not silently replace the key.
    assert main(["init", "--dir", str(tmp_path / "n")]) == 1


def test_init_with_a_password_file_and_a_short_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAYER_KEYSTORE_PASSWORD", raising=False)
    secret = tmp_path / "pw"
    secret.write_text("short\n")
    monkeypatch.setenv("RELAYER_KEYSTORE_PASSWORD_FILE", str(secret))
    assert main(["init", "--dir", str(tmp_path / "a"), "--scrypt-n", "1024"]) == 2
    secret.write_text(PASSWORD + "\n")
    assert main(["init", "--dir", str(tmp_path / "a"), "--scrypt-n", "1024"]) == 0


# --- check -------------------------------------------------------------------------


def _check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "--config", str(config), "--timeout", "2"])
    return code, capsys.readouterr().out


def test_check_passes_on_a_healthy_setup(tmp_path: Path, chain: Chain, password: None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(_config(tmp_path, chain), capsys)
    assert code == 0, out
    assert "FAIL" not in out
    for name in ("config", "key", "rpc", "chain id", "contract", "committee", "feed", "venue", "peers"):
        assert f"PASS  {name}" in out, (name, out)
    assert "config digest 0x" in out and "is signer 0" in out


def test_check_wrong_password(tmp_path: Path, chain: Chain, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RELAYER_KEYSTORE_PASSWORD", "not the password")
    code, out = _check(_config(tmp_path, chain), capsys)
    assert code == 1
    assert "FAIL  key" in out and "wrong password" in out and "fix:" in out
    assert "not the password" not in out


def test_check_wrong_chain_id(tmp_path: Path, chain: Chain, password: None,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(_config(tmp_path, chain, chain_id=1), capsys)
    assert code == 1
    assert "FAIL  chain id" in out and "expected 1" in out and "fix:" in out


def test_check_key_not_in_committee(tmp_path: Path, chain: Chain, password: None,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(_config(tmp_path, chain, key=_signer(99)), capsys)
    assert code == 1
    assert "FAIL  committee" in out and address_of(_signer(99)) in out and "setConfig" in out


def test_check_unreachable_rpc(tmp_path: Path, chain: Chain, password: None,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(_config(tmp_path, chain, rpc_urls=["http://127.0.0.1:9"]), capsys)
    assert code == 1
    assert "FAIL  rpc" in out and "127.0.0.1:9 unreachable" in out and "fix:" in out


def test_check_a_second_rpc_url_is_a_fallback(tmp_path: Path, chain: Chain, password: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(_config(tmp_path, chain, rpc_urls=["http://127.0.0.1:9", chain.anvil.rpc_url]), capsys)
    assert "FAIL  rpc" in out and "PASS  committee" in out  # one down is reported, the rest still checked


def test_check_unreachable_peer(tmp_path: Path, chain: Chain, password: None,
                                capsys: pytest.CaptureFixture[str]) -> None:
    peer = "/ip4/127.0.0.1/tcp/9/p2p/16Uiu2HAmPeer"
    code, out = _check(_config(tmp_path, chain, peers=[peer]), capsys)
    assert code == 1 and "FAIL  peers" in out and "127.0.0.1:9 unreachable" in out


@pytest.mark.parametrize("broken, named", [
    ({"oracle_address": "0x1234"}, "oracle_address"),
    ({"poll_interval": -1}, "poll_interval"),
    ({"rpc_urls": []}, "rpc_urls"),
])
def test_check_malformed_config_names_the_setting(tmp_path: Path, chain: Chain, password: None,
                                                  capsys: pytest.CaptureFixture[str], broken: dict[str, object],
                                                  named: str) -> None:
    code, out = _check(_config(tmp_path, chain, **broken), capsys)
    assert code == 1
    assert "FAIL  config" in out and named in out


def test_check_config_that_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.json"
    path.write_text("{oops")
    code, out = _check(path, capsys)
    assert code == 1 and "not valid JSON" in out


# --- run and status ----------------------------------------------------------------


def test_run_malformed_config_stops_with_the_setting_named(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"data_dir": str(tmp_path), "rpc_urls": ["http://x"], "oracle_address": "nope",
                                "feeds": []}))
    proc = subprocess.run([sys.executable, "-m", "relayer", "run", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "oracle_address" in proc.stderr and "feeds" in proc.stderr


def test_run_wrong_password_stops_before_anything_starts(tmp_path: Path, chain: Chain) -> None:
    config = _config(tmp_path, chain)
    env = {**os.environ, "RELAYER_KEYSTORE_PASSWORD": "wrong one!"}
    proc = subprocess.run([sys.executable, "-m", "relayer", "run", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "wrong password" in proc.stderr and "wrong one!" not in proc.stderr


def test_run_with_every_rpc_endpoint_down_exits_1_naming_each(tmp_path: Path, chain: Chain) -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    config = _config(tmp_path, chain, rpc_urls=dead)
    env = {**os.environ, "RELAYER_KEYSTORE_PASSWORD": PASSWORD}
    proc = subprocess.run([sys.executable, "-m", "relayer", "run", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "cannot start" in proc.stderr and "rpc_urls" in proc.stderr
    assert all(url in proc.stderr for url in dead)
    assert "Traceback" not in proc.stderr


def test_status_without_a_node_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--api", "http://127.0.0.1:9", "--timeout", "1"]) == 1
    assert "no node answers" in capsys.readouterr().err


def test_committee_show_add_remove_and_refusals(chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    owner = tmp_path / "owner.key"
    owner.write_text(chain.anvil.accounts[0][1].hex())
    stranger = tmp_path / "stranger.key"
    stranger.write_text(os.urandom(32).hex())
    common = ["--rpc-url", chain.anvil.rpc_url, "--oracle", chain.oracle]
    member, newcomer = address_of(_signer(0)), address_of(_signer(9))

    assert main(["committee", "show", *common]) == 0
    out = capsys.readouterr().out
    assert member in out and "n=4  f=1  threshold=2" in out

    # Refusals, each with the reason, and nothing sent.
    assert main(["committee", "remove", *common, "--owner-key-file", str(owner), "--signer", member]) == 2
    assert "n must be >= 4" in capsys.readouterr().err
    assert main(["committee", "add", *common, "--owner-key-file", str(owner), "--signer", "0x1234"]) == 2
    assert "not an address" in capsys.readouterr().err
    assert main(["committee", "add", *common, "--owner-key-file", str(owner), "--signer", member]) == 2
    assert "already signer 0" in capsys.readouterr().err
    assert main(["committee", "add", *common, "--signer", newcomer]) == 2
    assert "--owner-key-file" in capsys.readouterr().err

    snapshot = chain.anvil.rpc("evm_snapshot")
    try:
        assert main(["committee", "add", *common, "--owner-key-file", str(stranger), "--signer", newcomer]) == 2
        assert "NotOwner" in capsys.readouterr().err
        assert main(["committee", "add", *common, "--owner-key-file", str(owner), "--signer", newcomer]) == 0
        out = capsys.readouterr().out
        assert newcomer in out and "n=5" in out
        assert main(["committee", "remove", *common, "--owner-key-file", str(owner), "--signer", newcomer]) == 0
        assert newcomer not in capsys.readouterr().out
    finally:
        chain.anvil.rpc("evm_revert", [snapshot])


def test_run_with_its_listen_port_taken_exits_1_saying_so(tmp_path: Path, chain: Chain) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = _config(tmp_path, chain, listen_port=port, listen_host="0.0.0.0", api_enabled=False)
        env = {**os.environ, "RELAYER_KEYSTORE_PASSWORD": PASSWORD}
        proc = subprocess.run([sys.executable, "-m", "relayer", "run", "--config", str(config)], cwd=REPO,
                              capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "cannot start" in proc.stderr and "listen_port" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- subscriptions ------------------------------------------------------------------


async def _deploy_registry(chain: Chain) -> str:
    from relayer.chain.subscriptions import SubscriptionRegistryClient, deploy_subscription_registry

    w3 = connect(chain.anvil.rpc_url)
    owner = chain.anvil.accounts[0][1]
    address = await deploy_subscription_registry(w3, owner, chain.oracle, 5, 60)
    await SubscriptionRegistryClient(w3, address).set_floors(owner, "ETH-USD", 5, 300)
    await disconnect(w3)
    return address


def _list_line(out: str, feed: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(feed + " "))


def test_subscriptions_refusals_approval_and_a_tighter_wish_listed(
        chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = chain.anvil.rpc("evm_snapshot")
    try:
        registry = asyncio.run(_deploy_registry(chain))
        owner = tmp_path / "owner.key"
        owner.write_text(chain.anvil.accounts[0][1].hex())
        subscriber_address, subscriber_key = chain.anvil.accounts[25]
        subscriber = tmp_path / "subscriber.key"
        subscriber.write_text(subscriber_key.hex())
        common = ["--rpc-url", chain.anvil.rpc_url, "--registry", registry]
        config = _config(tmp_path, chain, subscription_registry_address=registry)

        # Nobody asked yet: the catalog default (50 bps / 3600 s for these feeds) is the promise.
        assert main(["subscriptions", "list", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "promise 50 bps / 3600 s" in _list_line(out, "BTC-USD") and "asked: nobody" in out
        assert "floors 5 bps / 300 s" in _list_line(out, "ETH-USD")

        # A stranger is refused by name, with what to do, in one line, and exit 2.
        add = ["subscriptions", "add", *common, "--key-file", str(subscriber), "--feed", "BTC-USD"]
        assert main([*add, "--deviation-bps", "10", "--heartbeat", "600"]) == 2
        err = capsys.readouterr().err
        assert "NotApproved" in err and "relayer subscriptions approve" in err and len(err.strip().splitlines()) == 1

        # Only the owner approves.
        assert main(["subscriptions", "approve", *common, "--owner-key-file", str(subscriber),
                     "--subscriber", subscriber_address, "--max", "1"]) == 2
        assert "NotOwner" in capsys.readouterr().err
        assert main(["subscriptions", "approve", *common, "--owner-key-file", str(owner),
                     "--subscriber", subscriber_address, "--max", "1"]) == 0
        capsys.readouterr()

        assert main([*add, "--deviation-bps", "4", "--heartbeat", "600"]) == 2
        assert "BelowFloor" in capsys.readouterr().err
        unknown = ["subscriptions", "add", *common, "--key-file", str(subscriber), "--feed", "DOGE-USD"]
        assert main([*unknown, "--deviation-bps", "10", "--heartbeat", "600"]) == 2
        assert "UnknownFeed" in capsys.readouterr().err
        assert main([*add, "--deviation-bps", "10", "--heartbeat", "600"]) == 0
        capsys.readouterr()
        eth = ["subscriptions", "add", *common, "--key-file", str(subscriber), "--feed", "ETH-USD"]
        assert main([*eth, "--deviation-bps", "10", "--heartbeat", "600"]) == 2
        assert "TooManySubscriptions" in capsys.readouterr().err

        # The tighter wish is the promise now, and its subscriber is named.
        assert main(["subscriptions", "list", "--config", str(config)]) == 0
        line = _list_line(capsys.readouterr().out, "BTC-USD")
        assert "promise 10 bps / 600 s" in line and f"{subscriber_address} 10 bps / 600 s" in line
        assert "catalog 50 bps / 3600 s" in line

        assert main(["subscriptions", "remove", *common, "--key-file", str(subscriber), "--feed", "BTC-USD"]) == 0
        assert main(["subscriptions", "remove", *common, "--key-file", str(subscriber), "--feed", "BTC-USD"]) == 2
        assert "NotSubscribed" in capsys.readouterr().err
        assert main(["subscriptions", "revoke", *common, "--owner-key-file", str(owner),
                     "--subscriber", subscriber_address]) == 0
        assert main(["subscriptions", "list", *common, "--config", str(config)]) == 0
        assert "promise 50 bps / 3600 s" in _list_line(capsys.readouterr().out, "BTC-USD")
    finally:
        chain.anvil.rpc("evm_revert", [snapshot])


def test_subscriptions_without_a_registry_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscriptions", "list", "--rpc-url", "http://127.0.0.1:9"]) == 2
    assert "--registry" in capsys.readouterr().err


def test_check_probes_each_factor_a_venue_serves(tmp_path: Path, chain: Chain, password: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Not only spot: a venue is asked for every factor the configured feeds poll from it."""
    feeds = [
        {"feed_id": "BTC-USD", "instrument": "BTC-USD", "sources": ["binance", "coinbase", "kraken"]},
        {"feed_id": "BTC-IVOL", "instrument": "BTC-USD", "kind": "implied_vol", "sources": ["deribit"],
         "min_sources": 1, "decimals": 6},
        {"feed_id": "BTC-FUND", "instrument": "BTC-USD", "kind": "funding_rate", "sources": ["okx", "deribit"],
         "decimals": 8},
        {"feed_id": "BTC-DISP", "instrument": "BTC-USD", "kind": "dispersion", "sources": ["binance", "coinbase"],
         "decimals": 2},
    ]
    urls = {v: f"{chain.simulator}/{v}" for v in ("binance", "coinbase", "kraken", "deribit", "okx")}
    code, out = _check(_config(tmp_path, chain, feeds=feeds, source_urls=urls), capsys)
    venues = {line.split()[2].rstrip(":"): line for line in out.splitlines() if line.startswith(("PASS  venue",
                                                                                                  "FAIL  venue"))}
    assert set(venues) == {"binance", "coinbase", "kraken", "deribit", "okx"}, out
    assert all(line.startswith("PASS") for line in venues.values()), out
    assert "implied_vol BTC-USD" in venues["deribit"] and "funding_rate BTC-USD" in venues["deribit"]
    assert "funding_rate BTC-USD" in venues["okx"]
    # Dispersion is computed from spot: binance is asked for spot only, once.
    assert venues["binance"].count("spot BTC-USD") == 1 and "dispersion" not in venues["binance"]
    assert code == 1  # the three new feeds are not registered on this oracle: reported, not hidden
    assert "FAIL  feed" in out and "BTC-IVOL" in out


def test_check_names_the_factor_a_venue_fails_on(tmp_path: Path, chain: Chain, password: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    feeds = [{"feed_id": "BTC-USD", "instrument": "BTC-USD", "sources": ["binance", "coinbase", "kraken"]},
             {"feed_id": "BTC-IVOL", "instrument": "BTC-USD", "kind": "implied_vol", "sources": ["deribit"],
              "min_sources": 1, "decimals": 6}]
    urls = {v: f"{chain.simulator}/{v}" for v in ("binance", "coinbase", "kraken")}
    urls["deribit"] = "http://127.0.0.1:9"
    code, out = _check(_config(tmp_path, chain, feeds=feeds, source_urls=urls), capsys)
    line = next(x for x in out.splitlines() if x.startswith("FAIL  venue"))
    assert "deribit: implied_vol BTC-USD:" in line and code == 1
