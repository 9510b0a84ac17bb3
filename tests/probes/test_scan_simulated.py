"""Port scans over the simulated network through the real demultiplexer, on both
backends: exact states, loss (retries and backing off), forged answers, streaming."""

from __future__ import annotations

import anyio
import pytest

from rawprobe.probes.scan import ScanOptions, open_scan, syn_scan_with
from rawprobe.probes.scan_models import PortResult
from rawprobe.targets import resolve_targets
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.tcp import ACK, SYN, TcpHeader, build_tcp, parse_tcp

pytestmark = pytest.mark.anyio

OPEN = frozenset({22, 80, 443})
DROPPED = frozenset(range(1000, 1100))
REJECTED = frozenset(range(2000, 2100))
FAST = ScanOptions(max_rate_pps=0, min_rtt_timeout_s=0.05, initial_rtt_timeout_s=0.2)


def network(**behaviour: object) -> MemoryNetwork:
    net = MemoryNetwork(seed=4)
    for address in ("198.19.0.5", "2001:db8:ff::5"):
        net.add(address, open_ports=OPEN, dropped_ports=DROPPED,
                rejected_ports=REJECTED, delay_s=0.002, **behaviour)  # fmt: skip
    return net


@pytest.mark.parametrize("address", ["198.19.0.5", "2001:db8:ff::5"])
async def test_every_port_gets_its_exact_state(address: str) -> None:
    async with open_memory_transport(network()) as transport:
        space = await resolve_targets([address])
        result = await syn_scan_with(transport, space, range(1, 3001), FAST)
        assert transport.registered == 0  # every key retired
    (host,) = result.hosts
    assert host.open_ports == (22, 80, 443)
    assert set(host.filtered_ports) == DROPPED | REJECTED
    reasons = {p.port: p.reason for p in host.ports}
    assert {reasons[p] for p in DROPPED} == {"no-response"}
    assert {reasons[p] for p in REJECTED} == {"admin-prohibited"}
    assert host.closed == 3000 - 3 - 200 and result.complete
    assert result.timing.backoffs == 0 and result.retransmissions == len(DROPPED)


async def test_with_loss_open_ports_are_found_and_the_scan_backs_off() -> None:
    async with open_memory_transport(network(loss=0.1)) as transport:
        space = await resolve_targets(["198.19.0.5"])
        options = ScanOptions(max_rate_pps=0, min_rtt_timeout_s=0.05, initial_rtt_timeout_s=0.2)
        result = await syn_scan_with(transport, space, range(1, 3001), options)
    (host,) = result.hosts
    assert host.open_ports == (22, 80, 443)
    assert set(host.filtered_ports) >= DROPPED  # loss may hide a rejection, never an open port
    assert result.retransmissions > 300  # ~10% of 3000, plus the dropped ports
    assert result.timing.backoffs >= 1 and result.timing.max_retries_used > 1
    assert result.timing.cwnd < result.timing.peak_cwnd


async def test_forged_syn_acks_with_a_wrong_ack_never_open_a_port() -> None:
    net = network()
    async with open_memory_transport(net) as transport:
        space = await resolve_targets(["198.19.0.5"])
        forged = 0

        def forge(event: object) -> None:
            nonlocal forged
            for packet in transport.sent_packets[forged:]:  # answer each probe first, wrongly
                probe = parse_tcp(packet[20:])[0]
                header = TcpHeader(probe.dst_port, probe.src_port, seq=1, ack=probe.seq + 2,
                                   flags=SYN | ACK)  # fmt: skip
                segment = build_tcp(header, b"", src="198.19.0.5", dst="198.18.1.2")
                ip = IPv4Header(src="198.19.0.5", dst="198.18.1.2", protocol=6)
                transport.inject(build_ipv4(ip, segment))
            forged = len(transport.sent_packets)

        result = await syn_scan_with(transport, space, range(3000, 3200), FAST, on_event=forge)
        assert transport.counters.unmatched >= 150
    assert result.hosts[0].open_ports == () and result.hosts[0].closed == 200


async def test_stream_yields_port_results_as_decided() -> None:
    async with open_memory_transport(network()) as transport:
        space = await resolve_targets(["198.19.0.5", "198.19.0.5/32"])  # merged: one host
        seen: list[PortResult] = []
        async with open_scan(transport, space, range(1, 501), FAST) as stream:
            async for port in stream:
                seen.append(port)
    assert len(seen) == 500 and len({p.port for p in seen}) == 500
    assert stream.result is not None and stream.result.hosts[0].open_ports == (22, 80, 443)


async def test_rate_cap_holds_on_the_simulated_clock() -> None:
    # The cap is the transport's (its token bucket: the one rate limiter).
    async with open_memory_transport(network(), rate_pps=2000.0) as transport:
        space = await resolve_targets(["198.19.0.5"])
        options = ScanOptions(max_rate_pps=2000.0, min_rtt_timeout_s=0.05)
        start = anyio.current_time()
        result = await syn_scan_with(transport, space, range(3000, 3400), options)
        elapsed = anyio.current_time() - start
    assert result.probes_sent == 400 and elapsed >= 0.18  # 400 probes at 2000/s
