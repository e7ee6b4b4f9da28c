"""The chain fixtures (one anvil per module, a fresh oracle per test) shared with tests/relayer/chain."""

from tests.relayer.chain.conftest import anvil, oracle, w3  # noqa: F401
