"""docker-compose.yml validates, and wires what the README promises: anvil, the venues,
four relayers and Prometheus scraping each of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.unit


def _compose() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_file_validates() -> None:
    compose = _compose()
    if compose is None:
        pytest.skip("no docker-compose or docker compose plugin; `make setup` installs Debian's docker-compose")
    proc = subprocess.run([*compose, "-f", str(REPO / "docker-compose.yml"), "config", "-q"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_compose_runs_four_relayers_scraped_by_prometheus() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    for service in ("anvil:", "venues:", "bootstrap:", "prometheus:"):
        assert f"\n  {service}" in compose
    prometheus = (REPO / "prometheus.yml").read_text()
    for i in range(4):
        assert f"\n  relayer-{i}:" in compose
        assert f"relayer-{i}:8788" in prometheus
    assert (REPO / "Dockerfile").exists() and (REPO / "docker" / "bootstrap.py").exists()
