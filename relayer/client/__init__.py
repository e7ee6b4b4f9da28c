"""The subscriber SDK: fetch attested reports from nodes, verify them against the on-chain
committee exactly as ``QuorumOracle.verifyReport`` would, decode their values, submit one.

    async with ReportFetcher(["http://node-a:8788", "http://node-b:8788"]) as nodes, \\
            ReportVerifier.connect(rpc_url, oracle_address) as verifier:
        report = await nodes.latest()               # failover across the URLs
        verified = await verifier.verify(report)    # or a typed ReportRejected
        verified.by_feed()["BTC-USD"].value         # Decimal, scaled by the feed's decimals
        await verifier.submit(report, sender_key)   # the pull path, from any account
        # or the newest report any node has, with a MarginVault action, in one transaction:
        await act_with_freshest_report(nodes, verifier, vault, key, vault.encode_action("open", market, size))

docs/subscribers.md is the guide; errors are in :mod:`relayer.client.errors`.
"""

from relayer.client.errors import (
    ActionRefused,
    BelowThreshold,
    ChainUnavailable,
    ClientError,
    FeedRejected,
    MalformedReport,
    MalformedSignatures,
    NodeFailure,
    NodesUnavailable,
    OraclePaused,
    ReplacedCommittee,
    ReportNotFound,
    ReportRejected,
    TamperedReport,
    UnknownSigner,
    UnsupportedScheme,
    WrongChain,
)
from relayer.client.fetch import ReportFetcher
from relayer.client.report import SignedReport, VerifiedReport, VerifiedValue, parse_report
from relayer.client.vault import VaultActionReceipt, act_with_freshest_report
from relayer.client.verify import ChainState, OnchainFeed, ReportVerifier, check_report, read_chain

__all__ = [
    "ActionRefused",
    "BelowThreshold",
    "ChainState",
    "ChainUnavailable",
    "ClientError",
    "FeedRejected",
    "MalformedReport",
    "MalformedSignatures",
    "NodeFailure",
    "NodesUnavailable",
    "OnchainFeed",
    "OraclePaused",
    "ReplacedCommittee",
    "ReportFetcher",
    "ReportNotFound",
    "ReportRejected",
    "ReportVerifier",
    "SignedReport",
    "TamperedReport",
    "UnknownSigner",
    "UnsupportedScheme",
    "VaultActionReceipt",
    "VerifiedReport",
    "VerifiedValue",
    "WrongChain",
    "act_with_freshest_report",
    "check_report",
    "parse_report",
    "read_chain",
]
