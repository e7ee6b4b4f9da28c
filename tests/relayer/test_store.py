from __future__ import annotations

import sqlite3
import time
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


def test_pruning_keeps_the_slashing_watermarks_and_refuses_below_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.sqlite", sync="normal")
    digest = "0x" + "ab" * 32
    for r in range(1, 6):
        store.record_observation(digest, 0, r, "{}")
        store.record_report_signature(digest, 0, r, bytes([r]) * 32, b"", b"\x01" * 65)
        store.record_attested(digest, 0, r, b"", [], None, None)
        store.record_transmission(digest, 0, r, "landed")
    deleted = store.prune(time.time() + 1)  # everything is older than the cut-off
    assert deleted == {"attested": 5, "transmissions": 5, "signed_observations": 4, "signed_reports": 4}
    # The highest signed round stays; signing at or below it is still refused.
    assert store.signed_report(digest, 0, 5) is not None and store.signed_report(digest, 0, 4) is None
    with pytest.raises(EquivocationRefused):
        store.record_observation(digest, 0, 3, "{}")
    with pytest.raises(EquivocationRefused):
        store.check_report_allowed(digest, 0, 4, b"\x09" * 32)
    store.record_observation(digest, 0, 6, "{}")
    assert store.prune(time.time() - 3600) == {"attested": 0, "transmissions": 0, "signed_observations": 0,
                                               "signed_reports": 0}
    store.close()


def test_a_failed_write_is_remembered_until_one_succeeds(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.sqlite", sync="normal")
    store.set_state("k", "v")
    assert store.write_error is None
    store.conn.execute("PRAGMA query_only=1")  # every write now fails, as on a read-only mount
    with pytest.raises(sqlite3.Error):
        store.set_state("k", "w")
    assert store.write_error is not None and "readonly" in store.write_error.lower() and store.write_failures == 1
    store.conn.execute("PRAGMA query_only=0")
    store.set_state("k", "w")
    assert store.write_error is None and store.get_state("k") == "w"
    store.close()
