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


# --- one participant's run, phase by phase ---------------------------------------------


class TranscriptMismatch(DkgError):
    """Participants hold different views of the run (round-1 packages, or the outcome): the key
    must not be used; `disagreeing` names whose echo differs from this participant's."""

    def __init__(self, disagreeing: Sequence[int], message: str) -> None:
        super().__init__(message)
        self.disagreeing = tuple(disagreeing)


class PhaseError(DkgError):
    """A step called out of order (e.g. finishing before the complaints were closed)."""


def check_echoes(mine: bytes, echoes: Mapping[int, bytes], expected: Iterable[int], what: str) -> None:
    """Every participant in `expected` echoed the same `mine`; a missing echo counts as a
    different one, since nobody can tell silence from a different view."""
    disagreeing = sorted(i for i in expected if echoes.get(i) != mine)
    if disagreeing:
        raise TranscriptMismatch(
            disagreeing,
            f"participants {disagreeing} echoed another {what} than this participant's {mine.hex()[:16]}.. "
            "(or none): some participant was shown different data; do not use this run, run the key "
            "generation again, and look at the disagreeing participants' logs",
        )


@dataclass(frozen=True)
class DkgOutcome:
    """What a participant keeps: its signing share, the public group data, the transcript hash
    the committee approves, and who was excluded for which reason."""

    share: KeyShare
    group: GroupKey
    transcript_hash: bytes
    excluded: Mapping[int, str]

    def outcome_digest(self) -> bytes:
        """What participants echo at the end: the same transcript, qualified set and group key."""
        h = hashlib.sha256(CONTEXT + b"dkg-outcome" + self.transcript_hash)
        h.update(len(self.group.qualified).to_bytes(2, "big"))
        for i in self.group.qualified:
            h.update(serialize_scalar(i))
        h.update(serialize_element(self.group.group_public_key))
        return h.digest()


class Participant:
    """One participant's state through KeyGen: round 1, echo of the transcript, shares,
    complaints and their answers, outcome. Pure: the caller carries every value it returns
    to the others (`package` and complaints and answers to all, each share to its receiver
    alone, encrypted) and feeds in what arrives; a phase ends when the caller says so (its
    deadline), and whoever has not delivered by then is treated as the protocol says."""

    def __init__(
        self, identifier: int, n: int, threshold: int, context: bytes,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self.identifier, self.n, self.threshold, self.context = identifier, n, threshold, context
        self._secret, self.package = round1(identifier, n, threshold, context, randbelow)
        self._packages: dict[int, Round1Package] = {identifier: self.package}
        self.excluded: dict[int, str] = {}
        self._transcript: bytes | None = None
        self._received: dict[int, int] = {}
        self._complaints: set[tuple[int, int]] = set()  # (accuser, accused), as seen in public
        self._answered: set[tuple[int, int]] = set()

    @property
    def others(self) -> list[int]:
        return [i for i in range(1, self.n + 1) if i != self.identifier]

    def _exclude(self, who: int, reason: str) -> None:
        self.excluded.setdefault(who, reason)

    def refuse(self, sender: int, reason: str) -> None:
        """Exclude `sender` in round 1 for what the caller found (e.g. bytes that are no package)."""
        if self._transcript is not None:
            raise PhaseError(f"participant {sender} refused after round 1 was closed: {reason}")
        if sender != self.identifier:
            self._packages.pop(sender, None)
        self._exclude(sender, reason)

    def qualified(self) -> list[int]:
        return [i for i in range(1, self.n + 1) if i not in self.excluded]

    # round 1 --------------------------------------------------------------------------

    def receive_package(self, sender: int, package: Round1Package) -> None:
        """A peer's round-1 package, from the authenticated `sender`. A bad proof or a second,
        different package excludes the sender (raises `Misbehaviour` naming it)."""
        if self._transcript is not None:
            raise PhaseError(f"round-1 package from participant {sender} after round 1 was closed")
        if package.identifier != sender:
            self._exclude(sender, "sent a round-1 package in another participant's name")
            raise Misbehaviour(sender, f"participant {sender} sent a round-1 package in the name of participant {package.identifier}; "
                              "expected its own")
        held = self._packages.get(sender)
        if held is not None and held.encode() != package.encode():
            self._exclude(sender, "sent two different round-1 packages")
            raise Misbehaviour(sender, f"participant {sender} sent two different round-1 packages")
        try:
            verify_round1(package, self.threshold, self.context)
        except Misbehaviour as exc:
            self._exclude(sender, str(exc))
            raise
        self._packages[sender] = package

    def close_round1(self) -> bytes:
        """End of round 1: who sent nothing is excluded; returns the transcript hash to echo."""
        for i in self.others:
            if i not in self._packages:
                self._exclude(i, "sent no round-1 package in time")
        self._transcript = transcript_hash(
            (p for i, p in self._packages.items() if i not in self.excluded), self.context)
        return self._transcript

    def check_transcript_echoes(self, echoes: Mapping[int, bytes]) -> None:
        """Every qualified peer saw the round-1 packages this participant saw."""
        check_echoes(self._require_transcript(), echoes, (i for i in self.qualified() if i != self.identifier),
                     "round-1 transcript hash")

    def _require_transcript(self) -> bytes:
        if self._transcript is None:
            raise PhaseError("round 1 is not closed yet: call close_round1 first")
        return self._transcript

    # round 2 --------------------------------------------------------------------------

    def outgoing_shares(self) -> dict[int, int]:
        """f_me(l) for every qualified peer l, each for l alone."""
        self._require_transcript()
        shares = round2_shares(self._secret)
        return {l: s for l, s in shares.items() if l not in self.excluded}

    def receive_share(self, sender: int, share: int) -> None:
        """f_sender(me); an invalid one becomes this participant's complaint (see `complaints`)."""
        self._require_transcript()
        if sender in self._packages and sender not in self._received:
            self._received[sender] = share

    def complaints(self) -> list[int]:
        """End of round 2: the qualified peers whose share is missing or does not match its
        commitment; the caller broadcasts a complaint against each."""
        self._require_transcript()
        return [
            i for i in self.qualified()
            if i != self.identifier
            and (i not in self._received or not share_is_valid(self.identifier, self._received[i], self._packages[i]))
        ]

    # complaints -----------------------------------------------------------------------

    def receive_complaint(self, accuser: int, accused: int) -> int | None:
        """A public complaint (this participant's own included). Returns the share to reveal to
        everybody when this participant is the accused, else None."""
        if not (1 <= accuser <= self.n and 1 <= accused <= self.n) or accuser == accused:
            raise InvalidInput(f"complaint by {accuser} against {accused} names no other participant of 1..{self.n}")
        self._complaints.add((accuser, accused))
        if accused == self.identifier:
            return answer_complaint(self._secret, accuser)
        return None

    def receive_answer(self, accused: int, accuser: int, revealed: int) -> None:
        """The accused's public answer to a complaint: a right share keeps it (and the accuser
        takes it); a wrong one excludes it."""
        if (accuser, accused) not in self._complaints or accused not in self._packages:
            return  # an answer to no complaint changes nothing
        self._answered.add((accuser, accused))
        if not judge_complaint(self._packages[accused], accuser, revealed):
            self._exclude(accused, f"revealed a share for participant {accuser} that does not match its commitment")
        elif accuser == self.identifier:
            self._received[accused] = revealed

    def close_complaints(self) -> None:
        """End of the complaint phase: an accused that did not answer is excluded."""
        for accuser, accused in sorted(self._complaints):
            if (accuser, accused) not in self._answered:
                self._exclude(accused, f"did not answer participant {accuser}'s complaint in time")

    # outcome --------------------------------------------------------------------------

    def finish(self) -> DkgOutcome:
        """This participant's share and the group's key, from the qualified set."""
        transcript = self._require_transcript()
        if self.identifier in self.excluded:
            raise DkgError(
                f"this participant ({self.identifier}) was excluded: {self.excluded[self.identifier]}; "
                "it holds no share of this run's key")
        qualified = self.qualified()
        if len(qualified) < self.threshold:
            raise DkgError(
                f"{len(qualified)} participants are left after exclusions {dict(self.excluded)}, "
                f"the threshold is {self.threshold}: run the key generation again without them")
        share, group = finish(self._secret, self._packages, self._received, qualified)
        return DkgOutcome(share, group, transcript, dict(self.excluded))
