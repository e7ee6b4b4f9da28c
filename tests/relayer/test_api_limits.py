"""The API's bounds as settings and as `ApiLimits`, and what the guard exports as metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from relayer.http_guard import ApiLimits, GuardCollector, GuardStats
from relayer.settings import Settings, SettingsError

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, **over: object) -> Settings:
    config = {"data_dir": str(tmp_path), "rpc_urls": ["http://127.0.0.1:8545"], "oracle_address": "0x" + "11" * 20,
              "feeds": [{"feed_id": "BTC-USD", "instrument": "BTC-USD", "sources": ["binance", "coinbase"]}], **over}
    path = tmp_path / "node.json"
    path.write_text(json.dumps(config))
    return Settings.load(path)


def test_the_defaults_are_bounded(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert (s.api_max_connections, s.api_max_streams, s.api_header_timeout_s, s.api_body_timeout_s) == \
        (256, 32, 10.0, 30.0)
    assert ApiLimits() == ApiLimits(max_connections=s.api_max_connections, max_streams=s.api_max_streams,
                                    header_timeout_s=s.api_header_timeout_s, body_timeout_s=s.api_body_timeout_s)


def test_more_streams_than_connections_is_refused_with_the_settings_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="api_max_streams .* must not exceed api_max_connections"):
        _settings(tmp_path, api_max_connections=8, api_max_streams=9)
    with pytest.raises(SettingsError, match="api_header_timeout_s"):
        _settings(tmp_path, api_header_timeout_s=0)
    with pytest.raises(ValueError, match="max_streams <= max_connections"):
        ApiLimits(max_connections=2, max_streams=3)
    with pytest.raises(ValueError, match="timeouts must be positive"):
        ApiLimits(body_timeout_s=0)


def test_the_counters_are_exported_per_reason() -> None:
    stats = GuardStats(open=3, streams=1, refused={"connection_cap": 2}, closed={"header_timeout": 5, "idle": 1},
                       accept_failures={"EMFILE": 4}, accept_failing_since=12.0)
    registry = CollectorRegistry()
    registry.register(GuardCollector(stats))
    text = generate_latest(registry).decode()
    for line in ("relayer_api_connections_open 3.0", "relayer_api_streams_open 1.0", "relayer_api_accept_failing 1.0",
                 'relayer_api_refused_total{reason="connection_cap"} 2.0',
                 'relayer_api_closed_total{reason="header_timeout"} 5.0', 'relayer_api_closed_total{reason="idle"} 1.0',
                 'relayer_api_accept_failures_total{error="EMFILE"} 4.0'):
        assert line in text, (line, text)
