"""`relayer sources list|try`, built by feeds.cli.add_sources_commands."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from feeds.cli import add_sources_commands

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("error")]


def run(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="relayer")
    add_sources_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    return int(args.func(args, out)), out.getvalue()


def test_list_shows_every_source_and_its_factors() -> None:
    code, text = run("sources", "list", "--json")
    rows = {r["name"]: r for r in map(json.loads, text.splitlines())}
    assert code == 0
    assert rows["deribit"]["factors"] == ["funding_rate", "implied_vol", "open_interest"]
    assert rows["binance"]["factors"] == ["depth", "realized_vol", "spot"]
    assert set(rows) == {"binance", "binance-futures", "bybit", "coinbase", "deribit", "kraken", "okx"}


def test_try_fetches_every_factor_from_the_simulated_venue() -> None:
    code, text = run("sources", "try", "bybit", "--instrument", "BTC-USD", "--json")
    readings = [json.loads(line) for line in text.splitlines()]
    assert code == 0
    assert [r["kind"] for r in readings] == ["depth", "funding_rate", "open_interest", "realized_vol", "spot"]
    assert all(r["source"] == "bybit" and r["instrument"] == "BTC-USD" for r in readings)


def test_try_against_a_url_that_refuses_reports_the_typed_error() -> None:
    code, text = run("sources", "try", "okx", "--kind", "spot", "--url", "http://127.0.0.1:9", "--timeout", "1")
    assert code == 1
    assert "ERROR SourceConnectionError: okx BTC-USD: expected an HTTP response" in text
