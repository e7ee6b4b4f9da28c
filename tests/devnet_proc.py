"""A `relayer devnet` subprocess for tests that need live nodes' APIs (one per test module)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class DevnetProcess:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.stderr_path = data_dir / "devnet.stderr"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relayer", "devnet", "--nodes", "4", "--json", "--data-dir", str(data_dir),
             "--round-interval-ms", "500", *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.stdout_lines: list[str] = []
        # One reader owns stdout: each landed report, with the wall-clock time it was read.
        self._lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.stdout_lines.append(line)
                self._lines.put((time.time(), line))
        self._lines.put(None)  # end of output: the devnet stopped

    def wait_first_report(self, timeout: float = 120) -> dict[str, Any]:
        return self.next_report(timeout)

    def drain(self) -> None:
        """The devnet's output is always read on a thread (a full pipe would block the devnet,
        its simulated venues included); kept for callers that ask for it explicitly."""

    def next_report(self, timeout: float = 30) -> dict[str, Any]:
        """The next landed report the devnet prints (--json), waiting at most ``timeout`` s."""
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            item = None
        if item is None:
            self.stop()
            raise AssertionError(f"devnet produced no report:\n{self.stderr_path.read_text()[-3000:]}")
        return dict(json.loads(item[1]))

    def reports_for(self, seconds: float) -> list[tuple[float, dict[str, Any]]]:
        """The reports that land in the next ``seconds``, each with the wall-clock time it was read."""
        deadline = time.monotonic() + seconds
        fresh: list[tuple[float, dict[str, Any]]] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                self._lines.put(None)
                break
            fresh.append((item[0], json.loads(item[1])))
        return fresh

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
        self._reader.join(10)  # reads what is left, to the end of output
        self._stderr.close()
        return int(self.proc.returncode)
