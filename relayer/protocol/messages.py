"""Wire messages of the round protocol: versioned, size-limited, canonically encoded, signed.

Every message travels in an `Envelope` signed by its sender's committee key over the
keccak of the envelope's canonical JSON (sorted keys, no spaces, integers and strings
only). Signing the envelope, not just relying on gossipsub's peer signature, is what
lets a leader forward observations inside a proposal and every follower re-verify
them against the observer's own key.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, NewType

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from relayer.chain.codec import keccak, recover_address, sign_digest
from relayer.chain.errors import CodecError
from relayer.protocol.errors import InvalidMessage

Epoch = NewType("Epoch", int)
RoundId = NewType("RoundId", int)

# Hex on the wire is always lower case with a 0x prefix: one spelling per value keeps the
# encoding canonical. A 32-byte digest (config digest, report digest):
DigestHex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{64}$")]
# A 65-byte r||s||v secp256k1 signature (envelopes, and reports under scheme 0x0001):
SignatureHex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{130}$")]
# A report's update words, 32 bytes each:
UpdatesHex = Annotated[str, StringConstraints(pattern=r"^0x([0-9a-f]{64})*$")]
# Scheme 0x0002: a compressed secp256k1 point (nonce commitments), a 32-byte scalar (a
# signature share), and a Schnorr signature in the contract's form (R's x and y, then z).
PointHex = Annotated[str, StringConstraints(pattern=r"^0x0[23][0-9a-f]{64}$")]
ScalarHex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{64}$")]
SchnorrHex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{192}$")]

WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20
_SIGNING_TAG = b"quorum-relayer/envelope/v1\x00"
_MAX_U32 = 2**32 - 1
# Scheme 0x0002: nonce commitments one observation may carry, one per signing attempt of
# the round (a bad share makes the leader try again with fresh nonces, never reused ones).
MAX_SIGNING_ATTEMPTS = 8
_MAX_MEMBERS = 256


class Kind(StrEnum):
    OBSERVE_REQUEST = "observe_request"
    OBSERVATION = "observation"
    PROPOSAL = "proposal"
    REPORT_SIGNATURE = "report_signature"
    ATTESTED = "attested"
    NEW_EPOCH = "new_epoch"
    # Scheme 0x0002 only.
    SIGNATURE_SHARE = "signature_share"
    SIGNING_SET = "signing_set"


def canonical_json(value: Any) -> bytes:
    """The one byte encoding every node produces for the same value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _reject_floats(value: Any) -> None:
    # Floats have more than one JSON spelling; a canonical encoding cannot carry them.
    if isinstance(value, float):
        raise ValueError("floats are not allowed in wire messages; use scaled integers")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list):
        for item in value:
            _reject_floats(item)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int
    kind: Kind
    digest: DigestHex
    epoch: Epoch = Field(ge=0, le=_MAX_U32)
    round: RoundId = Field(ge=0, le=_MAX_U32)
    sender: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    body: dict[str, Any]
    sig: SignatureHex

    @field_validator("v")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != WIRE_VERSION:
            raise ValueError(f"wire version {v} is not supported; this node speaks {WIRE_VERSION}")
        return v

    @field_validator("body")
    @classmethod
    def _json_native(cls, body: dict[str, Any]) -> dict[str, Any]:
        _reject_floats(body)
        return body

    def unsigned_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "kind": self.kind.value,
            "digest": self.digest,
            "epoch": self.epoch,
            "round": self.round,
            "sender": self.sender,
            "body": self.body,
        }

    def signing_hash(self) -> bytes:
        return keccak(_SIGNING_TAG + canonical_json(self.unsigned_dict()))

    def to_dict(self) -> dict[str, Any]:
        data = self.unsigned_dict()
        data["sig"] = self.sig
        return data

    def encode(self) -> bytes:
        return canonical_json(self.to_dict())

    @property
    def config_digest(self) -> bytes:
        return bytes.fromhex(self.digest[2:])


def seal(
    *,
    private_key: bytes,
    sender: str,
    kind: Kind,
    config_digest: bytes,
    epoch: int,
    round: int,
    body: BaseModel | dict[str, Any],
) -> Envelope:
    """Build and sign an envelope; a model body is dumped in JSON mode, a dict is sent as it is.

    Fields left None are left out: scheme 0x0002's optional fields add nothing to the bytes
    of a scheme 0x0001 message."""
    unsigned = {
        "v": WIRE_VERSION,
        "kind": kind.value,
        "digest": "0x" + config_digest.hex(),
        "epoch": epoch,
        "round": round,
        "sender": sender,
        "body": body.model_dump(mode="json", exclude_none=True) if isinstance(body, BaseModel) else body,
    }
    signature = sign_digest(private_key, keccak(_SIGNING_TAG + canonical_json(unsigned)))
    return Envelope.model_validate({**unsigned, "sig": "0x" + signature.hex()})


def open_envelope(data: bytes | dict[str, Any], *, max_bytes: int = MAX_MESSAGE_BYTES) -> Envelope:
    """Parse and authenticate one envelope; raises InvalidMessage with a countable reason."""
    if isinstance(data, (bytes, bytearray)):
        if len(data) > max_bytes:
            raise InvalidMessage("oversized", f"{len(data)} bytes, limit {max_bytes}")
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidMessage("malformed", f"not JSON: {exc}") from None
    else:
        raw = data
    if not isinstance(raw, dict):
        raise InvalidMessage("malformed", f"expected a JSON object, got {type(raw).__name__}")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise InvalidMessage("malformed", _first_error(exc)) from None
    try:
        signer = recover_address(envelope.signing_hash(), bytes.fromhex(envelope.sig[2:]))
    except CodecError as exc:
        raise InvalidMessage("bad_signature", str(exc)) from None
    if signer.lower() != envelope.sender.lower():
        raise InvalidMessage("bad_signature", f"signed by {signer}, claims to be from {envelope.sender}")
    return envelope


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}"


# --- bodies -----------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ObserveRequest(_Body):
    started_at_ms: int = Field(ge=0)


class FeedObservation(_Body):
    feed_index: int = Field(ge=0, le=2**16 - 1)
    value: int = Field(ge=-(2**191), le=2**191 - 1)
    observed_at: int = Field(ge=0, le=_MAX_U32)
    num_sources: int = Field(ge=1, le=255)


class NonceCommitment(_Body):
    """A FROST nonce pair's public commitments (scheme 0x0002), for one signing attempt."""

    hiding: PointHex
    binding: PointHex


class Observation(_Body):
    feeds: tuple[FeedObservation, ...]
    # Scheme 0x0002: commitments to fresh nonces, one per signing attempt of this round.
    commitments: tuple[NonceCommitment, ...] | None = Field(default=None, min_length=1,
                                                             max_length=MAX_SIGNING_ATTEMPTS)

    @model_validator(mode="after")
    def _ascending(self) -> "Observation":
        indexes = [f.feed_index for f in self.feeds]
        if indexes != sorted(set(indexes)):
            raise ValueError("feeds must be strictly ascending by feed_index")
        return self


def _distinct_members(members: tuple[int, ...]) -> tuple[int, ...]:
    if list(members) != sorted(set(members)):
        raise ValueError("signing set members must be strictly ascending")
    return members


Members = Annotated[tuple[Annotated[int, Field(ge=0, lt=_MAX_MEMBERS)], ...], Field(max_length=_MAX_MEMBERS)]


class Proposal(_Body):
    observations: tuple[dict[str, Any], ...]
    updates: UpdatesHex
    # Scheme 0x0002: the members asked to sign (attempt 0), each with its included observation's commitments.
    signing_set: Members | None = None

    @field_validator("signing_set")
    @classmethod
    def _ascending_set(cls, members: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None if members is None else _distinct_members(members)


class ReportSignature(_Body):
    report_digest: DigestHex
    signature: SignatureHex


class SigningSet(_Body):
    """Scheme 0x0002: the leader asks again, after a bad share, with another set and the next
    attempt's nonces."""

    report_digest: DigestHex
    attempt: int = Field(ge=1, lt=MAX_SIGNING_ATTEMPTS)
    members: Members

    @field_validator("members")
    @classmethod
    def _ascending(cls, members: tuple[int, ...]) -> tuple[int, ...]:
        return _distinct_members(members)


class SignatureShare(_Body):
    """Scheme 0x0002: a member's FROST signature share of the report, with its nonces of `attempt`."""

    report_digest: DigestHex
    attempt: int = Field(ge=0, lt=MAX_SIGNING_ATTEMPTS)
    share: ScalarHex


class Attested(_Body):
    updates: UpdatesHex
    signatures: tuple[tuple[int, SignatureHex], ...]
    # Scheme 0x0002: the one Schnorr signature under the group key (signatures then empty).
    schnorr: SchnorrHex | None = None


class NewEpoch(_Body):
    """The epoch the sender wants to be in; the envelope's epoch is the one it is in."""

    epoch: Epoch = Field(ge=0, le=_MAX_U32)


BODY_MODELS: dict[Kind, type[_Body]] = {
    Kind.OBSERVE_REQUEST: ObserveRequest,
    Kind.OBSERVATION: Observation,
    Kind.PROPOSAL: Proposal,
    Kind.REPORT_SIGNATURE: ReportSignature,
    Kind.ATTESTED: Attested,
    Kind.NEW_EPOCH: NewEpoch,
    Kind.SIGNATURE_SHARE: SignatureShare,
    Kind.SIGNING_SET: SigningSet,
}


def parse_body(envelope: Envelope) -> _Body:
    try:
        return BODY_MODELS[envelope.kind].model_validate(envelope.body)
    except ValidationError as exc:
        raise InvalidMessage("malformed", f"{envelope.kind.value} body: {_first_error(exc)}") from None


def to_hex(data: bytes) -> str:
    """The wire spelling of bytes: 0x and lower-case hex."""
    return "0x" + data.hex()


def from_hex(text: str) -> bytes:
    """Bytes of a wire hex string that its model has already checked."""
    return bytes.fromhex(text[2:])
