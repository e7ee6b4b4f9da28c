"""The `relayer` command: `run` a node, or start a whole `devnet` on the embedded default."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from relayer.logs import setup_logging
from relayer.settings import Settings, SettingsError

log = logging.getLogger("relayer")


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.config)
    except SettingsError as exc:
        print(f"relayer run: {exc}", file=sys.stderr)
        return 2
    setup_logging(node=settings.name, json_lines=settings.log_json or args.json_logs, level=settings.log_level)
    from relayer.node import Node

    try:
        node = Node(settings)
        asyncio.run(node.run())
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def _cmd_devnet(args: argparse.Namespace) -> int:
    setup_logging(node="devnet", json_lines=False, level="WARNING")
    from relayer.devnet import DevnetOptions, run_devnet

    if args.nodes < 4:
        print("relayer devnet: --nodes must be at least 4 (n >= 3f+1 with f >= 1)", file=sys.stderr)
        return 2
    options = DevnetOptions(
        nodes=args.nodes, rounds=args.rounds, json_lines=args.json, data_dir=args.data_dir,
        seed=args.seed, round_interval_ms=args.round_interval_ms,
        venue_faults=dict(args.venue_fault),
    )
    try:
        return asyncio.run(run_devnet(options))
    except KeyboardInterrupt:
        return 0


def _venue_fault(text: str) -> tuple[str, str]:
    venue, sep, fault = text.partition("=")
    if not sep or not venue or not fault:
        raise argparse.ArgumentTypeError(f"expected VENUE=FAULT such as kraken=garbage, got {text!r}")
    return venue, fault


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relayer", description="Zero-trust oracle relayer node")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one relayer node")
    run.add_argument("--config", type=Path, help="node config (JSON); RELAYER_* environment variables override it")
    run.add_argument("--json-logs", action="store_true", help="log JSON lines instead of plain text")
    run.set_defaults(func=_cmd_run)

    devnet = sub.add_parser("devnet", help="run a local chain, simulated venues and several relayers")
    devnet.add_argument("--nodes", type=int, default=4, help="relayer processes (default 4)")
    devnet.add_argument("--rounds", type=int, default=None, help="exit 0 after this many landed reports")
    devnet.add_argument("--json", action="store_true", help="print one JSON object per landed report on stdout")
    devnet.add_argument("--data-dir", type=Path, default=None, help="keep keys, stores and logs here")
    devnet.add_argument("--seed", type=int, default=7, help="seed of the simulated market")
    devnet.add_argument("--round-interval-ms", type=int, default=1000, help="time between rounds")
    devnet.add_argument("--venue-fault", type=_venue_fault, action="append", default=[], metavar="VENUE=FAULT",
                        help="make one simulated venue misbehave, e.g. kraken=garbage or binance=timeout")
    devnet.set_defaults(func=_cmd_devnet)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
