from __future__ import annotations

import secrets

import pytest

from relayer.chain.codec import address_of
from relayer.protocol.committee import Committee, OffchainConfig


@pytest.fixture
def keys() -> list[bytes]:
    return [secrets.token_bytes(32) for _ in range(4)]


@pytest.fixture
def committee(keys: list[bytes]) -> Committee:
    signers = tuple(address_of(k) for k in keys)
    return Committee(
        config_digest=bytes.fromhex("0001" + "ab" * 30),
        signers=signers,
        transmitters=signers,
        f=1,
        threshold=2,
        offchain=OffchainConfig(round_interval_ms=100, progress_timeout_ms=600, grace_ms=5, transmit_stage_ms=0),
    )
