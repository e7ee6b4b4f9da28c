"""The trigger policy on a real devnet (`relayer devnet --feed-selection trigger`): the first
report carries every feed (first values), later rounds carry only feeds that moved past their
threshold, rounds where nothing moved are attested empty and cost no transaction, and honest
followers rarely refuse an honest leader's selection.

"Rarely", not "never": every node looks at the chain as a round starts, and a follower whose
read has not come back when the proposal arrives judges it against the landing before; it
may then refuse a feed it thinks is due (the round is lost, nothing wrong is signed). The
leader stating the on-chain state it decided against, in the proposal, removes that race.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from relayer.chain.codec import decode_updates
from tests.devnet_proc import REPO, DevnetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _spot_catalog(path: Path) -> Path:
    """The packaged devnet catalog's two spot feeds (25 bps, 1 h): quiet most rounds."""
    text = (REPO / "feeds" / "catalogs" / "devnet.toml").read_text()
    blocks = text.split("[[feed]]")
    kept = [b for b in blocks[1:] if 'kind = "spot"' in b]
    assert len(kept) == 2
    path.write_text("".join("[[feed]]" + b for b in kept))
    return path


def test_only_what_triggers_lands_and_quiet_rounds_send_nothing(tmp_path: Path) -> None:
    catalog = _spot_catalog(tmp_path / "spot.toml")
    devnet = DevnetProcess(tmp_path / "devnet", "--feed-selection", "trigger", "--catalog", str(catalog))
    try:
        first = devnet.wait_first_report()
        info = devnet.info
        assert len(first["feeds"]) == len(info["feeds"])  # every feed's first value
        time.sleep(8)  # about 16 rounds at 500 ms
    finally:
        assert devnet.stop() == 0
    landed = [json.loads(line) for line in devnet.stdout_lines if line.strip()]
    attested: list[bytes] = []
    refused_rounds: set[tuple[str, str]] = set()
    refused = 0
    for node_dir in sorted((tmp_path / "devnet").glob("node-*")):
        with sqlite3.connect(node_dir / "node.sqlite") as conn:
            rows = conn.execute("SELECT updates FROM attested").fetchall()
            stats = conn.execute("SELECT value FROM state WHERE key = 'stats'").fetchone()
        if len(rows) > len(attested):
            attested = [bytes(r[0]) if not isinstance(r[0], str) else bytes.fromhex(r[0].removeprefix("0x"))
                        for r in rows]
        refused_rounds |= {(peer, reason) for peer, reason, n in json.loads(stats[0]).get("dropped", [])
                           if reason in ("unjustified_feed", "missing_feed") and n}
        refused += sum(n for _, reason, n in json.loads(stats[0]).get("dropped", [])
                       if reason in ("unjustified_feed", "missing_feed"))
    empty = [u for u in attested if not u]
    assert len(attested) >= 10
    assert empty, "no round was quiet: every attested report carried a feed"
    assert len(landed) < len(attested)  # quiet rounds cost no transaction
    for report in landed[1:]:
        assert 0 < len(report["feeds"]) <= len(info["feeds"])
    for updates in attested:
        if updates:
            assert decode_updates(updates)
    # Each refusal is one follower's view one landing behind: at most a few rounds in 16.
    assert refused <= 3 * 3, f"{refused} refusals by honest followers"
