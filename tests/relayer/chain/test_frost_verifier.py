"""FrostVerifier on a real anvil: it accepts exactly the signatures the Python FROST
implementation (checked against RFC 9591's vectors) makes, for keys from a dealer and from
the DKG, and rejects every altered one, with one ecrecover whatever the committee size."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from relayer.chain.anvil import AnvilNode
from relayer.chain.contract import deploy_contract, disconnect, send_call
from relayer.chain.oracle import connect, load_artifact
from relayer.crypto import dkg, frost
from relayer.crypto.frost import ORDER

pytestmark = pytest.mark.integration


def _key_words(pk: frost.PublicKey) -> tuple[int, int]:
    x, y = pk.point()
    return x, y & 1


def _sig_words(sig: frost.Signature) -> tuple[int, int, int]:
    x, y = sig.r.point()
    return x, y, sig.z


def _usable_group(n: int, t: int) -> tuple[list[frost.KeyShare], list[frost.PublicKey]]:
    while True:  # a group key needs x below the order (ecrecover's r); 2^-128 odds otherwise
        shares, vss = frost.trusted_dealer_keygen(secrets.randbelow(ORDER - 1) + 1, n, t)
        if _key_words(shares[0].group_public_key)[0] < ORDER:
            return shares, vss


def _sign(shares: list[frost.KeyShare], vss: list[frost.PublicKey], chosen: list[int], msg: bytes) -> frost.Signature:
    keys = {s.identifier: s for s in shares}
    nonces = {i: frost.commit(keys[i].secret) for i in chosen}
    commitments = [nonces[i].commitment(i) for i in chosen]
    sig_shares = {i: frost.sign(keys[i], nonces[i], commitments, msg) for i in chosen}
    return frost.aggregate(commitments, msg, shares[0].group_public_key, sig_shares,
                           {i: frost.public_key_share(vss, i) for i in chosen})


@pytest.fixture
async def harness(anvil: AnvilNode) -> AsyncIterator[Any]:
    w3 = connect(anvil.rpc_url)
    try:
        address = await deploy_contract(w3, anvil.accounts[0][1], "FrostVerifierHarness")
        yield w3.eth.contract(address=address, abi=load_artifact("FrostVerifierHarness")["abi"])
    finally:
        await disconnect(w3)


async def test_challenge_matches_the_rfc_hash(harness: Any) -> None:
    shares, vss = _usable_group(4, 3)
    msg = secrets.token_bytes(32)
    sig = _sign(shares, vss, [1, 2, 4], msg)
    pk = shares[0].group_public_key
    rx, ry, _ = _sig_words(sig)
    onchain = await harness.functions.challenge(*_key_words(pk), msg, rx, ry).call()
    assert onchain == frost.compute_challenge(sig.r, pk, msg)


@pytest.mark.parametrize(("n", "t"), [(4, 2), (7, 5), (10, 4)])
async def test_accepts_signatures_from_any_threshold_subset(harness: Any, n: int, t: int) -> None:
    shares, vss = _usable_group(n, t)
    for _ in range(3):
        chosen = sorted(secrets.SystemRandom().sample(range(1, n + 1), t))
        msg = secrets.token_bytes(32)
        sig = _sign(shares, vss, chosen, msg)
        assert frost.verify(sig, shares[0].group_public_key, msg)
        assert await harness.functions.verify(*_key_words(shares[0].group_public_key), msg, *_sig_words(sig)).call()


async def test_accepts_a_key_made_by_the_distributed_key_generation(harness: Any) -> None:
    n, t, context = 4, 3, b"test run"
    while True:
        secrets_, packages = {}, {}
        for i in range(1, n + 1):
            secrets_[i], packages[i] = dkg.round1(i, n, t, context)
        sent = {i: dkg.round2_shares(secrets_[i]) for i in packages}
        keys = {}
        for me in packages:
            keys[me], group = dkg.finish(secrets_[me], packages, {i: sent[i][me] for i in packages if i != me}, packages)
        if _key_words(group.group_public_key)[0] < ORDER:
            break
    chosen = [1, 3, 4]
    msg = secrets.token_bytes(32)
    nonces = {i: frost.commit(keys[i].secret) for i in chosen}
    commitments = [nonces[i].commitment(i) for i in chosen]
    sig = frost.aggregate(commitments, msg, group.group_public_key,
                          {i: frost.sign(keys[i], nonces[i], commitments, msg) for i in chosen},
                          {i: group.verification_share(i) for i in chosen})
    assert await harness.functions.verify(*_key_words(group.group_public_key), msg, *_sig_words(sig)).call()


async def test_rejects_every_alteration(harness: Any) -> None:
    shares, vss = _usable_group(4, 3)
    pk = _key_words(shares[0].group_public_key)
    msg = secrets.token_bytes(32)
    rx, ry, z = _sig_words(_sign(shares, vss, [1, 2, 3], msg))
    verify = harness.functions.verify
    assert await verify(*pk, msg, rx, ry, z).call()
    other_msg = bytes([msg[0] ^ 1]) + msg[1:]
    assert not await verify(*pk, other_msg, rx, ry, z).call()
    assert not await verify(*pk, msg, rx, ry, (z + 1) % ORDER).call()
    assert not await verify(*pk, msg, rx, ry, 0).call()
    assert not await verify(*pk, msg, rx, ry, ORDER).call()
    p = 2**256 - 2**32 - 977
    assert not await verify(*pk, msg, rx, p - ry, z).call()  # -R: same x, other point
    assert not await verify(*pk, msg, rx, ry + 1, z).call()  # not on the curve
    assert not await verify(pk[0], 1 - pk[1], msg, rx, ry, z).call()  # -PK
    other, _ = _usable_group(4, 3)
    assert not await verify(*_key_words(other[0].group_public_key), msg, rx, ry, z).call()


async def test_gas_does_not_grow_with_the_committee(harness: Any, anvil: AnvilNode) -> None:
    used = []
    for n, t in [(4, 2), (31, 11)]:
        shares, vss = _usable_group(n, t)
        msg = secrets.token_bytes(32)
        sig = _sign(shares, vss, list(range(1, t + 1)), msg)
        call = harness.functions.verifyInTransaction(*_key_words(shares[0].group_public_key), msg, *_sig_words(sig))
        receipt = await send_call(harness.w3, anvil.accounts[0][1], call, "verify")
        logs = harness.events.Verified().process_receipt(receipt)
        assert logs[0]["args"]["ok"] is True
        used.append(receipt["gasUsed"])
    # Same calldata shape and one ecrecover either way; only zero bytes in the words differ.
    assert abs(used[0] - used[1]) < 200
