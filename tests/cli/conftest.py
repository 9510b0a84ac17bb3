"""Fixtures of the in-process CLI tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rawprobe.transport import ladder
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport


@pytest.fixture
def simulated_network(monkeypatch: pytest.MonkeyPatch) -> MemoryNetwork:
    """An empty simulated network that every transport the CLI opens runs over (the
    privilege ladder's raw transport patched)."""
    network = MemoryNetwork()

    @contextlib.asynccontextmanager
    async def transport(*_args: Any, **_kwargs: Any) -> AsyncIterator[Any]:
        async with open_memory_transport(network) as memory:
            yield memory

    monkeypatch.setattr(ladder, "open_transport", transport)
    return network
