"""FROST(secp256k1, SHA-256): two-round threshold Schnorr signatures, as RFC 9591 specifies.

This module owns the ciphersuite's arithmetic and nothing else: scalars are Python
integers modulo the group order, points are coincurve public keys (the identity element
has no encoding and is never a valid result here). Key generation by a trusted dealer
(RFC 9591 Appendix C) is provided for tests and for checking a distributed key
generation's output; the network never uses a dealer.

Signing, per RFC 9591 section 5:
    round one   every chosen signer draws two hedged nonces (`commit`) and publishes their
                commitments; the nonces are secret and used exactly once;
    round two   with the list of every chosen signer's commitments and the message, each
                signer answers with a signature share (`sign`);
    aggregate   the coordinator checks each share (`verify_share`) and sums them into one
                Schnorr signature (R, z) that `verify` accepts under the group key.

The test vectors of RFC 9591 Appendix E.5 (FROST(secp256k1, SHA-256)) pin every step
in tests/relayer/crypto/test_frost.py.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from coincurve import PublicKey

CONTEXT = b"FROST-secp256k1-SHA256-v1"
# The order of the secp256k1 group.
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SCALAR_BYTES = 32
ELEMENT_BYTES = 33  # compressed SEC1
SIGNATURE_BYTES = ELEMENT_BYTES + SCALAR_BYTES
# hash_to_field's output length for a 256-bit order at the 128-bit security level (RFC 9380).
_FIELD_BYTES = 48


class FrostError(Exception):
    """Root of this module's errors."""


class InvalidEncoding(FrostError):
    """Bytes that are not a scalar or a point of the group."""


class InvalidShare(FrostError):
    """A signature share that does not verify; `identifier` names the signer to blame."""

    def __init__(self, identifier: int, message: str) -> None:
        super().__init__(message)
        self.identifier = identifier


class InvalidInput(FrostError):
    """Inputs the protocol forbids: repeated or out-of-range identifiers, a missing commitment."""


# --- group and scalar encoding ------------------------------------------------------


def serialize_scalar(s: int) -> bytes:
    return (s % ORDER).to_bytes(SCALAR_BYTES, "big")


def deserialize_scalar(data: bytes) -> int:
    if len(data) != SCALAR_BYTES:
        raise InvalidEncoding(f"a scalar is {SCALAR_BYTES} bytes, got {len(data)}")
    s = int.from_bytes(data, "big")
    if s >= ORDER:
        raise InvalidEncoding("scalar is not below the group order")
    return s


def serialize_element(p: PublicKey) -> bytes:
    return p.format(compressed=True)


def deserialize_element(data: bytes) -> PublicKey:
    if len(data) != ELEMENT_BYTES or data[0] not in (2, 3):
        raise InvalidEncoding(f"a point is {ELEMENT_BYTES} bytes in compressed SEC1 form")
    try:
        return PublicKey(data)
    except ValueError as exc:
        raise InvalidEncoding(f"not a point on secp256k1: {exc}") from None


def base_mul(s: int) -> PublicKey:
    """s*G for a nonzero scalar."""
    s %= ORDER
    if s == 0:
        raise InvalidInput("0*G is the identity, which has no encoding")
    return PublicKey.from_valid_secret(serialize_scalar(s))


def point_mul(p: PublicKey, s: int) -> PublicKey:
    s %= ORDER
    if s == 0:
        raise InvalidInput("multiplying by zero gives the identity")
    return p.multiply(serialize_scalar(s))


def point_sum(points: Iterable[PublicKey]) -> PublicKey:
    listed = list(points)
    if not listed:
        raise InvalidInput("an empty sum is the identity")
    if len(listed) == 1:
        return listed[0]
    try:
        return PublicKey.combine_keys(listed)
    except ValueError:
        raise FrostError("the points sum to the identity") from None


# --- hashes (RFC 9591 section 6.5) --------------------------------------------------


def _expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """expand_message_xmd with SHA-256 (RFC 9380 section 5.3.1)."""
    if len(dst) > 255:
        raise InvalidInput("domain separation tag longer than 255 bytes")
    ell = -(-length // 32)
    if ell > 255:
        raise InvalidInput("requested too many bytes")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha256(bytes(64) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    b = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    out = [b]
    for i in range(2, ell + 1):
        b = hashlib.sha256(bytes(x ^ y for x, y in zip(b0, b)) + bytes([i]) + dst_prime).digest()
        out.append(b)
    return b"".join(out)[:length]


def hash_to_scalar(msg: bytes, tag: bytes) -> int:
    return int.from_bytes(_expand_message_xmd(msg, CONTEXT + tag, _FIELD_BYTES), "big") % ORDER


def h1(m: bytes) -> int:
    return hash_to_scalar(m, b"rho")


def h2(m: bytes) -> int:
    return hash_to_scalar(m, b"chal")


def h3(m: bytes) -> int:
    return hash_to_scalar(m, b"nonce")


def h4(m: bytes) -> bytes:
    return hashlib.sha256(CONTEXT + b"msg" + m).digest()


def h5(m: bytes) -> bytes:
    return hashlib.sha256(CONTEXT + b"com" + m).digest()


# --- keys ---------------------------------------------------------------------------


def _check_identifier(identifier: int) -> None:
    if not 0 < identifier < ORDER:
        raise InvalidInput(f"identifier {identifier} is not a nonzero scalar")


def polynomial_evaluate(x: int, coefficients: Sequence[int]) -> int:
    """Horner's rule; coefficients[0] is the constant term."""
    value = 0
    for c in reversed(coefficients):
        value = (value * x + c) % ORDER
    return value


def derive_interpolating_value(identifiers: Sequence[int], x_i: int) -> int:
    """The Lagrange coefficient of x_i for interpolating at zero over `identifiers`."""
    if x_i not in identifiers:
        raise InvalidInput(f"identifier {x_i} is not among {list(identifiers)}")
    if len(set(identifiers)) != len(identifiers):
        raise InvalidInput("identifiers repeat")
    numerator, denominator = 1, 1
    for x_j in identifiers:
        if x_j == x_i:
            continue
        numerator = numerator * x_j % ORDER
        denominator = denominator * (x_j - x_i) % ORDER
    return numerator * pow(denominator, -1, ORDER) % ORDER


@dataclass(frozen=True)
class KeyShare:
    """One participant's secret share and the public data every participant agrees on."""

    identifier: int
    secret: int
    group_public_key: PublicKey


def trusted_dealer_keygen(
    secret: int, n: int, threshold: int, coefficients: Sequence[int] | None = None
) -> tuple[list[KeyShare], list[PublicKey]]:
    """Shamir-share `secret` to identifiers 1..n (RFC 9591 Appendix C); also returns the VSS
    commitment (one point per polynomial coefficient). `coefficients` (threshold - 1 of them)
    are drawn at random unless given, as the test vectors give them."""
    if not 2 <= threshold <= n:
        raise InvalidInput(f"need 2 <= threshold <= n, got threshold {threshold}, n {n}")
    if coefficients is None:
        coefficients = [secrets.randbelow(ORDER - 1) + 1 for _ in range(threshold - 1)]
    if len(coefficients) != threshold - 1:
        raise InvalidInput(f"a threshold of {threshold} needs {threshold - 1} coefficients")
    poly = [secret % ORDER, *coefficients]
    group_public_key = base_mul(poly[0])
    shares = [KeyShare(i, polynomial_evaluate(i, poly), group_public_key) for i in range(1, n + 1)]
    return shares, [base_mul(c) for c in poly]


def vss_verify(identifier: int, share: int, commitment: Sequence[PublicKey]) -> bool:
    """Whether `share` is f(identifier) for the polynomial `commitment` commits to."""
    expected = point_sum(point_mul(c, pow(identifier, k, ORDER)) for k, c in enumerate(commitment))
    return serialize_element(base_mul(share)) == serialize_element(expected)


def public_key_share(commitment: Sequence[PublicKey], identifier: int) -> PublicKey:
    """A participant's public verification share, from the VSS commitment."""
    return point_sum(point_mul(c, pow(identifier, k, ORDER)) for k, c in enumerate(commitment))


# --- round one ----------------------------------------------------------------------


@dataclass(frozen=True)
class Commitment:
    """A signer's published nonce commitments for one signing session."""

    identifier: int
    hiding: PublicKey
    binding: PublicKey

    def encode(self) -> bytes:
        return serialize_scalar(self.identifier) + serialize_element(self.hiding) + serialize_element(self.binding)


@dataclass(frozen=True)
class Nonces:
    """A signer's secret nonces: used for one signature share, then destroyed."""

    hiding: int
    binding: int

    def commitment(self, identifier: int) -> Commitment:
        return Commitment(identifier, base_mul(self.hiding), base_mul(self.binding))


def nonce_generate(secret: int, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> int:
    """The hedged nonce of RFC 9591 section 4.1: fresh randomness and the secret share both
    feed the hash, so a weak RNG alone does not reveal the key."""
    return h3(random_bytes(32) + serialize_scalar(secret))


def commit(secret: int, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> Nonces:
    return Nonces(nonce_generate(secret, random_bytes), nonce_generate(secret, random_bytes))


# --- round two ----------------------------------------------------------------------


def _sorted_commitments(commitments: Iterable[Commitment]) -> list[Commitment]:
    listed = sorted(commitments, key=lambda c: c.identifier)
    ids = [c.identifier for c in listed]
    if len(set(ids)) != len(ids):
        raise InvalidInput("a signer appears twice in the commitment list")
    for i in ids:
        _check_identifier(i)
    return listed


def encode_commitment_list(commitments: Sequence[Commitment]) -> bytes:
    return b"".join(c.encode() for c in commitments)


def binding_factor_input(group_public_key: PublicKey, commitments: Sequence[Commitment], msg: bytes) -> bytes:
    """What each signer's binding factor hashes, less its identifier."""
    listed = _sorted_commitments(commitments)
    return serialize_element(group_public_key) + h4(msg) + h5(encode_commitment_list(listed))


def compute_binding_factors(
    group_public_key: PublicKey, commitments: Sequence[Commitment], msg: bytes
) -> dict[int, int]:
    prefix = binding_factor_input(group_public_key, commitments, msg)
    return {c.identifier: h1(prefix + serialize_scalar(c.identifier)) for c in commitments}


def compute_group_commitment(commitments: Sequence[Commitment], binding_factors: Mapping[int, int]) -> PublicKey:
    return point_sum(
        p for c in commitments for p in (c.hiding, point_mul(c.binding, binding_factors[c.identifier]))
    )


def compute_challenge(group_commitment: PublicKey, group_public_key: PublicKey, msg: bytes) -> int:
    return h2(serialize_element(group_commitment) + serialize_element(group_public_key) + msg)


@dataclass(frozen=True)
class _Session:
    """What every signer and the coordinator derive identically from (commitments, message)."""

    commitments: list[Commitment]
    binding_factors: dict[int, int]
    group_commitment: PublicKey
    challenge: int

    @property
    def identifiers(self) -> list[int]:
        return [c.identifier for c in self.commitments]


def _session(group_public_key: PublicKey, commitments: Sequence[Commitment], msg: bytes) -> _Session:
    listed = _sorted_commitments(commitments)
    factors = compute_binding_factors(group_public_key, listed, msg)
    group_commitment = compute_group_commitment(listed, factors)
    return _Session(listed, factors, group_commitment, compute_challenge(group_commitment, group_public_key, msg))


def sign(key: KeyShare, nonces: Nonces, commitments: Sequence[Commitment], msg: bytes) -> int:
    """This signer's share of the signature over `msg` (RFC 9591 section 5.2).

    The caller must have destroyed `nonces` durably before the share leaves the process:
    two shares under one nonce pair reveal the secret share."""
    session = _session(key.group_public_key, commitments, msg)
    mine = next((c for c in session.commitments if c.identifier == key.identifier), None)
    if mine is None:
        raise InvalidInput(f"signer {key.identifier} has no commitment in the list")
    if serialize_element(mine.hiding) != serialize_element(base_mul(nonces.hiding)) or serialize_element(
        mine.binding
    ) != serialize_element(base_mul(nonces.binding)):
        raise InvalidInput(f"the list's commitment for signer {key.identifier} is not of these nonces")
    lam = derive_interpolating_value(session.identifiers, key.identifier)
    rho = session.binding_factors[key.identifier]
    return (nonces.hiding + nonces.binding * rho + lam * key.secret * session.challenge) % ORDER


def verify_share(
    identifier: int,
    public_key_share: PublicKey,
    share: int,
    commitments: Sequence[Commitment],
    group_public_key: PublicKey,
    msg: bytes,
) -> bool:
    """Whether one signer's share is right (RFC 9591 section 5.4): a coordinator checks each
    share before aggregating, so a bad one is blamed on its signer, not on the group."""
    return _share_ok(_session(group_public_key, commitments, msg), identifier, public_key_share, share)


def _share_ok(session: _Session, identifier: int, public_key_share: PublicKey, share: int) -> bool:
    mine = next((c for c in session.commitments if c.identifier == identifier), None)
    if mine is None or not 0 < share < ORDER:
        return False
    lam = derive_interpolating_value(session.identifiers, identifier)
    expected = point_sum(
        (
            mine.hiding,
            point_mul(mine.binding, session.binding_factors[identifier]),
            point_mul(public_key_share, session.challenge * lam),
        )
    )
    return serialize_element(base_mul(share)) == serialize_element(expected)


@dataclass(frozen=True)
class Signature:
    """A Schnorr signature (R, z) under the group key."""

    r: PublicKey
    z: int

    def encode(self) -> bytes:
        return serialize_element(self.r) + serialize_scalar(self.z)

    @classmethod
    def decode(cls, data: bytes) -> Signature:
        if len(data) != SIGNATURE_BYTES:
            raise InvalidEncoding(f"a signature is {SIGNATURE_BYTES} bytes, got {len(data)}")
        return cls(deserialize_element(data[:ELEMENT_BYTES]), deserialize_scalar(data[ELEMENT_BYTES:]))


def aggregate(
    commitments: Sequence[Commitment],
    msg: bytes,
    group_public_key: PublicKey,
    shares: Mapping[int, int],
    public_key_shares: Mapping[int, PublicKey] | None = None,
) -> Signature:
    """Sum the shares into one signature (RFC 9591 section 5.3). With `public_key_shares`,
    each share is checked first and a bad one raises `InvalidShare` naming its signer."""
    session = _session(group_public_key, commitments, msg)
    if set(shares) != set(session.identifiers):
        raise InvalidInput(f"shares from {sorted(shares)}, commitments from {session.identifiers}")
    if public_key_shares is not None:
        for identifier in session.identifiers:
            if identifier not in public_key_shares or not _share_ok(
                session, identifier, public_key_shares[identifier], shares[identifier]
            ):
                raise InvalidShare(identifier, f"signature share of signer {identifier} does not verify")
    z = sum(shares.values()) % ORDER
    return Signature(session.group_commitment, z)


def verify(signature: Signature, group_public_key: PublicKey, msg: bytes) -> bool:
    """Schnorr verification: z*G == R + c*PK, with c = H2(R || PK || msg)."""
    if not 0 < signature.z < ORDER:
        return False
    c = compute_challenge(signature.r, group_public_key, msg)
    try:
        expected = point_sum((signature.r, point_mul(group_public_key, c)))
    except FrostError:
        return False
    return serialize_element(base_mul(signature.z)) == serialize_element(expected)
