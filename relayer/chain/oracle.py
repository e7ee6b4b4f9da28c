"""Typed async wrapper around the deployed QuorumOracle and FeedProxy contracts.

Every state-changing call is first run as a static call (``eth_call``) so a revert surfaces
as a :class:`ContractRevert` / :class:`TransmitError` carrying the custom error's name,
before any gas is spent. Transactions are signed locally with eth-account; no node-side keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import abi_to_signature
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception
from web3.logs import DISCARD

from relayer.chain.codec import (
    ReportDomain,
    address_of,
    feed_id_bytes,
    keccak,
    pack_signatures,
)
from relayer.chain.errors import ChainError, ContractRevert, RpcError, TransmitError

__all__ = [
    "FeedProxyClient",
    "FeedState",
    "FeedStatus",
    "OnchainConfig",
    "QuorumOracleClient",
    "TransmitReceipt",
    "connect",
    "deploy_contract",
    "deploy_oracle",
    "deploy_proxy",
    "feed_id_bytes",
    "load_artifact",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_DIR = REPO_ROOT / "contracts-abi"
RPC_TIMEOUT_S = 10.0
RECEIPT_TIMEOUT_S = 30.0
# Automine answers within milliseconds; web3's default 100 ms poll would dominate latency.
RECEIPT_POLL_S = 0.02
# Age after which readers call a feed stale, unless add_feed is told otherwise.
DEFAULT_HEARTBEAT_S = 3600


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """``contracts-abi/<name>.json`` as written by ``node scripts/compile_contracts.js``."""
    path = ARTIFACT_DIR / f"{name}.json"
    try:
        artifact: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ChainError(
            f"contract artifact {path} is missing; run `node scripts/compile_contracts.js`"
        ) from exc
    return artifact


def connect(rpc_url: str, *, timeout: float = RPC_TIMEOUT_S) -> AsyncWeb3:
    """An ``AsyncWeb3`` over HTTP with a total timeout on every request."""
    provider = AsyncHTTPProvider(
        rpc_url, request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)}
    )
    return AsyncWeb3(provider)


@dataclass(frozen=True)
class OnchainConfig:
    config_count: int
    config_digest: bytes
    signers: list[str]
    transmitters: list[str]
    f: int
    threshold: int
    offchain_config: bytes


@dataclass(frozen=True)
class FeedState:
    value: int
    observed_at: int
    round_id: int


@dataclass(frozen=True)
class FeedStatus:
    """A feed's latest answer with what a reader needs to judge it (``feedStatus``)."""

    value: int
    observed_at: int
    round_id: int
    stale: bool  # never written, older than the heartbeat, or the oracle is paused
    tripped: bool  # the circuit breaker holds the last good value back from a jump
    signer_count: int  # signatures on the latest report
    threshold: int
    heartbeat: int

    @property
    def usable(self) -> bool:
        return not (self.stale or self.tripped)

    @classmethod
    def from_tuple(cls, raw: Sequence[Any]) -> FeedStatus:
        value, observed_at, round_id, stale, tripped, signer_count, threshold, heartbeat = raw
        return cls(
            value=int(value), observed_at=int(observed_at), round_id=int(round_id), stale=bool(stale),
            tripped=bool(tripped), signer_count=int(signer_count), threshold=int(threshold),
            heartbeat=int(heartbeat),
        )


@dataclass(frozen=True)
class TransmitReceipt:
    tx_hash: bytes
    block_number: int
    gas_used: int
    status: int  # 1 = applied; 0 = reverted on-chain after a passing static call (lost a race)

    @property
    def succeeded(self) -> bool:
        return self.status == 1


@cache
def _error_table() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    """4-byte selector -> (custom error name, argument types), from all our contracts."""
    table: dict[bytes, tuple[str, tuple[str, ...]]] = {}
    for name in ("QuorumOracle", "FeedProxy", "RiskGate", "SubscriptionRegistry", "ChainlinkConsumer"):
        for entry in load_artifact(name)["abi"]:
            if entry["type"] == "error":
                selector = keccak(abi_to_signature(entry).encode())[:4]
                table[selector] = (entry["name"], tuple(i["type"] for i in entry["inputs"]))
    return table


def _revert_data(exc: ContractLogicError) -> bytes:
    data = exc.data
    if isinstance(data, dict):  # some nodes nest it: {"data": "0x..."}
        data = data.get("data")
    if not isinstance(data, str) or not data.startswith("0x"):
        return b""
    try:
        return bytes.fromhex(data[2:])
    except ValueError:
        return b""


def _to_revert(
    exc: ContractLogicError, what: str, error_cls: type[ContractRevert]
) -> ContractRevert:
    data = _revert_data(exc)
    known = _error_table().get(data[:4])
    if known is None:
        return error_cls(
            f"{what} reverted without a known custom error ({exc.message or data.hex() or 'no data'})",
            reason=None,
            data=data,
        )
    name, types = known
    try:
        raw_args = abi_decode(list(types), data[4:])
        # eth_abi yields lower-case addresses; everything else in this package is checksummed.
        args = tuple(
            AsyncWeb3.to_checksum_address(a) if t == "address" else a for t, a in zip(types, raw_args)
        )
    except Exception:  # noqa: BLE001 - malformed arguments must not hide the error name
        args = ()
    return error_cls(f"{what} reverted with {name}{args}", reason=name, error_args=args, data=data)


_RPC_FAILURES = (Web3Exception, aiohttp.ClientError, asyncio.TimeoutError, OSError)


async def _send(
    w3: AsyncWeb3,
    key: bytes,
    call: Any,
    what: str,
    *,
    error_cls: type[ContractRevert] = ContractRevert,
    static_call: bool = True,
) -> dict[str, Any]:
    """Static-call, sign and send ``call`` from ``key``'s account; return the receipt."""
    sender = address_of(key)
    try:
        if static_call:
            # Against the pending block: its timestamp is "now", while the latest block's may
            # be minutes old on a quiet chain and would misjudge observation-time checks.
            await call.call({"from": sender}, block_identifier="pending")
        nonce = await w3.eth.get_transaction_count(sender, "pending")
        tx = await call.build_transaction({"from": sender, "nonce": nonce})
        signed = Account.sign_transaction(tx, key)
        tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=RECEIPT_POLL_S
        )
    except ContractLogicError as exc:
        raise _to_revert(exc, what, error_cls) from exc
    except TimeExhausted as exc:
        raise RpcError(f"{what}: no receipt after {RECEIPT_TIMEOUT_S}s") from exc
    except _RPC_FAILURES as exc:
        raise RpcError(f"{what} failed at the RPC: {exc!r}") from exc
    return dict(receipt)


async def deploy_contract(w3: AsyncWeb3, key: bytes, name: str, *args: Any) -> str:
    """Deploy ``contracts-abi/<name>.json`` with constructor ``args``; returns its address."""
    return await _deploy(w3, key, name, *args)


async def _deploy(w3: AsyncWeb3, key: bytes, name: str, *args: Any) -> str:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    # A constructor has no static call; gas estimation in build_transaction surfaces reverts.
    receipt = await _send(
        w3, key, factory.constructor(*args), f"deploying {name}", static_call=False
    )
    if receipt["status"] != 1 or receipt.get("contractAddress") is None:
        raise ChainError(f"deploying {name} failed on-chain (tx {receipt['transactionHash'].hex()})")
    return AsyncWeb3.to_checksum_address(receipt["contractAddress"])


async def deploy_oracle(w3: AsyncWeb3, owner_key: bytes) -> str:
    """Deploy a QuorumOracle owned by ``owner_key``'s account; returns its address."""
    return await _deploy(w3, owner_key, "QuorumOracle")


async def deploy_proxy(w3: AsyncWeb3, owner_key: bytes, oracle: str, feed_index: int) -> str:
    """Deploy a FeedProxy (AggregatorV3Interface) for one feed of ``oracle``."""
    return await _deploy(
        w3, owner_key, "FeedProxy", AsyncWeb3.to_checksum_address(oracle), feed_index
    )


async def call_view(contract: Any, fn: str, *args: Any) -> Any:
    """A read-only contract call; reverts and RPC failures become chain errors."""
    try:
        return await getattr(contract.functions, fn)(*args).call()
    except ContractLogicError as exc:
        raise _to_revert(exc, fn, ContractRevert) from exc
    except _RPC_FAILURES as exc:
        raise RpcError(f"{fn} failed at the RPC: {exc!r}") from exc


class QuorumOracleClient:
    """One deployed QuorumOracle: typed reads, owner administration and transmit."""

    def __init__(self, w3: AsyncWeb3, address: str) -> None:
        self.w3 = w3
        self.address = AsyncWeb3.to_checksum_address(address)
        self.contract = w3.eth.contract(
            address=self.address, abi=load_artifact("QuorumOracle")["abi"]
        )
        # One sender at a time per client: nonces are read from the node, not tracked here.
        self._send_lock = asyncio.Lock()

    def domain(self, chain_id: int) -> ReportDomain:
        return ReportDomain(chain_id, self.address)

    async def _call(self, fn: str, *args: Any) -> Any:
        return await call_view(self.contract, fn, *args)

    async def _transact(
        self,
        key: bytes,
        fn: str,
        *args: Any,
        error_cls: type[ContractRevert] = ContractRevert,
    ) -> dict[str, Any]:
        call = getattr(self.contract.functions, fn)(*args)
        async with self._send_lock:
            return await _send(self.w3, key, call, fn, error_cls=error_cls)

    # -- administration (owner) -------------------------------------------------------

    async def set_config(
        self,
        owner_key: bytes,
        signers: Sequence[str],
        transmitters: Sequence[str],
        f: int,
        threshold: int,
        offchain_config: bytes,
    ) -> OnchainConfig:
        receipt = await self._transact(
            owner_key,
            "setConfig",
            [AsyncWeb3.to_checksum_address(a) for a in signers],
            [AsyncWeb3.to_checksum_address(a) for a in transmitters],
            f,
            threshold,
            offchain_config,
        )
        _require_success(receipt, "setConfig")
        return await self.config()

    async def add_feed(
        self,
        owner_key: bytes,
        feed_id: str,
        decimals: int,
        description: str,
        min_value: int,
        max_value: int,
        *,
        breaker_bps: int = 0,
        heartbeat: int = DEFAULT_HEARTBEAT_S,
        history_depth: int = 0,
    ) -> int:
        """Register a feed (its on-chain id is :func:`feed_id_bytes`); returns its index.

        Bounds are clamped on-chain to int64, the stored width. ``breaker_bps`` (0 = off) is
        the largest accepted jump from the last good value; ``heartbeat`` the age in seconds
        after which readers call the value stale; ``history_depth`` past rounds kept for
        ``getRoundData`` (0 = latest only, the cheapest transmit).
        """
        receipt = await self._transact(
            owner_key,
            "addFeed",
            feed_id_bytes(feed_id),
            decimals,
            description,
            min_value,
            max_value,
            breaker_bps,
            heartbeat,
            history_depth,
        )
        _require_success(receipt, "addFeed")
        events = self.contract.events.FeedAdded().process_receipt(receipt, errors=DISCARD)
        return int(events[0]["args"]["feedIndex"])

    async def set_feed_parameters(
        self, owner_key: bytes, index: int, min_value: int, max_value: int, breaker_bps: int, heartbeat: int
    ) -> None:
        receipt = await self._transact(
            owner_key, "setFeedParameters", index, min_value, max_value, breaker_bps, heartbeat
        )
        _require_success(receipt, "setFeedParameters")

    async def reset_breaker(self, key: bytes, index: int) -> None:
        """Owner or guardian: clear a tripped breaker; the next report re-anchors the feed."""
        _require_success(await self._transact(key, "resetBreaker", index), "resetBreaker")

    async def set_guardian(self, owner_key: bytes, guardian: str) -> None:
        receipt = await self._transact(owner_key, "setGuardian", AsyncWeb3.to_checksum_address(guardian))
        _require_success(receipt, "setGuardian")

    async def pause(self, key: bytes) -> None:
        _require_success(await self._transact(key, "pause"), "pause")

    async def unpause(self, key: bytes) -> None:
        _require_success(await self._transact(key, "unpause"), "unpause")

    async def transfer_ownership(self, owner_key: bytes, new_owner: str) -> None:
        receipt = await self._transact(owner_key, "transferOwnership", AsyncWeb3.to_checksum_address(new_owner))
        _require_success(receipt, "transferOwnership")

    async def accept_ownership(self, new_owner_key: bytes) -> None:
        _require_success(await self._transact(new_owner_key, "acceptOwnership"), "acceptOwnership")

    # -- reads ------------------------------------------------------------------------

    async def owner(self) -> str:
        return str(await self._call("owner"))

    async def paused(self) -> bool:
        return bool(await self._call("paused"))

    async def feed_status(self, index: int) -> FeedStatus:
        return FeedStatus.from_tuple(await self._call("feedStatus", index))

    async def round_data(self, index: int, round_id: int) -> tuple[int, int]:
        """(value, observed_at) of a past round still in the feed's history."""
        value, observed_at = await self._call("roundData", index, round_id)
        return int(value), int(observed_at)

    async def config(self) -> OnchainConfig:
        count, _block, digest = await self._call("latestConfigDetails")
        signers, transmitters, f, threshold, offchain = await self._call("getConfig")
        return OnchainConfig(
            config_count=count,
            config_digest=bytes(digest),
            signers=list(signers),
            transmitters=list(transmitters),
            f=f,
            threshold=threshold,
            offchain_config=bytes(offchain),
        )

    async def feed_index(self, feed_id: str) -> int:
        return int(await self._call("feedIndexOf", feed_id_bytes(feed_id)))

    async def latest_epoch_round(self) -> tuple[int, int]:
        epoch, round_ = await self._call("latestEpochAndRound")
        return int(epoch), int(round_)

    async def latest_signer_count(self) -> int:
        return int((await self._call("latestTransmissionDetails"))[3])

    async def latest_feed(self, index: int) -> FeedState:
        value, observed_at, round_id = await self._call("latestFeed", index)
        return FeedState(value=value, observed_at=observed_at, round_id=round_id)

    async def report_digest(
        self, config_digest: bytes, epoch: int, round: int, updates: bytes
    ) -> bytes:
        """The contract's own EIP-712 digest (to cross-check :class:`ReportDomain`)."""
        return bytes(await self._call("reportDigest", config_digest, epoch, round, updates))

    async def transmission_events(self, from_block: int, to_block: int) -> list[Any]:
        """``NewTransmission`` events in ``[from_block, to_block]``, oldest first."""
        try:
            return list(
                await self.contract.events.NewTransmission().get_logs(
                    from_block=from_block, to_block=to_block
                )
            )
        except _RPC_FAILURES as exc:
            raise RpcError(f"NewTransmission logs {from_block}..{to_block}: {exc!r}") from exc

    def decode_transmit_input(self, data: bytes | str) -> dict[str, Any]:
        """Arguments of a ``transmit`` transaction's input, by name (``updates``, ...)."""
        try:
            fn, args = self.contract.decode_function_input(data)
        except ValueError as exc:
            raise ChainError(f"not a QuorumOracle call: {exc}") from exc
        if fn.fn_name != "transmit":
            raise ChainError(f"expected a transmit call, got {fn.fn_name}")
        return dict(args)

    # -- transmission -----------------------------------------------------------------

    async def transmit(
        self,
        transmitter_key: bytes,
        config_digest: bytes,
        epoch: int,
        round: int,
        updates: bytes,
        signatures: Sequence[tuple[int, bytes]],
    ) -> TransmitReceipt:
        """Send an attested report; ``signatures`` are ``(signer_index, sig65)`` pairs."""
        bitmask, packed = pack_signatures(signatures)
        return await self.transmit_packed(
            transmitter_key, config_digest, epoch, round, updates, bitmask, packed
        )

    async def transmit_packed(
        self,
        transmitter_key: bytes,
        config_digest: bytes,
        epoch: int,
        round: int,
        updates: bytes,
        signer_bitmask: int,
        signatures: bytes,
    ) -> TransmitReceipt:
        """Like :meth:`transmit` with the wire form already built (bitmask, compact sigs)."""
        receipt = await self._transact(
            transmitter_key,
            "transmit",
            config_digest,
            epoch,
            round,
            updates,
            signer_bitmask,
            signatures,
            error_cls=TransmitError,
        )
        return TransmitReceipt(
            tx_hash=bytes(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            status=int(receipt["status"]),
        )


class FeedProxyClient:
    """Reads one FeedProxy the way a Chainlink consumer would."""

    def __init__(self, w3: AsyncWeb3, address: str) -> None:
        self.address = AsyncWeb3.to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact("FeedProxy")["abi"])

    async def _call(self, fn: str, *args: Any) -> Any:
        return await call_view(self.contract, fn, *args)

    async def decimals(self) -> int:
        return int(await self._call("decimals"))

    async def description(self) -> str:
        return str(await self._call("description"))

    async def latest_round_data(self) -> tuple[int, int, int, int, int]:
        return tuple(await self._call("latestRoundData"))  # type: ignore[return-value]

    async def get_round_data(self, round_id: int) -> tuple[int, int, int, int, int]:
        return tuple(await self._call("getRoundData", round_id))  # type: ignore[return-value]

    async def latest_status(self) -> FeedStatus:
        """The safety-stating read: value, time, round, stale, tripped, signer count."""
        return FeedStatus.from_tuple(await self._call("latestStatus"))


def _require_success(receipt: dict[str, Any], what: str) -> None:
    if receipt["status"] != 1:
        raise ContractRevert(
            f"{what} passed its static call but reverted on-chain "
            f"(tx {bytes(receipt['transactionHash']).hex()}); state changed in between, retry",
            reason=None,
        )
