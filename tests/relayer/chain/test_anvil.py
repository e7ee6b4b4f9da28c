"""AnvilNode: a real child process that answers quickly and goes away when told."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayer.chain import anvil as anvil_module
from relayer.chain.anvil import AnvilNode
from relayer.chain.errors import ChainError

pytestmark = pytest.mark.integration


def test_start_answers_and_stop_is_idempotent() -> None:
    node = AnvilNode.start(chain_id=4242)
    try:
        assert int(node.rpc("eth_chainId"), 16) == 4242
        assert len(node.accounts) >= 20
        # Our derived keys are the ones anvil funded.
        assert [a.lower() for a in node.rpc("eth_accounts")] == [a.lower() for a, _ in node.accounts]
        assert node.accounts[0][0] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    finally:
        node.stop()
    assert not node.running
    node.stop()


def test_missing_binary_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(anvil_module, "anvil_binary", lambda: tmp_path / "anvil")
    with pytest.raises(ChainError, match="npm ci"):
        AnvilNode.start()
