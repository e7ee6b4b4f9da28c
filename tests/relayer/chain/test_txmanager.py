"""The transaction manager against a real anvil and its fault injection: one transaction in
flight, newer requests replace older ones on the same nonce, dropped transactions are
re-broadcast, fees never pass the cap, a used nonce is resynced, reorgs are seen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account

from relayer.chain.anvil import AnvilNode
from relayer.chain.contract import deploy_contract
from relayer.chain.oracle import connect
from relayer.chain.rpc import JsonRpcClient
from relayer.chain.txmanager import Status, TxManager, TxOutcome, TxRequest
from relayer.chain.contract import disconnect

pytestmark = pytest.mark.integration

GWEI = 10**9
SINK = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
async def rpc(anvil: AnvilNode) -> AsyncIterator[JsonRpcClient]:
    snapshot = anvil.rpc("evm_snapshot")
    client = JsonRpcClient([anvil.rpc_url], timeout=5.0)
    try:
        yield client
    finally:
        await client.close()
        anvil.rpc("evm_setAutomine", [True])
        anvil.rpc("evm_revert", [snapshot])


def _manager(anvil: AnvilNode, rpc: JsonRpcClient, **kwargs: object) -> TxManager:
    options: dict[str, object] = {"max_fee_per_gas": 100 * GWEI, "resend_after_blocks": 2, **kwargs}
    return TxManager(rpc, anvil.accounts[5][1], anvil.chain_id, **options)  # type: ignore[arg-type]


def _request(n: int) -> TxRequest:
    return TxRequest(key=(0, n), to=SINK, data=n.to_bytes(32, "big"))


async def _tx(rpc: JsonRpcClient, outcome: TxOutcome) -> dict[str, object]:
    assert outcome.tx_hash is not None
    tx = await rpc.request("eth_getTransactionByHash", [outcome.tx_hash])
    assert tx is not None
    return dict(tx)


async def _wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_requests_land_in_order_on_consecutive_nonces(anvil: AnvilNode, rpc: JsonRpcClient) -> None:
    manager = _manager(anvil, rpc)
    try:
        first = await manager.submit(_request(1))
        second = await manager.submit(_request(2))
        assert first.status is Status.LANDED and second.status is Status.LANDED
        nonces = [int(str((await _tx(rpc, o))["nonce"]), 16) for o in (first, second)]
        assert nonces[1] == nonces[0] + 1
        assert (await manager.submit(_request(2))).status is Status.SUPERSEDED  # not sent twice
    finally:
        await manager.stop()


async def test_newer_requests_replace_the_one_in_flight_on_its_nonce(anvil: AnvilNode, rpc: JsonRpcClient) -> None:
    anvil.rpc("evm_setAutomine", [False])
    manager = _manager(anvil, rpc)
    try:
        first = asyncio.create_task(manager.submit(_request(1)))
        await _wait_until(lambda: manager.stats.broadcasts == 1)
        second = asyncio.create_task(manager.submit(_request(2)))
        await _wait_until(lambda: manager.stats.replacements == 1)
        third = asyncio.create_task(manager.submit(_request(3)))
        await _wait_until(lambda: manager.stats.replacements == 2)
        assert (await first).status is Status.SUPERSEDED and (await second).status is Status.SUPERSEDED
        anvil.rpc("evm_mine")
        landed = await asyncio.wait_for(third, 5)
        assert landed.status is Status.LANDED
        block = await rpc.request("eth_getBlockByNumber", [hex(landed.block_number or 0), True])
        ours = [t for t in block["transactions"] if t["from"].lower() == manager.sender.lower()]
        assert len(ours) == 1 and ours[0]["input"] == "0x" + (3).to_bytes(32, "big").hex()
        # Each replacement outbid the last by the bump, within the cap.
        assert int(ours[0]["maxFeePerGas"], 16) <= 100 * GWEI
    finally:
        await manager.stop()


async def test_a_dropped_transaction_is_rebroadcast_on_the_same_nonce(anvil: AnvilNode, rpc: JsonRpcClient) -> None:
    anvil.rpc("evm_setAutomine", [False])
    manager = _manager(anvil, rpc)
    try:
        job = asyncio.create_task(manager.submit(_request(7)))
        await _wait_until(lambda: manager.stats.broadcasts == 1)
        anvil.rpc("anvil_dropAllTransactions")
        for _ in range(2):
            anvil.rpc("evm_mine")
        await _wait_until(lambda: manager.stats.rebroadcasts == 1)
        anvil.rpc("evm_mine")
        outcome = await asyncio.wait_for(job, 5)
        assert outcome.status is Status.LANDED and outcome.broadcasts == 2
    finally:
        await manager.stop()


async def test_fees_wait_at_the_cap_during_a_spike_and_land_after_it(anvil: AnvilNode, rpc: JsonRpcClient) -> None:
    anvil.rpc("evm_setAutomine", [False])
    cap = 20 * GWEI
    manager = _manager(anvil, rpc, max_fee_per_gas=cap)
    try:
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(50 * GWEI)])
        job = asyncio.create_task(manager.submit(_request(9)))
        await _wait_until(lambda: manager.stats.fee_capped >= 3)
        assert manager.stats.broadcasts == 0  # nothing sent above the cap
        anvil.rpc("evm_mine")  # the spike block
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(1 * GWEI)])
        await _wait_until(lambda: manager.stats.broadcasts == 1)
        anvil.rpc("evm_mine")
        outcome = await asyncio.wait_for(job, 5)
        assert outcome.status is Status.LANDED
        assert int(str((await _tx(rpc, outcome))["maxFeePerGas"]), 16) <= cap
    finally:
        await manager.stop()


async def test_a_transaction_priced_out_by_the_base_fee_is_replaced_with_bumped_fees(
    anvil: AnvilNode, rpc: JsonRpcClient
) -> None:
    anvil.rpc("evm_setAutomine", [False])
    manager = _manager(anvil, rpc)
    try:
        job = asyncio.create_task(manager.submit(_request(11)))
        await _wait_until(lambda: manager.stats.broadcasts == 1)
        pending = await rpc.request("eth_getBlockByNumber", ["pending", True])
        first_fee = int(pending["transactions"][0]["maxFeePerGas"], 16)
        # The base fee jumps past what the pending transaction offers: it cannot be included.
        for _ in range(3):
            anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(first_fee + GWEI)])
            anvil.rpc("evm_mine")
        await _wait_until(lambda: manager.stats.replacements >= 1)
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(first_fee + GWEI)])
        anvil.rpc("evm_mine")
        outcome = await asyncio.wait_for(job, 5)
        assert outcome.status is Status.LANDED
        paid = int(str((await _tx(rpc, outcome))["maxFeePerGas"]), 16)
        assert first_fee < paid <= 100 * GWEI
    finally:
        await manager.stop()


async def test_a_nonce_used_elsewhere_is_resynced(anvil: AnvilNode, rpc: JsonRpcClient) -> None:
    manager = _manager(anvil, rpc)
    try:
        assert (await manager.submit(_request(1))).status is Status.LANDED
        # Someone else with the same key sends a transaction: our local nonce is now stale.
        key = anvil.accounts[5][1]
        nonce = int(await rpc.request("eth_getTransactionCount", [manager.sender, "latest"]), 16)
        raw = Account.sign_transaction({"type": 2, "chainId": anvil.chain_id, "nonce": nonce, "to": SINK, "value": 0,
                                        "gas": 30_000, "maxFeePerGas": 10 * GWEI, "maxPriorityFeePerGas": GWEI}, key)
        await rpc.request("eth_sendRawTransaction", ["0x" + bytes(raw.raw_transaction).hex()])
        outcome = await asyncio.wait_for(manager.submit(_request(2)), 5)
        assert outcome.status is Status.LANDED and manager.stats.nonce_resyncs == 1
        assert int(str((await _tx(rpc, outcome))["nonce"]), 16) == nonce + 1
    finally:
        await manager.stop()


async def test_a_request_that_would_revert_is_not_sent(anvil: AnvilNode, rpc: JsonRpcClient) -> None:
    w3 = connect(anvil.rpc_url)
    try:
        target = await deploy_contract(w3, anvil.accounts[0][1], "FrostVerifierHarness")
    finally:
        await disconnect(w3)
    manager = _manager(anvil, rpc)
    try:
        outcome = await manager.submit(TxRequest(key=(0, 1), to=target, data=b"\xde\xad\xbe\xef"))
        assert outcome.status is Status.REVERTED and outcome.broadcasts == 0
        assert manager.stats.broadcasts == 0

        async def not_wanted() -> bool:
            return False

        skipped = await manager.submit(TxRequest(key=(0, 2), to=SINK, data=b"", still_wanted=not_wanted))
        assert skipped.status is Status.SUPERSEDED and manager.stats.broadcasts == 0
    finally:
        await manager.stop()


async def test_confirmations_and_a_reorg_that_takes_the_block_away(anvil: AnvilNode, rpc: JsonRpcClient) -> None:
    anvil.rpc("evm_setAutomine", [False])
    manager = _manager(anvil, rpc, confirmations=2)
    try:
        job = asyncio.create_task(manager.submit(_request(5)))
        await _wait_until(lambda: manager.stats.broadcasts == 1)
        anvil.rpc("evm_mine")
        anvil.rpc("evm_mine")
        await asyncio.sleep(0.2)
        assert not job.done()  # one confirmation so far
        anvil.rpc("evm_mine")
        outcome = await asyncio.wait_for(job, 5)
        assert outcome.status is Status.LANDED
        assert await manager.is_canonical(outcome)
        anvil.rpc("anvil_reorg", [3, []])
        assert not await manager.is_canonical(outcome)
    finally:
        await manager.stop()


async def test_a_nonce_gap_left_by_a_reorg_is_closed(anvil: AnvilNode, rpc: JsonRpcClient) -> None:
    manager = _manager(anvil, rpc, resend_after_s=0.3)
    try:
        first = await manager.submit(_request(1))
        first_nonce = int(str((await _tx(rpc, first))["nonce"]), 16)
        anvil.rpc("anvil_reorg", [1, []])  # the first transaction is gone; our next nonce now leaves a gap
        assert not await manager.is_canonical(first)
        outcome = await asyncio.wait_for(manager.submit(_request(2)), 10)
        assert outcome.status is Status.LANDED and manager.stats.nonce_resyncs == 1
        assert int(str((await _tx(rpc, outcome))["nonce"]), 16) == first_nonce
    finally:
        await manager.stop()


class _Endpoint:
    """A JSON-RPC endpoint in front of anvil that counts methods and can behave like nodes
    other than anvil for the static check: no `eth_createAccessList` at all, or geth's way of
    reporting a revert inside the answer."""

    def __init__(self, upstream: str, mode: str) -> None:
        self.upstream, self.mode = upstream, mode
        self.calls: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> _Endpoint:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _one(self, call: dict[str, Any]) -> dict[str, Any]:
        method = call["method"]
        self.calls[method] = self.calls.get(method, 0) + 1
        if method == "eth_createAccessList" and self.mode == "no-access-list":
            return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": "method not found"}}
        async with self._session.post(self.upstream, json=call) as response:
            answer: dict[str, Any] = await response.json()
        if method == "eth_createAccessList" and self.mode == "revert-in-answer" and "error" in answer:
            answer = {"jsonrpc": "2.0", "id": call["id"],
                      "result": {"accessList": [], "gasUsed": "0x5208", "error": "execution reverted"}}
        return answer

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(body, list):
            return web.json_response([await self._one(c) for c in body])
        return web.json_response(await self._one(body))


@contextlib.asynccontextmanager
async def _behind(anvil: AnvilNode, mode: str) -> AsyncIterator[tuple[_Endpoint, TxManager]]:
    """A transaction manager talking to anvil through an `_Endpoint` in ``mode``."""
    async with _Endpoint(anvil.rpc_url, mode) as endpoint:
        client = JsonRpcClient([endpoint.url], timeout=5.0)
        manager = _manager(anvil, client)
        try:
            yield endpoint, manager
        finally:
            await manager.stop()
            await client.close()


async def test_the_static_check_is_one_simulation_with_a_gas_limit_above_what_the_call_uses(
    anvil: AnvilNode, rpc: JsonRpcClient,
) -> None:
    async with _behind(anvil, "anvil") as (endpoint, manager):
        outcome = await manager.submit(_request(1))
        assert outcome.status is Status.LANDED
        assert endpoint.calls.get("eth_createAccessList") == 1 and "eth_estimateGas" not in endpoint.calls
        tx = await _tx(rpc, outcome)
        assert int(str(tx["gas"]), 16) >= outcome.gas_used * 1.25


async def test_an_endpoint_without_access_lists_is_checked_with_estimate_gas(
    anvil: AnvilNode, rpc: JsonRpcClient,
) -> None:
    async with _behind(anvil, "no-access-list") as (endpoint, manager):
        assert (await manager.submit(_request(1))).status is Status.LANDED
        assert (await manager.submit(_request(2))).status is Status.LANDED
        # Asked once, then never again: every send is checked with eth_estimateGas.
        assert endpoint.calls["eth_createAccessList"] == 1 and endpoint.calls["eth_estimateGas"] == 2


async def test_a_revert_reported_inside_the_simulations_answer_is_refused_with_its_data(
    anvil: AnvilNode, rpc: JsonRpcClient,
) -> None:
    w3 = connect(anvil.rpc_url)
    try:
        target = await deploy_contract(w3, anvil.accounts[0][1], "FrostVerifierHarness")
    finally:
        await disconnect(w3)
    async with _behind(anvil, "revert-in-answer") as (endpoint, manager):
        outcome = await manager.submit(TxRequest(key=(0, 1), to=target, data=b"\xde\xad\xbe\xef"))
        assert outcome.status is Status.REVERTED and outcome.broadcasts == 0
        assert endpoint.calls["eth_estimateGas"] == 1  # asked again to learn the revert
        assert manager.stats.broadcasts == 0
