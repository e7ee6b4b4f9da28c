"""Record and replay: the simulator recorded and replayed, and every venue's documented examples replayed.

The expected values are worked out from the fixture files by hand (the formula is
written out here, from the numbers in the body), never taken from the adapter.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import shutil
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import aiohttp
import pytest

from feeds.cli import add_sources_commands
from feeds.errors import SourceConnectionError, SourceStaleError
from feeds.kinds import FactorKind as K
from feeds.replay import INDEX, Recording, ReplayMiss, record
from feeds.simulator import VenueSimulator
from tests.feeds.conftest import RECORDED, OpenReplay

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("error"),
]

NOW = 2_000_000_000.0


def rv(first: str, second: str) -> float:
    """Annualized sample stdev of 60 one-minute log returns alternating +a, -a (closes first, second, first, ...).

    The mean return is 0, so the sample variance is 60 a^2 / 59; a year has 525,600 minutes.
    """
    a = math.log(float(second) / float(first))
    return abs(a) * math.sqrt(60 / 59 * 525_600)


def notional(*levels: tuple[str, str]) -> Decimal:
    """Sum of price x size over the levels, to the 1e-8 that depth is stated in (half to even)."""
    total = sum((Decimal(price) * Decimal(size) for price, size in levels), Decimal(0))
    return total.quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)


# venue -> kind -> the value worked out from tests/feeds/recorded/<venue>/*.json
EXPECTED: dict[str, dict[K, Decimal | float]] = {
    "binance": {
        K.SPOT: Decimal("4.00000200"),  # lastPrice
        K.REALIZED_VOL: rv("0.01577100", "0.01578100"),  # closes at row[4]
        K.DEPTH: notional(("4.00000000", "431.00000000"), ("4.00000200", "12.00000000")),  # both within 50 bps
    },
    "binance-futures": {
        K.FUNDING_RATE: Decimal("0.00038246"),  # lastFundingRate
        K.OPEN_INTEREST: Decimal("10659.509") * Decimal("11793.63104562"),  # openInterest x markPrice
    },
    "bybit": {
        K.SPOT: Decimal("20533.13"),
        K.REALIZED_VOL: rv("17055.5", "17071"),
        # bid 65485.47, ask 65557.7: mid 65521.585, the band +-327.6 holds both
        K.DEPTH: notional(("65485.47", "47.081829"), ("65557.7", "16.606555")),
        K.FUNDING_RATE: Decimal("-0.001034"),
        K.OPEN_INTEREST: Decimal("22505.67"),  # openInterestValue
    },
    "coinbase": {
        K.SPOT: Decimal("6268.48"),
        K.REALIZED_VOL: rv("4.2", "4.21"),
        K.DEPTH: notional(("6247.58", "6.3578146"), ("6251.52", "2")),  # mid 6249.55, band +-31.2
    },
    "deribit": {
        K.IMPLIED_VOL: Decimal("0.5542"),  # newest row (1598019420000) closes at 55.42 %
        K.FUNDING_RATE: Decimal("0.00002203"),
        K.OPEN_INTEREST: Decimal(502231260),
    },
    "kraken": {
        K.SPOT: Decimal("30303.2"),  # c[0]
        K.REALIZED_VOL: rv("30305.7", "30300.0"),
        # mid 30340.55, band +-151.7: all six levels are inside
        K.DEPTH: notional(("30384.1", "2.059"), ("30387.9", "1.500"), ("30393.7", "9.871"),
                          ("30297.0", "1.115"), ("30296.7", "2.002"), ("30289.8", "5.001")),
    },
    "okx": {
        K.SPOT: Decimal("9999.99"),
        K.REALIZED_VOL: rv("3.708", "3.72"),
        K.DEPTH: notional(("41006.8", "0.60038921"), ("41006.3", "0.30178218")),
        K.FUNDING_RATE: Decimal("0.0000792386885340"),
        K.OPEN_INTEREST: Decimal(50000),  # oiUsd
    },
}


def run_cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="relayer")
    add_sources_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    return int(args.func(args, out)), out.getvalue()


@pytest.mark.parametrize("venue", sorted(EXPECTED))
async def test_each_venues_documented_answers_replay_to_the_values_worked_out_by_hand(
    venue: str, replay: OpenReplay
) -> None:
    replayed = await replay(RECORDED / venue, clock=lambda: NOW)
    assert replayed.recording.kinds and set(replayed.recording.kinds) == set(EXPECTED[venue])
    assert set(replayed.recording.kinds) == set(replayed.source.factors)
    for kind, expected in EXPECTED[venue].items():
        reading = await replayed.fetch(kind)
        assert (reading.source, reading.instrument, reading.kind) == (venue, "BTC-USD", kind)
        if isinstance(expected, float):
            assert float(reading.value) == pytest.approx(expected, rel=1e-9)
        else:
            assert reading.value == expected
        # Moved to now: fetched at the replay's clock, observed as long before as it was live.
        assert reading.fetched_at == NOW
        assert 0 <= NOW - reading.observed_at <= replayed.source.staleness.get(kind, replayed.source.max_staleness)
    assert replayed.server.misses == []


async def test_a_replayed_reading_keeps_its_age_at_receipt(replay: OpenReplay) -> None:
    replayed = await replay(RECORDED / "binance", clock=lambda: NOW)
    reading = await replayed.fetch(K.SPOT)
    # Recorded: requested at 1499869899.5, closeTime 1499869899040 -> 0.46 s old, plus this fetch's latency.
    age = NOW - reading.observed_at
    assert 0.46 - 1e-6 <= age < 0.46 + replayed.source.timeout


async def test_staleness_is_judged_at_the_recorded_time_not_hidden_by_the_shift(
    replay: OpenReplay, tmp_path: Path
) -> None:
    copy = tmp_path / "binance"
    shutil.copytree(RECORDED / "binance", copy)
    index = json.loads((copy / INDEX).read_text())
    spot = next(e for e in index["exchanges"] if e["kind"] == "spot")
    spot["requested_at"] = 1499869899.040 + 120  # received two minutes after the ticker's closeTime
    (copy / INDEX).write_text(json.dumps(index))
    replayed = await replay(copy, clock=lambda: NOW)
    with pytest.raises(SourceStaleError, match="at most 60s old, got .*120.0s old"):
        await replayed.fetch(K.SPOT)


async def test_an_unrecorded_request_gets_a_404_naming_what_was_asked_and_what_was_recorded(
    replay: OpenReplay, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    # As if recorded by an adapter that asked for 50 levels where this one asks for 100.
    copy = tmp_path / "okx"
    shutil.copytree(RECORDED / "okx", copy)
    index = json.loads((copy / INDEX).read_text())
    next(e for e in index["exchanges"] if e["kind"] == "depth")["request"]["query"]["sz"] = "50"
    (copy / INDEX).write_text(json.dumps(index))
    replayed = await replay(copy)
    with pytest.raises(ReplayMiss) as caught:
        await replayed.fetch(K.DEPTH)
    message = str(caught.value)
    assert "got GET /api/v5/market/books?instId=BTC-USDT&sz=100; recorded: spot GET /api/v5/market/ticker" in message
    assert "depth GET /api/v5/market/books?instId=BTC-USDT&sz=50;" in message
    assert message.endswith("the adapter now asks something else than when it was recorded")
    async with session.get(replayed.url + "/api/v5/market/books", params={"instId": "ETH-USDT"}) as response:
        assert response.status == 404
        assert (await response.text()).startswith(
            "replay: expected a recorded request, got GET /api/v5/market/books?instId=ETH-USDT; recorded: ")


async def test_record_against_the_simulator_then_replay_gives_the_same_readings(
    clean_faults: VenueSimulator, replay: OpenReplay, tmp_path: Path
) -> None:
    recording, outcomes = await record("okx", "BTC-USD", clean_faults.venue_url("okx"))
    recording.save(tmp_path / "okx")
    live = {kind: outcome for kind, outcome in outcomes}
    assert all(not isinstance(o, Exception) for o in live.values()), live
    index = json.loads((tmp_path / "okx" / INDEX).read_text())
    assert [e["kind"] for e in index["exchanges"]] == sorted(str(k) for k in live)
    for entry in index["exchanges"]:
        assert entry["response"]["status"] == 200
        assert entry["response"]["headers"]["Content-Type"].startswith("application/json")
        assert "Content-Length" not in entry["response"]["headers"]
        assert entry["requested_at"] <= entry["response"]["received_at"]
        body = (tmp_path / "okx" / entry["response"]["body"]).read_bytes()
        assert json.loads(body)["code"] == "0"
    replayed = await replay(tmp_path / "okx")
    for kind, reading in live.items():
        again = await replayed.fetch(kind)
        assert not isinstance(reading, Exception)
        assert again.value == reading.value
        # The age at receipt is the recorded one, within the two fetches' latencies.
        assert abs((again.fetched_at - again.observed_at) - (reading.fetched_at - reading.observed_at)) < 1.0


async def test_a_candle_window_is_asked_again_exactly_as_recorded(
    clean_faults: VenueSimulator, replay: OpenReplay, tmp_path: Path
) -> None:
    # Coinbase and Deribit put the clock into the query (start/end); the pinned clock repeats it.
    for venue, kind in (("coinbase", K.REALIZED_VOL), ("deribit", K.IMPLIED_VOL)):
        recording, outcomes = await record(venue, "BTC-USD", clean_faults.venue_url(venue), [kind])
        recording.save(tmp_path / venue)
        replayed = await replay(tmp_path / venue)
        reading = await replayed.fetch(kind)
        assert not isinstance(outcomes[0][1], Exception)
        assert reading.value == outcomes[0][1].value
        assert replayed.server.misses == []


async def test_an_unreachable_venue_records_nothing_and_says_so() -> None:
    recording, outcomes = await record("binance", "BTC-USD", "http://127.0.0.1:9", [K.SPOT], timeout=2.0)
    assert recording.exchanges == []
    [(kind, outcome)] = outcomes
    assert kind == K.SPOT and isinstance(outcome, SourceConnectionError)
    assert "expected an answer from the venue, got none for GET http://127.0.0.1:9/api/v3/ticker/24hr" in str(outcome)


async def test_the_cli_records_from_the_simulator_and_tries_the_recording(
    clean_faults: VenueSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "bybit"
    url = clean_faults.venue_url("bybit")
    # The CLI runs its own event loop: run it in a thread, the simulator keeps serving on this one.
    code, text = await asyncio.to_thread(run_cli, "sources", "record", "bybit", "--url", url, "--out", str(out),
                                         "--kind", "spot", "--kind", "funding_rate")
    assert code == 0, text
    assert f"recorded 2 answers for 2 factors in {out}" in text
    assert sorted(p.name for p in out.iterdir()) == ["00-spot-tickers.json", "01-funding_rate-tickers.json", INDEX]
    code, text = await asyncio.to_thread(run_cli, "sources", "record", "bybit", "--url", url, "--out", str(out))
    assert code == 2
    code, text = await asyncio.to_thread(run_cli, "sources", "try", "bybit", "--replay", str(out), "--json")
    readings = [json.loads(line) for line in text.splitlines()]
    assert code == 0
    assert [r["kind"] for r in readings] == ["spot", "funding_rate"]


async def test_the_cli_refuses_a_recording_of_another_source() -> None:
    code, text = await asyncio.to_thread(run_cli, "sources", "try", "okx", "--replay", str(RECORDED / "kraken"))
    assert code == 2 and text == ""
