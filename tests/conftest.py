"""Suite-wide rules: every test says what kind it is (unit, integration or slow)."""

from __future__ import annotations

import pytest

KINDS = ("unit", "integration", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(k) for k in KINDS)]
    if unmarked:
        listed = "\n  ".join(unmarked[:20])
        raise pytest.UsageError(
            f"{len(unmarked)} test(s) carry none of the markers {', '.join(KINDS)}; "
            f"add `pytestmark = pytest.mark.unit` (or integration/slow) to the module:\n  {listed}"
        )
