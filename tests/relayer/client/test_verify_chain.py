"""The SDK's verdict is the contract's: for the same report at the same block, `check_report`
accepts with the values `verifyReport` returns, or refuses with the error it reverts with,
for every refusal kind; and a cause the contract cannot tell apart is named (wrong chain)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from relayer.chain.codec import FeedUpdate, ReportDomain, encode_updates, feed_id_bytes, sign_digest
from relayer.chain.errors import ReportRefused
from relayer.client import (
    BelowThreshold,
    FeedRejected,
    OraclePaused,
    ReplacedCommittee,
    ReportRejected,
    ReportVerifier,
    SignedReport,
    TamperedReport,
    UnknownSigner,
    VerifiedReport,
    WrongChain,
)

from tests.relayer.chain.conftest import BTC_USD, ETH_USD, Deployment, signer_key

pytestmark = pytest.mark.integration

ETH = 3_000 * 10**8
BTC = 60_000 * 10**8


def signed(oracle: Deployment, epoch: int, round: int, updates: bytes, signers: tuple[int, ...] = (0, 1, 2), *,
           domain: ReportDomain | None = None, digest: bytes | None = None, chain_id: int | None = None,
           oracle_address: str | None = None) -> SignedReport:
    config_digest = digest or oracle.config.config_digest
    report_digest = (domain or oracle.domain).report_digest(config_digest, epoch, round, updates)
    return SignedReport(
        config_digest=config_digest, epoch=epoch, round=round, updates=updates,
        signatures=tuple((i, sign_digest(signer_key(i), report_digest)) for i in signers),
        chain_id=chain_id if chain_id is not None else oracle.anvil.chain_id,
        oracle=oracle_address or oracle.client.address, feed_names={0: ETH_USD, 1: BTC_USD},
    )


async def both(oracle: Deployment, report: SignedReport) -> tuple[VerifiedReport | ReportRejected, object]:
    """The SDK's and the contract's verdicts, both at the latest block."""
    verifier = ReportVerifier(oracle.client)
    block = await oracle.client.rpc.block_number()
    try:
        ours: VerifiedReport | ReportRejected = await verifier.verify(report, block=block)
    except ReportRejected as exc:
        ours = exc
    try:
        theirs: object = await oracle.client.verify_report(
            report.config_digest, report.epoch, report.round, report.updates, report.packed(), block=hex(block))
    except ReportRefused as exc:
        theirs = exc
    return ours, theirs


async def same_verdict(oracle: Deployment, report: SignedReport) -> VerifiedReport | ReportRejected:
    ours, theirs = await both(oracle, report)
    if isinstance(ours, ReportRejected):
        assert isinstance(theirs, ReportRefused), f"the SDK refused ({ours.reason}: {ours}), the contract accepted"
        assert ours.reason == theirs.reason, (ours, theirs)
    else:
        assert not isinstance(theirs, ReportRefused), f"the SDK accepted, the contract refused {theirs.reason}"
        assert isinstance(theirs, list)
        assert [(v.feed_index, v.raw_value, v.observed_at) for v in ours.values] == \
            [(v.feed_index, v.value, v.observed_at) for v in theirs]
    return ours


async def test_a_valid_report_verifies_with_names_and_decimals(oracle: Deployment) -> None:
    now = await oracle.now()
    report = signed(oracle, 1, 1, oracle.updates(now - 3, (0, ETH), (1, BTC + 12_345_678)))
    verified = await same_verdict(oracle, report)
    assert isinstance(verified, VerifiedReport)
    by_feed = verified.by_feed()
    assert set(by_feed) == {ETH_USD, BTC_USD}
    assert str(by_feed[BTC_USD].value) == "60000.12345678" and by_feed[BTC_USD].decimals == 8
    assert by_feed[ETH_USD].feed_key == feed_id_bytes(ETH_USD) and by_feed[ETH_USD].observed_at == now - 3
    assert verified.signers == tuple(oracle.config.signers[:3])

    # A node's wrong name for a feed is not believed: the value stays, the name goes.
    lying = replace(report, feed_names={0: "BTC/USD", 1: BTC_USD})
    renamed = await same_verdict(oracle, lying)
    assert isinstance(renamed, VerifiedReport)
    assert [v.feed_id for v in renamed.values] == [None, BTC_USD]


async def test_each_refusal_matches_the_contract_and_names_its_cause(oracle: Deployment) -> None:
    now = await oracle.now()
    good = oracle.updates(now, (0, ETH))
    chain_id = oracle.anvil.chain_id
    cases: list[tuple[str, SignedReport, type[ReportRejected], str]] = [
        ("tampered", replace(signed(oracle, 1, 1, good), updates=oracle.updates(now, (0, ETH + 1))),
         TamperedReport, "SignerMismatch"),
        ("another epoch", replace(signed(oracle, 1, 1, good), epoch=2),
         TamperedReport, "SignerMismatch"),
        ("below threshold", signed(oracle, 1, 1, good, (0, 1)), BelowThreshold, "InsufficientSignatures"),
        ("outside the committee", signed(oracle, 1, 1, good, (0, 1, 5)), UnknownSigner, "UnknownSigner"),
        ("another chain", signed(oracle, 1, 1, good, domain=ReportDomain(chain_id + 1, oracle.client.address),
                                 chain_id=chain_id + 1), WrongChain, "SignerMismatch"),
        ("another oracle", signed(oracle, 1, 1, good, domain=ReportDomain(chain_id, "0x" + "ab" * 20),
                                  oracle_address="0x" + "ab" * 20), WrongChain, "SignerMismatch"),
        ("another digest", signed(oracle, 1, 1, good, digest=b"\x00\x01" + b"\x77" * 30), ReplacedCommittee,
         "ConfigDigestMismatch"),
        ("out of bounds", signed(oracle, 1, 1, oracle.updates(now, (0, 0))), FeedRejected, "ValueOutOfBounds"),
        ("in the future", signed(oracle, 1, 1, oracle.updates(now + 61, (0, ETH))), FeedRejected,
         "ObservationInFuture"),
        ("expired", signed(oracle, 1, 1, oracle.updates(now - 3_601, (0, ETH))), FeedRejected, "ObservationExpired"),
        ("unknown feed", signed(oracle, 1, 1, oracle.updates(now, (0, ETH), (7, ETH))), FeedRejected, "UnknownFeed"),
        ("empty", signed(oracle, 1, 1, b""), FeedRejected, "InvalidUpdates"),
        ("descending", signed(oracle, 1, 1, oracle.updates(now, (1, BTC)) + oracle.updates(now, (0, ETH))),
         FeedRejected, "InvalidUpdates"),
    ]
    for name, report, kind, reason in cases:
        verdict = await same_verdict(oracle, report)
        assert isinstance(verdict, kind), (name, verdict)
        assert verdict.reason == reason, name
    # Tampering is not mistaken for another chain, and the edges of the time checks hold.
    tampered = await same_verdict(oracle, cases[0][1])
    assert not isinstance(tampered, WrongChain)
    assert isinstance(await same_verdict(oracle, signed(oracle, 1, 1, oracle.updates(now + 60, (0, ETH)))),
                      VerifiedReport)
    assert isinstance(await same_verdict(oracle, signed(oracle, 1, 1, oracle.updates(now - 3_600, (0, ETH)))),
                      VerifiedReport)


async def test_a_replaced_committee_and_a_pause_are_refused_as_the_contract_does(oracle: Deployment) -> None:
    now = await oracle.now()
    report = signed(oracle, 1, 1, oracle.updates(now, (0, ETH)))
    assert isinstance(await same_verdict(oracle, report), VerifiedReport)
    old = oracle.config
    await oracle.client.set_config(oracle.owner_key, old.signers, old.transmitters, 1, 3, b"offchain-v2")
    refused = await same_verdict(oracle, report)
    assert isinstance(refused, ReplacedCommittee)
    assert refused.error_args[1] == old.config_digest
    await oracle.client.pause(oracle.owner_key)
    assert isinstance(await same_verdict(oracle, report), OraclePaused)


async def test_random_changes_to_a_report_get_the_contracts_verdict(oracle: Deployment) -> None:
    """Byte flips, dropped and swapped signatures, other rounds: the SDK and the contract agree."""
    rng = random.Random(12)
    now = await oracle.now()
    base = signed(oracle, 3, 9, oracle.updates(now - 1, (0, ETH), (1, BTC)), (0, 1, 2, 3))
    reasons = set()
    for _ in range(24):
        change = rng.choice(("updates", "signature", "drop", "round", "digest"))
        if change == "updates":
            data = bytearray(base.updates)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            report = replace(base, updates=bytes(data))
        elif change == "signature":
            k = rng.randrange(len(base.signatures))
            index, sig = base.signatures[k]
            flipped = bytearray(sig)
            flipped[rng.randrange(64)] ^= 1 << rng.randrange(8)
            sigs = list(base.signatures)
            sigs[k] = (index, bytes(flipped))
            report = replace(base, signatures=tuple(sigs))
        elif change == "drop":
            report = replace(base, signatures=tuple(sorted(rng.sample(base.signatures, rng.randrange(1, 4)))))
        elif change == "round":
            report = replace(base, round=rng.randrange(1 << 32))
        else:
            digest = bytearray(base.config_digest)
            digest[rng.randrange(32)] ^= 1 << rng.randrange(8)
            report = replace(base, config_digest=bytes(digest))
        verdict = await same_verdict(oracle, report)
        reasons.add(verdict.reason if isinstance(verdict, ReportRejected) else "accepted")
    assert {"SignerMismatch", "ConfigDigestMismatch"} <= reasons, reasons


async def test_submit_stores_a_verified_report_and_refuses_a_tampered_one_before_gas(oracle: Deployment) -> None:
    now = await oracle.now()
    report = signed(oracle, 1, 1, oracle.updates(now - 2, (0, ETH), (1, BTC)))
    verifier = ReportVerifier(oracle.client)
    sender = oracle.anvil.accounts[28]
    verified, receipt = await verifier.submit(report, sender[1])
    assert receipt.succeeded and [u.feed_index for u in receipt.updated] == [0, 1]
    assert (await oracle.client.latest_feed(1)).value == BTC == verified.values[1].raw_value
    balance = int(oracle.anvil.rpc("eth_getBalance", [sender[0], "latest"]), 16)
    tampered = replace(report, updates=oracle.updates(now, (0, ETH * 2)))
    with pytest.raises(TamperedReport):
        await verifier.submit(tampered, sender[1])
    assert int(oracle.anvil.rpc("eth_getBalance", [sender[0], "latest"]), 16) == balance
    assert (await oracle.client.latest_feed(0)).value == ETH
