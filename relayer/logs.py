"""Log set-up: plain lines for a terminal, JSON on request; round fields on every line.

Keys the node holds are registered with :func:`register_secret`; any line that would
carry one (hex, with or without 0x, any case) has it replaced before it is written.

Identical WARNING and ERROR lines (same logger, level and text) are written once per
:data:`REPEAT_WINDOW_S`; the next one written says how many were held back. A failure that
repeats every few milliseconds (a full disk, a process out of file descriptors) then costs
a line a minute, not a storm that fills the disk further.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

_FIELDS = ("node", "feed", "epoch", "round", "peer")
REPEAT_WINDOW_S = 60.0
_REPEATS_KEPT = 1024
_SECRETS: set[str] = set()
_REDACTED = "[redacted]"


def register_secret(secret: bytes | str) -> None:
    """Never let this value reach a log line (defence in depth: nothing should log it anyway)."""
    text = secret.hex() if isinstance(secret, bytes) else str(secret)
    if len(text) >= 8:
        _SECRETS.add(text.lower())


def _redact(line: str) -> str:
    if not _SECRETS:
        return line
    low = line.lower()
    for secret in _SECRETS:
        while (at := low.find(secret)) >= 0:
            line = line[:at] + _REDACTED + line[at + len(secret):]
            low = line.lower()
    return line


class _NodeFilter(logging.Filter):
    def __init__(self, node: str, peer: str | None = None) -> None:
        super().__init__()
        self.node = node
        self.peer = peer

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "node"):
            record.node = self.node
        # A line about a round names a peer: the remote one when known, else this node itself.
        if self.peer and getattr(record, "peer", None) is None and getattr(record, "epoch", None) is not None:
            record.peer = self.peer
        return True


class RepeatFilter(logging.Filter):
    """Holds back a WARNING or ERROR line identical to one written less than ``window`` s ago."""

    def __init__(self, window: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        # (logger, level, text) -> (when last written, lines held back since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} ({last[1]} identical lines held back in the last {now - last[0]:.0f} s)"
            record.args = None
        self._seen[key] = (now, 0)
        if len(self._seen) > _REPEATS_KEPT:
            for old in sorted(self._seen, key=lambda k: self._seen[k][0])[: len(self._seen) - _REPEATS_KEPT]:
                del self._seen[old]
        return True


def set_log_identity(peer: str) -> None:
    """Name this node (its signer address) as the peer on round lines that name no other."""
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, _NodeFilter):
                f.peer = peer


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        fields = " ".join(f"{k}={getattr(record, k)}" for k in _FIELDS if getattr(record, k, None) is not None)
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += f" [{fields}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return _redact(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return _redact(json.dumps(data, default=str))


def setup_logging(*, node: str, json_lines: bool = False, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    handler.addFilter(_NodeFilter(node))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # py-libp2p and web3 are chatty at INFO (see notes/libp2p.md).
    for noisy in ("libp2p", "multiaddr", "web3", "urllib3", "asyncio", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
