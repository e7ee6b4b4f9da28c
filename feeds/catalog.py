"""The feed catalog as data: which feeds exist, from which sources, aggregated how.

A catalog is a TOML file of ``[[feed]]`` tables validated by :class:`FeedDefinition`
(pydantic). :func:`load_catalog` also checks every source name against the
``relayer.sources`` registry and that the source serves the feed's kind and
instrument, and names the file and line of any problem, so a bad catalog fails at
start, never mid-round.

``deviation_bps`` and ``heartbeat_s`` are carried for the trigger policy; the relayer
does not use them yet (every report carries every feed every round).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aggregation.local import METHODS
from feeds.errors import CatalogError, FeedsError
from feeds.kinds import INT64_MAX, INT64_MIN, KINDS, FactorKind

__all__ = ["FeedDefinition", "load_catalog", "parse_catalog", "check_sources", "default_catalog_path"]


# Rounds of history a spot feed keeps on-chain by default (the most a feed can): for
# getRoundData walks, and for MarginVault's cool-down after a breaker clears, which runs from
# the observation time of the round after the trouble, read from the feed's history (without
# that round it falls back to the latest value's time, and on a feed that lands every round
# the cool-down would not end). 255 rounds: about 4 minutes of one-second rounds. The ring
# costs one storage write per update whatever its depth (about 22k gas while it fills, 5k after).
SPOT_HISTORY_DEPTH = 255

# Per kind, the deviation reference of a feed that sets none (see FeedDefinition): a
# dispersion of 100 bps, so the default 10 % threshold means a 10 bps change of the spread
# (venue noise moves a spread of a few bps by more than 10 % of itself every round); a
# funding rate of 0.0001 (1 bp per period), so its threshold is a fraction of a basis point.
DEVIATION_REFERENCE: dict[FactorKind, Decimal] = {
    FactorKind.DISPERSION: Decimal(100),
    FactorKind.FUNDING_RATE: Decimal("0.0001"),
}


class FeedDefinition(BaseModel):
    """One feed: what it measures, from where, and how the sources are combined."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feed_id: str = Field(min_length=1, max_length=32)
    instrument: str = Field(pattern=r"^[A-Z0-9]+-[A-Z0-9]+$")
    sources: tuple[str, ...] = Field(min_length=1)
    kind: FactorKind = FactorKind.SPOT
    method: str = "median"
    min_sources: int = Field(default=2, ge=1)
    decimals: int = Field(default=8, ge=0, le=18)
    description: str = ""
    # Per-source weights for weighted_median (default 1 each).
    weights: dict[str, Decimal] = Field(default_factory=dict)
    # Fraction trimmed at each end for trimmed_mean.
    trim: Decimal = Field(default=Decimal("0.2"), ge=0, lt=Decimal("0.5"))
    # Trigger policy, carried but not yet used by the relayer.
    deviation_bps: int = Field(default=50, ge=0)
    heartbeat_s: int = Field(default=3600, ge=1)
    # Sanity bounds on the aggregate, in the kind's unit (None: the int64 range).
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    # Readings older than this (seconds) do not count; None = the cache's rule.
    max_age_s: float | None = Field(default=None, gt=0)
    # Past rounds the oracle keeps for Chainlink's getRoundData (0: the latest only); None =
    # the kind's default: SPOT_HISTORY_DEPTH for spot prices (consumers walk back rounds of a
    # price), none for the other factors. Each kept round costs one more storage write per update.
    history_depth: int | None = Field(default=None, ge=0, le=255)
    # The magnitude (in the kind's unit) below which deviation_bps is measured against it
    # instead of the value: for feeds that sit near zero (a cross-venue spread of a few bps, a
    # funding rate), a relative threshold against the value itself is crossed by noise every
    # round. None = the kind's default (DEVIATION_REFERENCE); 0 = purely relative.
    deviation_reference: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _possible(self) -> "FeedDefinition":
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources list a source twice: {', '.join(self.sources)}")
        if self.min_sources > len(self.sources):
            raise ValueError(
                f"min_sources = {self.min_sources} can never be met by {len(self.sources)} source(s)"
            )
        if self.kind == FactorKind.DISPERSION and len(self.sources) < 2:
            raise ValueError("a dispersion feed needs at least 2 spot sources")
        unknown = sorted(set(self.weights) - set(self.sources))
        if unknown:
            raise ValueError(f"weights name sources not in this feed: {', '.join(unknown)}")
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("weights must be positive")
        if self.min_value is not None and self.max_value is not None and self.min_value >= self.max_value:
            raise ValueError(f"min_value {self.min_value} must be below max_value {self.max_value}")
        for name, bound in (("min_value", self.min_value), ("max_value", self.max_value)):
            if bound is None:
                continue
            scaled = bound.scaleb(self.decimals)
            if not INT64_MIN <= scaled <= INT64_MAX:
                raise ValueError(f"{name} {bound} at {self.decimals} decimals does not fit the on-chain int64")
        sign = KINDS[self.kind].sign
        if sign != "any" and self.max_value is not None and self.max_value <= 0:
            raise ValueError(f"a {self.kind} feed is never <= 0, but max_value is {self.max_value}")
        return self

    @property
    def min_reference_fixed(self) -> int:
        """``deviation_reference`` in scaled units (aggregation.trigger.Promise.min_reference)."""
        reference = self.deviation_reference
        if reference is None:
            reference = DEVIATION_REFERENCE.get(self.kind, Decimal(0))
        return int(reference.scaleb(self.decimals))

    @property
    def onchain_history_depth(self) -> int:
        """The ``historyDepth`` to register: as configured, else the kind's default."""
        if self.history_depth is not None:
            return self.history_depth
        return SPOT_HISTORY_DEPTH if self.kind == FactorKind.SPOT else 0

    @property
    def bounds_fixed(self) -> tuple[int, int]:
        """(min, max) as scaled int64 for the contract's ``addFeed``."""
        low = INT64_MIN if self.min_value is None else int(self.min_value.scaleb(self.decimals))
        high = INT64_MAX if self.max_value is None else int(self.max_value.scaleb(self.decimals))
        if self.min_value is None and KINDS[self.kind].sign != "any":
            low = 0
        return low, high


def default_catalog_path() -> Path:
    """The catalog the devnet serves (shipped inside the package)."""
    return Path(str(resources.files("feeds") / "catalogs" / "devnet.toml"))


def _feed_lines(text: str) -> list[int]:
    """Line number (1-based) of each ``[[feed]]`` header, in order."""
    return [n for n, line in enumerate(text.splitlines(), 1) if re.match(r"\s*\[\[\s*feed\s*\]\]", line)]


def _key_line(text: str, start: int, key: str) -> int:
    lines = text.splitlines()
    for n in range(start, len(lines) + 1):
        line = lines[n - 1]
        if n > start and re.match(r"\s*\[", line):
            break
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return n
    return start


def parse_catalog(text: str, where: str = "<catalog>", known_sources: Mapping[str, Any] | None = None) -> list[FeedDefinition]:
    """Validate catalog text; every error names ``where`` and the line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{where}: expected TOML, got a syntax error: {exc}") from None
    extra = sorted(set(data) - {"feed"})
    if extra:
        raise CatalogError(f"{where}: expected only [[feed]] tables, got top-level {', '.join(extra)}")
    tables = data.get("feed", [])
    if not isinstance(tables, list) or not tables:
        raise CatalogError(f"{where}: expected at least one [[feed]] table, got none")
    headers = _feed_lines(text)
    feeds: list[FeedDefinition] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(tables):
        line = headers[i] if i < len(headers) else 0
        try:
            feed = FeedDefinition(**table)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                key = str(err["loc"][0]) if err["loc"] else ""
                at = _key_line(text, line, key) if key else line
                problems.append(f"{where}:{at}: feed {table.get('feed_id', '#' + str(i + 1))!r} "
                                f"{'.'.join(map(str, err['loc'])) or 'table'}: {err['msg']}")
            raise CatalogError("invalid feed catalog:\n  " + "\n  ".join(problems)) from None
        if feed.feed_id in seen:
            raise CatalogError(f"{where}:{line}: feed id {feed.feed_id!r} is already defined at line {seen[feed.feed_id]}")
        seen[feed.feed_id] = line
        if known_sources:
            try:
                check_sources([feed], known_sources)
            except CatalogError as exc:
                raise CatalogError(f"{where}:{_key_line(text, line, 'sources')}: {exc}") from None
        feeds.append(feed)
    return feeds


def check_sources(feeds: Iterable[FeedDefinition], known_sources: Mapping[str, Any]) -> None:
    """Each source exists, serves the feed's kind (spot for dispersion) and maps its instrument."""
    for feed in feeds:
        needed = FactorKind.SPOT if feed.kind == FactorKind.DISPERSION else feed.kind
        for name in feed.sources:
            cls = known_sources.get(name)
            if cls is None:
                raise CatalogError(
                    f"feed {feed.feed_id!r}: unknown source {name!r}; expected one of "
                    f"{', '.join(sorted(known_sources))}; install its package or fix the name"
                )
            if needed not in cls.factors:
                raise CatalogError(
                    f"feed {feed.feed_id!r}: source {name!r} does not serve {needed} (it serves "
                    f"{', '.join(sorted(cls.factors))}); remove it from this feed"
                )
            if feed.instrument not in cls.symbols:
                raise CatalogError(
                    f"feed {feed.feed_id!r}: source {name!r} has no symbol for {feed.instrument} "
                    f"(it maps {', '.join(sorted(cls.symbols))})"
                )


def load_catalog(path: Path | str | None = None, known_sources: Mapping[str, Any] | None = None) -> list[FeedDefinition]:
    """Read and validate a catalog file; sources are checked against the registry by default.

    ``known_sources={}`` skips the source check (parse only, no plugin imported).
    """
    file = Path(path) if path is not None else default_catalog_path()
    try:
        text = file.read_text()
    except OSError as exc:
        raise CatalogError(f"{file}: cannot read the feed catalog: {exc.strerror}") from None
    if known_sources is None:
        from feeds.registry import load_sources

        known_sources = load_sources()
    return parse_catalog(text, str(file), known_sources)


def feeds_config(feeds: Sequence[FeedDefinition]) -> list[dict[str, Any]]:
    """The catalog as JSON-able dicts (what a node's config file carries)."""
    return [feed.model_dump(mode="json", exclude_defaults=True) | {"feed_id": feed.feed_id} for feed in feeds]


__all__ += ["feeds_config", "FeedsError"]
