"""The lean JSON-RPC client: failover across endpoints, cool-down, typed errors, batches."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from relayer.chain.anvil import AnvilNode
from relayer.chain.contract import revert_error
from relayer.chain.errors import ContractRevert, RpcError
from relayer.chain.rpc import JsonRpcClient, RpcCallError

pytestmark = pytest.mark.integration


def dead_url() -> str:
    """A loopback port nobody listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, list[int]]]:
    """An endpoint that answers HTTP 503 to everything; the list counts its hits."""
    hits: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=503, text="upstream overloaded")

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()


async def test_a_refused_endpoint_fails_over_to_the_next(anvil: AnvilNode) -> None:
    dead = dead_url()
    rpc = JsonRpcClient([dead, anvil.rpc_url], cooldown=60)
    try:
        assert await rpc.chain_id() == anvil.chain_id
        assert rpc.url == anvil.rpc_url
        assert rpc.failovers[dead] == 1
        # Cooling down: the dead endpoint is not tried again for the next request.
        await rpc.block_number()
        assert rpc.failovers[dead] == 1
    finally:
        await rpc.close()


async def test_http_503_counts_as_down_and_the_primary_is_retried_after_cooldown(
    anvil: AnvilNode, flaky: tuple[str, list[int]]
) -> None:
    url, hits = flaky
    rpc = JsonRpcClient([url, anvil.rpc_url], cooldown=0.0)
    try:
        await rpc.block_number()
        await rpc.block_number()
        # No cool-down: the preferred endpoint is asked first every time, then the fallback answers.
        assert len(hits) == 2 and rpc.failovers[url] == 2
        assert rpc.url == anvil.rpc_url
    finally:
        await rpc.close()


async def test_every_endpoint_down_raises_one_error_naming_each() -> None:
    first, second = dead_url(), dead_url()
    rpc = JsonRpcClient([first, second])
    try:
        with pytest.raises(RpcError) as info:
            await rpc.block_number()
        assert first in str(info.value) and second in str(info.value) and "rpc_urls" in str(info.value)
    finally:
        await rpc.close()


async def test_a_json_rpc_error_is_the_chains_answer_not_a_failover(anvil: AnvilNode) -> None:
    rpc = JsonRpcClient([anvil.rpc_url, dead_url()])
    try:
        with pytest.raises(RpcCallError) as info:
            await rpc.request("eth_noSuchMethod", [])
        assert info.value.code != 0 and not info.value.is_revert
        assert sum(rpc.failovers.values()) == 0
    finally:
        await rpc.close()


async def test_batch_keeps_the_order_of_the_calls(anvil: AnvilNode) -> None:
    rpc = JsonRpcClient([anvil.rpc_url])
    try:
        chain_id, block, accounts = await rpc.batch([
            ("eth_chainId", []), ("eth_blockNumber", []), ("eth_accounts", []),
        ])
        assert int(chain_id, 16) == anvil.chain_id
        assert int(block, 16) >= 0
        assert isinstance(accounts, list)
    finally:
        await rpc.close()


def test_revert_data_maps_to_the_custom_error_name() -> None:
    from eth_abi import encode

    from relayer.chain.codec import keccak

    data = keccak(b"StaleRound(uint32,uint32)")[:4] + encode(["uint32", "uint32"], [3, 9])
    err = revert_error(data, "execution reverted", "transmit", ContractRevert)
    assert err.reason == "StaleRound" and err.error_args == (3, 9)
    unknown = revert_error(b"\xde\xad\xbe\xef", "execution reverted", "transmit", ContractRevert)
    assert unknown.reason is None and unknown.data == b"\xde\xad\xbe\xef"
