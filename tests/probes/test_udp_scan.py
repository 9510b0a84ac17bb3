"""The UDP scan (probes/udp_scan.py) over the simulated network: states and reasons,
payloads that real services answer."""

from __future__ import annotations

import pytest

from rawprobe.probes.udp_scan import PAYLOADS, TOP_UDP_PORTS, udp_options, udp_scan_with
from rawprobe.targets import resolve_targets
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


def test_payloads_carry_the_probes_cookie_and_top_ports_are_nmaps() -> None:
    dns = PAYLOADS[53](0x12345678)
    assert dns[:2] == b"\x56\x78" and dns[4:6] == b"\x00\x01"  # ID, one question
    ntp = PAYLOADS[123](0x12345678)
    assert len(ntp) == 48 and ntp[0] == 0x23 and ntp[40:44] == b"\x12\x34\x56\x78"
    snmp = PAYLOADS[161](0x12345678)
    assert snmp[0] == 0x30 and snmp[1] == len(snmp) - 2 and b"public" in snmp
    assert b"\x02\x04\x12\x34\x56\x78" in snmp  # the request-id
    assert len(TOP_UDP_PORTS) == len(set(TOP_UDP_PORTS)) == 100
    assert TOP_UDP_PORTS[:4] == (631, 161, 137, 123)
