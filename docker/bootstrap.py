"""Compose bootstrap: deploy the oracle and its subscription registry on the compose chain and
write four node configs.

Runs once before the relayers (`docker compose up` orders it). Each node gets an
encrypted keystore with a password file (the compose stand-in for a secret), a
transmitter key from anvil's dev accounts, and peers at fixed addresses on the compose
network. As on the devnet, the registry's floors are 5 bps / 60 s and anvil's last dev
account (of the 10 a default anvil funds) is an approved example subscriber (its key in /shared/subscriber.key). Idempotent:
an existing /shared/devnet.json is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path

from feeds.catalog import SPOT_HISTORY_DEPTH
from relayer.chain.anvil import dev_accounts
from relayer.chain.codec import address_of
from relayer.chain.oracle import QuorumOracleClient, connect, deploy_oracle
from relayer.chain.subscriptions import SubscriptionRegistryClient, deploy_subscription_registry
from relayer.devnet import FLOOR_DEVIATION_BPS, FLOOR_HEARTBEAT_S, SUBSCRIBER_LIMIT
from relayer.keystore import write_keystore
from relayer.p2p.identity import peer_id_of
from relayer.protocol.committee import OffchainConfig

FEEDS = (("BTC-USD", 8), ("ETH-USD", 8))
VENUES = ("binance", "coinbase", "kraken")


async def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / "devnet.json").exists():
        print(f"bootstrap: {out / 'devnet.json'} exists; keeping it", flush=True)
        return 0
    w3 = connect(args.rpc)
    for attempt in range(60):
        try:
            chain_id = await w3.eth.chain_id
            break
        except Exception:
            print(f"bootstrap: waiting for the chain at {args.rpc} ({attempt + 1}/60)", flush=True)
            time.sleep(1)
    else:
        print("bootstrap: the chain never answered", file=sys.stderr)
        return 1
    # A default anvil funds its first 10 dev accounts: transmitters from 1, the subscriber the last.
    accounts = dev_accounts(10)
    owner = accounts[0][1]
    oracle = await deploy_oracle(w3, owner)
    client = QuorumOracleClient(w3, oracle)
    for feed_id, decimals in FEEDS:
        # Spot prices, kept for getRoundData as the catalog's default; bounds within int64 (the stored width).
        await client.add_feed(owner, feed_id, decimals, f"{feed_id} spot median", 1, 2**63 - 1,
                              history_depth=SPOT_HISTORY_DEPTH)
    registry = await deploy_subscription_registry(w3, owner, oracle, FLOOR_DEVIATION_BPS, FLOOR_HEARTBEAT_S)
    subscriber, subscriber_key = accounts[-1]
    await SubscriptionRegistryClient(w3, registry).approve(owner, subscriber, SUBSCRIBER_LIMIT)
    out.mkdir(parents=True, exist_ok=True)
    (out / "subscriber.key").write_text(subscriber_key.hex())
    os.chmod(out / "subscriber.key", 0o600)
    keys = [secrets.token_bytes(32) for _ in range(args.nodes)]
    f = (args.nodes - 1) // 3
    await client.set_config(owner, [address_of(k) for k in keys], [a for a, _ in accounts[1:1 + args.nodes]], f, f + 1,
                            OffchainConfig().encode())
    peers = [f"/ip4/{args.subnet}.{10 + i}/tcp/9000/p2p/{peer_id_of(k)}" for i, k in enumerate(keys)]
    for i, key in enumerate(keys):
        node = out / f"node-{i}"
        node.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(24)
        (node / "password").write_text(password)
        write_keystore(node / "keystore.json", key, password)
        (node / "transmitter.key").write_text(accounts[1 + i][1].hex())
        for secret in ("password", "transmitter.key"):
            os.chmod(node / secret, 0o600)
        config = {
            "name": f"relayer-{i}", "data_dir": str(node / "data"),
            "keystore_file": str(node / "keystore.json"), "keystore_password_file": str(node / "password"),
            "transmitter_key_file": str(node / "transmitter.key"),
            "rpc_urls": [args.rpc], "chain_id": chain_id, "oracle_address": oracle,
            "subscription_registry_address": registry,
            "listen_host": "0.0.0.0", "listen_port": 9000, "peers": [p for j, p in enumerate(peers) if j != i],
            "api_host": "0.0.0.0", "api_port": 8788,
            "feeds": [{"feed_id": fid, "instrument": fid, "sources": list(VENUES), "decimals": d} for fid, d in FEEDS],
            "source_urls": {v: f"{args.venues}/{v}" for v in VENUES},
        }
        (node / "config.json").write_text(json.dumps(config, indent=2))
    (out / "devnet.json").write_text(json.dumps({
        "oracle": oracle, "chain_id": chain_id, "rpc_url": args.rpc, "signers": [address_of(k) for k in keys],
        "subscription_registry": registry, "subscriber": subscriber,
        "subscriber_key_file": str(out / "subscriber.key"),
        "feeds": [{"feed_id": fid, "decimals": d} for fid, d in FEEDS],
    }, indent=2))
    print(f"bootstrap: oracle {oracle}, {args.nodes} relayers configured in {out}", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rpc", default="http://anvil:8545")
    parser.add_argument("--venues", default="http://venues:8090")
    parser.add_argument("--out", default="/shared")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--subnet", default="172.28.0")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
