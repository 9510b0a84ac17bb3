"""The UDP scan's engine side against the real kernel: the target's ICMP rate limit
(Linux's default: a burst of about 6 errors, then one a second) changes no port."""

from __future__ import annotations

import time

import anyio
import pytest

from rawprobe.lab import UDP_OPEN_PORTS, Lab
from rawprobe.probes.scan import scan_protocols
from rawprobe.probes.udp_scan import udp_options, udp_scan_with
from rawprobe.targets import resolve_targets
from rawprobe.transport.raw import open_transport

pytestmark = [pytest.mark.lab, pytest.mark.anyio]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("limit", [True, False])
async def test_ports_1_40_with_and_without_the_targets_icmp_limit_are_all_right(
    lab: Lab, limit: bool
) -> None:
    lab.set_icmp_ratelimit(limit, roles=["target"])
    try:
        space = await resolve_targets([lab.target_v4])
        with lab.entered("client"):
            transport_cm = open_transport(scan_protocols(space, "udp"), rate_pps=0)
            transport = await transport_cm.__aenter__()
        try:
            started = time.monotonic()
            options = udp_options(max_rate_pps=0)
            with anyio.fail_after(120):  # (a hang fails here, not at CI's time limit)
                result = await udp_scan_with(transport, space, range(1, 41), options)
            took_s = time.monotonic() - started
        finally:
            await transport_cm.__aexit__(None, None, None)
    finally:
        lab.set_icmp_ratelimit(False, roles=["target"])
    (host,) = result.hosts
    opened = {p for p in UDP_OPEN_PORTS if p <= 40}
    assert {p.port: p.state for p in host.ports} == dict.fromkeys(opened, "open")
    closed = 40 - len(opened)
    assert host.closed == closed
    limit_s = (closed - 6) + 2 * 3.0 + 3 if limit else 5.0  # its 1/s, two timeouts, slack
    assert took_s < limit_s, took_s
