"""The observer relay as its own process's code (relayer/relay.py), with real parts: a node's
API serving its report stream, the relay following it with a real libp2p host, and an
observer (a libp2p host outside any committee) on the reports topic. Reports reach the
observer as the API serves them; the relay reconnects when its node's API comes back; its
counters go to its stats file and its Prometheus families; `relayer relay` refuses settings
it cannot run with."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relayer.api import ApiServer
from relayer.chain.codec import FeedUpdate, encode_updates
from relayer.cli import main
from relayer.metrics import NodeIdentity, Telemetry
from relayer.p2p.host import P2PHost
from relayer.p2p.observers import REPORTS_TOPIC, ObserverLimits
from relayer.ports import free_port
from relayer.relay import RelayOptions, ReportRelay, run_relay
from relayer.store import Store
from tests.relayer.p2p.hosts import wait_until

pytestmark = pytest.mark.integration

DIGEST = b"\x00\x01" + b"\xab" * 30
SIG = bytes(range(64)) + b"\x1b"


class NodeApi:
    """A node's store, telemetry and API on a fixed port, which can go away and come back."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = Store(tmp_path / "node.sqlite")
        self.telemetry = Telemetry(NodeIdentity(name="n0", address="0x" + "aa" * 20, dry_run=True,
                                                oracle="0x" + "ee" * 20), self.store)
        self.port = free_port()
        self.api: ApiServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.api = ApiServer(self.telemetry, "127.0.0.1", self.port)
        await self.api.start()

    async def stop(self) -> None:
        if self.api is not None:
            await self.api.stop()
            self.api = None

    def attest(self, round: int) -> None:
        updates = encode_updates([FeedUpdate(0, 1_700_000_000 + round, 3, 6_400_000_000_000 + round)])
        self.telemetry.reports.publish(DIGEST, 1, round, updates, [(0, SIG)], 1.0)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeApi]:
    api = NodeApi(tmp_path)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
        api.store.close()


async def test_reports_reach_an_observer_through_the_relay_process_and_survive_a_node_restart(
    node: NodeApi, tmp_path: Path,
) -> None:
    stats_file = tmp_path / "relay-stats.json"
    metrics_port = free_port()
    options = RelayOptions(node_url=node.url, key=os.urandom(32), listen_host="127.0.0.1", listen_port=free_port(),
                           allowed_peer_ids=(), limits=ObserverLimits(), stats_file=stats_file,
                           metrics_port=metrics_port)
    stop = asyncio.Event()
    relay = asyncio.create_task(run_relay(options, stop))
    received: list[bytes] = []
    observer: P2PHost[object] = P2PHost(os.urandom(32), topic=REPORTS_TOPIC,
                                        on_message=lambda _sender, data, _opened: received.append(data))
    await observer.start()
    try:
        await wait_until(lambda: stats_file.exists(), timeout=15, what="the relay up")
        stats = json.loads(stats_file.read_text())
        await observer.connect(f"/ip4/127.0.0.1/tcp/{options.listen_port}/p2p/{stats['peer_id']}")

        def relay_stats() -> dict[str, object]:
            return dict(json.loads(stats_file.read_text()))

        await wait_until(lambda: relay_stats()["observers"] == 1 and node.telemetry.reports.clients == 1,
                         timeout=10, what="the observer subscribed and the relay on the node's stream")
        node.attest(1)
        await wait_until(lambda: len(received) == 1, timeout=10, what="the first report")
        body = json.loads(received[0])
        assert (body["epoch"], body["round"], body["config_digest"]) == (1, 1, "0x" + DIGEST.hex())
        assert body["signatures"][0]["signature"] == "0x" + SIG.hex()

        # The node restarts: the relay follows its stream again and the next report arrives.
        await node.stop()
        await node.start()
        await wait_until(lambda: node.telemetry.reports.clients == 1, timeout=10, what="the relay back on the stream")
        node.attest(2)
        await wait_until(lambda: len(received) == 2, timeout=10, what="the report after the restart")
        assert json.loads(received[1])["round"] == 2
        await wait_until(lambda: relay_stats()["published"] == 2, timeout=5, what="the counters written")
        stats = relay_stats()
        assert stats["relayed"] == 2 and stats["stream_connects"] == 2 and stats["dropped"] == []
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "relayer_observers 1.0" in metrics and "relayer_observer_reports_published_total 2.0" in metrics
    finally:
        await observer.stop()
        stop.set()
        await asyncio.wait_for(relay, 15)
    assert json.loads(stats_file.read_text())["published"] == 2  # the final counters, written at stop


def test_a_frame_that_is_not_a_report_is_counted_and_not_published_and_missed_reports_are_counted() -> None:
    published: list[bytes] = []
    relay = ReportRelay("http://127.0.0.1:1", published.append)
    relay.relay("not json")
    relay.relay(json.dumps({"updates": "0x"}))
    relay.relay(json.dumps([1, 2]))
    relay.relay(json.dumps({"epoch": 1, "round": 2, "updates": "0x01"}))
    relay.missed(json.dumps({"missed": 3, "hint": "..."}))
    relay.missed("[]")
    assert published == [b'{"epoch":1,"round":2,"updates":"0x01"}']
    assert relay.counters.refused == {"not_json": 2, "not_a_report": 2} and relay.counters.relayed == 1
    assert relay.counters.missed == 3


def test_relayer_relay_refuses_settings_it_cannot_run_with(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "node.json"
    base = {"name": "n0", "data_dir": str(tmp_path), "rpc_urls": ["http://127.0.0.1:1"],
            "oracle_address": "0x" + "ee" * 20,
            "feeds": [{"feed_id": "BTC-USD", "instrument": "BTC-USD", "kind": "spot", "sources": ["binance", "kraken"],
                       "min_sources": 2, "decimals": 8}]}
    config.write_text(json.dumps(base))
    assert main(["relay", "--config", str(config)]) == 2
    assert "observer_listen_port is not set" in capsys.readouterr().err
    config.write_text(json.dumps({**base, "observer_listen_port": 0}))
    assert main(["relay", "--config", str(config)]) == 2
    assert "observer_key_file" in capsys.readouterr().err
    config.write_text(json.dumps({**base, "observer_listen_port": 0, "api_enabled": False}))
    assert main(["relay", "--config", str(config), "--key-file", str(tmp_path / "missing.key")]) == 2
    assert "api_enabled" in capsys.readouterr().err
