"""The only door to a faulty node: `python -m relayer.testing run --fault NAME --config FILE`.

It runs an ordinary node with a fault's engine (`relayer.testing.faults`), and only on a
local devnet: every RPC URL on a loopback address and every endpoint answering chain id
31337 (anvil's and hardhat's), asked over RPC, not taken from the config. `relayer run`
has no way to start a fault: `Settings` has no such setting and `Node` builds the honest
engine unless it is handed another factory, which only this module does.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from relayer.chain.errors import ChainError
from relayer.chain.rpc import JsonRpcClient
from relayer.logs import setup_logging
from relayer.settings import Settings, SettingsError
from relayer.testing.faults import FAULTS, FaultyEngineFactory

log = logging.getLogger(__name__)

DEVNET_CHAIN_ID = 31337


class NotALocalDevnet(Exception):
    """A fault was asked for on a chain that is not a local devnet; nothing was started."""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_loopback_urls(urls: Sequence[str]) -> None:
    """Every RPC URL must name a loopback host (127.0.0.0/8, ::1, or a name resolving only there)."""
    for url in urls:
        host = urlsplit(url).hostname
        if host is None or not _is_loopback(host):
            raise NotALocalDevnet(
                f"rpc_urls holds {url}, which is not on a loopback address; test faults run only against a "
                f"local devnet (e.g. http://127.0.0.1:8545): use `relayer run` for any other chain"
            )


async def ensure_local_devnet(settings: Settings, *, timeout: float = 5.0) -> None:
    """Raise NotALocalDevnet unless the config and every RPC endpoint say: a local devnet."""
    if settings.chain_id is not None and settings.chain_id != DEVNET_CHAIN_ID:
        raise NotALocalDevnet(
            f"chain_id is {settings.chain_id}; test faults run only on a local devnet (chain id {DEVNET_CHAIN_ID})"
        )
    check_loopback_urls(settings.rpc_urls)
    for url in settings.rpc_urls:
        rpc = JsonRpcClient([url], timeout=timeout)
        try:
            chain_id = await rpc.chain_id()
        except ChainError as exc:
            raise NotALocalDevnet(f"cannot ask {url} for its chain id ({exc}); start the devnet first") from None
        finally:
            await rpc.close()
        if chain_id != DEVNET_CHAIN_ID:
            raise NotALocalDevnet(
                f"{url} answers chain id {chain_id}; test faults run only on a local devnet "
                f"(chain id {DEVNET_CHAIN_ID})"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m relayer.testing",
        description="Test-only: run a relayer node that misbehaves on purpose, on a local devnet only.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one node with a fault (refused on any chain but a local devnet)")
    run.add_argument("--fault", required=True, choices=sorted(FAULTS), help="how the node misbehaves")
    run.add_argument("--config", required=True, help="the node's config file (as for `relayer run`)")
    run.add_argument("--json-logs", action="store_true", help="log one JSON object per line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "python -m relayer.testing"
    try:
        settings = Settings.load(args.config)
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(ensure_local_devnet(settings))
    except NotALocalDevnet as exc:
        print(f"{prog}: refused: {exc}", file=sys.stderr)
        return 2
    setup_logging(node=settings.name, json_lines=settings.log_json or args.json_logs, level=settings.log_level)
    from relayer.node import Node

    log.warning("test fault %r: this node misbehaves on purpose", args.fault)
    if args.fault in ("partition", "fd_exhaustion", "disk_full"):
        # SIGUSR1 toggles the fault once the engine exists; before that (a node still
        # starting) it must not end the process, as its default action would.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        asyncio.run(Node(settings, engine_factory=FaultyEngineFactory(args.fault)).run())
    except KeyboardInterrupt:
        return 130
    return 0
