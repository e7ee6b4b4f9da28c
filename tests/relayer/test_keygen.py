"""The key generation's phases between members, over an in-memory transport: an honest run
gives one key every member approves; a member sending a bad share, or nothing, is excluded
and the rest still agree on one key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relayer.chain.codec import address_of
from relayer.crypto import dkg, frost
from relayer.keygen import KeygenError, KeygenInbox, KeyGeneration, NextConfig, approval, check_approvals

pytestmark = pytest.mark.unit

KEYS = [bytes([i]) * 32 for i in range(1, 6)]


def next_config(keys: list[bytes], threshold: int) -> NextConfig:
    signers = tuple(address_of(k) for k in keys)
    return NextConfig(chain_id=31337, oracle="0x" + "ab" * 20, config_count=2, signers=signers,
                      transmitters=signers, f=1, threshold=threshold, offchain_config=b"offchain")


class LoopbackNet:
    """Members' inboxes; a send is delivered on the next loop turn, as the host's bridge does."""

    def __init__(self, config: NextConfig) -> None:
        self.inboxes = {a.lower(): KeygenInbox(config) for a in config.signers}

    def transport(self, sender: str) -> Any:
        net = self

        class _Send:
            def send(self, address: str, data: bytes) -> None:
                asyncio.get_running_loop().call_soon(net.inboxes[address.lower()].deliver, sender, data)

        return _Send()


async def run_all(config: NextConfig, *, outgoing: dict[int, Any] | None = None, absent: frozenset[int] = frozenset(),
                  timeout: float = 5.0) -> dict[int, dkg.DkgOutcome | BaseException]:
    net = LoopbackNet(config)
    runs = {m: KeyGeneration(config, m, net.transport(config.signers[m]), net.inboxes[config.signers[m].lower()],
                             phase_timeout=timeout, outgoing=(outgoing or {}).get(m))
            for m in range(config.n) if m not in absent}
    results = await asyncio.gather(*(r.run() for r in runs.values()), return_exceptions=True)
    return dict(zip(runs, results, strict=True))


def _one_key(outcomes: list[dkg.DkgOutcome]) -> bytes:
    keys = {frost.serialize_element(o.group.group_public_key) for o in outcomes}
    assert len(keys) == 1
    return keys.pop()


async def test_an_honest_run_gives_one_key_and_approvals_the_owner_can_install() -> None:
    config = next_config(KEYS[:4], 3)
    results = await run_all(config)
    outcomes = [r for r in results.values() if isinstance(r, dkg.DkgOutcome)]
    assert len(outcomes) == 4
    _one_key(outcomes)
    approvals = [approval(KEYS[m], config, results[m]) for m in range(4)]  # type: ignore[arg-type]
    key, packed = check_approvals(config, approvals[1:])
    assert len(packed) == 3 * 64
    assert key.transcript_hash == outcomes[0].transcript_hash
    with pytest.raises(KeygenError, match="threshold"):
        check_approvals(config, approvals[:2])
    with pytest.raises(KeygenError, match="twice|two approvals"):
        check_approvals(config, [approvals[0], approvals[0], approvals[1]])
    forged = dict(approvals[2], signer=approvals[1]["signer"])
    with pytest.raises(KeygenError, match="signed by"):
        check_approvals(config, [approvals[0], forged, approvals[3]])
    later = NextConfig(**{**config.__dict__, "config_count": 3})
    with pytest.raises(KeygenError, match="config changed"):
        check_approvals(later, approvals)


async def test_a_member_sending_a_bad_share_is_excluded_and_the_rest_agree() -> None:
    config = next_config(KEYS[:5], 3)
    cheater, victim = 3, 1

    def bad_share(phase: str, receiver: int, body: Any) -> Any:
        if phase == "share" and receiver == victim + 1:
            return frost.serialize_scalar(int(body, 16) + 1).hex()
        if phase == "answers":  # it stands by the bad share in public
            return {k: frost.serialize_scalar(int(v, 16) + 1).hex() for k, v in body.items()}
        return body

    results = await run_all(config, outgoing={cheater: bad_share})
    assert isinstance(results[cheater], dkg.DkgError) and "excluded" in str(results[cheater])
    honest = [r for m, r in results.items() if m != cheater]
    assert all(isinstance(r, dkg.DkgOutcome) for r in honest)
    outcomes = [r for r in honest if isinstance(r, dkg.DkgOutcome)]
    _one_key(outcomes)
    assert all(set(o.excluded) == {cheater + 1} and o.group.qualified == (1, 2, 3, 5) for o in outcomes)
    approvals = [approval(KEYS[m], config, r) for m, r in results.items() if isinstance(r, dkg.DkgOutcome)]
    assert {a["qualified"] == [0, 1, 2, 4] for a in approvals} == {True}
    check_approvals(config, approvals)


async def test_a_member_that_never_speaks_is_excluded_at_the_round_1_deadline() -> None:
    config = next_config(KEYS[:4], 2)
    results = await run_all(config, absent=frozenset({2}), timeout=0.3)
    outcomes = [r for r in results.values() if isinstance(r, dkg.DkgOutcome)]
    assert len(outcomes) == 3
    _one_key(outcomes)
    assert all(set(o.excluded) == {3} and "no round-1 package" in o.excluded[3] for o in outcomes)


async def test_a_member_shown_another_commitment_stops_the_run() -> None:
    config = next_config(KEYS[:4], 3)
    other = dkg.round1(2, 4, 3, config.context())[1].encode().hex()

    def equivocate(phase: str, receiver: int, body: Any) -> Any:
        return other if phase == "round1" and receiver == 4 else body

    results = await run_all(config, outgoing={1: equivocate}, timeout=0.5)
    assert all(isinstance(r, dkg.TranscriptMismatch) for r in results.values())
    assert isinstance(results[0], dkg.TranscriptMismatch) and results[0].disagreeing == (4,)
