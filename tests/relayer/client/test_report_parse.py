"""A node's JSON is parsed strictly into what the chain will judge (relayer/client/report.py),
and the errors' names map to the contract's (relayer/client/errors.py). No sockets."""

from __future__ import annotations

from typing import Any

import pytest

from relayer.client import (
    BelowThreshold,
    FeedRejected,
    MalformedReport,
    NodeFailure,
    NodesUnavailable,
    ReplacedCommittee,
    ReportRejected,
    parse_report,
)
from relayer.client.errors import rejection

pytestmark = pytest.mark.unit

DIGEST = "0x0001" + "ab" * 30
SIG = "0x" + "11" * 65


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"chain_id": 31337, "oracle": "0x" + "ee" * 20, "config_digest": DIGEST, "epoch": 2,
                            "round": 7, "updates": "0x" + "00" * 32,
                            "signatures": [{"index": 3, "signature": SIG}, {"index": 1, "signature": SIG}],
                            "feeds": [{"feed_index": 0, "feed_id": "BTC-USD"}]}
    base.update(changes)
    return base


def test_a_report_parses_into_the_signed_fields_and_the_nodes_claims() -> None:
    report = parse_report(body(), source="http://node")
    assert report.config_digest == bytes.fromhex(DIGEST[2:]) and (report.epoch, report.round) == (2, 7)
    assert [i for i, _ in report.signatures] == [1, 3] and report.signer_bitmask == 0b1010
    assert report.chain_id == 31337 and report.feed_names == {0: "BTC-USD"} and report.source == "http://node"


@pytest.mark.parametrize(("changes", "match"), [
    ({"config_digest": "0x1234"}, "config_digest must be 32 bytes"),
    ({"config_digest": "ab" * 32}, "0x-prefixed"),
    ({"epoch": True}, "epoch must be an integer"),
    ({"round": 1 << 32}, "round must be an integer"),
    ({"updates": "0xzz"}, "updates is not hex"),
    ({"signatures": [{"index": 1, "signature": SIG}, {"index": 1, "signature": SIG}]}, "appears twice"),
    ({"signatures": [{"index": 256, "signature": SIG}]}, "index must be"),
    ({"signatures": [{"index": 0, "signature": "0x" + "11" * 64}]}, "must be 65 bytes"),
    ({"signatures": "0x"}, "signatures must be a list"),
    ({"chain_id": "31337"}, "chain_id must be an integer"),
])
def test_malformed_reports_are_refused_with_what_was_expected(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(MalformedReport, match=match):
        parse_report(body(**changes))
    with pytest.raises(MalformedReport, match="JSON object"):
        parse_report([body()])


def test_contract_error_names_map_to_the_causes() -> None:
    assert isinstance(rejection("ConfigDigestMismatch", "x"), ReplacedCommittee)
    assert isinstance(rejection("InsufficientSignatures", "x"), BelowThreshold)
    feed = rejection("ObservationExpired", "x", (4, 100, 3600))
    assert isinstance(feed, FeedRejected) and feed.feed_index == 4 and feed.reason == "ObservationExpired"
    other = rejection("StaleRound", "x")
    assert type(other) is ReportRejected and other.reason == "StaleRound"


def test_every_failed_url_is_named() -> None:
    error = NodesUnavailable("latest report", [NodeFailure("http://a", "refused"), NodeFailure("http://b", "HTTP 500")])
    assert "http://a: refused" in str(error) and "http://b: HTTP 500" in str(error)
    assert [f.url for f in error.failures] == ["http://a", "http://b"]


def test_a_threshold_report_parses_its_one_schnorr_signature_and_refuses_mixed_forms() -> None:
    schnorr = "0x" + "22" * 96
    report = parse_report(body(config_digest="0x0002" + "ab" * 30, signatures=[], schnorr_signature=schnorr))
    assert report.scheme == 2 and report.schnorr == bytes.fromhex("22" * 96) and report.signatures == ()
    assert report.packed().signer_bitmask == 0 and report.packed().signatures == report.schnorr
    with pytest.raises(MalformedReport, match="not both"):
        parse_report(body(schnorr_signature=schnorr))
    with pytest.raises(MalformedReport, match="96 bytes"):
        parse_report(body(signatures=[], schnorr_signature="0x" + "22" * 95))
    assert parse_report(body(schnorr_signature=None)).schnorr is None
