"""Contract calls and transactions over :class:`~relayer.chain.rpc.JsonRpcClient`.

Calldata is encoded with eth-abi from the compiled artifacts (selectors cached per
artifact); reverts are decoded into the contracts' custom errors; transactions are signed
locally with eth-account, their nonce, gas and fees fetched in one batched request, and
each is static-checked first by ``eth_estimateGas`` against the pending block, so a revert
surfaces as a typed :class:`ContractRevert` before any gas is spent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeAlias
from weakref import WeakKeyDictionary

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.grammar import TupleType
from eth_abi.grammar import parse as parse_abi_type
from eth_account import Account
from eth_utils.abi import abi_to_signature
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from relayer.chain.codec import address_of, keccak
from relayer.chain.errors import ChainError, ContractRevert, RpcError
from relayer.chain.rpc import RPC_TIMEOUT_S, JsonRpcClient, RpcCallError

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_DIR = REPO_ROOT / "contracts-abi"
RECEIPT_TIMEOUT_S = 30.0
# Automine answers within milliseconds; a 100 ms receipt poll would dominate landing latency.
RECEIPT_POLL_S = 0.02
# Headroom over eth_estimateGas: the state a transmit meets in its block may differ a little
# (a breaker slot written, a history ring advanced) from the pending state it was estimated on.
GAS_HEADROOM = 1.25

# Whose custom errors a revert is decoded against (test-only consumers included: their
# refusals are what the consumer tests assert).
ARTIFACTS = ("QuorumOracle", "FeedProxy", "StrictFeedProxy", "RiskGate", "SubscriptionRegistry", "MarginVault",
             "TestCollateral", "ChainlinkConsumer", "StalenessCheckedConsumer", "RoundCompleteConsumer",
             "LatestAnswerConsumer", "LendingOracleWrapper", "PullKeeper")

# The web3 object this package is handed: HTTP, the one transport the lean client speaks.
HttpWeb3: TypeAlias = AsyncWeb3[AsyncHTTPProvider]

# Per web3 object, kept beside it (weakly) rather than patched onto it: the lean client
# serving it, and the request timeout `oracle.connect` gave it.
_rpc_clients: WeakKeyDictionary[HttpWeb3, JsonRpcClient] = WeakKeyDictionary()
_rpc_timeouts: WeakKeyDictionary[HttpWeb3, float] = WeakKeyDictionary()


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """``contracts-abi/<name>.json`` as written by ``node scripts/compile_contracts.js``."""
    path = ARTIFACT_DIR / f"{name}.json"
    try:
        artifact: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ChainError(f"contract artifact {path} is missing; run `node scripts/compile_contracts.js`") from exc
    return artifact


def _type_of(param: dict[str, Any]) -> str:
    """The canonical ABI type, tuples spelled out: ``(uint16,int192)[]``."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_type_of(c) for c in param["components"]) + ")" + kind[len("tuple"):]
    return kind


def _checksummed(kind: str, value: Any) -> Any:
    """As web3 returns them: checksummed addresses at any depth, arrays as lists, structs as tuples."""
    return _normalize(parse_abi_type(kind), value)


def _normalize(abi_type: Any, value: Any) -> Any:
    if abi_type.is_array:
        return [_normalize(abi_type.item_type, v) for v in value]
    if isinstance(abi_type, TupleType):
        return tuple(_normalize(t, v) for t, v in zip(abi_type.components, value))
    if abi_type.to_type_str() == "address":
        return to_checksum_address(value)
    return value


@dataclass(frozen=True)
class AbiFunction:
    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def encode(self, args: Sequence[Any]) -> bytes:
        if len(args) != len(self.inputs):
            raise ChainError(f"{self.name} takes {len(self.inputs)} arguments, got {len(args)}")
        try:
            return self.selector + abi_encode(list(self.inputs), list(args))
        except Exception as exc:  # noqa: BLE001 - eth-abi raises several unrelated types
            raise ChainError(f"{self.name}{self.inputs}: arguments do not encode: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        """The single output, or a tuple of them (as web3's ``.call()`` returns)."""
        if not self.outputs:
            return None
        try:
            values = abi_decode(list(self.outputs), data)
        except Exception as exc:  # noqa: BLE001 - eth-abi raises several unrelated types
            raise ChainError(
                f"{self.name} returned {len(data)} bytes that do not decode as {self.outputs}: is the "
                f"contract address right and is the contract deployed on this chain?"
            ) from exc
        out = tuple(_checksummed(t, v) for t, v in zip(self.outputs, values))
        return out[0] if len(out) == 1 else out


@cache
def abi_functions(name: str) -> dict[str, AbiFunction]:
    table: dict[str, AbiFunction] = {}
    for entry in load_artifact(name)["abi"]:
        if entry["type"] != "function":
            continue
        inputs = tuple(_type_of(p) for p in entry["inputs"])
        selector = keccak(f"{entry['name']}({','.join(inputs)})".encode())[:4]
        table[entry["name"]] = AbiFunction(entry["name"], selector, inputs, tuple(_type_of(p) for p in entry["outputs"]))
    return table


@cache
def error_table() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    """4-byte selector -> (custom error name, argument types), from all our contracts."""
    table: dict[bytes, tuple[str, tuple[str, ...]]] = {}
    for name in ARTIFACTS:
        for entry in load_artifact(name)["abi"]:
            if entry["type"] == "error":
                selector = keccak(abi_to_signature(entry).encode())[:4]
                table[selector] = (entry["name"], tuple(i["type"] for i in entry["inputs"]))
    return table


def revert_error(data: bytes, message: str, what: str, error_cls: type[ContractRevert]) -> ContractRevert:
    """A typed revert from raw revert data: the custom error's name and decoded arguments."""
    known = error_table().get(data[:4])
    if known is None:
        return error_cls(
            f"{what} reverted without a known custom error ({message or data.hex() or 'no data'})",
            reason=None,
            data=data,
        )
    name, types = known
    try:
        args = tuple(_checksummed(t, a) for t, a in zip(types, abi_decode(list(types), data[4:])))
    except Exception:  # noqa: BLE001 - malformed arguments must not hide the error name
        args = ()
    return error_cls(f"{what} reverted with {name}{args}", reason=name, error_args=args, data=data)


def set_rpc_timeout(w3: HttpWeb3, timeout: float) -> None:
    """The total timeout of every request :func:`rpc_for` ``w3`` will make."""
    _rpc_timeouts[w3] = timeout


def rpc_for(w3: HttpWeb3) -> JsonRpcClient:
    """The lean client for ``w3``'s endpoint, one per ``AsyncWeb3`` object."""
    rpc = _rpc_clients.get(w3)
    if rpc is None:
        timeout = _rpc_timeouts.get(w3) or RPC_TIMEOUT_S
        rpc = JsonRpcClient([str(w3.provider.endpoint_uri)], timeout=timeout)
        _rpc_clients[w3] = rpc
    return rpc


async def chain_id_of(rpc: JsonRpcClient) -> int:
    if rpc.known_chain_id is None:
        rpc.known_chain_id = await rpc.chain_id()
    return rpc.known_chain_id


def _receipt(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": int(raw["status"], 16),
        "transactionHash": bytes.fromhex(raw["transactionHash"][2:]),
        "blockNumber": int(raw["blockNumber"], 16),
        "gasUsed": int(raw["gasUsed"], 16),
        "contractAddress": to_checksum_address(raw["contractAddress"]) if raw.get("contractAddress") else None,
        "logs": raw.get("logs", []),
    }


async def send_transaction(
    rpc: JsonRpcClient,
    key: bytes,
    to: str | None,
    data: bytes,
    what: str,
    *,
    error_cls: type[ContractRevert] = ContractRevert,
) -> dict[str, Any]:
    """Estimate (the static check), sign, send and wait for the receipt of one transaction.

    Returns the receipt as a dict: ``status``, ``transactionHash`` (bytes), ``blockNumber``,
    ``gasUsed``, ``contractAddress``, ``logs`` (raw JSON-RPC log objects).
    """
    sender = address_of(key)
    call: dict[str, str] = {"from": sender, "data": "0x" + data.hex()}
    if to is not None:
        call["to"] = to
    try:
        chain_id = await chain_id_of(rpc)
        # Against the pending block: its timestamp is "now", while the latest block's may be
        # minutes old on a quiet chain and would misjudge observation-time checks.
        nonce, gas, gas_price, tip = await rpc.batch([
            ("eth_getTransactionCount", [sender, "pending"]),
            ("eth_estimateGas", [call, "pending"]),
            ("eth_gasPrice", []),
            ("eth_maxPriorityFeePerGas", []),
        ])
        tx: dict[str, Any] = {
            "type": 2, "chainId": chain_id, "nonce": int(nonce, 16), "data": data, "value": 0,
            "gas": int(int(gas, 16) * GAS_HEADROOM),
            "maxFeePerGas": 2 * int(gas_price, 16) + int(tip, 16), "maxPriorityFeePerGas": int(tip, 16),
        }
        if to is not None:
            tx["to"] = to
        signed = Account.sign_transaction(tx, key)
        tx_hash = "0x" + bytes(signed.hash).hex()
        try:
            await rpc.request("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
        except RpcCallError as exc:
            # After a failover the first endpoint may have taken it already: then wait for it.
            if not any(m in exc.rpc_message.lower() for m in _ALREADY_SENT) or not await _known(rpc, tx_hash):
                raise
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        while True:
            raw = await rpc.request("eth_getTransactionReceipt", [tx_hash])
            if raw is not None:
                return _receipt(raw)
            if time.monotonic() > deadline:
                raise RpcError(f"{what}: no receipt for {tx_hash} after {RECEIPT_TIMEOUT_S:.0f} s; the transaction "
                               "may still be pending (gas price too low?)")
            await asyncio.sleep(RECEIPT_POLL_S)
    except RpcCallError as exc:
        if exc.is_revert:
            raise revert_error(exc.revert_data, exc.rpc_message, what, error_cls) from exc
        raise RpcError(f"{what} refused by the RPC: {exc}") from exc


_ALREADY_SENT = ("already known", "known transaction", "nonce too low")


async def _known(rpc: JsonRpcClient, tx_hash: str) -> bool:
    """Whether the chain (pending pool or a block) holds the transaction ``tx_hash``."""
    try:
        return await rpc.request("eth_getTransactionByHash", [tx_hash]) is not None
    except RpcCallError:
        return False


class ContractClient:
    """One deployed contract of artifact ``ARTIFACT``: typed view calls and transactions."""

    ARTIFACT: ClassVar[str]

    def __init__(self, w3: HttpWeb3, address: str, *, rpc: JsonRpcClient | None = None) -> None:
        self.w3 = w3
        self.rpc = rpc if rpc is not None else rpc_for(w3)
        self.address = to_checksum_address(address)
        # web3's contract object stays for ABI tooling (events, input decoding), not for calls.
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact(self.ARTIFACT)["abi"])
        self.functions = abi_functions(self.ARTIFACT)
        # One sender at a time per client: nonces are read from the node, not tracked here.
        self._send_lock = asyncio.Lock()

    def _function(self, fn: str) -> AbiFunction:
        try:
            return self.functions[fn]
        except KeyError:
            raise ChainError(f"{self.ARTIFACT} has no function {fn}") from None

    async def _call(self, fn: str, *args: Any, block: str = "latest") -> Any:
        """A read-only call; reverts and RPC failures become chain errors."""
        abi = self._function(fn)
        try:
            out = await self.rpc.call(self.address, abi.encode(args), block=block)
        except RpcCallError as exc:
            if exc.is_revert:
                raise revert_error(exc.revert_data, exc.rpc_message, fn, ContractRevert) from exc
            raise RpcError(f"{fn} failed at the RPC: {exc}") from exc
        return abi.decode(out)

    async def _call_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]], block: str = "latest") -> list[Any]:
        """Several read-only calls in one HTTP request (a JSON-RPC batch), results in order."""
        abis = [self._function(fn) for fn, _ in calls]
        requests = [("eth_call", [{"to": self.address, "data": "0x" + abi.encode(args).hex()}, block])
                    for abi, (_, args) in zip(abis, calls)]
        try:
            results = await self.rpc.batch(requests)
        except RpcCallError as exc:
            if exc.is_revert:
                raise revert_error(exc.revert_data, exc.rpc_message, "+".join(fn for fn, _ in calls),
                                   ContractRevert) from exc
            raise RpcError(f"batched calls failed at the RPC: {exc}") from exc
        return [abi.decode(bytes.fromhex(out[2:])) for abi, out in zip(abis, results)]

    async def _logs(self, what: str, from_block: int, to_block: int, topic: str | None = None) -> list[dict[str, Any]]:
        """This contract's logs in ``[from_block, to_block]`` (of one event when ``topic`` is
        given), oldest first, as the JSON-RPC node returns them."""
        query: dict[str, Any] = {"address": self.address, "fromBlock": hex(from_block), "toBlock": hex(to_block)}
        if topic is not None:
            query["topics"] = [topic]
        try:
            logs = await self.rpc.request("eth_getLogs", [query])
        except RpcCallError as exc:
            raise RpcError(f"{what} logs {from_block}..{to_block}: {exc}") from exc
        if not isinstance(logs, list):
            raise RpcError(f"eth_getLogs answered {str(logs)[:120]}, expected a list of logs")
        return logs

    async def _transact(
        self, key: bytes, fn: str, *args: Any, error_cls: type[ContractRevert] = ContractRevert
    ) -> dict[str, Any]:
        data = self._function(fn).encode(args)
        async with self._send_lock:
            return await send_transaction(self.rpc, key, self.address, data, fn, error_cls=error_cls)


def require_success(receipt: dict[str, Any], what: str) -> None:
    if receipt["status"] != 1:
        raise ContractRevert(
            f"{what} passed its static call but reverted on-chain "
            f"(tx {bytes(receipt['transactionHash']).hex()}); state changed in between, retry",
            reason=None,
        )


async def deploy_contract(w3: HttpWeb3, key: bytes, name: str, *args: Any) -> str:
    """Deploy ``contracts-abi/<name>.json`` with constructor ``args``; returns its address."""
    artifact = load_artifact(name)
    ctor: dict[str, Any] = next((e for e in artifact["abi"] if e["type"] == "constructor"), {"inputs": []})
    types = [_type_of(p) for p in ctor["inputs"]]
    data = bytes.fromhex(artifact["bytecode"].removeprefix("0x")) + (abi_encode(types, list(args)) if types else b"")
    receipt = await send_transaction(rpc_for(w3), key, None, data, f"deploying {name}")
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise ChainError(f"deploying {name} failed on-chain (tx {receipt['transactionHash'].hex()})")
    return str(receipt["contractAddress"])


async def send_call(
    w3: HttpWeb3, key: bytes, call: Any, what: str, *, error_cls: type[ContractRevert] = ContractRevert
) -> dict[str, Any]:
    """Send a web3 ``ContractFunction`` (``contract.functions.f(args)``) as a transaction."""
    data = bytes.fromhex(call._encode_transaction_data().removeprefix("0x"))
    return await send_transaction(rpc_for(w3), key, call.address, data, what, error_cls=error_cls)


async def disconnect(w3: HttpWeb3) -> None:
    """Close ``w3``'s HTTP sessions: web3's own and the lean client's."""
    rpc = _rpc_clients.get(w3)
    if rpc is not None:
        await rpc.close()
    await w3.provider.disconnect()
