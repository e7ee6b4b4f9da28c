"""The API out of file descriptors: the real API server in a process of its own with a low
RLIMIT_NOFILE, driven into EMFILE by connections it cannot accept. The process stays up and
quiet (its log does not grow per failed accept) and serves again once the connections close."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SPARE_FDS = 24

SERVER = f"""
import asyncio, os, resource, sys
from pathlib import Path
from relayer.api import ApiServer
from relayer.http_guard import ApiLimits, ConnectionGuard
from relayer.logs import setup_logging
from relayer.metrics import NodeIdentity, Telemetry
from relayer.store import Store

async def main() -> None:
    setup_logging(node="api-fd")
    store = Store(Path(sys.argv[1]))
    telemetry = Telemetry(NodeIdentity(name="api-fd", address="0x" + "aa" * 20, dry_run=True,
                                       oracle="0x" + "bb" * 20), store)
    # The cap far above the descriptors: the process runs out of descriptors first.
    limits = ApiLimits(max_connections=10_000, header_timeout_s=600)
    api = ApiServer(telemetry, "127.0.0.1", 0, guard=ConnectionGuard(limits))
    await api.start()
    in_use = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + {SPARE_FDS}, hard))
    print(api.url, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _until(check: Callable[[], bool], what: str, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, f"still not the case after {deadline_s} s: {what}"
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    log_path = tmp_path / "api.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path / "store.sqlite")],
                                stdout=subprocess.PIPE, stderr=log_file, text=True)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://"), (url, log_path.read_text())
            yield proc, url, log_path
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_out_of_descriptors_the_api_stays_up_quiet_and_serves_again(
        server: tuple[subprocess.Popen[str], str, Path]) -> None:
    proc, url, log_path = server
    host, port = url.removeprefix("http://").rsplit(":", 1)
    assert _get(url + "/healthz")[0] == 200

    clients = []
    try:
        # Twice the spare descriptors: the rest wait in the kernel's backlog, unaccepted.
        for _ in range(2 * SPARE_FDS):
            clients.append(socket.create_connection((host, int(port)), timeout=5))
        _until(lambda: "cannot accept connections" in log_path.read_text(), "the API logs that accept() fails")
        # Let accept() fail several times over (it retries every second).
        time.sleep(4)
        assert proc.poll() is None, "the process is alive"
        lines = log_path.read_text().splitlines()
        assert len(lines) < 20, lines
        assert sum("cannot accept connections" in line for line in lines) == 1, lines
    finally:
        for client in clients:
            client.close()

    _until(lambda: _get(url + "/healthz")[0] == 200, "the API serves again")
    status, metrics = _get(url + "/metrics")
    assert status == 200
    failures = [line for line in metrics.splitlines()
                if line.startswith('relayer_api_accept_failures_total{error="EMFILE"}')]
    assert failures and float(failures[0].rsplit(" ", 1)[1]) >= 2, metrics
    assert "relayer_api_accept_failing 0.0" in metrics
    assert "accepts connections again" in log_path.read_text()
    assert proc.poll() is None
