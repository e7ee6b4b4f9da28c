"""A committee under scheme 0x0002 for the in-process network: keys from an in-process key
generation (relayer/crypto/dkg.py), a config digest naming 0x0002."""

from __future__ import annotations

from relayer.chain.codec import address_of
from relayer.crypto import frost
from relayer.protocol.committee import Committee, OffchainConfig
from relayer.protocol.engine import ThresholdKeyShare
from relayer.protocol.signer import frost_identifier
from relayer.protocol.threshold import schnorr_point
from tests.relayer.chain.test_threshold_oracle import GroupOutcome, run_dkg

THRESHOLD_DIGEST = bytes.fromhex("0002" + "cd" * 30)
OFFCHAIN = OffchainConfig(round_interval_ms=100, progress_timeout_ms=600, grace_ms=5, transmit_stage_ms=0,
                          share_timeout_ms=20)


def key_shares(outcome: GroupOutcome) -> dict[int, ThresholdKeyShare]:
    verification = {m: outcome.group.verification_share(frost_identifier(m)) for m in outcome.shares}
    return {m: ThresholdKeyShare(share, verification) for m, share in outcome.shares.items()}


def threshold_committee(keys: list[bytes], f: int, t: int, digest: bytes = THRESHOLD_DIGEST) -> Committee:
    signers = tuple(address_of(k) for k in keys)
    return Committee(config_digest=digest, signers=signers, transmitters=signers, f=f, threshold=t,
                     offchain=OFFCHAIN)


def group_of(n: int, t: int) -> tuple[GroupOutcome, dict[int, ThresholdKeyShare]]:
    outcome = run_dkg(n, t, f"protocol test committee {n}/{t}".encode())
    return outcome, key_shares(outcome)


def verifies(outcome: GroupOutcome, schnorr: bytes, report_digest: bytes) -> bool:
    return frost.verify(schnorr_point(schnorr), outcome.key, report_digest)
