"""The key generation between real libp2p hosts on loopback (one trio thread each): four
members make one key over authenticated, encrypted direct streams; a member sending a bad
share is named and excluded, and the rest still make one key that signs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relayer.crypto import dkg, frost
from relayer.keygen import check_approvals, approval, keygen_over_libp2p, share_record
from relayer.p2p.identity import peer_id_of
from relayer.ports import free_port
from tests.relayer.test_keygen import KEYS, next_config

pytestmark = pytest.mark.integration


async def run_members(n: int, t: int, outgoing: dict[int, Any] | None = None) -> dict[int, Any]:
    config = next_config(KEYS[:n], t)
    ports = [free_port() for _ in range(n)]
    addrs = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(KEYS[m])}" for m, port in enumerate(ports)]
    runs = [keygen_over_libp2p(KEYS[m], config, peers=[a for i, a in enumerate(addrs) if i != m],
                               listen_port=ports[m], phase_timeout=8.0, connect_timeout=30.0,
                               outgoing=(outgoing or {}).get(m))
            for m in range(n)]
    return dict(enumerate(await asyncio.gather(*runs, return_exceptions=True)))


def _signs(outcomes: dict[int, dkg.DkgOutcome], chosen: list[int]) -> bool:
    group = outcomes[chosen[0]].group
    nonces = {m: frost.commit(outcomes[m].share.secret) for m in chosen}
    commitments = [nonces[m].commitment(m + 1) for m in chosen]
    msg = b"a report digest"
    shares = {m + 1: frost.sign(outcomes[m].share, nonces[m], commitments, msg) for m in chosen}
    signature = frost.aggregate(commitments, msg, group.group_public_key, shares,
                                {m + 1: group.verification_share(m + 1) for m in chosen})
    return frost.verify(signature, group.group_public_key, msg)


async def test_four_members_make_one_key_over_libp2p_and_approve_it() -> None:
    results = await run_members(4, 3)
    assert all(isinstance(r, dkg.DkgOutcome) for r in results.values()), results
    outcomes: dict[int, dkg.DkgOutcome] = dict(results)
    assert len({frost.serialize_element(o.group.group_public_key) for o in outcomes.values()}) == 1
    assert len({o.transcript_hash for o in outcomes.values()}) == 1
    assert _signs(outcomes, [0, 2, 3])
    config = next_config(KEYS[:4], 3)
    check_approvals(config, [approval(KEYS[m], config, outcomes[m]) for m in (0, 1, 3)])
    record = share_record(config, outcomes[1])
    assert record.member == 1 and record.key_share().secret == outcomes[1].share.secret


async def test_a_bad_share_over_libp2p_excludes_its_sender_and_the_rest_make_one_key() -> None:
    cheater, victim = 2, 0

    def bad_share(phase: str, receiver: int, body: Any) -> Any:
        if phase == "share" and receiver == victim + 1:
            return frost.serialize_scalar(int(body, 16) + 7).hex()
        if phase == "answers":
            return {k: frost.serialize_scalar(int(v, 16) + 7).hex() for k, v in body.items()}
        return body

    results = await run_members(4, 3, {cheater: bad_share})
    assert isinstance(results[cheater], dkg.DkgError) and "excluded" in str(results[cheater])
    outcomes = {m: r for m, r in results.items() if m != cheater}
    assert all(isinstance(r, dkg.DkgOutcome) for r in outcomes.values()), outcomes
    assert all(set(o.excluded) == {cheater + 1} for o in outcomes.values())
    assert len({frost.serialize_element(o.group.group_public_key) for o in outcomes.values()}) == 1
    assert _signs(outcomes, [0, 1, 3])
