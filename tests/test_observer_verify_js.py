"""scripts/report_verify.mjs (the js observer's checks) against reports signed in Python with
relayer.chain.codec: it computes the same EIP-712 digest, accepts a report the committee signed,
and refuses a tampered one, one signed off its committee index, one below threshold and one
under another config digest or chain. Runs `node`; no sockets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from relayer.chain.codec import FeedUpdate, ReportDomain, address_of, config_digest, encode_updates, sign_digest
from relayer.reports import ReportContext, report_json

pytestmark = [pytest.mark.unit, pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")]

REPO = Path(__file__).resolve().parents[1]
CHAIN_ID = 31337
ORACLE = "0x5FbDB2315678afecb367f032d7c642f2d78a47aE"

# Reads {chainId, oracle, committee, reports} on stdin; prints one verdict per report.
RUNNER = """
import { Verifier, reportDigest, unhex, hex } from './scripts/report_verify.mjs'
let input = ''
for await (const chunk of process.stdin) input += chunk
const { chainId, oracle, committee, reports } = JSON.parse(input)
if (committee.groupKey) committee.groupKey.x = BigInt(committee.groupKey.x)
const verifier = new Verifier(chainId, oracle.toLowerCase(), async () => committee)
const out = []
for (const r of reports) {
  const digest = hex(reportDigest(chainId, oracle.toLowerCase(), unhex(r.config_digest), r.epoch, r.round, unhex(r.updates)))
  try {
    const { signers } = await verifier.verify(r)
    out.push({ ok: true, digest, signers })
  } catch (err) {
    out.push({ ok: false, digest, error: err.message })
  }
}
console.log(JSON.stringify(out))
"""


def run_js(committee: dict[str, Any], reports: list[dict[str, Any]], chain_id: int = CHAIN_ID) -> list[dict[str, Any]]:
    stdin = json.dumps({"chainId": chain_id, "oracle": ORACLE, "committee": committee, "reports": reports})
    done = subprocess.run(["node", "--input-type=module", "-e", RUNNER], input=stdin, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_js_verifier_agrees_with_the_python_codec() -> None:
    keys = [os.urandom(32) for _ in range(4)]
    signers = [address_of(k) for k in keys]
    digest = config_digest(chain_id=CHAIN_ID, contract=ORACLE, config_count=1, signers=signers,
                           transmitters=signers, f=1, threshold=2, offchain_config=b"")
    committee = {"digest": "0x" + digest.hex(), "signers": [s.lower() for s in signers], "threshold": 2}
    updates = encode_updates([FeedUpdate(0, 1_700_000_000, 5, 6_400_000_000_000), FeedUpdate(3, 1_700_000_000, 4, 42)])
    domain = ReportDomain(CHAIN_ID, ORACLE)
    report_digest = domain.report_digest(digest, 7, 9, updates)
    ctx = ReportContext(chain_id=CHAIN_ID, oracle=ORACLE)

    def report(sigs: list[tuple[int, bytes]], *, cfg: bytes = digest, upd: bytes = updates) -> dict[str, Any]:
        return report_json(ctx, cfg, 7, 9, upd, sigs, None)

    good = report([(0, sign_digest(keys[0], report_digest)), (2, sign_digest(keys[2], report_digest))])
    tampered = dict(good, updates="0x" + updates[:-1].hex() + "2b", report_digest=None)
    off_index = report([(1, sign_digest(keys[0], report_digest)), (2, sign_digest(keys[2], report_digest))])
    below = report([(0, sign_digest(keys[0], report_digest))])
    duplicated = dict(good, signatures=[good["signatures"][0], {**good["signatures"][0]}])
    foreign_cfg = bytes([0, 1]) + os.urandom(30)
    foreign = report([(0, sign_digest(keys[0], domain.report_digest(foreign_cfg, 7, 9, updates))),
                      (2, sign_digest(keys[2], domain.report_digest(foreign_cfg, 7, 9, updates)))], cfg=foreign_cfg)

    verdicts = run_js(committee, [good, tampered, off_index, below, duplicated, foreign])

    assert verdicts[0] == {"ok": True, "digest": "0x" + report_digest.hex(),
                           "signers": [signers[0].lower(), signers[2].lower()]}
    assert not verdicts[1]["ok"] and "not committee member" in verdicts[1]["error"]
    assert not verdicts[2]["ok"] and "not committee member 1" in verdicts[2]["error"]
    assert not verdicts[3]["ok"] and "threshold 2" in verdicts[3]["error"]
    assert not verdicts[4]["ok"] and "1 distinct committee signers" in verdicts[4]["error"]
    assert not verdicts[5]["ok"] and "not the oracle's current" in verdicts[5]["error"]

    # On another chain the same signatures recover to strangers.
    (other_chain,) = run_js(committee, [dict(good, report_digest=None)], chain_id=CHAIN_ID + 1)
    assert not other_chain["ok"] and "not committee member" in other_chain["error"]


def test_js_verifier_checks_a_threshold_schnorr_report_as_the_contract_does() -> None:
    """Scheme 0x0002: one (R, z) under the group key; tampering, a bad z, R off the curve,
    another group's key and members' signatures in its place are refused."""
    from relayer.chain.codec import ThresholdKey, schnorr_signature
    from relayer.client.verify import FIELD_P
    from relayer.crypto import frost

    def group_sign(secret: int, digest: bytes) -> bytes:
        # A single-key Schnorr signature is a FROST signature of a group of one.
        nonce = int.from_bytes(os.urandom(32), "big") % frost.ORDER or 1
        r = frost.base_mul(nonce)
        c = frost.compute_challenge(r, frost.base_mul(secret), digest)
        return schnorr_signature(r, (nonce + c * secret) % frost.ORDER).signatures

    while True:  # the contract takes a group key whose x is below the order
        secret = int.from_bytes(os.urandom(32), "big") % frost.ORDER or 1
        if frost.base_mul(secret).point()[0] < frost.ORDER:
            break
    key = ThresholdKey.from_point(frost.base_mul(secret), bytes(32))
    members = [address_of(os.urandom(32)) for _ in range(4)]
    digest = config_digest(chain_id=CHAIN_ID, contract=ORACLE, config_count=2, signers=members, transmitters=members,
                           f=1, threshold=3, offchain_config=b"", group_key=key)
    committee = {"digest": "0x" + digest.hex(), "signers": [s.lower() for s in members], "threshold": 3,
                 "groupKey": {"x": str(key.x), "yParity": key.y_parity}}
    updates = encode_updates([FeedUpdate(0, 1_700_000_000, 5, 6_400_000_000_000)])
    report_digest = ReportDomain(CHAIN_ID, ORACLE).report_digest(digest, 7, 9, updates)
    ctx = ReportContext(chain_id=CHAIN_ID, oracle=ORACLE)
    schnorr = group_sign(secret, report_digest)
    rx, ry, z = (int.from_bytes(schnorr[k:k + 32], "big") for k in (0, 32, 64))

    def report(sig: bytes, upd: bytes = updates) -> dict[str, Any]:
        return report_json(ctx, digest, 7, 9, upd, [], None, schnorr=sig)

    def sig(x: int, y: int, s: int) -> bytes:
        return b"".join(v.to_bytes(32, "big") for v in (x, y, s))

    other_secret = (secret + 1) % frost.ORDER or 1
    verdicts = run_js(committee, [
        report(schnorr),
        dict(report(schnorr), updates="0x" + updates[:-1].hex() + "01", report_digest=None),
        report(sig(rx, ry, (z + 1) % frost.ORDER or 1)),
        report(sig(rx, ry, 0)),
        report(sig(rx, (ry + 1) % FIELD_P, z)),
        report(sig(0, 0, z)),
        report(group_sign(other_secret, report_digest)),
        dict(report(schnorr), schnorr_signature=None,
             signatures=[{"index": 0, "signature": "0x" + sign_digest(os.urandom(32), report_digest).hex()}]),
    ])
    assert verdicts[0] == {"ok": True, "digest": "0x" + report_digest.hex(), "signers": []}
    for name, verdict in zip(["tampered", "z + 1", "z = 0", "R off the curve", "R = (0, 0)", "another key"],
                             verdicts[1:7]):
        assert not verdict["ok"] and "does not verify under the oracle's group key" in verdict["error"], name
    assert not verdicts[7]["ok"] and "one Schnorr signature" in verdicts[7]["error"]
