"""A `relayer devnet` subprocess for tests that need live nodes' APIs (one per test module)."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
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
        self._drained: queue.Queue[str] | None = None

    def drain(self) -> None:
        """Read the devnet's stdout on a thread from now on, so that a test busy elsewhere never
        lets the pipe fill (a full pipe blocks the devnet, its simulated venues included);
        next_report takes the lines from there."""
        stdout, lines = self.proc.stdout, queue.Queue[str]()
        assert stdout is not None and self._drained is None

        def pump() -> None:
            for line in stdout:
                lines.put(line)
            lines.put("")

        self._drained = lines
        threading.Thread(target=pump, name="devnet-stdout", daemon=True).start()

    def wait_first_report(self, timeout: float = 120) -> dict[str, Any]:
        return self.next_report(timeout)

    def next_report(self, timeout: float = 30) -> dict[str, Any]:
        """The next landed report the devnet prints (--json), waiting at most ``timeout`` s."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        if self._drained is not None:
            try:
                line = self._drained.get(timeout=timeout)
            except queue.Empty:
                pass
        while self._drained is None and time.monotonic() < deadline and self.proc.poll() is None:
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
        if self.proc.stdout is not None and self._drained is None:
            self.stdout_lines.extend(self.proc.stdout.readlines())
        self._stderr.close()
        return int(self.proc.returncode)
