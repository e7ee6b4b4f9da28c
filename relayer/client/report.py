"""A signed report as a node serves it (``/api/reports/*``, schema in docs/subscribers.md),
parsed strictly into what the chain will judge; nothing a node says beyond the signed bytes
is trusted (its chain id, oracle and feed names are claims the verifier checks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from relayer.chain.codec import PackedSignatures, pack_signatures
from relayer.chain.errors import CodecError
from relayer.client.errors import MalformedReport

UINT32_MAX = (1 << 32) - 1
MAX_SIGNER_INDEX = 255
# Scheme 0x0002's one signature in the contract's form: R's x and y, then z.
SCHNORR_BYTES = 96


@dataclass(frozen=True, slots=True)
class SignedReport:
    """The signed part (``config_digest``, ``epoch``, ``round``, ``updates``) and its
    signatures, with what the serving node claims. Under scheme 0x0001 (the top two bytes of
    ``config_digest``) the signatures are ``(signer index, 65-byte signature)`` pairs; under
    0x0002 ``schnorr`` is the committee's one signature (R's x and y, z: 96 bytes) and
    ``signatures`` is empty."""

    config_digest: bytes
    epoch: int
    round: int
    updates: bytes
    signatures: tuple[tuple[int, bytes], ...]
    chain_id: int | None = None  # claimed by the node: checked, never trusted
    oracle: str | None = None
    feed_names: Mapping[int, str] = field(default_factory=dict)  # claimed; checked against the chain
    source: str | None = None  # the node URL it came from
    schnorr: bytes | None = None

    @property
    def scheme(self) -> int:
        """The signature scheme the report claims (its config digest's top two bytes)."""
        return int.from_bytes(self.config_digest[:2], "big")

    @property
    def signer_bitmask(self) -> int:
        mask = 0
        for index, _ in self.signatures:
            mask |= 1 << index
        return mask

    def packed(self) -> PackedSignatures:
        """The signatures as the contract's entry points take them: (bitmask, bytes)."""
        if self.schnorr is not None:
            return PackedSignatures(self.signer_bitmask, self.schnorr)
        try:
            bitmask, packed = pack_signatures(self.signatures)
        except CodecError:
            # What cannot be put in EIP-2098 form still has its place in the calldata.
            bitmask, packed = self.signer_bitmask, b"".join(sig[:64] for _, sig in self.signatures)
        return PackedSignatures(bitmask, packed)


@dataclass(frozen=True, slots=True)
class VerifiedValue:
    """One feed of a verified report: as signed, named and scaled by the chain's feed table."""

    feed_index: int
    feed_key: bytes  # the on-chain bytes32 id
    feed_id: str | None  # its name, when the node's claim hashes to ``feed_key``
    decimals: int
    raw_value: int
    value: Decimal
    observed_at: int
    num_sources: int


@dataclass(frozen=True, slots=True)
class VerifiedReport:
    """A report the on-chain committee signed, checked at ``block_number`` of ``chain_id``."""

    report: SignedReport
    chain_id: int
    oracle: str
    block_number: int
    block_timestamp: int
    signers: tuple[str, ...]  # recovered, in signer-index order; empty under 0x0002 (one group signature)
    values: tuple[VerifiedValue, ...]

    def by_feed(self) -> dict[str, VerifiedValue]:
        """The values by feed name (feeds whose name the node did not prove are left out)."""
        return {v.feed_id: v for v in self.values if v.feed_id is not None}


def _hex(obj: Mapping[str, Any], key: str, length: int | None = None) -> bytes:
    text = obj.get(key)
    if not isinstance(text, str) or not text.startswith("0x"):
        raise MalformedReport(f"{key} must be a 0x-prefixed hex string, got {text!r}")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise MalformedReport(f"{key} is not hex: {text[:80]!r}") from None
    if length is not None and len(raw) != length:
        raise MalformedReport(f"{key} must be {length} bytes, got {len(raw)}")
    return raw


def _uint(obj: Mapping[str, Any], key: str, maximum: int) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise MalformedReport(f"{key} must be an integer in [0, {maximum}], got {value!r}")
    return value


def parse_report(obj: Any, *, source: str | None = None) -> SignedReport:
    """A node's JSON report, checked for form (not for truth: that is the verifier's)."""
    if not isinstance(obj, Mapping):
        raise MalformedReport(f"a report must be a JSON object, got {type(obj).__name__}")
    raw_sigs = obj.get("signatures")
    if not isinstance(raw_sigs, list):
        raise MalformedReport(f"signatures must be a list, got {raw_sigs!r}"[:200])
    signatures: dict[int, bytes] = {}
    for entry in raw_sigs:
        if not isinstance(entry, Mapping):
            raise MalformedReport(f"each signature must be an object with index and signature, got {entry!r}"[:200])
        index = _uint(entry, "index", MAX_SIGNER_INDEX)
        if index in signatures:
            raise MalformedReport(f"signer index {index} appears twice")
        signature = _hex(entry, "signature")
        if len(signature) != 65:
            raise MalformedReport(f"signature of signer {index} must be 65 bytes (r, s, v), got {len(signature)}")
        signatures[index] = signature
    schnorr = None
    if obj.get("schnorr_signature") is not None:
        schnorr = _hex(obj, "schnorr_signature", SCHNORR_BYTES)
        if signatures:
            raise MalformedReport("a report carries a Schnorr signature (scheme 0x0002) or members' signatures "
                                  f"(0x0001), not both; got both, from signers {sorted(signatures)}")
    chain_id = obj.get("chain_id")
    if chain_id is not None and (not isinstance(chain_id, int) or isinstance(chain_id, bool)):
        raise MalformedReport(f"chain_id must be an integer or null, got {chain_id!r}")
    oracle = obj.get("oracle")
    if oracle is not None and not isinstance(oracle, str):
        raise MalformedReport(f"oracle must be an address or null, got {oracle!r}")
    names: dict[int, str] = {}
    feeds = obj.get("feeds") or []
    if not isinstance(feeds, list):
        raise MalformedReport(f"feeds must be a list, got {feeds!r}"[:200])
    for feed in feeds:
        if isinstance(feed, Mapping) and isinstance(feed.get("feed_index"), int) and isinstance(feed.get("feed_id"), str):
            names[int(feed["feed_index"])] = str(feed["feed_id"])
    return SignedReport(
        config_digest=_hex(obj, "config_digest", 32), epoch=_uint(obj, "epoch", UINT32_MAX),
        round=_uint(obj, "round", UINT32_MAX), updates=_hex(obj, "updates"),
        signatures=tuple(sorted(signatures.items())), chain_id=chain_id, oracle=oracle, feed_names=names,
        source=source, schnorr=schnorr,
    )
