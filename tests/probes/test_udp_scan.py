"""The UDP scan (probes/udp_scan.py) over the simulated network: states and reasons,
payloads that real services answer."""

from __future__ import annotations

import math
import socket

import pytest

from rawprobe.probes.engine import Target
from rawprobe.probes.scan_models import ScanResult
from rawprobe.probes.targets import TargetSpace
from rawprobe.probes.udp_payloads import payload_for
from rawprobe.probes.udp_scan import (
    TOP_UDP_PORTS,
    UdpScan,
    UdpScanMachine,
    udp_options,
    udp_scan_with,
)
from rawprobe.targets import resolve_targets
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport
from rawprobe.transport.wire.icmp import build_icmp
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.udp import UdpHeader, build_udp

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


def _scan_a_simulated_target(
    ports: tuple[int, ...],
    open_ports: set[int],
    silent_ports: set[int],
    burst: float,
    tokens: float | None = None,
) -> ScanResult:
    """Run a UDP scan machine against a simulated Linux host over a 1 ms clock: its
    open ports answer, its silent ports drop, the rest answer port unreachables out of
    a bucket of ``burst`` tokens refilled one a second (math.inf: no limit), holding
    ``tokens`` at the start (None: full)."""
    src, dst = "198.18.1.2", "198.19.0.5"
    options = udp_options(max_rate_pps=0, min_rtt_timeout_s=0.1, initial_rtt_timeout_s=0.2)
    machine = UdpScanMachine(
        TargetSpace.parse([dst]), ports, cookies=Cookies(b"s" * 32),
        source_for=lambda _a: src, options=options,
    )  # fmt: skip
    tokens, last_s, now = (burst if tokens is None else tokens), 0.0, 0.0
    due: list[tuple[float, Reply]] = []
    while not machine.done and now < 60:
        for out in machine.poll(now):
            machine.sent(out.key, Sent(int(now * 1e9), now), now)
            dport = int.from_bytes(out.packet[22:24], "big")
            if dport in open_ports:
                udp = build_udp(UdpHeader(dport, 40000), b"ok", src=dst, dst=src)
                packet = build_ipv4(IPv4Header(src=dst, dst=src, protocol=17), udp)
                key = out.extra_keys[0]
            elif dport in silent_ports:
                continue
            else:
                tokens, last_s = min(burst, tokens + now - last_s), now
                if tokens < 1:
                    continue  # rate-limited: no error
                tokens -= 1
                icmp = build_icmp(3, 3, 0, out.packet[:28])
                packet, key = build_ipv4(IPv4Header(src=dst, dst=src, protocol=1), icmp), out.key
            reply = Reply(key, socket.AF_INET, packet[12:16], packet, 64, 0, now + 0.001, packet[9])
            due.append((now + 0.001, reply))
        now = round(now + 0.001, 3)
        machine.receive_batch([r for t, r in due if t <= now], now)
        due = [(t, r) for t, r in due if t > now]
    return machine.result(now)


def test_a_rate_limited_target_is_probed_one_port_at_a_time_and_every_port_is_right() -> None:
    """Linux's ICMP limit (a burst of 6 errors, then one a second): the ports past the
    burst first look silent, and so do the witnesses sent after their retries (ports
    the target answered closed); the scan then probes one port at a time a second
    apart, so no closed port is open|filtered."""
    result = _scan_a_simulated_target(tuple(range(1, 21)), {7}, {15}, burst=6.0)
    (host,) = result.hosts
    assert {p.port: p.state for p in host.ports} == {7: "open", 15: "open|filtered"}
    assert host.closed == 18
    assert result.elapsed_s <= (18 - 6) + 2  # one second per closed port past the burst


def test_silent_ports_without_a_rate_limit_are_decided_at_the_pace_of_the_answers() -> None:
    """A dropped range on a target that answers every closed port (no ICMP limit):
    the witnesses sent after the dropped ports' retries are answered, so their silence
    is believed and the scan never falls back to one port at a time (which took a
    second a port)."""
    result = _scan_a_simulated_target(
        tuple(range(1, 501)), {7, 53}, set(range(100, 200)), burst=math.inf
    )
    (host,) = result.hosts
    states = {p.port: p.state for p in host.ports}
    assert states == {7: "open", 53: "open"} | dict.fromkeys(range(100, 200), "open|filtered")
    assert host.closed == 398
    assert result.elapsed_s < 2.0  # a few timeouts of silence, not 100 one-second gaps


def test_a_limit_that_bites_from_the_first_probe_is_still_found() -> None:
    """The target's bucket empty at the start (Linux empties it while the limit is
    off, so a scan right after the limit is switched on meets it so): nothing but the
    open port answers at first, so no witness exists; the silent ports are probed once
    more a second and a half after the start, where the first token answers one of
    them, and the limit is then found as usual."""
    result = _scan_a_simulated_target(tuple(range(1, 21)), {7}, {15}, burst=6.0, tokens=0.0)
    (host,) = result.hosts
    assert {p.port: p.state for p in host.ports} == {7: "open", 15: "open|filtered"}
    assert host.closed == 18
    assert result.elapsed_s <= 18 + 3  # one second per closed port, plus the wait


def test_a_host_that_drops_every_port_is_decided_soon_after_the_first_gap() -> None:
    """No port answers at all (a firewall): the silence is believed once the parked
    tries a gap and a half after the start stay silent too."""
    result = _scan_a_simulated_target(tuple(range(1, 101)), set(), set(range(1, 101)), burst=6.0)
    (host,) = result.hosts
    assert host.counts == (("open|filtered", "no-response", 100),)
    assert result.elapsed_s < 3.5
