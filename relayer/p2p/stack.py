"""The libp2p stack a relayer runs: secure transport choices and process-wide tuning.

Everything here executes inside the host's trio thread. py-libp2p 0.8.1 defaults
are unsafe or wrong for a small authenticated committee (see
/work/shared/notes/libp2p.md); each override below says which default it replaces.
Gossipsub's own tuning lives with the gossip transport (``relayer.p2p.gossip``).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

logger = logging.getLogger(__name__)

DIAL_TIMEOUT_S = 5.0

_tuning_lock = threading.Lock()
_tuned = False

# accept() failures that trio's serve_listeners retries every 0.1 s (its ACCEPT_CAPACITY_ERRNOS).
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


class ListenerAcceptFailures(logging.Filter):
    """What trio says when a libp2p listener's accept() finds no descriptor, said our way.

    trio's serve_listeners logs each failed accept() at ERROR with a traceback and retries
    every 0.1 s; out of file descriptors that is ten tracebacks a second for as long as it
    lasts. Each such record is counted here (by errno name, for every listener in the
    process) and rewritten as one WARNING without a traceback that says what to do; its text
    is the same each time, so the log's repeat filter (relayer.logs) writes it once a minute.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failures: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, OSError) or exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
            return True
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        self.failures[name] += 1
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = ("a p2p listener cannot accept connections: %s (%s); the node keeps running and its "
                      "existing connections serve on, accept() is retried every 0.1 s; raise the open-files "
                      "limit (ulimit -n) or find what holds the descriptors")
        record.args = (os.strerror(exc.errno), name)
        record.exc_info = record.exc_text = None
        return True


accept_failures = ListenerAcceptFailures()


def apply_process_tuning() -> None:
    """Process-wide py-libp2p settings that are module globals, not parameters.

    Idempotent and thread-safe: several hosts in one process share them.
    """
    global _tuned
    with _tuning_lock:
        if _tuned:
            return
        # The swarm waits this long after starting each address's dial even when
        # there is a single address, so every connect() cost ~250 ms. We dial one
        # TCP address per peer; starting the fallbacks at once costs nothing.
        from libp2p.network import swarm as swarm_module

        if hasattr(swarm_module, "_HAPPY_EYEBALLS_DELAY"):
            swarm_module._HAPPY_EYEBALLS_DELAY = 0.0
        logging.getLogger("trio.serve_listeners").addFilter(accept_failures)
        _tuned = True
    quiet_libp2p_loggers()


def quiet_libp2p_loggers() -> None:
    """libp2p loggers at WARNING, flowing into the node's own log handlers.

    py-libp2p pins its auto-connector logger at INFO (a line every 10 s) and
    detaches the "libp2p" logger from the root, so its warnings would bypass the
    node's handlers. Left alone when LIBP2P_DEBUG asks for libp2p's own logging.
    Called at every start(): modules imported lazily create loggers late.
    """
    if os.environ.get("LIBP2P_DEBUG"):
        return
    root = logging.getLogger("libp2p")
    root.setLevel(logging.WARNING)
    root.propagate = True
    for name, existing in list(logging.root.manager.loggerDict.items()):
        if name.startswith("libp2p.") and isinstance(existing, logging.Logger):
            if logging.NOTSET < existing.level < logging.WARNING:
                existing.setLevel(logging.WARNING)


def build_host(key_pair: KeyPair, listen_addrs: Sequence[multiaddr.Multiaddr]) -> IHost:
    """A host offering Noise only and Yamux only.

    The default security options include /plaintext/2.0.0, which accepts an
    unauthenticated dialer; the default muxers fall back to Mplex.
    """
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    connection_config = ConnectionConfig(
        dial_timeout=DIAL_TIMEOUT_S,
        inbound_upgrade_timeout=DIAL_TIMEOUT_S,
        outbound_upgrade_timeout=DIAL_TIMEOUT_S,
        max_connections_per_peer=1,
        # A committee is small; nothing to prune, and the gate closes strangers.
        max_connections=300,
        high_watermark=300,
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=listen_addrs,
        connection_config=connection_config,
        enable_mDNS=False,
        enable_upnp=False,
    )
    # new_host() does not forward a retry policy; the default retries a dead
    # peer 3 times with backoff, so a failed connect() would take seconds.
    network = host.get_network()
    if hasattr(network, "retry_config"):
        network.retry_config = RetryConfig(max_retries=1, initial_delay=0.05, max_delay=0.5)
    return host
