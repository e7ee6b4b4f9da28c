"""`relayer oracle` and `relayer vault` against anvil: a guardian resets a tripped breaker, a
keeper records the trouble and the recovery with syncFeeds, dry runs send nothing, and
refusals name the contract's error and exit 2."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from relayer.cli import main

from .conftest import Deployment
from .test_margin_vault import BTC_PERP, PARAMETERS, _desk, usd8

pytestmark = pytest.mark.integration


async def _relayer(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """One `relayer` command, run in a thread (it runs its own event loop); (exit code, out, err)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_guardian_resets_a_breaker_and_a_keeper_records_trouble_and_recovery(
    oracle: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    desk = await _desk(oracle, parameters=dataclasses.replace(PARAMETERS, cooldown_s=60))
    vault, price_feed = desk.vault, desk.feeds["BTC-USD"]
    rpc = oracle.anvil.rpc_url
    owner_file, keeper_file, stranger_file = tmp_path / "owner.key", tmp_path / "keeper.key", tmp_path / "x.key"
    owner_file.write_text(desk.owner.hex())
    keeper_file.write_text(desk.traders[1][1].hex())
    stranger_file.write_text(desk.traders[2][1].hex())
    on_oracle = ("--rpc-url", rpc, "--oracle", oracle.client.address)
    on_vault = ("--rpc-url", rpc, "--vault", vault.address)
    held = (await oracle.client.feed_status(price_feed)).round_id

    await desk.land(BTC_USD=usd8(45_000))  # a crash beyond the 10 % breaker
    code, out, _ = await _relayer(capsys, "oracle", "status", "BTC-USD", *on_oracle)
    assert code == 0 and f"BTC-USD (feed {price_feed})" in out and "tripped" in out
    code, out, _ = await _relayer(capsys, "vault", "status", "BTC-PERP", *on_vault)  # reads only
    assert code == 0 and "no trouble recorded" in out and await vault.trouble_round(price_feed) == 0
    code, out, _ = await _relayer(capsys, "vault", "sync-feeds", "BTC-PERP", *on_vault, "--key-file", str(keeper_file))
    assert code == 0 and f"trouble seen at round {held}, recovery not yet recorded" in out
    assert await vault.trouble_round(price_feed) == held

    # No key: a dry run. A key that is neither guardian nor owner: refused by name.
    code, out, _ = await _relayer(capsys, "oracle", "reset-breaker", "BTC-USD", *on_oracle)
    assert code == 0 and "dry run" in out and (await oracle.client.feed_status(price_feed)).tripped
    code, _, err = await _relayer(capsys, "oracle", "reset-breaker", "BTC-USD", *on_oracle,
                                  "--key-file", str(stranger_file))
    assert code == 2 and "NotGuardian" in err and (await oracle.client.feed_status(price_feed)).tripped
    code, out, _ = await _relayer(capsys, "oracle", "reset-breaker", str(price_feed), *on_oracle,
                                  "--key-file", str(owner_file))
    assert code == 0 and "breaker reset" in out and not (await oracle.client.feed_status(price_feed)).tripped
    code, _, err = await _relayer(capsys, "oracle", "reset-breaker", "BTC-USD", *on_oracle,
                                  "--key-file", str(owner_file))
    assert code == 2 and "not tripped" in err

    # The re-anchoring report; the keeper's next sync records the recovery the cool-down runs from.
    await desk.calm(btc_price=usd8(45_000))
    recovered = (await oracle.client.feed_status(price_feed)).observed_at
    code, out, _ = await _relayer(capsys, "vault", "sync-feeds", "BTC-PERP", *on_vault, "--key-file", str(keeper_file))
    assert code == 0 and f"recovered at {recovered}" in out
    assert await vault.recovered_at(price_feed) == recovered

    code, _, err = await _relayer(capsys, "vault", "status", "SOL-PERP", *on_vault)
    assert code == 2 and "MarketNotListed" in err
    code, _, err = await _relayer(capsys, "oracle", "status", "NO-SUCH-FEED", *on_oracle)
    assert code == 2 and "UnknownFeed" in err
    code, _, err = await _relayer(capsys, "vault", "status", "BTC-PERP")
    assert code == 2 and "--rpc-url" in err
