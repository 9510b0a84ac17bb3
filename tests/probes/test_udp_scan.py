"""The UDP scan (probes/udp_scan.py) over the simulated network: states and reasons,
payloads that real services answer."""

from __future__ import annotations

import pytest

from rawprobe.probes.engine import Target
from rawprobe.probes.targets import TargetSpace
from rawprobe.probes.udp_payloads import payload_for
from rawprobe.probes.udp_scan import TOP_UDP_PORTS, UdpScan, udp_options, udp_scan_with
from rawprobe.targets import resolve_targets
from rawprobe.transport.keys import Cookies
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport

pytestmark = pytest.mark.anyio
FAST = udp_options(max_rate_pps=0, min_rtt_timeout_s=0.05, initial_rtt_timeout_s=0.2)


async def test_udp_answers_are_open_port_unreachables_closed_silence_open_filtered() -> None:
    net = MemoryNetwork(seed=1)
    net.add("198.19.0.5", udp_services=frozenset({53, 161}))
    net.add("198.19.0.6", alive=False)
    async with open_memory_transport(net) as transport:
        space = await resolve_targets(["198.19.0.5", "198.19.0.6"])
        result = await udp_scan_with(transport, space, range(50, 60), FAST)
        assert transport.registered == 0
    live, silent = result.hosts
    assert result.technique == "udp" and result.complete
    assert [(p.port, p.state, p.reason) for p in live.ports] == [(53, "open", "udp-response")]
    assert live.counts == (("closed", "port-unreach", 9), ("open", "udp-response", 1))
    assert silent.counts == (("open|filtered", "no-response", 10),) and not silent.is_up


def test_probes_carry_a_protocol_request_or_the_cookie() -> None:
    space = TargetSpace.parse(["198.19.0.5"])
    probes = UdpScan(space, (53, 9999), ["198.18.1.2"], Cookies(b"s" * 32), sport=40000)
    target = Target(0, space.packed(0), int.from_bytes(space.packed(0), "big"))
    dns, other = (probes.probe(target, index, 0) for index in (0, 1))
    assert dns.packet[28:] == payload_for(53) != b""
    assert len(other.packet[28:]) == 8 and other.packet[28:32] == other.packet[32:36]
    assert other.key != probes.probe(target, 1, 1).key  # (a cookie of the attempt)
    assert len(TOP_UDP_PORTS) == 100
