"""Picking a TCP port for a listener that starts later (devnet nodes, anvil, tests).

Binding port 0 and closing the socket hands out a port from the kernel's ephemeral range,
the same range outgoing connections take their local ports from: between the pick and the
listener's bind, any connection on the machine may take it, and the listener then fails
with "address in use". Ports below that range are never handed to outgoing connections.
"""

from __future__ import annotations

import random
import socket
import threading

_lock = threading.Lock()
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, below the ephemeral range, not handed out before by this process."""
    low = _ephemeral_low()
    with _lock:
        if low > 2048:
            for _ in range(200):
                port = random.randint(max(1024, low - 20_000), low - 1)
                if port not in _handed_out and _bindable(port, host):
                    _handed_out.add(port)
                    return port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # last resort
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        _handed_out.add(port)
        return port
