"""The committee a node works under: who signs, who transmits, how many may fail.

Built from the chain's `getConfig` and `latestConfigDetails`; every node derives the
same leader and transmitter order from it, so no coordination is needed for either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relayer.chain.codec import keccak
from relayer.protocol.errors import ProtocolError


class OffchainConfig(BaseModel):
    """Timing of the round protocol and its report policy, set on-chain with the committee
    (JSON in `offchainConfig`), so every member applies the same ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    round_interval_ms: int = Field(default=1000, ge=10, le=3_600_000)
    progress_timeout_ms: int = Field(default=5000, ge=50, le=3_600_000)
    grace_ms: int = Field(default=20, ge=0, le=60_000)
    transmit_stage_ms: int = Field(default=1500, ge=0, le=600_000)
    # Scheme 0x0002, leading: how long the signing set has to send its shares before the
    # leader excludes the silent members and asks another set within the round. Long enough
    # for a member's fsync of the spent nonce; short against the round interval, since each
    # silent member costs one of these.
    share_timeout_ms: int = Field(default=250, ge=1, le=600_000)
    # Which feeds a report carries: "all" with a quorum, every round; or "trigger": only those
    # past their deviation threshold or heartbeat (relayer.protocol.selection), the heartbeat
    # fired this much early so that the update lands before the promise runs out.
    feed_selection: Literal["all", "trigger"] = "all"
    heartbeat_lead_ms: int = Field(default=5000, ge=0, le=3_600_000)

    @classmethod
    def decode(cls, raw: bytes) -> "OffchainConfig":
        if not raw:
            return cls()
        try:
            return cls.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise ProtocolError(
                f"on-chain offchainConfig is not valid JSON timing settings ({exc}); "
                "the committee owner must call setConfig with e.g. "
                '{"round_interval_ms":1000,"progress_timeout_ms":5000}'
            ) from None

    def encode(self) -> bytes:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Committee:
    config_digest: bytes
    signers: tuple[str, ...]
    transmitters: tuple[str, ...]
    f: int
    threshold: int
    offchain: OffchainConfig
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.signers) < 3 * self.f + 1:
            raise ProtocolError(f"committee of {len(self.signers)} cannot tolerate f={self.f}: need n >= 3f+1")
        self._index.update({s.lower(): i for i, s in enumerate(self.signers)})

    @classmethod
    def from_onchain(cls, cfg: Any) -> "Committee":
        return cls(
            config_digest=bytes(cfg.config_digest),
            signers=tuple(cfg.signers),
            transmitters=tuple(cfg.transmitters),
            f=int(cfg.f),
            threshold=int(cfg.threshold),
            offchain=OffchainConfig.decode(bytes(cfg.offchain_config)),
        )

    @property
    def n(self) -> int:
        return len(self.signers)

    @property
    def quorum(self) -> int:
        """Observations a report needs: with 2f+1 the median lies within the honest range."""
        return 2 * self.f + 1

    @property
    def digest_hex(self) -> str:
        return "0x" + self.config_digest.hex()

    def index_of(self, address: str) -> int | None:
        return self._index.get(address.lower())

    def leader(self, epoch: int) -> int:
        """Leader of an epoch, from (config digest, epoch), the same on every node.

        The digest fixes a pseudo-random order of the members and epochs walk it in turn,
        so two consecutive epochs never share a leader: f faulty leaders cost at most f
        progress timeouts in a row, where an independent draw per epoch could repeat one.
        """
        return self._leader_order[epoch % self.n]

    @cached_property
    def _leader_order(self) -> tuple[int, ...]:
        return tuple(sorted(range(self.n), key=lambda i: keccak(b"leader" + self.config_digest + i.to_bytes(2, "big"))))

    def transmitter_order(self, epoch: int, round: int) -> list[int]:
        """A permutation of committee indexes; the k-th transmitter waits k stages."""
        seed = self.config_digest + epoch.to_bytes(8, "big") + round.to_bytes(8, "big")
        return sorted(range(self.n), key=lambda i: keccak(b"transmit" + seed + i.to_bytes(2, "big")))
