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


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 4), (5, 7)])
def test_any_threshold_of_participants_signs_under_the_generated_key(t: int, n: int) -> None:
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


# --- whole runs through `Participant`, the state machine a node drives ------------------


def _participants(n: int, t: int) -> dict[int, dkg.Participant]:
    return {i: dkg.Participant(i, n, t, CONTEXT) for i in range(1, n + 1)}


def _broadcast_round1(ps: dict[int, dkg.Participant], shown: dict[tuple[int, int], Round1Package] | None = None,
                      ) -> dict[int, bytes]:
    """Every package to every other participant (`shown[(sender, receiver)]` overrides one),
    then close round 1 and return each participant's transcript hash."""
    for sender, p in ps.items():
        for receiver, q in ps.items():
            if receiver != sender:
                q.receive_package(sender, (shown or {}).get((sender, receiver), p.package))
    return {i: p.close_round1() for i, p in ps.items()}


def _echo(ps: dict[int, dkg.Participant], hashes: dict[int, bytes]) -> None:
    for i, p in ps.items():
        p.check_transcript_echoes({j: h for j, h in hashes.items() if j != i})


def _complaint_phase(ps: dict[int, dkg.Participant], answers: dict[tuple[int, int], int] | None = None) -> None:
    """Each complaint to everybody; the accused's answer (or `answers[(accused, accuser)]`
    instead) to everybody; then the phase closes."""
    complaints = [(i, accused) for i, p in ps.items() for accused in p.complaints()]
    revealed: dict[tuple[int, int], int] = {}
    for accuser, accused in complaints:
        for p in ps.values():
            answer = p.receive_complaint(accuser, accused)
            if answer is not None:
                revealed[(accused, accuser)] = answer
    revealed.update(answers or {})
    for (accused, accuser), share in revealed.items():
        for p in ps.values():
            p.receive_answer(accused, accuser, share)
    for p in ps.values():
        p.close_complaints()


def _outcomes(ps: dict[int, dkg.Participant], skip: frozenset[int] = frozenset()) -> dict[int, dkg.DkgOutcome]:
    """Every participant's outcome, and the final echo: all of them agree on it."""
    outcomes = {i: p.finish() for i, p in ps.items() if i not in skip}
    for i, o in outcomes.items():
        dkg.check_echoes(o.outcome_digest(), {j: q.outcome_digest() for j, q in outcomes.items()},
                         [j for j in outcomes if j != i], "outcome")
    return outcomes


def _signs(outcomes: dict[int, dkg.DkgOutcome], chosen: list[int]) -> bool:
    keys = {i: outcomes[i].share for i in chosen}
    group = outcomes[chosen[0]].group
    msg = b"report digest"
    return frost.verify(_sign(keys, group, chosen, msg), group.group_public_key, msg)


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 4), (5, 7)])
def test_an_honest_run_gives_every_participant_one_key_that_any_threshold_signs_with(t: int, n: int) -> None:
    ps = _participants(n, t)
    hashes = _broadcast_round1(ps)
    _echo(ps, hashes)
    for sender, p in ps.items():
        for receiver, share in p.outgoing_shares().items():
            ps[receiver].receive_share(sender, share)
    assert all(p.complaints() == [] for p in ps.values())
    _complaint_phase(ps)
    outcomes = _outcomes(ps)
    assert len({frost.serialize_element(o.group.group_public_key) for o in outcomes.values()}) == 1
    assert {o.transcript_hash for o in outcomes.values()} == {hashes[1]}
    assert all(o.excluded == {} and o.group.qualified == tuple(range(1, n + 1)) for o in outcomes.values())
    assert _signs(outcomes, list(range(1, t + 1)))
    assert _signs(outcomes, list(range(n - t + 1, n + 1)))
    # Each verifying share is the public image of its holder's signing share.
    for i, o in outcomes.items():
        for j, other in outcomes.items():
            assert frost.serialize_element(o.group.verification_share(j)) == frost.serialize_element(
                frost.base_mul(other.share.secret))


def test_a_bad_share_names_its_sender_who_is_excluded_and_the_rest_derive_one_key() -> None:
    n, t, cheater, victim = 5, 3, 4, 2
    ps = _participants(n, t)
    _echo(ps, _broadcast_round1(ps))
    for sender, p in ps.items():
        for receiver, share in p.outgoing_shares().items():
            ps[receiver].receive_share(sender, (share + 1) % ORDER if (sender, receiver) == (cheater, victim) else share)
    assert ps[victim].complaints() == [cheater]
    assert all(p.complaints() == [] for i, p in ps.items() if i != victim)
    # The cheater stands by its bad share when it answers in public.
    bad = (dkg.answer_complaint(ps[cheater]._secret, victim) + 1) % ORDER  # noqa: SLF001 - playing the cheater
    _complaint_phase(ps, {(cheater, victim): bad})
    outcomes = _outcomes(ps, skip=frozenset({cheater}))
    with pytest.raises(dkg.DkgError, match="excluded"):
        ps[cheater].finish()
    assert all(set(o.excluded) == {cheater} for o in outcomes.values())
    assert {o.group.qualified for o in outcomes.values()} == {(1, 2, 3, 5)}
    assert len({frost.serialize_element(o.group.group_public_key) for o in outcomes.values()}) == 1
    assert _signs(outcomes, [1, 2, 5])


def test_a_sender_that_does_not_answer_a_complaint_is_excluded() -> None:
    n, t, silent = 4, 2, 3
    ps = _participants(n, t)
    _echo(ps, _broadcast_round1(ps))
    for sender, p in ps.items():
        for receiver, share in p.outgoing_shares().items():
            if sender != silent or receiver != 1:  # 3's share to 1 never arrives
                ps[receiver].receive_share(sender, share)
    assert ps[1].complaints() == [silent]
    for p in ps.values():
        p.receive_complaint(1, silent)
        p.close_complaints()  # 3 never answers
    outcomes = _outcomes(ps, skip=frozenset({silent}))
    assert all(silent in o.excluded and "did not answer" in o.excluded[silent] for o in outcomes.values())
    assert _signs(outcomes, [2, 4])


def test_a_false_complaint_does_not_exclude_an_honest_participant() -> None:
    n, t, liar, honest = 4, 3, 1, 2
    ps = _participants(n, t)
    _echo(ps, _broadcast_round1(ps))
    for sender, p in ps.items():
        for receiver, share in p.outgoing_shares().items():
            ps[receiver].receive_share(sender, share)
    # The liar complains about a share it received intact; the accused answers in public.
    revealed = None
    for p in ps.values():
        answer = p.receive_complaint(liar, honest)
        revealed = answer if answer is not None else revealed
    assert revealed is not None
    for p in ps.values():
        p.receive_answer(honest, liar, revealed)
        p.close_complaints()
    outcomes = _outcomes(ps)
    assert all(o.excluded == {} for o in outcomes.values())
    assert _signs(outcomes, [1, 2, 4])


def test_a_commitment_tampered_for_one_participant_is_caught_by_the_transcript_echo() -> None:
    n, t, equivocator, fooled = 4, 3, 3, 4
    ps = _participants(n, t)
    # The equivocator shows participant 4 another (valid) polynomial than the others.
    other_secret, other_package = dkg.round1(equivocator, n, t, CONTEXT)
    hashes = _broadcast_round1(ps, shown={(equivocator, fooled): other_package})
    assert other_secret.identifier == equivocator
    assert hashes[1] == hashes[2] == hashes[3] != hashes[4]
    with pytest.raises(dkg.TranscriptMismatch) as caught:
        ps[1].check_transcript_echoes({j: h for j, h in hashes.items() if j != 1})
    assert caught.value.disagreeing == (fooled,)
    with pytest.raises(dkg.TranscriptMismatch) as caught:
        ps[fooled].check_transcript_echoes({j: h for j, h in hashes.items() if j != fooled})
    assert caught.value.disagreeing == (1, 2, 3)


def test_a_bad_proof_or_a_missing_package_excludes_its_sender_before_any_share_is_sent() -> None:
    n, t = 4, 2
    ps = _participants(n, t)
    rogue = replace(ps[2].package, commitment=(frost.base_mul(5), *ps[2].package.commitment[1:]))
    for receiver in (1, 3):
        with pytest.raises(Misbehaviour) as caught:
            ps[receiver].receive_package(2, rogue)
        assert caught.value.identifier == 2
        ps[receiver].receive_package(1 if receiver == 3 else 3, ps[1 if receiver == 3 else 3].package)
    # Nobody hears from 4 either.
    for p in (ps[1], ps[3]):
        p.close_round1()
        assert set(p.excluded) == {2, 4}
        assert set(p.outgoing_shares()) == {1, 3} - {p.identifier}
    # A package sent in another participant's name excludes the one that sent it.
    fresh = dkg.Participant(1, n, t, CONTEXT)
    with pytest.raises(Misbehaviour, match="in the name of") as caught:
        fresh.receive_package(3, ps[4].package)
    assert caught.value.identifier == 3 and 3 in fresh.excluded


def test_steps_out_of_order_are_refused() -> None:
    p = dkg.Participant(1, 3, 2, CONTEXT)
    with pytest.raises(dkg.PhaseError, match="close_round1"):
        p.outgoing_shares()
    with pytest.raises(frost.InvalidInput):
        p.receive_complaint(2, 2)
    p.close_round1()
    with pytest.raises(dkg.PhaseError):
        p.receive_package(2, dkg.round1(2, 3, 2, CONTEXT)[1])
    with pytest.raises(dkg.DkgError, match="threshold"):
        p.finish()
