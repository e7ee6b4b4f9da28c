"""Report generation: the pure function every node applies to the same signed observations.

The leader proposes its result and each follower recomputes it; a follower signs only
when the bytes agree. A feed enters the report only when at least `quorum` (2f+1)
observations carry it, so its median lies within the honest observations' range.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from aggregation.robust import median_int
from relayer.chain.codec import FeedUpdate, decode_updates, encode_updates
from relayer.protocol.messages import Observation


def build_updates(observations: Sequence[Observation], *, quorum: int) -> list[FeedUpdate]:
    """Per-feed medians over the observations; feeds seen by fewer than `quorum` are left out."""
    by_feed: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for observation in observations:
        for feed in observation.feeds:
            by_feed[feed.feed_index].append((feed.value, feed.observed_at, feed.num_sources))
    updates = []
    for feed_index in sorted(by_feed):
        seen = by_feed[feed_index]
        if len(seen) < quorum:
            continue
        updates.append(
            FeedUpdate(
                feed_index=feed_index,
                value=median_int([v for v, _, _ in seen]),
                observed_at=median_int([t for _, t, _ in seen]),
                num_sources=median_int([s for _, _, s in seen]),
            )
        )
    return updates


def within_bounds(built: Sequence[FeedUpdate], bounds: Mapping[int, tuple[int, int]]
                  ) -> tuple[list[FeedUpdate], list[FeedUpdate]]:
    """(kept, left out): a median outside its feed's on-chain (min, max) would make the contract
    refuse the whole report, so it is left out and the other feeds still land. Leader and
    followers apply the same rule to the same bounds (read from the chain)."""
    kept, out = [], []
    for update in built:
        low, high = bounds.get(update.feed_index, (None, None))
        if (low is not None and update.value < low) or (high is not None and update.value > high):
            out.append(update)
        else:
            kept.append(update)
    return kept, out


def encode_carried(updates: Sequence[FeedUpdate]) -> bytes:
    """The report's updates as signed and sent; a report that carries no feed (nothing
    triggered: relayer.protocol.selection) has empty updates and is never transmitted."""
    return encode_updates(updates) if updates else b""


def decode_carried(data: bytes) -> list[FeedUpdate]:
    return decode_updates(data) if data else []
