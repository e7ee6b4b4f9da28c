"""A lean JSON-RPC client for the node's hot paths, with failover across endpoints.

web3's request pipeline (middleware, validators, formatters) costs 2-4 ms of CPU per call;
a node reads the chain several times per round, so the round's reads, log queries and
transmissions go through this client (about 0.4 ms per call) and web3 keeps the cold paths
(deployment, administration, ABI tooling).

Endpoints are tried in the configured order, starting with the one that answered last. One
that fails at the transport (refused, timeout, HTTP 5xx or 429, a body that is not JSON-RPC)
is set aside for a cool-down and the request goes to the next; a JSON-RPC error answer (a
revert, a rejected transaction) is the chain's answer and is returned as
:class:`RpcCallError`, not retried elsewhere.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp

from relayer.chain.errors import ChainError, RpcError

log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 10.0
COOLDOWN_S = 5.0


class RpcCallError(ChainError):
    """The endpoint answered with a JSON-RPC error object (``code``, ``message``, ``data``)."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.rpc_message = message
        self.data = data

    @property
    def revert_data(self) -> bytes:
        """The revert payload of an ``eth_call`` / ``eth_estimateGas`` that reverted, else b""."""
        data = self.data
        if isinstance(data, dict):  # some nodes nest it: {"data": "0x..."}
            data = data.get("data")
        if not isinstance(data, str) or not data.startswith("0x"):
            return b""
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return b""

    @property
    def is_revert(self) -> bool:
        return self.code == 3 or "revert" in self.rpc_message.lower()


class _EndpointDown(Exception):
    pass


def _is_jsonrpc(answer: Any) -> bool:
    return isinstance(answer, dict) and ("result" in answer or isinstance(answer.get("error"), dict))


class JsonRpcClient:
    def __init__(self, urls: Sequence[str], *, timeout: float = RPC_TIMEOUT_S, cooldown: float = COOLDOWN_S) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        self.urls = list(urls)
        self.timeout = timeout
        self.cooldown = cooldown
        self._down_until = [0.0] * len(self.urls)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self.failovers: Counter[str] = Counter()  # url -> times it was set aside
        self.current = 0  # index of the endpoint that answered last
        self.known_chain_id: int | None = None  # filled once by contract.chain_id_of
        # For health: when an endpoint last answered (unix time), and the last total failure.
        self.last_ok_at: float | None = None
        self.last_error: str | None = None

    @property
    def url(self) -> str:
        return self.urls[self.current]

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=16, ttl_dns_cache=300),
            )
        return self._session

    def _order(self) -> list[int]:
        """The endpoint that answered last, then the other healthy ones in configured order,
        then the cooling ones (soonest back first). Staying on the one that works keeps
        consecutive reads (a block number, then logs up to it; a pending nonce) on one node's
        view of the chain, and a recovered but lagging primary does not take over mid-stream."""
        now = time.monotonic()
        healthy = [i for i in range(len(self.urls)) if self._down_until[i] <= now]
        if self.current in healthy:
            healthy.remove(self.current)
            healthy.insert(0, self.current)
        cooling = sorted((i for i in range(len(self.urls)) if self._down_until[i] > now), key=lambda i: self._down_until[i])
        return healthy + cooling

    async def _post(self, index: int, payload: Any) -> Any:
        try:
            async with self._session_now().post(self.urls[index], json=payload) as resp:
                if resp.status == 429 or resp.status >= 500:
                    raise _EndpointDown(f"HTTP {resp.status}")
                if resp.status != 200:
                    raise _EndpointDown(f"HTTP {resp.status}: {(await resp.text())[:120]}")
                try:
                    answer = await resp.json(content_type=None)
                except ValueError as exc:
                    raise _EndpointDown(f"answer is not JSON: {exc}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _EndpointDown(repr(exc)) from None
        # A rate-limit page served as JSON, or a provider that refuses batches, is the
        # endpoint failing, not the chain answering: the next endpoint gets the request.
        if isinstance(payload, list):
            if not isinstance(answer, list) or len(answer) != len(payload):
                raise _EndpointDown(f"batch answered with {str(answer)[:120]}")
            if not all(_is_jsonrpc(a) for a in answer):
                raise _EndpointDown("batch answer is not JSON-RPC")
        elif not _is_jsonrpc(answer):
            raise _EndpointDown(f"not a JSON-RPC answer: {str(answer)[:120]}")
        return answer

    async def _send(self, payload: Any, what: str) -> Any:
        errors: list[str] = []
        for index in self._order():
            try:
                answer = await self._post(index, payload)
            except _EndpointDown as exc:
                self._down_until[index] = time.monotonic() + self.cooldown
                self.failovers[self.urls[index]] += 1
                errors.append(f"{self.urls[index]}: {exc}")
                if len(self.urls) > 1:
                    log.warning("RPC endpoint %s failed (%s); trying the next one for %.0f s",
                                self.urls[index], exc, self.cooldown)
                continue
            self.current = index
            self.last_ok_at = time.time()
            return answer
        self.last_error = f"{what}: {'; '.join(errors)}"[:300]
        raise RpcError(
            f"{what}: every RPC endpoint failed ({'; '.join(errors)}); check `rpc_urls` and that the node is up"
        )

    @staticmethod
    def _result(method: str, answer: Any) -> Any:
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise RpcError(f"{method}: not a JSON-RPC answer: {str(answer)[:120]}")
        if "error" in answer and answer["error"] is not None:
            err = answer["error"]
            if not isinstance(err, dict):
                raise RpcError(f"{method}: malformed JSON-RPC error: {str(err)[:120]}")
            raise RpcCallError(method, int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
        return answer["result"]

    async def request(self, method: str, params: list[Any]) -> Any:
        answer = await self._send({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}, method)
        return self._result(method, answer)

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one HTTP request; each result, or raises the first error in order."""
        first = next(self._ids)
        payload = [{"jsonrpc": "2.0", "id": first + i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        for _ in range(len(calls) - 1):
            next(self._ids)
        what = "+".join(m for m, _ in calls)
        answers = await self._send(payload, what)
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        return [self._result(m, by_id.get(first + i)) for i, (m, _) in enumerate(calls)]

    # -- common reads -------------------------------------------------------------------

    async def chain_id(self) -> int:
        return int(await self.request("eth_chainId", []), 16)

    async def block_number(self) -> int:
        return int(await self.request("eth_blockNumber", []), 16)

    async def balance(self, address: str) -> int:
        return int(await self.request("eth_getBalance", [address, "latest"]), 16)

    async def call(self, to: str, data: bytes, *, block: str = "latest", sender: str | None = None) -> bytes:
        tx: dict[str, str] = {"to": to, "data": "0x" + data.hex()}
        if sender is not None:
            tx["from"] = sender
        result = await self.request("eth_call", [tx, block])
        return bytes.fromhex(result[2:])
