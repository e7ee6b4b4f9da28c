"""Attested reports as the API serves them (relayer/reports.py): their JSON, the store's
lookups (latest, by round, across committees), what a 404 says, and the stream's bounded
buffer per client. No sockets: a real store on disk, the book read directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relayer.chain.codec import FeedUpdate, ReportDomain, address_of, encode_updates, feed_id_bytes, keccak, sign_digest
from relayer.reports import FeedName, ReportBook, ReportContext, ReportSubscription, report_json
from relayer.store import Store

pytestmark = pytest.mark.unit

ORACLE = "0x" + "ee" * 20
KEYS = [keccak(f"reports test signer {i}".encode()) for i in range(3)]
DIGEST_A = b"\x00\x01" + b"\xaa" * 30
DIGEST_B = b"\x00\x01" + b"\xbb" * 30
CTX = ReportContext(chain_id=31337, oracle=ORACLE, feeds={0: FeedName("BTC-USD", 8)}, retention_hours=72.0)


def updates(value: int, observed_at: int = 1_000) -> bytes:
    return encode_updates([FeedUpdate(feed_index=0, observed_at=observed_at, num_sources=3, value=value)])


def signatures(digest: bytes, epoch: int, round: int, data: bytes) -> list[tuple[int, bytes]]:
    report_digest = ReportDomain(CTX.chain_id or 0, ORACLE).report_digest(digest, epoch, round, data)
    return [(i, sign_digest(KEYS[i], report_digest)) for i in (2, 0)]


def record(store: Store, digest: bytes, epoch: int, round: int, data: bytes) -> None:
    assert store.record_attested("0x" + digest.hex(), epoch, round, data, signatures(digest, epoch, round, data),
                                 None, None)


def test_a_report_in_json_carries_what_submit_needs_and_what_a_reader_wants() -> None:
    data = updates(6_400_312_345_678, observed_at=1_700_000_000)
    body = report_json(CTX, DIGEST_A, 3, 17, data, signatures(DIGEST_A, 3, 17, data), 12.5)
    assert body["config_digest"] == "0x" + DIGEST_A.hex() and (body["epoch"], body["round"]) == (3, 17)
    assert body["updates"] == "0x" + data.hex() and body["chain_id"] == 31337 and body["oracle"] == ORACLE
    assert body["report_digest"] == "0x" + ReportDomain(31337, ORACLE).report_digest(DIGEST_A, 3, 17, data).hex()
    # In signer-index order, each with the address it recovers to, and the bitmask of them.
    assert [(s["index"], s["signer"]) for s in body["signatures"]] == [(0, address_of(KEYS[0])), (2, address_of(KEYS[2]))]
    assert body["signer_bitmask"] == 0b101
    (feed,) = body["feeds"]
    assert feed == {"feed_index": 0, "feed_id": "BTC-USD", "feed_key": "0x" + feed_id_bytes("BTC-USD").hex(),
                    "decimals": 8, "raw_value": "6400312345678", "value": "64003.12345678",
                    "observed_at": 1_700_000_000, "num_sources": 3}
    json.dumps(body)  # plain JSON, nothing left to a custom encoder
    # A feed this node does not serve keeps its raw value, without a name or decimals it cannot know.
    other = report_json(ReportContext(chain_id=None, oracle=ORACLE), DIGEST_A, 3, 17, data, [], None)
    assert other["feeds"][0]["feed_id"] is None and other["feeds"][0]["value"] is None
    assert other["feeds"][0]["raw_value"] == "6400312345678" and other["report_digest"] is None


def test_latest_skips_reports_without_feeds_and_by_round_follows_the_committee(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.sqlite")
    book = ReportBook(store, lambda: CTX)
    assert book.latest() is None
    record(store, DIGEST_A, 0, 5, updates(1))
    record(store, DIGEST_A, 0, 6, updates(2))
    # A new committee counts from the start again: (0, 5) exists under both digests.
    record(store, DIGEST_B, 0, 5, updates(3))
    assert store.record_attested("0x" + DIGEST_B.hex(), 0, 6, b"", [], None, None)  # nothing triggered
    latest = book.latest()
    assert latest is not None and latest["config_digest"] == "0x" + DIGEST_B.hex() and latest["round"] == 5
    at = book.at(0, 5)
    assert at is not None and at["feeds"][0]["raw_value"] == "3"  # the one attested last
    under_a = book.at(0, 5, "0x" + DIGEST_A.hex())
    assert under_a is not None and under_a["feeds"][0]["raw_value"] == "1"
    empty = book.at(0, 6, "0x" + DIGEST_B.hex())
    assert empty is not None and empty["feeds"] == []
    assert book.at(0, 7) is None

    missing = book.not_found(0, 7, None)
    assert "epoch 0 round 7" in missing["error"] and "72 h" in missing["error"]
    assert missing["oldest_kept"]["round"] == 5 and missing["oldest_kept"]["config_digest"] == "0x" + DIGEST_A.hex()
    assert missing["latest_kept"]["round"] == 6 and missing["retention_hours"] == 72.0

    # Retention: pruned reports are gone from by-round lookups too.
    store.prune(older_than=float("inf"))
    assert book.at(0, 5) is None and book.latest() is None
    assert book.not_found(0, 5, None)["oldest_kept"] is None


async def test_a_slow_stream_client_keeps_only_the_newest_reports_and_is_told_how_many_it_missed(
        tmp_path: Path) -> None:
    book = ReportBook(Store(tmp_path / "node.sqlite"), lambda: CTX, max_clients=2, depth=4)
    slow = book.subscribe()
    fast = book.subscribe()
    assert slow is not None and fast is not None
    assert book.subscribe() is None  # beyond max_clients: refused, not queued
    for round_ in range(1, 11):
        data = updates(round_)
        book.publish(DIGEST_A, 0, round_, data, signatures(DIGEST_A, 0, round_, data), float(round_))
        if round_ == 1:
            missed, frames = await fast.take(timeout=1)
            assert missed == 0 and len(frames) == 1 and frames[0].startswith(b"id: 0:1\nevent: report\ndata: ")
    book.publish(DIGEST_A, 0, 11, b"", [], 11.0)  # nothing triggered: nothing to stream
    missed, frames = await slow.take(timeout=1)
    assert missed == 6 and len(frames) == 4
    rounds = [json.loads(f.split(b"data: ", 1)[1])["round"] for f in frames]
    assert rounds == [7, 8, 9, 10]
    assert (await slow.take(timeout=0.01)) == (0, [])  # drained; nothing new
    book.unsubscribe(slow)
    assert book.clients == 1 and book.subscribe() is not None


def test_a_subscription_buffer_never_grows_past_its_depth() -> None:
    sub = ReportSubscription(depth=3)
    for k in range(1000):
        sub.push(b"frame %d" % k)
    assert len(sub._frames) == 3 and sub.missed == 997


async def test_a_threshold_report_is_served_with_its_one_schnorr_signature(tmp_path: Path) -> None:
    """Scheme 0x0002: the store keeps (0, R || z); the API serves it as `schnorr_signature`,
    with no members' signatures and no bitmask, from the store and on the stream alike."""
    digest = b"\x00\x02" + b"\xcc" * 30
    schnorr = bytes(range(96))
    data = updates(5)
    store = Store(tmp_path / "node.sqlite")
    assert store.record_attested("0x" + digest.hex(), 1, 4, data, [(0, schnorr)], None, None)
    book = ReportBook(store, lambda: CTX)
    sub = book.subscribe()
    assert sub is not None
    book.publish(digest, 1, 5, data, (), 1.0, schnorr=schnorr)
    _missed, (frame,) = await sub.take(timeout=1)
    streamed = json.loads(frame.decode().split("data: ", 1)[1])
    for body in (book.latest(), streamed):
        assert body is not None
        assert body["scheme"] == 2 and body["schnorr_signature"] == "0x" + schnorr.hex()
        assert body["signatures"] == [] and body["signer_bitmask"] == 0
    ecdsa = report_json(CTX, DIGEST_A, 3, 17, data, signatures(DIGEST_A, 3, 17, data), None)
    assert ecdsa["scheme"] == 1 and ecdsa["schnorr_signature"] is None
    store.close()
