"""Reader (and writer, for governance, protocols and tests) of the on-chain SubscriptionRegistry.

A protocol the owner approved registers the feeds it needs with a deviation threshold and a
heartbeat; nodes serve, per feed, the tightest of the catalog default and the subscriptions,
never tighter than the governance floors (:meth:`SubscriptionRegistryClient.promises`).

:class:`PromiseBook` is a node's copy of all of it: loaded at start, then kept by following
the registry's logs (one ``eth_getLogs`` per poll; any event reloads the registry, which is
small and bounded by the approved subscribers' limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aggregation.trigger import Floors, Promise, effective_promise
from relayer.chain.codec import feed_id_bytes
from relayer.chain.errors import ChainError
from relayer.chain.contract import ContractClient, HttpWeb3, deploy_contract

__all__ = [
    "PromiseBook",
    "PromiseSet",
    "Subscription",
    "SubscriptionRegistryClient",
    "deploy_subscription_registry",
]

DEFAULT_FLOORS = bytes(32)

PAGE_SIZE = 500


@dataclass(frozen=True)
class Subscription:
    subscriber: str
    feed_id: bytes  # the on-chain bytes32 id (keccak of the feed name)
    deviation_bps: int
    heartbeat: int


async def deploy_subscription_registry(
    w3: HttpWeb3, key: bytes, oracle: str, min_deviation_bps: int = 5, min_heartbeat: int = 60
) -> str:
    """Deploy a registry for the feeds ``oracle`` serves, with default floors."""
    return await deploy_contract(w3, key, "SubscriptionRegistry", oracle, min_deviation_bps, min_heartbeat)


class SubscriptionRegistryClient(ContractClient):
    ARTIFACT = "SubscriptionRegistry"

    # --- governance (owner key) --------------------------------------------------------

    async def approve(self, owner_key: bytes, subscriber: str, max_subscriptions: int) -> None:
        """Let ``subscriber`` hold up to ``max_subscriptions`` subscriptions."""
        await self._sent(owner_key, "approve", subscriber, max_subscriptions)

    async def revoke(self, owner_key: bytes, subscriber: str) -> None:
        """Take the approval away and remove every subscription of ``subscriber``."""
        await self._sent(owner_key, "revoke", subscriber)

    async def set_floors(self, owner_key: bytes, feed_id: str | None, min_deviation_bps: int, min_heartbeat: int) -> None:
        """Floors for ``feed_id``, or the default floors when it is None."""
        key = DEFAULT_FLOORS if feed_id is None else feed_id_bytes(feed_id)
        await self._sent(owner_key, "setFloors", key, min_deviation_bps, min_heartbeat)

    async def floors(self, feed_id: str | bytes) -> Floors:
        key = feed_id if isinstance(feed_id, bytes) else feed_id_bytes(feed_id)
        deviation, heartbeat = await self._call("floorsOf", key)
        return Floors(int(deviation), int(heartbeat))

    async def floors_of(self, feed_ids: list[bytes], block: str = "latest") -> dict[bytes, Floors]:
        """Each feed's floors (its own, or the default ones), in one batched request."""
        if not feed_ids:
            return {}
        answers = await self._call_many([("floorsOf", (f,)) for f in feed_ids], block=block)
        return {f: Floors(int(d), int(h)) for f, (d, h) in zip(feed_ids, answers)}

    async def oracle(self) -> str:
        """The QuorumOracle whose feeds this registry accepts."""
        return str(await self._call("oracle"))

    async def owner(self) -> str:
        return str(await self._call("owner"))

    async def allowance(self, subscriber: str) -> tuple[int, int]:
        """(subscriptions allowed, subscriptions held); (0, 0) for a stranger."""
        limit, used = await self._call("allowanceOf", subscriber)
        return int(limit), int(used)

    async def _sent(self, key: bytes, fn: str, *args: object) -> None:
        receipt = await self._transact(key, fn, *args)
        if receipt["status"] != 1:
            raise ChainError(f"{fn} reverted on-chain after a passing static call")

    # --- subscribers ------------------------------------------------------------------

    async def subscribe(self, key: bytes, feed_id: str, deviation_bps: int, heartbeat: int) -> None:
        """Create or replace the sender's subscription to ``feed_id``."""
        receipt = await self._transact(key, "subscribe", feed_id_bytes(feed_id), deviation_bps, heartbeat)
        if receipt["status"] != 1:
            raise ChainError("subscribe reverted on-chain after a passing static call")

    async def unsubscribe(self, key: bytes, feed_id: str) -> None:
        receipt = await self._transact(key, "unsubscribe", feed_id_bytes(feed_id))
        if receipt["status"] != 1:
            raise ChainError("unsubscribe reverted on-chain after a passing static call")

    async def subscriptions(self, block: str = "latest") -> list[Subscription]:
        """Every subscription, read page by page."""
        total = int(await self._call("subscriptionCount", block=block))
        result: list[Subscription] = []
        for offset in range(0, total, PAGE_SIZE):
            for subscriber, feed_id, deviation, heartbeat in await self._call(
                    "subscriptions", offset, PAGE_SIZE, block=block):
                result.append(Subscription(subscriber, bytes(feed_id), int(deviation), int(heartbeat)))
        return result

    async def union(self) -> dict[bytes, tuple[int, int]]:
        """feed id (bytes32) -> (tightest deviation bps, shortest heartbeat s) over all subscribers."""
        return union_of(await self.subscriptions())

    async def promises(self, defaults: Mapping[bytes, Promise]) -> dict[bytes, Promise]:
        """Per served feed (bytes32 id -> catalog default), the promise nodes must keep."""
        return (await self.promise_set(defaults)).promises

    async def promise_set(self, defaults: Mapping[bytes, Promise], block: str = "latest") -> PromiseSet:
        """Everything behind the promises, read at one block: subscriptions, floors, results."""
        subscriptions = await self.subscriptions(block)
        floors = await self.floors_of(list(defaults), block)
        return PromiseSet.of(defaults, subscriptions, floors)

    async def change_logs(self, from_block: int, to_block: int) -> int:
        """How many events the registry emitted in ``[from_block, to_block]``: any of them
        (a subscription, an approval or revocation, floors) may change a promise."""
        return len(await self._logs("SubscriptionRegistry", from_block, to_block))


@dataclass(frozen=True)
class PromiseSet:
    """The promises of every served feed and what they come from."""

    defaults: Mapping[bytes, Promise]
    subscriptions: tuple[Subscription, ...]
    floors: Mapping[bytes, Floors]
    promises: dict[bytes, Promise] = field(default_factory=dict)

    @classmethod
    def of(cls, defaults: Mapping[bytes, Promise], subscriptions: list[Subscription],
           floors: Mapping[bytes, Floors]) -> PromiseSet:
        by_feed: dict[bytes, list[Promise]] = {}
        for s in subscriptions:
            by_feed.setdefault(s.feed_id, []).append(Promise(s.deviation_bps, s.heartbeat))
        promises = {feed: effective_promise(default, by_feed.get(feed, []), floors[feed])
                    for feed, default in defaults.items()}
        return cls(dict(defaults), tuple(subscriptions), dict(floors), promises)

    def subscribers_of(self, feed_id: bytes) -> list[Subscription]:
        return [s for s in self.subscriptions if s.feed_id == feed_id]


class PromiseBook:
    """A node's promises, loaded at start and kept by following the registry's events.

    Without a registry the promises are the catalog defaults (floors of 1 bps / 1 s, which
    clamp nothing)."""

    def __init__(self, registry: SubscriptionRegistryClient | None, defaults: Mapping[bytes, Promise]) -> None:
        self.registry = registry
        self.defaults = dict(defaults)
        self.current = PromiseSet.of(self.defaults, [], {f: Floors(1, 1) for f in self.defaults})
        self.block: int | None = None  # the block the promises were read at
        self.reloads = 0

    @property
    def promises(self) -> dict[bytes, Promise]:
        return self.current.promises

    async def load(self) -> PromiseSet:
        """Read the registry at the head block."""
        if self.registry is None:
            return self.current
        head = await self.registry.rpc.block_number()
        self.current = await self.registry.promise_set(self.defaults, block=hex(head))
        self.block = head
        self.reloads += 1
        return self.current

    async def poll(self) -> bool:
        """Look for registry events since the last read; reload on any. True when reloaded."""
        if self.registry is None:
            return False
        if self.block is None:
            await self.load()
            return True
        head = await self.registry.rpc.block_number()
        if head <= self.block:
            return False
        if await self.registry.change_logs(self.block + 1, head) == 0:
            self.block = head
            return False
        self.current = await self.registry.promise_set(self.defaults, block=hex(head))
        self.block = head
        self.reloads += 1
        return True


def union_of(subscriptions: list[Subscription]) -> dict[bytes, tuple[int, int]]:
    union: dict[bytes, tuple[int, int]] = {}
    for s in subscriptions:
        if s.feed_id in union:
            deviation, heartbeat = union[s.feed_id]
            union[s.feed_id] = (min(deviation, s.deviation_bps), min(heartbeat, s.heartbeat))
        else:
            union[s.feed_id] = (s.deviation_bps, s.heartbeat)
    return union
