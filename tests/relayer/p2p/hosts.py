"""Helpers for tests that run real P2PHost instances on 127.0.0.1 (one trio thread each)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from relayer.p2p.host import P2PHost

READY_TIMEOUT = 10.0


@dataclass
class Inbox:
    """What one host's on_message saw, and on which thread."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    opened: list[object] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)

    def __call__(self, sender: str, data: bytes, opened: object) -> None:
        self.messages.append((sender, data))
        self.opened.append(opened)
        self.threads.add(threading.get_ident())

    def from_(self, sender: str) -> list[bytes]:
        return [data for who, data in self.messages if who == sender]


@dataclass
class Node:
    host: P2PHost[object]
    inbox: Inbox


MakeNode = Callable[..., Awaitable[Node]]


def p2p_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("p2p-") or "_background_cleanup" in t.name
    ]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def node_factory() -> AsyncIterator[MakeNode]:
    """Start hosts on loopback; stop all of them afterwards and check nothing is left."""
    nodes: list[Node] = []

    async def factory(
        key: bytes | None = None,
        *,
        allowed: Iterable[str] | None = None,
        **kwargs: object,
    ) -> Node:
        inbox = Inbox()
        host = P2PHost(key or os.urandom(32), allowed_addresses=allowed, on_message=inbox, **kwargs)  # type: ignore[arg-type]  # test-only passthrough
        node = Node(host, inbox)
        nodes.append(node)
        await host.start()
        return node

    yield factory

    started = time.monotonic()
    await asyncio.gather(*(n.host.stop() for n in nodes))
    assert time.monotonic() - started < 6.0, "stop() must be bounded"
    assert p2p_threads() == [], f"threads left behind: {p2p_threads()}"


async def connect_full_mesh(nodes: list[Node]) -> None:
    await asyncio.gather(
        *(
            nodes[i].host.connect(nodes[j].host.listen_addrs[0])
            for i in range(len(nodes))
            for j in range(i + 1, len(nodes))
        )
    )


def keys(n: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(n)]


def address(key: bytes) -> str:
    from eth_account import Account

    return str(Account.from_key(key).address)


def raw_connections(host: P2PHost[object]) -> list[str]:
    """Every connected peer, committee or not (connected_peers() filters)."""
    runtime = host._runtime
    return [] if runtime is None else [str(p) for p, conns in list(runtime.swarm.connections.items()) if conns]
