"""``rawprobe.udp_scan()`` (the library form of ``scan -sU``) over a simulated network."""

from __future__ import annotations

import pytest

import rawprobe
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport

pytestmark = pytest.mark.anyio


async def test_udp_scan_is_public_and_reports_udp_states() -> None:
    assert "udp_scan" in rawprobe.__all__
    net = MemoryNetwork(seed=3)
    net.add("198.19.0.5", udp_services=frozenset({53}))
    async with open_memory_transport(net) as transport:
        result = await rawprobe.udp_scan(
            "198.19.0.5", "50-55", rate_pps=0, retries=0, max_retries=0, transport=transport
        )
    assert result.technique == "udp"
    (host,) = result.hosts
    assert [(p.port, p.state, p.reason) for p in host.ports] == [(53, "open", "udp-response")]
    assert host.counts == (("closed", "port-unreach", 5), ("open", "udp-response", 1))
