"""Pedersen DKG with proofs of knowledge and complaints: the group signs with FROST under a
key nobody held; a participant that cheats is named and excluded, and everyone who saw the
same packages agrees on the transcript."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest

from relayer.crypto import dkg, frost
from relayer.crypto.dkg import Misbehaviour, Round1Package, Round1Secret
from relayer.crypto.frost import ORDER

pytestmark = pytest.mark.unit

CONTEXT = b"chain 31337 oracle 0x00 config 1"


def _round1(n: int, t: int) -> tuple[dict[int, Round1Secret], dict[int, Round1Package]]:
    secrets_, packages = {}, {}
    for i in range(1, n + 1):
        secrets_[i], packages[i] = dkg.round1(i, n, t, CONTEXT)
    return secrets_, packages


def _sign(keys: dict[int, frost.KeyShare], group: dkg.GroupKey, chosen: list[int], msg: bytes) -> frost.Signature:
    nonces = {i: frost.commit(keys[i].secret) for i in chosen}
    commitments = [nonces[i].commitment(i) for i in chosen]
    shares = {i: frost.sign(keys[i], nonces[i], commitments, msg) for i in chosen}
    return frost.aggregate(commitments, msg, group.group_public_key, shares,
                           {i: group.verification_share(i) for i in chosen})


def _run(n: int, t: int) -> tuple[dict[int, frost.KeyShare], dkg.GroupKey, dict[int, Round1Secret]]:
    secrets_, packages = _round1(n, t)
    for p in packages.values():
        dkg.verify_round1(p, t, CONTEXT)
    sent = {i: dkg.round2_shares(secrets_[i]) for i in packages}
    keys, groups = {}, []
    for me in packages:
        received = {i: sent[i][me] for i in packages if i != me}
        keys[me], group = dkg.finish(secrets_[me], packages, received, packages)
        groups.append(group)
    assert len({frost.serialize_element(g.group_public_key) for g in groups}) == 1
    return keys, groups[0], secrets_


@pytest.mark.parametrize(("n", "t"), [(4, 2), (4, 3), (7, 5)])
def test_any_threshold_of_participants_signs_under_the_generated_key(n: int, t: int) -> None:
    keys, group, secrets_ = _run(n, t)
    msg = b"report digest"
    signature = _sign(keys, group, list(range(n - t + 1, n + 1)), msg)
    assert frost.verify(signature, group.group_public_key, msg)
    # The group secret is the sum of every constant term; no participant ever held it.
    group_secret = sum(s.coefficients[0] for s in secrets_.values()) % ORDER
    assert frost.serialize_element(frost.base_mul(group_secret)) == frost.serialize_element(group.group_public_key)
    assert all(k.secret != group_secret for k in keys.values())


def test_a_proof_of_knowledge_that_fails_names_its_sender() -> None:
    _, packages = _round1(4, 3)
    # A rogue key: someone publishes a constant-term commitment without knowing its scalar.
    rogue = replace(packages[2], commitment=(frost.base_mul(5), *packages[2].commitment[1:]))
    with pytest.raises(Misbehaviour) as caught:
        dkg.verify_round1(rogue, 3, CONTEXT)
    assert caught.value.identifier == 2
    # The proof is bound to the run: replayed into another context it fails.
    with pytest.raises(Misbehaviour):
        dkg.verify_round1(packages[3], 3, b"another run")
    with pytest.raises(Misbehaviour, match="coefficients"):
        dkg.verify_round1(packages[1], 2, CONTEXT)


def test_a_bad_share_is_complained_about_and_its_sender_excluded_when_it_cannot_answer() -> None:
    n, t = 5, 3
    secrets_, packages = _round1(n, t)
    sent = {i: dkg.round2_shares(secrets_[i]) for i in packages}
    cheater, victim = 4, 1
    sent[cheater][victim] = (sent[cheater][victim] + 1) % ORDER
    assert not dkg.share_is_valid(victim, sent[cheater][victim], packages[cheater])
    # The cheater answers the complaint with the same bad share: everyone disqualifies it.
    assert not dkg.judge_complaint(packages[cheater], victim, sent[cheater][victim])
    assert not dkg.judge_complaint(packages[cheater], victim, None)
    qualified = [i for i in packages if i != cheater]
    keys, groups = {}, []
    for me in packages:
        if me == cheater:
            continue
        received = {i: sent[i][me] for i in qualified if i != me}
        keys[me], group = dkg.finish(secrets_[me], packages, received, qualified)
        groups.append(group)
    assert {g.qualified for g in groups} == {tuple(qualified)}
    assert len({frost.serialize_element(g.group_public_key) for g in groups}) == 1
    signature = _sign(keys, groups[0], [1, 2, 5], b"m")
    assert frost.verify(signature, groups[0].group_public_key, b"m")


def test_an_honest_accused_answers_with_the_right_share_and_stays() -> None:
    secrets_, packages = _round1(4, 2)
    revealed = dkg.answer_complaint(secrets_[3], complainer=2)
    assert dkg.judge_complaint(packages[3], 2, revealed)


def test_finish_refuses_a_share_that_does_not_match_its_commitment() -> None:
    secrets_, packages = _round1(4, 2)
    sent = {i: dkg.round2_shares(secrets_[i]) for i in packages}
    received = {i: sent[i][1] for i in (2, 3, 4)}
    received[3] = secrets.randbelow(ORDER - 1) + 1
    with pytest.raises(Misbehaviour) as caught:
        dkg.finish(secrets_[1], packages, received, packages)
    assert caught.value.identifier == 3


def test_the_transcript_hash_differs_when_any_participant_was_shown_another_package() -> None:
    _, packages = _round1(4, 3)
    _, other = dkg.round1(2, 4, 3, CONTEXT)
    seen_by_a = dkg.transcript_hash(packages.values(), CONTEXT)
    seen_by_b = dkg.transcript_hash({**packages, 2: other}.values(), CONTEXT)
    assert seen_by_a != seen_by_b
    assert dkg.transcript_hash(reversed(list(packages.values())), CONTEXT) == seen_by_a
    assert dkg.transcript_hash(packages.values(), b"other") != seen_by_a


def test_round1_packages_round_trip_and_malformed_bytes_are_refused() -> None:
    _, packages = _round1(4, 3)
    for p in packages.values():
        decoded = Round1Package.decode(p.encode())
        assert decoded.encode() == p.encode()
        dkg.verify_round1(decoded, 3, CONTEXT)
    with pytest.raises(frost.InvalidEncoding):
        Round1Package.decode(packages[1].encode()[:-1])
    with pytest.raises(frost.InvalidEncoding):
        Round1Package.decode(b"\x00" * 10)
