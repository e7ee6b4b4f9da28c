"""Reader (and writer, for protocols and tests) of the on-chain SubscriptionRegistry.

A protocol registers the feeds it needs with a deviation threshold and a heartbeat; nodes
serve the union: per feed the tightest deviation and the shortest heartbeat (:meth:`union`).
"""

from __future__ import annotations

from dataclasses import dataclass

from relayer.chain.codec import feed_id_bytes
from relayer.chain.errors import ChainError
from relayer.chain.contract import ContractClient, HttpWeb3, deploy_contract

__all__ = ["Subscription", "SubscriptionRegistryClient", "deploy_subscription_registry"]

PAGE_SIZE = 500


@dataclass(frozen=True)
class Subscription:
    subscriber: str
    feed_id: bytes  # the on-chain bytes32 id (keccak of the feed name)
    deviation_bps: int
    heartbeat: int


async def deploy_subscription_registry(w3: HttpWeb3, key: bytes) -> str:
    return await deploy_contract(w3, key, "SubscriptionRegistry")


class SubscriptionRegistryClient(ContractClient):
    ARTIFACT = "SubscriptionRegistry"

    async def subscribe(self, key: bytes, feed_id: str, deviation_bps: int, heartbeat: int) -> None:
        """Create or replace the sender's subscription to ``feed_id``."""
        receipt = await self._transact(key, "subscribe", feed_id_bytes(feed_id), deviation_bps, heartbeat)
        if receipt["status"] != 1:
            raise ChainError("subscribe reverted on-chain after a passing static call")

    async def unsubscribe(self, key: bytes, feed_id: str) -> None:
        receipt = await self._transact(key, "unsubscribe", feed_id_bytes(feed_id))
        if receipt["status"] != 1:
            raise ChainError("unsubscribe reverted on-chain after a passing static call")

    async def subscriptions(self) -> list[Subscription]:
        """Every subscription, read page by page."""
        total = int(await self._call("subscriptionCount"))
        result: list[Subscription] = []
        for offset in range(0, total, PAGE_SIZE):
            for subscriber, feed_id, deviation, heartbeat in await self._call("subscriptions", offset, PAGE_SIZE):
                result.append(Subscription(subscriber, bytes(feed_id), int(deviation), int(heartbeat)))
        return result

    async def union(self) -> dict[bytes, tuple[int, int]]:
        """feed id (bytes32) -> (tightest deviation bps, shortest heartbeat s) over all subscribers."""
        return union_of(await self.subscriptions())


def union_of(subscriptions: list[Subscription]) -> dict[bytes, tuple[int, int]]:
    union: dict[bytes, tuple[int, int]] = {}
    for s in subscriptions:
        if s.feed_id in union:
            deviation, heartbeat = union[s.feed_id]
            union[s.feed_id] = (min(deviation, s.deviation_bps), min(heartbeat, s.heartbeat))
        else:
            union[s.feed_id] = (s.deviation_bps, s.heartbeat)
    return union
