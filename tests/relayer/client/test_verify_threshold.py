"""Scheme 0x0002 in the SDK: a FROST-signed report gets the same verdict from `check_report`
as from `QuorumOracle.verifyReport` at the same block, refusals included (wrong key, another
scheme's digest or signatures, a bad z, R off the curve or at "infinity", tampering, another
chain), and the SDK reads the scheme and the group key from the chain itself."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from web3 import AsyncWeb3

from relayer.chain.anvil import AnvilNode
from relayer.chain.codec import ReportDomain, sign_digest
from relayer.client import (
    FeedRejected,
    MalformedSignatures,
    OraclePaused,
    ReplacedCommittee,
    ReportRejected,
    ReportVerifier,
    SignedReport,
    TamperedReport,
    VerifiedReport,
    WrongChain,
    parse_report,
)
from relayer.cli import main
from relayer.client.verify import FIELD_P
from relayer.crypto.frost import ORDER
from relayer.reports import ReportContext, report_json
from tests.relayer.chain.conftest import BTC_USD, ETH_USD, Deployment, deploy, signer_key
from tests.relayer.chain.test_threshold_oracle import GroupOutcome, install, run_dkg
from tests.relayer.client.test_pull_from_api import serving
from tests.relayer.client.test_verify_chain import same_verdict

pytestmark = pytest.mark.integration

ETH = 3_000 * 10**8
BTC = 60_000 * 10**8
SIGNING_SET = [0, 1, 3]


@pytest.fixture
async def frost_oracle(anvil: AnvilNode, w3: AsyncWeb3) -> tuple[Deployment, GroupOutcome]:
    """n=4, f=1, threshold=3, with a group key its members made installed (scheme 0x0002)."""
    d = await deploy(anvil, w3, n=4, f=1, threshold=3)
    outcome = run_dkg(4, 3, b"sdk committee 4/3")
    await install(d, outcome, [0, 1, 2])
    return d, outcome


def frost_signed(d: Deployment, outcome: GroupOutcome, epoch: int, round: int, updates: bytes, *,
                 domain: ReportDomain | None = None, digest: bytes | None = None) -> SignedReport:
    config_digest = digest or d.config.config_digest
    report_digest = (domain or d.domain).report_digest(config_digest, epoch, round, updates)
    packed = outcome.sign(SIGNING_SET, report_digest, 3)
    claimed = domain or d.domain
    return SignedReport(config_digest=config_digest, epoch=epoch, round=round, updates=updates, signatures=(),
                        schnorr=packed.signatures, chain_id=claimed.chain_id, oracle=claimed.verifying_contract,
                        feed_names={0: ETH_USD, 1: BTC_USD})


def with_signature(report: SignedReport, rx: int, ry: int, z: int) -> SignedReport:
    return replace(report, schnorr=b"".join(v.to_bytes(32, "big") for v in (rx, ry, z)))


def parts(report: SignedReport) -> tuple[int, int, int]:
    sig = report.schnorr
    assert sig is not None
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), int.from_bytes(sig[64:], "big")


async def test_a_frost_report_verifies_with_the_group_key_read_from_the_chain(
    frost_oracle: tuple[Deployment, GroupOutcome],
) -> None:
    d, outcome = frost_oracle
    now = await d.now()
    report = frost_signed(d, outcome, 1, 1, d.updates(now - 2, (0, ETH), (1, BTC + 12_345_678)))
    assert report.scheme == 2
    verified = await same_verdict(d, report)
    assert isinstance(verified, VerifiedReport)
    assert str(verified.by_feed()[BTC_USD].value) == "60000.12345678" and verified.signers == ()
    state = await ReportVerifier(d.client).chain_state(report)
    assert state.group_key == await d.client.group_key() and state.config_digest[:2] == b"\x00\x02"

    # As the reports API serves it, and back: the same verdict.
    served = report_json(ReportContext(d.anvil.chain_id, d.client.address), report.config_digest, 1, 1,
                         report.updates, (), None, schnorr=report.schnorr)
    assert served["scheme"] == 2 and served["signatures"] == [] and served["signer_bitmask"] == 0
    parsed = parse_report(served)
    assert parsed.schnorr == report.schnorr
    assert isinstance(await same_verdict(d, parsed), VerifiedReport)


async def test_each_threshold_refusal_matches_the_contract(frost_oracle: tuple[Deployment, GroupOutcome]) -> None:
    d, outcome = frost_oracle
    now = await d.now()
    updates = d.updates(now, (0, ETH))
    good = frost_signed(d, outcome, 1, 1, updates)
    rx, ry, z = parts(good)
    other_group = run_dkg(4, 3, b"another committee")
    digest = d.config.config_digest
    ecdsa_digest = d.domain.report_digest(digest, 1, 1, updates)
    chain_id = d.anvil.chain_id
    cases: list[tuple[str, SignedReport, type[ReportRejected], str]] = [
        ("tampered updates", replace(good, updates=d.updates(now, (0, ETH + 1))), TamperedReport,
         "InvalidSchnorrSignature"),
        ("another round", replace(good, round=2), TamperedReport, "InvalidSchnorrSignature"),
        ("another group's key", frost_signed(d, other_group, 1, 1, updates), TamperedReport,
         "InvalidSchnorrSignature"),
        ("z + 1", with_signature(good, rx, ry, (z + 1) % ORDER or 1), TamperedReport, "InvalidSchnorrSignature"),
        ("z = 0", with_signature(good, rx, ry, 0), TamperedReport, "InvalidSchnorrSignature"),
        ("z = order", with_signature(good, rx, ry, ORDER), TamperedReport, "InvalidSchnorrSignature"),
        ("z + order", with_signature(good, rx, ry, z + ORDER) if z + ORDER < 1 << 256 else
         with_signature(good, rx, ry, ORDER + 1), TamperedReport, "InvalidSchnorrSignature"),
        ("R at infinity (0, 0)", with_signature(good, 0, 0, z), TamperedReport, "InvalidSchnorrSignature"),
        ("R off the curve", with_signature(good, rx, (ry + 1) % FIELD_P, z), TamperedReport,
         "InvalidSchnorrSignature"),
        ("-R", with_signature(good, rx, FIELD_P - ry, z), TamperedReport, "InvalidSchnorrSignature"),
        ("R's x past the field", with_signature(good, rx + FIELD_P if rx + FIELD_P < 1 << 256 else FIELD_P, ry, z),
         TamperedReport, "InvalidSchnorrSignature"),
        ("another chain", frost_signed(d, outcome, 1, 1, updates, domain=ReportDomain(chain_id + 1, d.client.address)),
         WrongChain, "InvalidSchnorrSignature"),
        ("another oracle", frost_signed(d, outcome, 1, 1, updates, domain=ReportDomain(chain_id, "0x" + "ab" * 20)),
         WrongChain, "InvalidSchnorrSignature"),
        ("scheme 0x0001's prefix", frost_signed(d, outcome, 1, 1, updates, digest=b"\x00\x01" + digest[2:]),
         ReplacedCommittee, "ConfigDigestMismatch"),
        ("members' ECDSA signatures", replace(good, schnorr=None, signatures=tuple(
            (i, sign_digest(signer_key(i), ecdsa_digest)) for i in (0, 1, 2))), MalformedSignatures,
         "MalformedSchnorrSignature"),
        ("a bitmask beside R, z", replace(good, signatures=((0, sign_digest(signer_key(0), ecdsa_digest)),)),
         MalformedSignatures, "MalformedSchnorrSignature"),
        ("64 bytes", replace(good, schnorr=good.schnorr[:64] if good.schnorr else None), MalformedSignatures,
         "MalformedSchnorrSignature"),
        ("no signature", replace(good, schnorr=None), MalformedSignatures, "MalformedSchnorrSignature"),
        ("expired", frost_signed(d, outcome, 1, 1, d.updates(now - 3_601, (0, ETH))), FeedRejected,
         "ObservationExpired"),
        ("out of bounds", frost_signed(d, outcome, 1, 1, d.updates(now, (0, 0))), FeedRejected, "ValueOutOfBounds"),
    ]
    for name, report, kind, reason in cases:
        verdict = await same_verdict(d, report)
        assert isinstance(verdict, kind), (name, verdict)
        assert verdict.reason == reason, name
    assert not isinstance(await same_verdict(d, cases[0][1]), WrongChain)  # tampering is not another chain


async def test_random_flips_of_a_frost_report_get_the_contracts_verdict(
    frost_oracle: tuple[Deployment, GroupOutcome],
) -> None:
    d, outcome = frost_oracle
    rng = random.Random(2)
    now = await d.now()
    base = frost_signed(d, outcome, 2, 5, d.updates(now - 1, (0, ETH), (1, BTC)))
    assert base.schnorr is not None
    reasons = set()
    for _ in range(16):
        field = rng.choice(("schnorr", "updates", "config_digest"))
        data = bytearray(getattr(base, field))
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        verdict = await same_verdict(d, replace(base, **{field: bytes(data)}))
        reasons.add(verdict.reason if isinstance(verdict, ReportRejected) else "accepted")
    assert "InvalidSchnorrSignature" in reasons, reasons


async def test_a_pause_a_return_to_ecdsa_and_a_submit_are_judged_as_the_contract_does(
    frost_oracle: tuple[Deployment, GroupOutcome],
) -> None:
    d, outcome = frost_oracle
    now = await d.now()
    report = frost_signed(d, outcome, 1, 1, d.updates(now - 1, (0, ETH), (1, BTC)))
    sender = d.anvil.accounts[27]
    verified, receipt = await ReportVerifier(d.client).submit(report, sender[1])
    assert receipt.succeeded and [u.feed_index for u in receipt.updated] == [0, 1]
    assert (await d.client.latest_feed(1)).value == BTC == verified.values[1].raw_value

    await d.client.pause(d.owner_key)
    assert isinstance(await same_verdict(d, report), OraclePaused)
    await d.client.unpause(d.owner_key)
    old = d.config
    d.config = await d.client.set_config(d.owner_key, old.signers, old.transmitters, 1, 3, b"back to ecdsa")
    refused = await same_verdict(d, report)
    assert isinstance(refused, ReplacedCommittee) and refused.error_args[1] == old.config_digest
    # A Schnorr signature under the ECDSA committee's own digest: the wrong form for it.
    under_ecdsa = frost_signed(d, outcome, 1, 2, d.updates(now, (0, ETH)))
    assert under_ecdsa.config_digest[:2] == b"\x00\x01"
    malformed = await same_verdict(d, under_ecdsa)
    assert isinstance(malformed, MalformedSignatures) and malformed.reason == "SignatureCountMismatch"


async def test_relayer_verify_takes_a_frost_report_from_a_nodes_api(
    frost_oracle: tuple[Deployment, GroupOutcome], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The node's store keeps (0, R || z); the API serves it; `relayer verify` reads the scheme
    and the group key from the chain and verifies it, or refuses a tampered one by name."""
    d, outcome = frost_oracle
    now = await d.now()
    async with serving(d, tmp_path) as node:
        store, url = node.store, node.url
        digest = "0x" + d.config.config_digest.hex()
        good = frost_signed(d, outcome, 1, 1, d.updates(now, (0, ETH), (1, BTC)))
        assert good.schnorr is not None
        assert store.record_attested(digest, 1, 1, good.updates, [(0, good.schnorr)], None, None)
        # Changed after signing: the one signature no longer holds.
        assert store.record_attested(digest, 1, 2, d.updates(now, (0, ETH * 2)), [(0, good.schnorr)], None, None)
        target = ["--node", url, "--rpc-url", d.anvil.rpc_url, "--oracle", d.client.address]

        assert await asyncio.to_thread(main, ["verify", *target, "--epoch", "1", "--round", "1"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"VERIFIED epoch 1 round 1 from {url}") and "one threshold signature" in out
        assert "60000.00000000" in out
        assert await asyncio.to_thread(main, ["verify", *target, "--json", "--epoch", "1", "--round", "1"]) == 0
        verified = json.loads(capsys.readouterr().out)
        assert verified["verified"] is True and verified["scheme"] == 2 and verified["signers"] == []

        assert await asyncio.to_thread(main, ["verify", *target]) == 2
        assert capsys.readouterr().out.startswith("REFUSED InvalidSchnorrSignature (TamperedReport): epoch 1 round 2")
