"""Fixtures for the p2p tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.relayer.p2p.hosts import MakeNode, node_factory


@pytest.fixture
async def make_node() -> AsyncIterator[MakeNode]:
    async for factory in node_factory():
        yield factory
