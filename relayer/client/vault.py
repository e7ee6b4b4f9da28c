"""Bringing the freshest signed report into a ``MarginVault`` action, in one transaction.

The vault's ``submitAndCall`` submits the report to the oracle and runs the action as the
sender, so a trader need not wait for the committee's next push when the stored data is older
than the market allows. Here: fetch the newest report any node has, verify it against the chain
(a refused report never costs gas), then send it with the action. docs/subscribers.md has the
guide; the safety model is in docs/contracts.md ("MarginVault", "Pull path").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from relayer.chain.contract import load_artifact
from relayer.chain.errors import ChainError, VaultRevert
from relayer.chain.vault import MarginVaultClient
from relayer.client.errors import ActionRefused, ChainUnavailable, ReplacedCommittee, rejection
from relayer.client.fetch import ReportFetcher
from relayer.client.report import VerifiedReport
from relayer.client.verify import ReportVerifier


@dataclass(frozen=True, slots=True)
class VaultActionReceipt:
    """The report brought (as verified before sending) and the transaction's receipt."""

    report: VerifiedReport
    receipt: dict[str, Any]

    @property
    def gas_used(self) -> int:
        return int(self.receipt["gasUsed"])


@cache
def _report_errors() -> frozenset[str]:
    """The errors only the oracle raises: a revert by one of these names refused the report."""
    def names(artifact: str) -> set[str]:
        return {str(e["name"]) for e in load_artifact(artifact)["abi"] if e["type"] == "error"}
    return frozenset(names("QuorumOracle") - names("MarginVault"))


async def act_with_freshest_report(
    nodes: ReportFetcher, verifier: ReportVerifier, vault: MarginVaultClient, key: bytes, action: bytes,
) -> VaultActionReceipt:
    """Fetch the newest report the nodes have, verify it, and send it to ``vault`` with
    ``action`` (``vault.encode_action("open", market_id, size)``) from ``key``'s account.

    Raises, before any gas is spent: ``NodesUnavailable`` when no node serves a report; a
    ``ReportRejected`` subclass when the chain would refuse the report (the oracle's error name);
    :class:`ActionRefused` when the vault refuses the action; ``ChainUnavailable`` when the chain
    cannot be reached."""
    # The newest report that verifies: a node still serving a replaced committee's report
    # (a higher round under the old digest) is passed over for the next node's.
    candidates = await nodes.newest_first()
    for k, report in enumerate(candidates):
        try:
            verified = await verifier.verify(report)
            break
        except ReplacedCommittee:
            if k == len(candidates) - 1:
                raise
    try:
        receipt = await vault.submit_and_call(key, report.config_digest, report.epoch, report.round, report.updates,
                                              report.packed(), action)
    except VaultRevert as exc:
        if exc.reason in _report_errors():
            raise rejection(exc.reason or "unknown", f"submitAndCall refused the report: {exc}",
                            exc.error_args) from exc
        raise ActionRefused(f"vault {vault.address} refused the action: {exc}", reason=exc.reason,
                            error_args=exc.error_args) from exc
    except ChainError as exc:
        raise ChainUnavailable(f"submitAndCall to vault {vault.address} failed: {exc}") from exc
    return VaultActionReceipt(verified, receipt)
