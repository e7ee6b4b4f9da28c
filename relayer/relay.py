"""The observer relay as a process of its own (`relayer relay`): it follows one node's report
stream (``/api/reports/stream`` on the node's HTTP API) and publishes each attested report on
the read-only observer topic (``relayer.p2p.observers``), with the node's allow-list and rate
limits (the ``observer_*`` settings).

Why a process apart from the node: the relay's libp2p host, its gossip and its observers'
bytes then spend another process's CPU (or another machine's), never the round protocol's;
the node only writes each report once more to a local HTTP stream. The consensus host never
sees an observer: the relay's only channel to its node is that stream, which carries reports
out and nothing in.

A relay that loses its node's stream (the node restarts) reconnects with a back-off and goes
on; reports attested meanwhile are not replayed (observers fetch them by round from any
node's API). Its counters go to a JSON file (``--stats-file``) and, with ``--metrics-port``,
to Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from relayer.p2p.errors import P2PError
from relayer.p2p.observers import ObserverLimits, ObserverRelay
from relayer.settings import Settings, SettingsError, read_key_file

log = logging.getLogger(__name__)

STREAM_PATH = "/api/reports/stream"
# The node is on the same machine: retrying often costs little, and a relay that started before
# its node's API serves reports soon after the API is up.
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 1.0
STATS_EVERY_S = 1.0
# The stream writes a keep-alive every 15 s: a read silent for longer means a dead connection.
STREAM_READ_TIMEOUT_S = 45.0


@dataclass
class RelayCounters:
    """What the relay process did with its node's stream (its libp2p side counts the rest)."""

    relayed: int = 0  # reports handed to the observer relay
    stream_connects: int = 0
    missed: int = 0  # reports the node's stream dropped because the relay read too slowly
    refused: dict[str, int] = field(default_factory=dict)  # frames not relayed, by reason

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each server-sent event; comments (keep-alives) are skipped."""
    event, data = "message", list[str]()
    while True:
        line = await asyncio.wait_for(response.content.readline(), STREAM_READ_TIMEOUT_S)
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif text.startswith(":"):
            continue
        elif text.startswith("event:"):
            event = text[6:].strip()
        elif text.startswith("data:"):
            data.append(text[5:].removeprefix(" "))


class ReportRelay:
    """Follows ``node_url``'s report stream into ``publish`` (the observer relay's)."""

    def __init__(self, node_url: str, publish: Callable[[bytes], None]) -> None:
        self.node_url = node_url.rstrip("/")
        self._publish = publish
        self.counters = RelayCounters()
        self.connected = asyncio.Event()

    def relay(self, data: str) -> None:
        """One report frame from the stream, published compact; anything else is counted."""
        try:
            body = json.loads(data)
        except ValueError:
            self.counters.refuse("not_json")
            return
        if not isinstance(body, dict) or body.get("updates") in (None, "0x"):
            self.counters.refuse("not_a_report")
            return
        try:
            self._publish(json.dumps(body, separators=(",", ":")).encode())
        except P2PError as exc:
            self.counters.refuse("publish_failed")
            log.warning("could not publish epoch %s round %s to observers: %s", body.get("epoch"), body.get("round"), exc)
            return
        self.counters.relayed += 1

    def missed(self, data: str) -> None:
        """The node dropped reports this relay read too slowly: counted (they are not replayed)."""
        try:
            body = json.loads(data)
            self.counters.missed += int(body["missed"])
        except (ValueError, KeyError, TypeError):
            self.counters.refuse("not_json")
            return
        log.warning("the node's stream dropped %d reports this relay read too slowly", int(body["missed"]))

    async def follow(self) -> None:
        """Forever: connect to the stream, relay what it says, reconnect when it ends."""
        backoff = RECONNECT_MIN_S
        url = self.node_url + STREAM_PATH
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as session:
            while True:
                try:
                    async with session.get(url) as response:
                        if response.status != 200:
                            raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                                              message=(await response.text())[:200])
                        self.counters.stream_connects += 1
                        self.connected.set()
                        backoff = RECONNECT_MIN_S
                        log.info("following the reports of %s", self.node_url)
                        async for event, data in sse_events(response):
                            if event == "report":
                                self.relay(data)
                            elif event == "missed":
                                self.missed(data)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("report stream of %s: %s; reconnecting in %.1f s", self.node_url, exc or type(exc).__name__,
                                backoff)
                except Exception:  # the relay outlives whatever its node's stream says
                    log.exception("report stream of %s failed; reconnecting in %.1f s", self.node_url, backoff)
                self.connected.clear()
                await asyncio.sleep(backoff)
                backoff = min(RECONNECT_MAX_S, backoff * 2)


def stats_record(relay: ObserverRelay, counters: RelayCounters) -> dict[str, Any]:
    """The relay process's counters, as ``--stats-file`` keeps them."""
    return {
        "at": time.time(), "peer_id": relay.peer_id, "listen_addrs": relay.listen_addrs,
        "observers": len(relay.observers()), "published": relay.stats()["published"],
        "dropped": [[peer, reason, n] for (peer, reason), n in sorted(relay.dropped.items())],
        "relayed": counters.relayed, "stream_connects": counters.stream_connects, "missed": counters.missed,
        "refused": dict(counters.refused),
    }


class RelayCollector(Collector):
    """Prometheus families of the relay process (``relayer_`` prefix, as the node's)."""

    def __init__(self, relay: ObserverRelay, counters: RelayCounters) -> None:
        self.relay = relay
        self.counters = counters

    def collect(self) -> Any:
        stats = stats_record(self.relay, self.counters)
        yield GaugeMetricFamily("relayer_observers", "Observers connected to the observer relay and subscribed",
                                value=stats["observers"])
        yield CounterMetricFamily("relayer_observer_reports_published", "Reports published to observers",
                                  value=stats["published"])
        yield CounterMetricFamily("relayer_observer_stream_connects", "Connections to the node's report stream",
                                  value=stats["stream_connects"])
        yield CounterMetricFamily("relayer_observer_reports_missed", "Reports the node's stream dropped because "
                                  "the relay read too slowly", value=stats["missed"])
        dropped = CounterMetricFamily("relayer_messages_dropped", "Messages dropped, per peer, reason and layer",
                                      labels=["peer", "reason", "layer"])
        for peer, reason, n in stats["dropped"]:
            dropped.add_metric([peer, reason, "observers"], n)
        yield dropped


def write_stats(path: Path, record: dict[str, Any]) -> None:
    # Written whole and renamed: a reader never sees half a file.
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(record))
    os.replace(partial, path)


@dataclass(frozen=True, slots=True)
class RelayOptions:
    node_url: str
    key: bytes
    listen_host: str
    listen_port: int
    allowed_peer_ids: tuple[str, ...]
    limits: ObserverLimits
    stats_file: Path | None = None
    metrics_port: int | None = None


def relay_options(settings: Settings, *, node_url: str | None = None, key_file: Path | None = None,
                  stats_file: Path | None = None, metrics_port: int | None = None) -> RelayOptions:
    """The relay of the node configured by ``settings``: its observer_* settings, its API."""
    if settings.observer_listen_port is None:
        raise SettingsError("observer_listen_port is not set: give the relay a port (0: any free one) in the "
                            "node's config or RELAYER_OBSERVER_LISTEN_PORT")
    key_path = key_file or settings.observer_key_file
    if key_path is None:
        raise SettingsError("the relay needs its own key: set observer_key_file (a 32-byte hex secp256k1 key, not "
                            "the node's signing key) or pass --key-file")
    if node_url is None:
        if not settings.api_enabled:
            raise SettingsError("the node's API is off (api_enabled = false): the relay reads its reports from "
                                "/api/reports/stream; enable it or pass --node-url")
        host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
        node_url = f"http://{host}:{settings.api_port}"
    return RelayOptions(
        node_url=node_url, key=read_key_file(key_path), listen_host=settings.observer_listen_host,
        listen_port=settings.observer_listen_port, allowed_peer_ids=tuple(settings.observer_peers),
        limits=ObserverLimits(max_observers=settings.observer_max_peers, bytes_per_s=settings.observer_bytes_per_s,
                              burst_bytes=settings.observer_burst_bytes, ban_s=settings.observer_ban_s,
                              max_message_size=settings.max_message_bytes),
        stats_file=stats_file, metrics_port=metrics_port,
    )


async def run_relay(options: RelayOptions, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (SIGINT / SIGTERM set it when none is given)."""
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    relay = ObserverRelay(options.key, listen_host=options.listen_host, listen_port=options.listen_port,
                          allowed_peer_ids=options.allowed_peer_ids, limits=options.limits)
    await relay.start()
    follower = ReportRelay(options.node_url, relay.publish)
    log.info("observer relay on %s (%s), reports from %s", ", ".join(relay.listen_addrs),
             f"{len(options.allowed_peer_ids)} allowed peer ids" if options.allowed_peer_ids else "open to any peer",
             options.node_url)
    metrics = None
    if options.metrics_port is not None:
        registry = CollectorRegistry()
        registry.register(RelayCollector(relay, follower.counters))
        metrics, _thread = start_http_server(options.metrics_port, addr="127.0.0.1", registry=registry)
    following = asyncio.create_task(follower.follow())
    try:
        while not stop.is_set():
            if options.stats_file is not None:
                write_stats(options.stats_file, stats_record(relay, follower.counters))
            try:
                await asyncio.wait_for(stop.wait(), STATS_EVERY_S)
            except TimeoutError:
                pass
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        if options.stats_file is not None:
            write_stats(options.stats_file, stats_record(relay, follower.counters))
        if metrics is not None:
            metrics.shutdown()
        await relay.stop()
