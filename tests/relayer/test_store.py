from __future__ import annotations

from pathlib import Path

import pytest

from relayer.protocol.errors import EquivocationRefused
from relayer.store import Store

pytestmark = pytest.mark.unit

D = "0x" + "01" * 32


def test_report_signatures_never_conflict(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.record_report_signature(D, 1, 5, b"\x01" * 32, b"u", b"\x09" * 65)
    # The same report again is fine and returns the earlier signature.
    assert store.check_report_allowed(D, 1, 5, b"\x01" * 32) is not None
    with pytest.raises(EquivocationRefused, match="different report"):
        store.check_report_allowed(D, 1, 5, b"\x02" * 32)
    with pytest.raises(EquivocationRefused, match="already signed"):
        store.check_report_allowed(D, 1, 4, b"\x03" * 32)
    # Another config digest has its own watermark.
    assert store.check_report_allowed("0x" + "02" * 32, 0, 1, b"\x03" * 32) is None


def test_observation_watermark_survives_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.record_observation(D, 2, 3, '{"x":1}')
    store.close()
    reopened = Store(tmp_path / "s.sqlite")
    assert reopened.signed_observation(D, 2, 3) == '{"x":1}'
    for epoch, round in [(2, 3), (2, 2), (1, 9)]:
        with pytest.raises(EquivocationRefused):
            reopened.record_observation(D, epoch, round, "{}")
    reopened.record_observation(D, 2, 4, "{}")
