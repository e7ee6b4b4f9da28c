"""The test entry point asks every RPC endpoint for its chain id: a loopback URL is not enough."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from relayer.settings import Settings
from relayer.testing.run import NotALocalDevnet, ensure_local_devnet
from tests.relayer.chain.test_rpc import serve

pytestmark = pytest.mark.integration


@pytest.fixture
async def rpc() -> AsyncIterator[Callable[[int], Awaitable[str]]]:
    """Start a loopback JSON-RPC endpoint that answers eth_chainId with the given chain id."""
    runners: list[web.AppRunner] = []

    async def start(chain_id: int) -> str:
        async def handle(request: web.Request) -> web.Response:
            call = await request.json()
            return web.json_response({"jsonrpc": "2.0", "id": call["id"], "result": hex(chain_id)})

        url, runner = await serve(handle)
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()


def _settings(tmp_path: Path, urls: list[str]) -> Settings:
    data: dict[str, Any] = {
        "data_dir": tmp_path, "rpc_urls": urls, "oracle_address": "0x" + "11" * 20,
        "feeds": [{"feed_id": "BTC-USD", "instrument": "BTC-USD", "sources": ["coinbase", "kraken"]}],
    }
    return Settings(**data)


async def test_a_loopback_endpoint_of_another_chain_is_refused(
    tmp_path: Path, rpc: Callable[[int], Awaitable[str]]
) -> None:
    devnet, mainnet_fork = await rpc(31337), await rpc(1)
    await ensure_local_devnet(_settings(tmp_path, [devnet]))
    with pytest.raises(NotALocalDevnet, match="answers chain id 1"):
        await ensure_local_devnet(_settings(tmp_path, [devnet, mainnet_fork]))


async def test_an_endpoint_that_does_not_answer_is_refused(tmp_path: Path) -> None:
    from relayer.ports import free_port

    with pytest.raises(NotALocalDevnet, match="cannot ask"):
        await ensure_local_devnet(_settings(tmp_path, [f"http://127.0.0.1:{free_port()}"]), timeout=1.0)
