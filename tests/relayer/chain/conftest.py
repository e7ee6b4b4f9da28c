"""Fixtures for chain tests: one real anvil per module, a fresh oracle per test.

Each test runs inside an ``evm_snapshot`` / ``evm_revert`` pair, so tests in a module share
one anvil process but never see each other's contracts, nonces or reports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from web3 import AsyncWeb3

from relayer.chain.anvil import AnvilNode
from relayer.chain.codec import (
    FeedUpdate,
    ReportDomain,
    address_of,
    encode_updates,
    keccak,
    sign_digest,
)
from relayer.chain.contract import disconnect
from relayer.chain.errors import ContractRevert
from relayer.chain.oracle import (
    OnchainConfig,
    QuorumOracleClient,
    SubmitReceipt,
    TransmitReceipt,
    VerifiedFeed,
    connect,
    deploy_oracle,
)

ETH_USD = "ETH/USD"
BTC_USD = "BTC/USD"
MIN_VALUE = 1
MAX_VALUE = 10**18  # within int64, the stored width


async def reverts(call: Awaitable[Any], error_cls: type[ContractRevert] = ContractRevert) -> ContractRevert:
    """The typed revert ``call`` raises (the test fails if it does not)."""
    with pytest.raises(error_cls) as caught:
        await call
    return caught.value


def signer_key(i: int) -> bytes:
    """Committee signing keys: deterministic, unfunded (they only sign, never send)."""
    return keccak(f"quorum-oracle test signer {i}".encode())


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    with AnvilNode.start() as node:
        yield node


@pytest.fixture
async def w3(anvil: AnvilNode) -> AsyncIterator[AsyncWeb3]:
    snapshot = anvil.rpc("evm_snapshot")
    web3 = connect(anvil.rpc_url)
    try:
        yield web3
    finally:
        await disconnect(web3)
        anvil.rpc("evm_revert", [snapshot])


@dataclass
class Deployment:
    """A configured oracle with feeds ETH/USD (index 0) and BTC/USD (index 1)."""

    anvil: AnvilNode
    w3: AsyncWeb3
    client: QuorumOracleClient
    owner_key: bytes
    signer_keys: list[bytes]
    transmitter_keys: list[bytes]
    config: OnchainConfig
    domain: ReportDomain

    async def now(self) -> int:
        return int((await self.w3.eth.get_block("latest"))["timestamp"])

    def updates(self, observed_at: int, *values: tuple[int, int]) -> bytes:
        return encode_updates(
            [FeedUpdate(feed_index=i, observed_at=observed_at, num_sources=3, value=v) for i, v in values]
        )

    def sign(
        self, epoch: int, round: int, updates: bytes, signer_indexes: Sequence[int],
        *, config_digest: bytes | None = None,
    ) -> list[tuple[int, bytes]]:
        digest = self.domain.report_digest(config_digest or self.config.config_digest, epoch, round, updates)
        return [(i, sign_digest(self.signer_keys[i], digest)) for i in signer_indexes]

    async def transmit(
        self, epoch: int, round: int, updates: bytes, signer_indexes: Sequence[int] = (0, 1, 2),
        *, transmitter: int = 0,
    ) -> TransmitReceipt:
        return await self.client.transmit(
            self.transmitter_keys[transmitter], self.config.config_digest, epoch, round, updates,
            self.sign(epoch, round, updates, signer_indexes),
        )

    async def submit(
        self, epoch: int, round: int, updates: bytes, signer_indexes: Sequence[int] = (0, 1, 2),
        *, sender: int = 28,
    ) -> SubmitReceipt:
        """The pull path: an account outside the committee (anvil's ``sender``) submits."""
        return await self.client.submit_report(
            self.anvil.accounts[sender][1], self.config.config_digest, epoch, round, updates,
            self.sign(epoch, round, updates, signer_indexes),
        )

    async def verify(
        self, epoch: int, round: int, updates: bytes, signer_indexes: Sequence[int] = (0, 1, 2),
    ) -> list[VerifiedFeed]:
        return await self.client.verify_report(
            self.config.config_digest, epoch, round, updates, self.sign(epoch, round, updates, signer_indexes))


async def deploy(anvil: AnvilNode, w3: AsyncWeb3, *, n: int, f: int, threshold: int) -> Deployment:
    owner_key = anvil.accounts[0][1]
    client = QuorumOracleClient(w3, await deploy_oracle(w3, owner_key))
    assert await client.add_feed(owner_key, ETH_USD, 8, "ETH / USD", MIN_VALUE, MAX_VALUE) == 0
    assert await client.add_feed(owner_key, BTC_USD, 8, "BTC / USD", MIN_VALUE, MAX_VALUE) == 1
    signer_keys = [signer_key(i) for i in range(n)]
    transmitter_keys = [anvil.accounts[1 + i][1] for i in range(n)]
    config = await client.set_config(
        owner_key,
        [address_of(k) for k in signer_keys],
        [address_of(k) for k in transmitter_keys],
        f,
        threshold,
        b"offchain-v1",
    )
    return Deployment(
        anvil=anvil, w3=w3, client=client, owner_key=owner_key, signer_keys=signer_keys,
        transmitter_keys=transmitter_keys, config=config, domain=client.domain(anvil.chain_id),
    )


@pytest.fixture
async def oracle(anvil: AnvilNode, w3: AsyncWeb3) -> Deployment:
    """n=4, f=1, threshold=3 (2f+1)."""
    return await deploy(anvil, w3, n=4, f=1, threshold=3)
