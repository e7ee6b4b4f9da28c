"""The guardian's and keeper's commands: `relayer oracle status|reset-breaker FEED` and
`relayer vault status|sync-feeds MARKET`.

They read the chain target the way `relayer committee` does: `--rpc-url` and the contract's
address, a hex key file for what they send, or `--devnet DIR` for all three from a running
devnet's devnet.json. Without a key they only read: each prints the state it would act on and
says that nothing was sent. A refusal by the contract prints its error name and what to do,
and exits 2.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GuardianError", "add_guardian_commands", "parse_market"]


class GuardianError(Exception):
    """An operator command that cannot be carried out; the message says why and what to do."""


HINTS = {
    "BreakerNotTripped": "the feed's breaker is not tripped: nothing to reset (`relayer oracle status FEED`)",
    "NotGuardian": "only the oracle's guardian or owner may reset a breaker: give its key with --key-file",
    "UnknownFeed": "the oracle has no such feed: check the feed id (devnet.json lists the served feeds)",
    "MarketNotListed": "the vault lists no such market: check the name (devnet.json lists the markets)",
}


def parse_market(text: str) -> bytes:
    """A market id: ``0x`` and 64 hex digits, or a name of at most 32 ASCII bytes (``BTC-PERP``)."""
    from relayer.chain.risk_gate import market_id_bytes

    if text.startswith("0x") and len(text) == 66:
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            pass
    try:
        return market_id_bytes(text)
    except ValueError as exc:
        raise GuardianError(f"MARKET {text!r}: expected a name of at most 32 bytes or 0x and 64 hex digits "
                            f"({exc})") from None


@dataclass(frozen=True)
class _Target:
    rpc: str
    contract: str
    key_file: Path | None


def _target(args: argparse.Namespace, contract_flag: str, devnet_field: str) -> _Target:
    from relayer.cli import _devnet_info

    rpc, contract, key_file = args.rpc_url, getattr(args, contract_flag), args.key_file
    if args.devnet is not None:
        info = _devnet_info(args.devnet, GuardianError)
        rpc, contract = rpc or info.get("rpc_url"), contract or info.get(devnet_field)
        key_file = key_file or (Path(info["owner_key_file"]) if info.get("owner_key_file") else None)
    if not rpc or not contract:
        raise GuardianError(f"give --rpc-url and --{contract_flag.replace('_', '-')} (or --devnet DIR for a "
                            "local devnet)")
    return _Target(rpc, contract, key_file)


def _key(path: Path) -> bytes:
    from relayer.cli import read_key_or

    return read_key_or(path, GuardianError)


def _refused(what: str, exc: Exception) -> GuardianError:
    from relayer.cli import revert_shown

    reason, shown = revert_shown(exc)
    hint = HINTS.get(reason or "", "the contract refused; check the state with the `status` action")
    return GuardianError(f"{what} refused with {reason}({shown}): {hint}" if reason else f"{what} failed: {exc}")


def _describe(status: Any) -> str:
    state = "tripped" if status.tripped else "stale" if status.stale else "usable"
    return (f"value {status.value}  round {status.round_id}  observed at {status.observed_at}  {state}")


# --- relayer oracle ----------------------------------------------------------------------


async def _oracle(args: argparse.Namespace) -> int:
    from relayer.chain.contract import disconnect
    from relayer.chain.errors import ChainError
    from relayer.chain.oracle import QuorumOracleClient, connect

    target = _target(args, "oracle", "oracle")
    w3 = connect(target.rpc)
    try:
        oracle = QuorumOracleClient(w3, target.contract)
        try:
            index = int(args.feed) if args.feed.isdigit() else await oracle.feed_index(args.feed)
            status = await oracle.feed_status(index)
        except ChainError as exc:
            raise _refused(f"reading feed {args.feed}", exc) from None
        print(f"{args.feed} (feed {index})  {_describe(status)}")
        if args.action == "status":
            return 0
        if target.key_file is None:
            print("dry run: no --key-file given, nothing sent")
            return 0
        if not status.tripped:
            raise GuardianError(f"{args.feed}'s breaker is not tripped: nothing to reset")
        try:
            await oracle.reset_breaker(_key(target.key_file), index)
        except ChainError as exc:
            raise _refused("resetBreaker", exc) from None
        print(f"breaker reset: the next report re-anchors {args.feed} at its value; a vault's cool-down runs from "
              "that report (`relayer vault sync-feeds MARKET` records it)")
        print(f"{args.feed} (feed {index})  {_describe(await oracle.feed_status(index))}")
        return 0
    finally:
        await disconnect(w3)


def _cmd_oracle(args: argparse.Namespace) -> int:
    from relayer.cli import _run_chain_command

    return _run_chain_command("oracle", _oracle(args), GuardianError, "check `relayer oracle status FEED`")


# --- relayer vault -----------------------------------------------------------------------


async def _print_watch(vault: Any, oracle: Any, market_id: bytes) -> None:
    """Each feed of the market: its state on the oracle and the vault's cool-down record of it."""
    for feed in await vault.market_feeds(market_id):
        status = await oracle.feed_status(feed)
        seen, recovered = await vault.trouble_round(feed), await vault.recovered_at(feed)
        record = ("no trouble recorded" if seen == 0 else f"trouble seen at round {seen}, "
                  + (f"recovered at {recovered}" if recovered else "recovery not yet recorded"))
        print(f"  feed {feed:>3}  {_describe(status)}  vault: {record}")


async def _vault(args: argparse.Namespace) -> int:
    from relayer.chain.contract import disconnect
    from relayer.chain.errors import ChainError
    from relayer.chain.oracle import QuorumOracleClient, connect
    from relayer.chain.vault import MarginVaultClient

    target = _target(args, "vault", "vault")
    market_id = parse_market(args.market)
    w3 = connect(target.rpc)
    try:
        vault = MarginVaultClient(w3, target.contract)
        try:
            oracle = QuorumOracleClient(w3, await vault.oracle())
            print(f"{args.market}: the vault's cool-down after {(await vault.parameters()).cooldown_s} s")
            await _print_watch(vault, oracle, market_id)
        except ChainError as exc:
            raise _refused(f"reading market {args.market}", exc) from None
        if args.action == "status":
            return 0
        if target.key_file is None:
            print("dry run: no --key-file given, nothing sent")
            return 0
        try:
            await vault.sync_feeds(_key(target.key_file), market_id)
        except ChainError as exc:
            raise _refused("syncFeeds", exc) from None
        print("synced:")
        await _print_watch(vault, oracle, market_id)
        return 0
    finally:
        await disconnect(w3)


def _cmd_vault(args: argparse.Namespace) -> int:
    from relayer.cli import _run_chain_command

    return _run_chain_command("vault", _vault(args), GuardianError, "check `relayer vault status MARKET`")


def _chain_flags(parser: argparse.ArgumentParser, contract: str, what: str, key_help: str) -> None:
    parser.add_argument("--rpc-url", default=None, metavar="URL", help="chain JSON-RPC endpoint")
    parser.add_argument(f"--{contract}", default=None, metavar="ADDRESS", help=f"{what} address")
    parser.add_argument("--key-file", type=Path, default=None, metavar="FILE", help=key_help)
    parser.add_argument("--devnet", type=Path, default=None, metavar="DIR",
                        help="a local `relayer devnet --data-dir DIR`: RPC, contract and owner key from it")


def add_guardian_commands(sub: Any) -> None:
    """Register `relayer oracle` and `relayer vault` on the top-level subparsers."""
    oracle = sub.add_parser(
        "oracle", help="a feed's on-chain state, or (guardian or owner) reset its tripped circuit breaker",
        description="status: the feed's latest value, round, time and whether it is usable, stale or tripped. "
                    "reset-breaker: clear a tripped breaker with resetBreaker (the oracle's guardian or owner); "
                    "the next report re-anchors the feed. FEED is a feed id (BTC-USD) or its index. Without "
                    "--key-file nothing is sent. A refusal prints the contract's error and exits 2.")
    oracle.add_argument("action", choices=("status", "reset-breaker"))
    oracle.add_argument("feed", metavar="FEED")
    _chain_flags(oracle, "oracle", "QuorumOracle", "hex private key of the oracle's guardian or owner")
    oracle.set_defaults(func=_cmd_oracle)

    vault = sub.add_parser(
        "vault", help="a margin market's feeds and cool-down records, or record them now (syncFeeds, anyone)",
        description="status: each feed a MarginVault market reads, its state on the oracle, and the vault's "
                    "record of trouble and recovery (the cool-down runs from the recovery). sync-feeds: send "
                    "syncFeeds, which records trouble now and a recovery from it (any account may; a keeper "
                    "does it on every poll). MARKET is a name (BTC-PERP) or a 0x 32-byte id. Without "
                    "--key-file nothing is sent.")
    vault.add_argument("action", choices=("status", "sync-feeds"))
    vault.add_argument("market", metavar="MARKET")
    _chain_flags(vault, "vault", "MarginVault", "hex private key of the sending account (any account)")
    vault.set_defaults(func=_cmd_vault)
