"""A real anvil node as a child process on a free loopback port (tests, local devnets).

Synchronous on purpose: it is started from fixtures and CLI helpers before any event loop
runs, and the only I/O it does itself is a readiness probe.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from eth_account.hdaccount import key_from_seed, seed_from_mnemonic

from relayer.chain.codec import address_of
from relayer.chain.errors import ChainError, RpcError
from relayer.ports import free_port

__all__ = ["ANVIL_MNEMONIC", "AnvilNode", "anvil_binary", "dev_accounts"]

REPO_ROOT = Path(__file__).resolve().parents[2]
# anvil's (and hardhat's) standard development mnemonic; its keys are public knowledge.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ACCOUNT_COUNT = 30
START_TIMEOUT_S = 10.0
PROBE_INTERVAL_S = 0.02
STOP_TIMEOUT_S = 3.0
PORT_ATTEMPTS = 3


def anvil_binary() -> Path:
    """The pinned anvil from the repo's npm toolchain (``package.json``)."""
    return REPO_ROOT / "node_modules" / ".bin" / "anvil"


@functools.cache
def dev_accounts(count: int = ACCOUNT_COUNT) -> tuple[tuple[str, bytes], ...]:
    """(address, private key) of the first ``count`` accounts anvil derives from its mnemonic."""
    seed = seed_from_mnemonic(ANVIL_MNEMONIC, "")
    accounts = []
    for i in range(count):
        key = key_from_seed(seed, f"m/44'/60'/0'/0/{i}")
        accounts.append((address_of(key), key))
    return tuple(accounts)


def _rpc(url: str, method: str, params: list[Any], timeout: float) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RpcError(f"{method} failed on {url}: {answer['error']}")
    return answer["result"]


def die_with_parent() -> None:
    # Linux (a preexec_fn): the child gets SIGTERM when its parent dies, even by SIGKILL.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class AnvilNode:
    """One running anvil; use as a context manager or call :meth:`stop`."""

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        port: int,
        chain_id: int,
        log: IO[bytes],
    ) -> None:
        self.port = port
        self.chain_id = chain_id
        self.rpc_url = f"http://127.0.0.1:{port}"
        self.accounts: list[tuple[str, bytes]] = list(dev_accounts(ACCOUNT_COUNT))
        self._process = process
        self._log = log
        # If the owner forgets stop() (or a test run aborts), the child must not outlive us.
        self._finalizer = weakref.finalize(self, _terminate, process)

    @classmethod
    def start(
        cls,
        *,
        port: int | None = None,
        block_time: float | None = None,
        chain_id: int = 31337,
    ) -> AnvilNode:
        """Start anvil and return once it answers ``eth_chainId``."""
        binary = anvil_binary()
        if not binary.exists():
            raise ChainError(
                f"anvil not found at {binary}; install the pinned toolchain with "
                "`npm ci` (or `make setup`) in the repository root"
            )
        # A port picked by us can be taken before anvil binds it; retry then with a new one.
        attempts = 1 if port is not None else PORT_ATTEMPTS
        last_error: ChainError | None = None
        for _ in range(attempts):
            try:
                return cls._start_once(binary, port or free_port(), block_time, chain_id)
            except ChainError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    @classmethod
    def _start_once(
        cls, binary: Path, port: int, block_time: float | None, chain_id: int
    ) -> AnvilNode:
        command = [
            str(binary),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--chain-id", str(chain_id),
            "--accounts", str(ACCOUNT_COUNT),
            "--mnemonic", ANVIL_MNEMONIC,
            "--silent",
        ]  # fmt: skip
        if block_time is not None:
            # Mixed mining keeps automine (a transaction lands at once) and also mines an
            # empty block every interval, so block.timestamp tracks the clock on a quiet
            # chain the way it does on a live one.
            command += ["--block-time", str(block_time), "--mixed-mining"]
        # A file, not a pipe: nobody reads anvil's output while it runs, and a full pipe
        # would block it.
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=die_with_parent
        )
        node = cls(process=process, port=port, chain_id=chain_id, log=log)
        try:
            node._wait_ready()
        except BaseException:
            node.stop()
            raise
        return node

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise ChainError(
                    f"anvil exited with code {self._process.returncode} before answering on "
                    f"{self.rpc_url}: {self._read_log()}"
                )
            try:
                answered = int(_rpc(self.rpc_url, "eth_chainId", [], PROBE_INTERVAL_S * 10), 16)
            except (OSError, urllib.error.URLError, RpcError):
                if time.monotonic() > deadline:
                    raise ChainError(
                        f"anvil did not answer on {self.rpc_url} within {START_TIMEOUT_S}s; "
                        f"log: {self._read_log()}"
                    ) from None
                time.sleep(PROBE_INTERVAL_S)
                continue
            if answered != self.chain_id:
                raise ChainError(f"anvil answered chain id {answered}, expected {self.chain_id}")
            return

    def _read_log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-2000:] or "(no output)"

    def rpc(self, method: str, params: list[Any] | None = None, *, timeout: float = 5.0) -> Any:
        """A raw JSON-RPC call (``evm_snapshot``, ``evm_revert``, ``evm_increaseTime``...)."""
        try:
            return _rpc(self.rpc_url, method, params or [], timeout)
        except (OSError, urllib.error.URLError) as exc:
            raise RpcError(f"{method} on {self.rpc_url} failed: {exc}") from exc

    def pids(self) -> list[int]:
        """The process started and every process under it (npm's launcher runs the anvil
        binary as a child): stopping the launcher alone leaves the chain answering."""
        found, todo = [], [self._process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except OSError:
                pass
        return found

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to anvil and its launcher (fault injection: SIGSTOP stalls the whole RPC)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        """Terminate (then kill) the process; safe to call more than once."""
        self._finalizer()
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> AnvilNode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"AnvilNode(rpc_url={self.rpc_url!r}, chain_id={self.chain_id}, running={self.running})"
