"""The observer relay's budget and identity, without sockets: the per-peer byte bucket on a
manual clock, the limits' validation, and the relay key derived from a signing key."""

from __future__ import annotations

import os

import pytest
from libp2p.peer.id import ID

from relayer.p2p.identity import observer_relay_key, peer_id_of
from relayer.p2p.observers import ByteBuckets, ObserverLimits

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def peer() -> ID:
    return ID.from_base58(peer_id_of(os.urandom(32)))


def test_a_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = ByteBuckets(rate=1000, burst=4000, clock=clock)
    a, b = peer(), peer()
    assert buckets.charge(a, 4000)  # the whole burst at once
    assert not buckets.charge(a, 1)  # then nothing
    assert buckets.charge(b, 4000)  # each peer has its own bucket
    clock.now += 0.5
    assert buckets.charge(a, 500) and not buckets.charge(a, 1)  # 0.5 s refilled 500 bytes
    clock.now += 60
    assert buckets.charge(a, 4000) and not buckets.charge(a, 1)  # never above the burst
    buckets.forget(a)
    assert buckets.charge(a, 4000)  # a forgotten peer starts full again


def test_an_overdraft_leaves_the_bucket_empty_not_negative() -> None:
    clock = Clock()
    buckets = ByteBuckets(rate=1000, burst=4000, clock=clock)
    a = peer()
    assert not buckets.charge(a, 10_000)
    clock.now += 1
    assert buckets.charge(a, 1000)  # one second of refill, not paying back the overdraft


@pytest.mark.parametrize("field", ["max_observers", "bytes_per_s", "burst_bytes"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match="observer_\\* settings"):
        ObserverLimits(**{field: 0})


def test_the_relay_key_is_stable_and_not_the_signing_key() -> None:
    key = os.urandom(32)
    relay_key = observer_relay_key(key)
    assert relay_key == observer_relay_key(key) and len(relay_key) == 32
    assert relay_key != key and peer_id_of(relay_key) != peer_id_of(key)
    with pytest.raises(ValueError):
        observer_relay_key(b"\x00" * 31)


def test_an_observers_own_publish_and_its_forward_of_another_relays_report_are_told_apart() -> None:
    from collections import Counter

    from libp2p.pubsub.pb import rpc_pb2

    from relayer.p2p.observers import OBSERVER_FORWARD, OBSERVER_PUBLISH, _RelayRuntime

    relay, observer, other_relay = peer(), peer(), peer()
    runtime = _RelayRuntime.__new__(_RelayRuntime)  # the rule alone: no host, no sockets
    runtime.own_id_bytes, runtime.dropped = relay.to_bytes(), Counter()
    assert runtime.validate(observer, rpc_pb2.Message(from_id=relay.to_bytes(), data=b"ours")) is not None
    assert runtime.validate(observer, rpc_pb2.Message(from_id=observer.to_bytes(), data=b"junk")) is None
    assert runtime.validate(observer, rpc_pb2.Message(from_id=other_relay.to_bytes(), data=b"report")) is None
    assert runtime.dropped == Counter({(observer.to_base58(), OBSERVER_PUBLISH): 1,
                                       (observer.to_base58(), OBSERVER_FORWARD): 1})
