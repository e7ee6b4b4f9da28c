"""Pedersen distributed key generation for FROST, with proofs of knowledge and complaints.

This module owns the arithmetic of the FROST paper's KeyGen (Komlo and Goldberg, 2020,
figure 1), not its transport: every function is pure, and the node carries the packages
over authenticated, encrypted streams. No machine ever holds the group's secret.

    round 1   each participant i draws a polynomial f_i of degree t-1, publishes a
              commitment to its coefficients (a_ij * G) and a Schnorr proof that it knows
              a_i0 (so nobody can cancel another's key by choosing its own after seeing it);
    round 2   i sends f_i(l) privately to every other participant l; l checks it against
              i's commitment and, if it fails, complains in public;
    complaints the accused answers by revealing the disputed share in public; a share that
              still fails, or no answer, disqualifies the accused;
    finish    every participant's secret share is the sum of the shares from the qualified
              set; the group key is the sum of their a_i0 * G, and anyone can compute every
              participant's public verification share from the commitments alone.

Every participant must have seen the same round-1 packages: `transcript_hash` is what
they compare (and what the contract later sees approved) before using the key.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from coincurve import PublicKey

from relayer.crypto.frost import (
    CONTEXT,
    ELEMENT_BYTES,
    ORDER,
    SCALAR_BYTES,
    FrostError,
    InvalidEncoding,
    InvalidInput,
    KeyShare,
    base_mul,
    deserialize_element,
    deserialize_scalar,
    hash_to_scalar,
    point_mul,
    point_sum,
    polynomial_evaluate,
    public_key_share,
    serialize_element,
    serialize_scalar,
)


class DkgError(FrostError):
    """Root of the key generation's errors."""


class Misbehaviour(DkgError):
    """A participant broke the protocol; `identifier` names it, so it can be excluded."""

    def __init__(self, identifier: int, message: str) -> None:
        super().__init__(message)
        self.identifier = identifier


def _proof_challenge(identifier: int, context: bytes, key: PublicKey, nonce: PublicKey) -> int:
    return hash_to_scalar(
        serialize_scalar(identifier) + context + serialize_element(key) + serialize_element(nonce), b"dkg"
    )


@dataclass(frozen=True)
class Round1Package:
    """What participant `identifier` broadcasts: its coefficient commitment and a proof of
    knowledge of its secret (the constant term)."""

    identifier: int
    commitment: tuple[PublicKey, ...]
    proof_r: PublicKey
    proof_mu: int

    @property
    def verifying_key(self) -> PublicKey:
        """a_i0 * G: this participant's contribution to the group key."""
        return self.commitment[0]

    def encode(self) -> bytes:
        return (
            serialize_scalar(self.identifier)
            + len(self.commitment).to_bytes(2, "big")
            + b"".join(serialize_element(c) for c in self.commitment)
            + serialize_element(self.proof_r)
            + serialize_scalar(self.proof_mu)
        )

    @classmethod
    def decode(cls, data: bytes) -> Round1Package:
        if len(data) < SCALAR_BYTES + 2:
            raise InvalidEncoding("round-1 package is too short")
        identifier = deserialize_scalar(data[:SCALAR_BYTES])
        count = int.from_bytes(data[SCALAR_BYTES : SCALAR_BYTES + 2], "big")
        expected = SCALAR_BYTES + 2 + count * ELEMENT_BYTES + ELEMENT_BYTES + SCALAR_BYTES
        if count == 0 or len(data) != expected:
            raise InvalidEncoding(f"round-1 package of {count} coefficients is {expected} bytes, got {len(data)}")
        at = SCALAR_BYTES + 2
        commitment = []
        for _ in range(count):
            commitment.append(deserialize_element(data[at : at + ELEMENT_BYTES]))
            at += ELEMENT_BYTES
        proof_r = deserialize_element(data[at : at + ELEMENT_BYTES])
        proof_mu = deserialize_scalar(data[at + ELEMENT_BYTES :])
        return cls(identifier, tuple(commitment), proof_r, proof_mu)


@dataclass(frozen=True)
class Round1Secret:
    """Participant's own polynomial: kept in memory for the run of the protocol only."""

    identifier: int
    coefficients: tuple[int, ...]
    n: int

    @property
    def threshold(self) -> int:
        return len(self.coefficients)


def round1(
    identifier: int, n: int, threshold: int, context: bytes, randbelow: Callable[[int], int] = secrets.randbelow
) -> tuple[Round1Secret, Round1Package]:
    """Draw this participant's polynomial; `context` binds the proof to this run (e.g. the
    committee's config digest and the chain), so a proof cannot be replayed into another."""
    if not 2 <= threshold <= n:
        raise InvalidInput(f"need 2 <= threshold <= n, got threshold {threshold}, n {n}")
    if not 1 <= identifier <= n:
        raise InvalidInput(f"identifier {identifier} outside 1..{n}")
    coefficients = tuple(randbelow(ORDER - 1) + 1 for _ in range(threshold))
    k = randbelow(ORDER - 1) + 1
    nonce = base_mul(k)
    key = base_mul(coefficients[0])
    mu = (k + coefficients[0] * _proof_challenge(identifier, context, key, nonce)) % ORDER
    package = Round1Package(identifier, tuple(base_mul(a) for a in coefficients), nonce, mu)
    return Round1Secret(identifier, coefficients, n), package


def verify_round1(package: Round1Package, threshold: int, context: bytes) -> None:
    """Check a peer's round-1 package; raises `Misbehaviour` naming it."""
    who = package.identifier
    if len(package.commitment) != threshold:
        raise Misbehaviour(who, f"participant {who} committed to {len(package.commitment)} coefficients, not {threshold}")
    c = _proof_challenge(who, context, package.verifying_key, package.proof_r)
    if not 0 < package.proof_mu < ORDER:
        raise Misbehaviour(who, f"participant {who}'s proof of knowledge is out of range")
    try:
        expected = point_sum((package.proof_r, point_mul(package.verifying_key, c)))
    except FrostError:
        raise Misbehaviour(who, f"participant {who}'s proof of knowledge does not verify") from None
    if serialize_element(base_mul(package.proof_mu)) != serialize_element(expected):
        raise Misbehaviour(who, f"participant {who}'s proof of knowledge does not verify")


def transcript_hash(packages: Iterable[Round1Package], context: bytes) -> bytes:
    """One hash of every round-1 package, in identifier order: participants compare it
    before trusting the result, so nobody was shown a different commitment."""
    h = hashlib.sha256(CONTEXT + b"dkg-transcript" + len(context).to_bytes(2, "big") + context)
    listed = sorted(packages, key=lambda p: p.identifier)
    if len({p.identifier for p in listed}) != len(listed):
        raise InvalidInput("two round-1 packages for one participant")
    for p in listed:
        encoded = p.encode()
        h.update(len(encoded).to_bytes(4, "big") + encoded)
    return h.digest()


def round2_shares(secret: Round1Secret) -> dict[int, int]:
    """f_i(l) for every other participant l: each goes to l alone, encrypted."""
    return {
        l: polynomial_evaluate(l, secret.coefficients) for l in range(1, secret.n + 1) if l != secret.identifier
    }


def share_is_valid(receiver: int, share: int, sender: Round1Package) -> bool:
    """Whether `share` is f_sender(receiver) for the polynomial `sender` committed to; a
    receiver that gets an invalid share complains in public."""
    if not 0 < share < ORDER:
        return False
    return serialize_element(base_mul(share)) == serialize_element(public_key_share(sender.commitment, receiver))


def answer_complaint(secret: Round1Secret, complainer: int) -> int:
    """The accused's answer: the disputed share, revealed to everybody."""
    return polynomial_evaluate(complainer, secret.coefficients)


def judge_complaint(accused: Round1Package, complainer: int, revealed: int | None) -> bool:
    """Everyone's verdict on a complaint: True keeps the accused (its revealed share is
    right, and the complainer uses it), False disqualifies it (wrong share, or none)."""
    return revealed is not None and share_is_valid(complainer, revealed, accused)


@dataclass(frozen=True)
class GroupKey:
    """The public outcome every participant computes alike."""

    group_public_key: PublicKey
    qualified: tuple[int, ...]
    verification_shares: Mapping[int, PublicKey]

    def verification_share(self, identifier: int) -> PublicKey:
        return self.verification_shares[identifier]


def group_key(packages: Mapping[int, Round1Package], qualified: Iterable[int], n: int) -> GroupKey:
    """The group key and every participant's verification share, from the qualified set's
    commitments: sum over i in Q of f_i(l) * G, computed in public."""
    chosen = tuple(sorted(set(qualified)))
    if not chosen:
        raise DkgError("no qualified participant is left")
    missing = [i for i in chosen if i not in packages]
    if missing:
        raise InvalidInput(f"qualified participants {missing} have no round-1 package")
    summed = _sum_commitments([packages[i].commitment for i in chosen])
    return GroupKey(
        group_public_key=summed[0],
        qualified=chosen,
        verification_shares={l: public_key_share(summed, l) for l in range(1, n + 1)},
    )


def _sum_commitments(commitments: Sequence[Sequence[PublicKey]]) -> list[PublicKey]:
    width = len(commitments[0])
    if any(len(c) != width for c in commitments):
        raise InvalidInput("commitments of different degrees")
    return [point_sum(c[k] for c in commitments) for k in range(width)]


def finish(
    secret: Round1Secret, packages: Mapping[int, Round1Package], received: Mapping[int, int], qualified: Iterable[int]
) -> tuple[KeyShare, GroupKey]:
    """This participant's secret share and the group's public key. `received` holds f_i(me)
    for every other qualified i (after complaints were resolved); each is checked again."""
    me = secret.identifier
    chosen = sorted(set(qualified))
    total = 0
    for i in chosen:
        if i == me:
            total += polynomial_evaluate(me, secret.coefficients)
            continue
        if i not in received:
            raise Misbehaviour(i, f"no share from qualified participant {i}")
        if not share_is_valid(me, received[i], packages[i]):
            raise Misbehaviour(i, f"share from participant {i} does not match its commitment")
        total += received[i]
    group = group_key(packages, chosen, secret.n)
    share = KeyShare(me, total % ORDER, group.group_public_key)
    if serialize_element(base_mul(share.secret)) != serialize_element(group.verification_share(me)):
        raise DkgError("own share does not match the public verification share")  # arithmetic bug, never input
    return share, group
