"""A `relayer devnet` subprocess for tests that need live nodes' APIs (one per test module)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class DevnetProcess:
    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.stderr_path = data_dir / "devnet.stderr"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relayer", "devnet", "--nodes", "4", "--json", "--data-dir", str(data_dir),
             "--round-interval-ms", "500", *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stdout_lines: list[str] = []

    def wait_first_report(self, timeout: float = 120) -> dict[str, Any]:
        return self.next_report(timeout)

    def next_report(self, timeout: float = 30) -> dict[str, Any]:
        """The next landed report the devnet prints (--json), waiting at most ``timeout`` s."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()  # a report landed (or the devnet died: "")
                break
        if not line:
            self.stop()
            raise AssertionError(f"devnet produced no report:\n{self.stderr_path.read_text()[-3000:]}")
        self.stdout_lines.append(line)
        return json.loads(line)

    @property
    def info(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "devnet.json").read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.stdout_lines.extend(self.proc.stdout.readlines())
        self._stderr.close()
        return int(self.proc.returncode)
