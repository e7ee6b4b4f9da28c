"""Attested reports as subscribers take them: one JSON form (docs/subscribers.md), read from
the store (the latest, or by round) and fanned out to stream clients as they are attested.

The node keeps every attested report in its store until retention prunes it
(``store_retention_hours``); a by-round lookup answers only within that window. Each stream
client has its own bounded buffer: a client that reads slower than reports come loses the
oldest ones it has not read, and is told how many, so it can never grow the node's memory.
Nothing here is trusted by a subscriber: the signers named beside each signature are what
this node recovered, and the SDK (``relayer.client``) checks everything against the chain.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aggregation.fixed import from_fixed
from relayer.chain.codec import THRESHOLD_SCHNORR_SCHEME, ReportDomain, feed_id_bytes, recover_address
from relayer.chain.errors import CodecError
from relayer.protocol.report import decode_carried
from relayer.store import AttestedRow, Store

# Reports buffered per stream client before the oldest unread one is dropped.
STREAM_BUFFER = 32
# Stream clients served at once; more are answered 503.
STREAM_CLIENTS = 64


@dataclass(frozen=True, slots=True)
class FeedName:
    feed_id: str
    decimals: int


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What the node knows beside a report: its chain, its oracle and its feeds' names."""

    chain_id: int | None
    oracle: str
    feeds: Mapping[int, FeedName] = field(default_factory=dict)
    retention_hours: float | None = None


def report_json(
    ctx: ReportContext, config_digest: bytes, epoch: int, round: int, updates: bytes,
    signatures: Sequence[tuple[int, bytes]], attested_at: float | None, *, schnorr: bytes | None = None,
) -> dict[str, Any]:
    """One attested report in the API's form. Raw values are decimal strings: JSON numbers
    lose precision past 2^53 in most readers. Under scheme 0x0002 (the config digest's top
    two bytes) ``schnorr`` is the committee's one signature and ``signatures`` is empty."""
    digest = None
    if ctx.chain_id is not None:
        digest = ReportDomain(ctx.chain_id, ctx.oracle).report_digest(config_digest, epoch, round, updates)
    sigs = []
    bitmask = 0
    for index, signature in sorted(signatures):
        bitmask |= 1 << index
        signer = None
        if digest is not None:
            try:
                signer = recover_address(digest, signature)
            except CodecError:
                signer = None
        sigs.append({"index": index, "signer": signer, "signature": "0x" + signature.hex()})
    feeds = []
    try:
        carried = decode_carried(updates)
    except CodecError:
        carried = []
    for u in carried:
        name = ctx.feeds.get(u.feed_index)
        decimals = name.decimals if name is not None else None
        feeds.append({
            "feed_index": u.feed_index,
            "feed_id": name.feed_id if name is not None else None,
            "feed_key": "0x" + feed_id_bytes(name.feed_id).hex() if name is not None else None,
            "decimals": decimals,
            "raw_value": str(u.value),
            "value": str(from_fixed(u.value, decimals)) if decimals is not None else None,
            "observed_at": u.observed_at,
            "num_sources": u.num_sources,
        })
    return {
        "chain_id": ctx.chain_id,
        "oracle": ctx.oracle,
        "config_digest": "0x" + config_digest.hex(),
        "epoch": epoch,
        "round": round,
        "report_digest": None if digest is None else "0x" + digest.hex(),
        "updates": "0x" + updates.hex(),
        "scheme": int.from_bytes(config_digest[:2], "big"),
        "signer_bitmask": bitmask,
        "signatures": sigs,
        "schnorr_signature": None if schnorr is None else "0x" + schnorr.hex(),
        "feeds": feeds,
        "attested_at": attested_at,
    }


class ReportSubscription:
    """One stream client's buffer: at most ``depth`` frames, the oldest dropped and counted."""

    def __init__(self, depth: int = STREAM_BUFFER) -> None:
        self._frames: deque[bytes] = deque(maxlen=depth)
        self._ready = asyncio.Event()
        self.missed = 0

    def push(self, frame: bytes) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.missed += 1
        self._frames.append(frame)
        self._ready.set()

    async def take(self, timeout: float) -> tuple[int, list[bytes]]:
        """(reports missed since the last take, the frames buffered); empty after ``timeout``."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return 0, []
        self._ready.clear()
        frames, self._frames = list(self._frames), deque(maxlen=self._frames.maxlen)
        missed, self.missed = self.missed, 0
        return missed, frames


class ReportBook:
    """The attested reports this node serves: the store's, and the stream of new ones."""

    def __init__(self, store: Store, context: Callable[[], ReportContext], *,
                 max_clients: int = STREAM_CLIENTS, depth: int = STREAM_BUFFER) -> None:
        self._store = store
        self._context = context
        self._clients: set[ReportSubscription] = set()
        self.max_clients = max_clients
        self.depth = depth

    def _json(self, row: AttestedRow) -> dict[str, Any]:
        digest = bytes.fromhex(row.digest.removeprefix("0x"))
        signatures, schnorr = row.signatures, None
        if int.from_bytes(digest[:2], "big") == THRESHOLD_SCHNORR_SCHEME and signatures:
            # The store keeps a 0x0002 report's one signature as the entry (0, R || z).
            schnorr = signatures[0][1]
            signatures = ()
        return report_json(self._context(), digest, row.epoch, row.round, row.updates, signatures,
                           row.attested_at, schnorr=schnorr)

    def latest(self) -> dict[str, Any] | None:
        """The last attested report that carries a feed (one without is nothing to verify)."""
        row = self._store.latest_attested(with_feeds=True)
        return None if row is None else self._json(row)

    def at(self, epoch: int, round: int, config_digest: str | None = None) -> dict[str, Any] | None:
        row = self._store.attested_report(epoch, round, config_digest)
        return None if row is None else self._json(row)

    def not_found(self, epoch: int, round: int, config_digest: str | None) -> dict[str, Any]:
        """Why (epoch, round) is not here: what is kept, and for how long."""
        oldest = self._store.oldest_attested()
        latest = self._store.latest_attested(with_feeds=False)
        retention = self._context().retention_hours
        under = f" under config digest {config_digest}" if config_digest else ""
        kept = (f"reports are kept for {retention:g} h (store_retention_hours)" if retention is not None
                else "reports are kept for the store's retention window")
        return {
            "error": f"no attested report for epoch {epoch} round {round}{under} on this node: it was never "
                     f"attested here, or is older than what is kept ({kept}); try another node or "
                     "/api/reports/latest",
            "epoch": epoch, "round": round, "config_digest": config_digest, "retention_hours": retention,
            "oldest_kept": None if oldest is None else _key(oldest),
            "latest_kept": None if latest is None else _key(latest),
        }

    # --- the stream ------------------------------------------------------------------

    def subscribe(self) -> ReportSubscription | None:
        """A new client's buffer, or None when ``max_clients`` are served already."""
        if len(self._clients) >= self.max_clients:
            return None
        sub = ReportSubscription(self.depth)
        self._clients.add(sub)
        return sub

    def unsubscribe(self, sub: ReportSubscription) -> None:
        self._clients.discard(sub)

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, config_digest: bytes, epoch: int, round: int, updates: bytes,
                signatures: Sequence[tuple[int, bytes]], attested_at: float, *, schnorr: bytes | None = None) -> None:
        """A report was attested: one frame, encoded once, to every client's buffer. A report
        without a feed (nothing triggered) is not streamed: it has nothing to verify or submit."""
        if not self._clients or not updates:
            return
        body = report_json(self._context(), config_digest, epoch, round, updates, signatures, attested_at,
                           schnorr=schnorr)
        frame = f"id: {epoch}:{round}\nevent: report\ndata: {json.dumps(body)}\n\n".encode()
        for sub in list(self._clients):
            sub.push(frame)


def missed_frame(missed: int) -> bytes:
    """Told to a client that fell behind, before the reports it still has."""
    data = json.dumps({"missed": missed, "hint": "older reports by round: /api/reports/{epoch}/{round}"})
    return f"event: missed\ndata: {data}\n\n".encode()


def _key(row: AttestedRow) -> dict[str, Any]:
    return {"config_digest": row.digest, "epoch": row.epoch, "round": row.round, "attested_at": row.attested_at}
