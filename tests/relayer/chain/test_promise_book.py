"""A node's promises on a real anvil: loaded at start, kept by the registry's events."""

from __future__ import annotations

import pytest

from aggregation.trigger import Floors, Promise
from relayer.chain.codec import feed_id_bytes
from relayer.chain.subscriptions import PromiseBook, SubscriptionRegistryClient, deploy_subscription_registry
from tests.relayer.chain.conftest import BTC_USD, ETH_USD, Deployment

pytestmark = pytest.mark.integration

ETH, BTC = feed_id_bytes(ETH_USD), feed_id_bytes(BTC_USD)
DEFAULTS = {ETH: Promise(50, 3_600), BTC: Promise(25, 3_600)}


async def test_promises_follow_subscriptions_floors_and_revocation(oracle: Deployment) -> None:
    owner = oracle.owner_key
    registry = SubscriptionRegistryClient(
        oracle.w3, await deploy_subscription_registry(oracle.w3, owner, oracle.client.address, 5, 60))
    assert await registry.oracle() == oracle.client.address
    subscriber_address, subscriber = oracle.anvil.accounts[20]
    await registry.approve(owner, subscriber_address, 2)

    book = PromiseBook(registry, DEFAULTS)
    await book.load()
    assert book.promises == DEFAULTS and book.current.floors[ETH] == Floors(5, 60)
    assert await book.poll() is False  # no event since the load: one eth_getLogs, nothing re-read
    reloads = book.reloads

    await registry.subscribe(subscriber, ETH_USD, 10, 600)
    assert await book.poll() is True and book.reloads == reloads + 1
    assert book.promises[ETH] == Promise(10, 600) and book.promises[BTC] == Promise(25, 3_600)
    assert [s.subscriber for s in book.current.subscribers_of(ETH)] == [subscriber_address]

    await registry.set_floors(owner, ETH_USD, 20, 900)  # governance raises the floors: the promise follows
    assert await book.poll() is True
    assert book.promises[ETH] == Promise(20, 900)

    await registry.revoke(owner, subscriber_address)
    assert await book.poll() is True
    assert book.promises == DEFAULTS and book.current.subscriptions == ()


async def test_without_a_registry_the_catalog_defaults_hold(oracle: Deployment) -> None:
    book = PromiseBook(None, DEFAULTS)
    await book.load()
    assert book.promises == DEFAULTS and await book.poll() is False
