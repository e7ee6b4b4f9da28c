"""The node's HTTP API and /metrics on a live devnet, and the logs it leaves behind.

One devnet for the module: anvil, the simulated venues and 4 relayer processes, each with
its API on a free loopback port (listed in devnet.json). It runs the devnet's default policy,
`all` (every feed every round); the trigger policy's API is tested in tests/test_trigger_devnet.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from aggregation.margin import Margins
from relayer.chain.contract import disconnect
from relayer.chain.oracle import QuorumOracleClient
from relayer.chain.risk_gate import MarketMargins, RiskGateClient
from relayer.cli import main
from tests.devnet_proc import DevnetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    dn = DevnetProcess(tmp_path_factory.mktemp("api-devnet"))
    try:
        dn.wait_first_report()
        yield dn
    finally:
        dn.stop()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_landed_rounds_and_every_stage(devnet: DevnetProcess) -> None:
    api = devnet.info["nodes"][0]["api"]
    deadline = time.monotonic() + 30
    while True:
        status, body = _get(api + "/metrics")
        text = body.decode()
        landed = _metric(text, "relayer_rounds_landed_total") or 0
        # The first landing can come before the last peer connection is counted, and the first
        # reports can land before this node (the last one up) has signed any.
        peers = _metric(text, "relayer_peers_connected")
        signed = _metric(text, "relayer_stage_total", stage="signature", result="ok") or 0
        if (landed >= 2 and peers == 3 and signed >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200
    assert landed >= 2, text
    for feed in ("BTC-USD", "ETH-USD"):
        assert (_metric(text, "relayer_last_landed_round", feed=feed) or 0) >= 1
    for stage in ("source_fetch", "observation", "report", "signature"):
        assert (_metric(text, "relayer_stage_total", stage=stage, result="ok") or 0) >= 1, stage
        assert (_metric(text, "relayer_stage_duration_seconds_count", stage=stage) or 0) >= 1, stage
    assert _metric(text, "relayer_stage_duration_seconds_count", stage="transmission") is not None
    assert _metric(text, "relayer_peers_connected") == 3
    assert _metric(text, "relayer_epoch") is not None and _metric(text, "relayer_round") is not None
    assert _metric(text, "relayer_source_healthy", source="kraken") == 1
    assert (_metric(text, "relayer_transmitter_balance_wei") or 0) > 0
    assert "relayer_gas_spent_total" in text and "relayer_messages_dropped_total" in text or \
        "# TYPE relayer_messages_dropped counter" in text


def test_under_the_all_policy_every_feed_is_in_every_report_for_that_reason(devnet: DevnetProcess) -> None:
    api = devnet.info["nodes"][1]["api"]
    deadline = time.monotonic() + 30
    while True:
        text = _get(api + "/metrics")[1].decode()
        carried = _metric(text, "relayer_feed_inclusions_total", feed="BTC-USD", reason="every_round") or 0
        if carried >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert carried >= 2, text
    assert _metric(text, "relayer_feed_inclusions_total", feed="BTC-USD", reason="skipped") in (None, 0.0)
    latest = json.loads(_get(api + "/api/inclusions")[1])["latest"]
    assert {f["feed_id"] for f in devnet.info["feeds"]} <= set(latest)
    assert all(v["reason"] == "every_round" for v in latest.values()), latest


def test_gas_is_counted_across_the_committee(devnet: DevnetProcess) -> None:
    gas = 0.0
    for node in devnet.info["nodes"]:
        gas += _metric(_get(node["api"] + "/metrics")[1].decode(), "relayer_gas_spent_total") or 0
    assert gas > 0


def test_health_ready_and_latest_feeds_with_signatures(devnet: DevnetProcess) -> None:
    info = devnet.info
    api = info["nodes"][1]["api"]
    assert _get(api + "/healthz")[0] == 200
    assert _get(api + "/readyz")[0] == 200
    feeds = json.loads(_get(api + "/api/feeds")[1])["feeds"]
    assert {f["feed_id"] for f in feeds} == {fd["feed_id"] for fd in info["feeds"]}
    prices = {f["feed_id"]: f for f in feeds if f["feed_id"] in ("BTC-USD", "ETH-USD")}
    assert len(prices) == 2
    for feed in prices.values():
        assert float(feed["value"]) > 0 and feed["round_id"] >= 1
    signed = [f for f in feeds if f["report"]]
    assert signed, feeds
    report = signed[0]["report"]
    assert report["config_digest"] == info["config_digest"]
    assert len(report["signatures"]) >= info["threshold"]
    committee = {n["address"] for n in info["nodes"]}
    assert {s["signer"] for s in report["signatures"]} <= committee


async def _chain_margins(info: dict[str, Any]) -> dict[str, tuple[MarketMargins, Margins]]:
    """Per devnet market, at one block: what the deployed RiskGate's ``margins`` returns, and what
    aggregation/margin.py computes from the same curve, feed values and decimals read on-chain."""
    w3 = AsyncWeb3(AsyncHTTPProvider(info["rpc_url"]))
    try:
        gate = RiskGateClient(w3, info["risk_gate"])
        oracle = QuorumOracleClient(w3, info["oracle"])
        block = hex(await gate.rpc.block_number())
        out = {}
        for entry in info["markets"]:
            market_id = bytes.fromhex(entry["market_id"][2:])
            market = await gate.market(market_id, block=block)
            values = [None if feed is None else (await oracle.feed_status(feed, block=block)).value
                      for feed in market.inputs.feeds()]
            mirror = market.case(values).mirror()
            out[entry["name"]] = (await gate.margins(market_id, block=block), mirror)
        return out
    finally:
        await disconnect(w3)


async def test_margins_shown_are_the_deployed_risk_gates_and_its_mirrors(devnet: DevnetProcess) -> None:
    """The devnet deploys a RiskGate with a BTC and an ETH market: /api/margins shows, per market,
    exactly what its ``margins`` view returns, which is also what the Python mirror computes from
    the on-chain inputs (read at one block); the spot feeds carry their market's margin."""
    info = devnet.info
    api = info["nodes"][1]["api"]
    assert {m["name"] for m in info["markets"]} == {"BTC-PERP", "ETH-PERP"}
    deadline = time.monotonic() + 30
    while True:
        # Margins move with each landing (dispersion every round): compare between two equal reads.
        before = await _chain_margins(info)
        view = json.loads(_get(api + "/api/margins")[1])
        after = await _chain_margins(info)
        for onchain, mirror in (*before.values(), *after.values()):
            assert (onchain.initial_bps, onchain.maintenance_bps) == (mirror.initial_bps, mirror.maintenance_bps)
        shown = {m["name"]: (m["initial_bps"], m["maintenance_bps"], m["usable"]) for m in view["markets"]}
        onchain_now = {name: (m.initial_bps, m.maintenance_bps, m.usable) for name, (m, _) in after.items()}
        if before == after and shown == onchain_now or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert shown == onchain_now, (shown, onchain_now)
    assert view["configured"] is True and view["address"] == info["risk_gate"] and view["error"] is None
    for entry in info["markets"]:
        curve, (margins, _) = entry["curve"], after[entry["name"]]
        # Fresh inputs, in their own units: neither pinned at the floor nor at the cap.
        assert margins.usable
        assert curve["floor_im_bps"] < margins.initial_bps < curve["cap_im_bps"]
        market = next(m for m in view["markets"] if m["name"] == entry["name"])
        assert (market["vol_feed_id"], market["depth_feed_id"], market["max_age"]) == (
            entry["realized_vol_feed"], entry["depth_feed"], entry["max_age"])
        assert (market["funding_feed_id"], market["open_interest_feed_id"]) == (
            entry["funding_feed"], entry["open_interest_feed"])
    crowding = {e["name"]: (e["funding_feed"], e["open_interest_feed"]) for e in info["markets"]}
    assert crowding == {"BTC-PERP": ("BTC-FUNDING-8H", "BTC-OI-USD"), "ETH-PERP": (None, None)}
    feeds = json.loads(_get(api + "/api/feeds")[1])
    assert feeds["risk_gate"]["address"] == info["risk_gate"]
    margin_of = {f["feed_id"]: f["margin"] for f in feeds["feeds"]}
    assert margin_of["BTC-USD"]["name"] == "BTC-PERP" and margin_of["ETH-USD"]["name"] == "ETH-PERP"
    assert all(f["margin"] is None for f in feeds["feeds"] if f["kind"] != "spot")
    assert json.loads(_get(api + "/api/status")[1])["risk_gate"] == info["risk_gate"]


async def _read_events(url: str, want: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        event = None
        async with asyncio.timeout(timeout):
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    seen.setdefault(event, json.loads(line[6:]))
                    if want <= set(seen):
                        return seen
    return seen


async def test_events_stream_attested_and_landed_reports(devnet: DevnetProcess) -> None:
    api = devnet.info["nodes"][2]["api"]
    seen = await _read_events(api + "/api/events", {"attested", "landed"}, timeout=30)
    assert seen["attested"]["signer_count"] >= devnet.info["threshold"]
    assert seen["attested"]["report"]["signatures"]
    assert {"BTC-USD", "ETH-USD"} <= {f["feed_id"] for f in seen["landed"]["onchain"]}


def test_status_command_reads_a_running_node(devnet: DevnetProcess, capsys: pytest.CaptureFixture[str]) -> None:
    node = devnet.info["nodes"][3]
    assert main(["status", "--api", node["api"]]) == 0
    out = capsys.readouterr().out
    assert node["address"] in out and "member #" in out and "3 connected" in out
    assert main(["status", "--api", node["api"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["committee"]["member_index"] is not None


def _subscriptions(api: str) -> dict[str, Any]:
    status, body = _get(api + "/api/subscriptions")
    assert status == 200, body
    return dict(json.loads(body))


def test_subscriptions_view_and_a_tighter_wish_within_two_config_polls(
        devnet: DevnetProcess, capsys: pytest.CaptureFixture[str]) -> None:
    info = devnet.info
    api = info["nodes"][0]["api"]
    # The node reads the chain once a poll interval and tells the API every 0.5 s: the first
    # landing shows up in the view a moment after it lands, not at once.
    deadline = time.monotonic() + 15.0
    while True:
        view = _subscriptions(api)
        landed = {f["feed_id"]: f["onchain"] for f in view["feeds"]}
        if landed.get("BTC-USD") is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert view["registry"] == info["subscription_registry"] and view["ready"] is True
    by_feed = {f["feed_id"]: f for f in view["feeds"]}
    assert set(by_feed) == {fd["feed_id"] for fd in info["feeds"]}
    btc = by_feed["BTC-USD"]
    assert btc["default"] == {"deviation_bps": 25, "heartbeat_s": 3600} == btc["promise"]
    assert btc["floors"] == {"deviation_bps": 5, "heartbeat_s": 60} and btc["subscribers"] == []
    assert btc["onchain"] is not None, json.dumps(view)[:1500]
    assert btc["onchain"]["value"] > 0 and 0 < btc["heartbeat_left_s"] <= 3600
    assert btc["deviation"]["threshold_bps"] == 25 and btc["deviation"]["bps"] >= 0

    # The devnet's example subscriber asks for a tighter promise on BTC-USD.
    devnet_dir = str(devnet.data_dir)
    assert main(["subscriptions", "add", "--devnet", devnet_dir, "--feed", "BTC-USD", "--deviation-bps", "7",
                 "--heartbeat", "120"]) == 0
    capsys.readouterr()
    assert main(["subscriptions", "list", "--devnet", devnet_dir]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("BTC-USD "))
    assert "promise 7 bps / 120 s" in line and info["subscriber"] in line
    # Nodes poll the registry's logs every config_poll_interval (2 s by default): within two
    # polls, plus the time the change takes to be mined and the stats job to tell the API.
    deadline = time.monotonic() + 2 * 2.0 + 2.0
    while True:
        btc = {f["feed_id"]: f for f in _subscriptions(api)["feeds"]}["BTC-USD"]
        if btc["promise"] == {"deviation_bps": 7, "heartbeat_s": 120} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert btc["promise"] == {"deviation_bps": 7, "heartbeat_s": 120}, btc
    assert btc["subscribers"] == [{"subscriber": info["subscriber"], "deviation_bps": 7, "heartbeat_s": 120}]
    assert btc["deviation"]["threshold_bps"] == 7 and btc["heartbeat_left_s"] <= 120

    # A stranger is refused by name; nothing changes.
    stranger = devnet.data_dir / "stranger.key"
    stranger.write_text("11" * 32)
    assert main(["subscriptions", "add", "--devnet", devnet_dir, "--key-file", str(stranger), "--feed", "ETH-USD",
                 "--deviation-bps", "7", "--heartbeat", "120"]) == 2
    assert "NotApproved" in capsys.readouterr().err


async def test_spot_feeds_keep_round_history_for_chainlink_readers(devnet: DevnetProcess) -> None:
    """Spot feeds are registered with history and getRoundData answers their earlier rounds;
    a factor without history answers its latest round only. Under the trigger policy a spot
    price lands only when it moves: BTC-USD's earlier round is read when it landed twice
    within a minute (the subscription test before this one tightened its promise); the ring
    itself is tested on anvil in tests/relayer/chain/test_oracle.py."""
    from relayer.chain.contract import disconnect, error_table
    from relayer.chain.oracle import QuorumOracleClient, connect, load_artifact

    info = devnet.info
    feeds = {f["feed_id"]: f for f in info["feeds"]}
    w3 = connect(info["rpc_url"])
    try:
        oracle = QuorumOracleClient(w3, info["oracle"])
        for f in info["feeds"]:
            depth = (await oracle.feed_parameters(f["index"])).history_depth
            assert depth == f["history_depth"] == (255 if f["kind"] == "spot" else 0), f
        abi = load_artifact("FeedProxy")["abi"]
        btc = w3.eth.contract(address=feeds["BTC-USD"]["proxy"], abi=abi)
        deadline = time.monotonic() + 60
        while True:
            latest = await btc.functions.latestRoundData().call()
            if latest[0] >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if latest[0] >= 2:
            earlier = await btc.functions.getRoundData(latest[0] - 1).call()
            assert earlier[0] == latest[0] - 1 and earlier[1] > 0 and 0 < earlier[3] <= latest[3]
        vol = next(f for f in info["feeds"] if f["kind"] == "dispersion")  # lands often, keeps no history
        proxy = w3.eth.contract(address=vol["proxy"], abi=abi)
        round_id = (await proxy.functions.latestRoundData().call())[0]
        assert round_id >= 2, "the dispersion feed should land more than once"
        assert (await proxy.functions.getRoundData(round_id).call())[0] == round_id
        with pytest.raises(Exception) as refused:
            await proxy.functions.getRoundData(round_id - 1).call()
        data = next(a for a in refused.value.args if isinstance(a, str) and a.startswith("0x"))
        assert error_table()[bytes.fromhex(data[2:10])][0] == "RoundNotAvailable"
    finally:
        await disconnect(w3)

def test_logs_carry_round_fields_and_never_a_key(devnet: DevnetProcess) -> None:
    """Last in the module: stops the devnet, then greps everything it logged for key material."""
    info = devnet.info
    assert devnet.stop() == 0
    secrets = []
    for node in info["nodes"]:
        for name in ("signing.key", "transmitter.key"):
            key = (Path(node["data_dir"]) / name).read_text().strip().lower().removeprefix("0x")
            secrets.append(key)
    logs = [devnet.stderr_path.read_text(), "".join(devnet.stdout_lines)]
    logs += [(Path(n["data_dir"]) / "node.log").read_text() for n in info["nodes"]]
    everything = "\n".join(logs).lower()
    for key in secrets:
        assert key not in everything
        assert key[:32] not in everything and key[32:] not in everything
    node_log = logs[2]
    round_lines = [line for line in node_log.splitlines() if "epoch=" in line]
    assert round_lines
    assert all(re.search(r"round=\d+", line) and "peer=" in line for line in round_lines), round_lines[:5]
    assert "relayer: stopped cleanly" in node_log

