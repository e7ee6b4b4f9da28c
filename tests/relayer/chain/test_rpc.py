"""The lean JSON-RPC client: failover across endpoints, cool-down, typed errors, batches."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable

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


async def serve(answer: Callable[[web.Request], Awaitable[web.Response]]) -> tuple[str, web.AppRunner]:
    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}", runner


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, list[int]]]:
    """An endpoint that answers HTTP 503 to everything; the list counts its hits."""
    hits: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=503, text="upstream overloaded")

    url, runner = await serve(handler)
    try:
        yield url, hits
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


async def test_http_503_fails_over_and_the_client_stays_on_the_endpoint_that_works(
    anvil: AnvilNode, flaky: tuple[str, list[int]]
) -> None:
    url, hits = flaky
    rpc = JsonRpcClient([url, anvil.rpc_url], cooldown=0.0)
    try:
        await rpc.block_number()
        assert len(hits) == 1 and rpc.failovers[url] == 1 and rpc.url == anvil.rpc_url
        # No cool-down left, yet the next reads stay on the endpoint that answered: a block
        # number and the logs up to it come from one node's view of the chain.
        await rpc.block_number()
        await rpc.block_number()
        assert len(hits) == 1
    finally:
        await rpc.close()


async def test_when_the_fallback_fails_the_client_returns_to_the_primary(anvil: AnvilNode) -> None:
    async def ok(request: web.Request) -> web.Response:
        return await relay(request, anvil.rpc_url)

    down = {"now": False}

    async def sometimes(request: web.Request) -> web.Response:
        if down["now"]:
            return web.Response(status=502, text="bad gateway")
        return await relay(request, anvil.rpc_url)

    primary, runner_a = await serve(ok)
    fallback, runner_b = await serve(sometimes)
    rpc = JsonRpcClient([primary, fallback], cooldown=0.0)
    try:
        rpc.current = 1  # as after an earlier failover
        await rpc.block_number()
        assert rpc.url == fallback
        down["now"] = True
        await rpc.block_number()
        assert rpc.url == primary and rpc.failovers[fallback] == 1
    finally:
        await rpc.close()
        await runner_a.cleanup()
        await runner_b.cleanup()


async def relay(request: web.Request, upstream: str) -> web.Response:
    """Forward one JSON-RPC request to anvil, as a proxy in front of a node would."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(upstream, data=await request.read(),
                                                               headers={"Content-Type": "application/json"}) as r:
        return web.Response(body=await r.read(), content_type="application/json")


async def test_a_json_answer_that_is_not_json_rpc_fails_over(anvil: AnvilNode) -> None:
    async def rate_limit_page(request: web.Request) -> web.Response:
        return web.json_response({"message": "rate limited, try later"})

    url, runner = await serve(rate_limit_page)
    rpc = JsonRpcClient([url, anvil.rpc_url])
    try:
        assert await rpc.chain_id() == anvil.chain_id
        chain_id, _ = await rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])
        assert int(chain_id, 16) == anvil.chain_id and rpc.failovers[url] == 1
    finally:
        await rpc.close()
        await runner.cleanup()


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
