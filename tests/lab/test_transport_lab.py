"""The raw transport against the real kernel: TCP and UDP exchanges, both families."""

from __future__ import annotations

import os

import pytest

from rawprobe.lab import Lab
from rawprobe.transport.raw import open_transport
from rawprobe.transport.sockets import TCP_SOCKETS, UDP_SOCKETS
from rawprobe.transport.wire.icmp import parse_icmp
from rawprobe.transport.wire.icmpv6 import parse_icmpv6
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4, parse_ipv4
from rawprobe.transport.wire.ipv6 import IPv6Header, build_ipv6
from rawprobe.transport.wire.tcp import ACK, RST, SYN, TcpHeader, build_tcp, parse_tcp
from rawprobe.transport.wire.udp import UdpHeader, build_udp

pytestmark = [pytest.mark.lab, pytest.mark.anyio]


def ip(src: str, dst: str, protocol: int, payload: bytes, ttl: int = 64) -> bytes:
    if ":" in dst:
        return build_ipv6(
            IPv6Header(src=src, dst=dst, next_header=protocol, hop_limit=ttl), payload
        )
    return build_ipv4(IPv4Header(src=src, dst=dst, protocol=protocol, ttl=ttl), payload)


def tcp_flags(reply_data: bytes, family_v6: bool) -> int:
    segment = reply_data if family_v6 else parse_ipv4(reply_data)[1]
    return parse_tcp(segment)[0].flags


def icmp_type_code(reply_data: bytes, family_v6: bool) -> tuple[int, int]:
    if family_v6:
        message = parse_icmpv6(reply_data)
        return message.type, message.code
    icmp = parse_icmp(parse_ipv4(reply_data)[1])
    return icmp.type, icmp.code


@pytest.mark.parametrize("family", ["v4", "v6"])
async def test_syn_exchanges_classify_like_a_port_scanner(lab: Lab, family: str) -> None:
    v6 = family == "v6"
    target = lab.target_v6 if v6 else lab.target_v4
    with lab.entered("client"):
        async with open_transport(TCP_SOCKETS) as transport:
            source = transport.source_for(target)

            async def syn(port: int, timeout_s: float = 1.0) -> object:
                header = TcpHeader(
                    40000 + port % 1000, port, seq=int.from_bytes(os.urandom(4)), flags=SYN
                )
                segment = build_tcp(header, b"", src=source, dst=target)
                return await transport.request(ip(source, target, 6, segment), timeout_s)

            opened, closed = await syn(80), await syn(81)
            rejected, dropped = await syn(2000, 3.0), await syn(1000, 0.5)
    assert opened is not None and tcp_flags(opened.data, v6) == SYN | ACK
    assert closed is not None and tcp_flags(closed.data, v6) == RST | ACK
    assert rejected is not None
    assert icmp_type_code(rejected.data, v6) == ((1, 1) if v6 else (3, 13))
    assert dropped is None
    assert opened.ttl == 61


@pytest.mark.parametrize("family", ["v4", "v6"])
async def test_udp_port_unreachable_and_ttl_exceeded(lab: Lab, family: str) -> None:
    v6 = family == "v6"
    target = lab.target_v6 if v6 else lab.target_v4
    with lab.entered("client"):
        async with open_transport(UDP_SOCKETS) as transport:
            source = transport.source_for(target)
            datagram = build_udp(UdpHeader(40001, 33434), b"probe", src=source, dst=target)
            unreachable = await transport.request(ip(source, target, 17, datagram), 1.0)
            expired = await transport.request(ip(source, target, 17, datagram, ttl=2), 1.0)
    assert unreachable is not None and unreachable.source == target
    assert icmp_type_code(unreachable.data, v6) == ((1, 4) if v6 else (3, 3))
    assert expired is not None
    assert expired.source == (lab.router_v6[1] if v6 else lab.router_v4[1])
    assert icmp_type_code(expired.data, v6) == ((3, 0) if v6 else (11, 0))


async def test_other_programs_echo_replies_never_reach_the_reader(lab: Lab) -> None:
    """The kernel filter passes our replies and ICMP errors, drops everyone else's."""
    from rawprobe.probes.ping import PingOptions, ping_many_with

    targets = [lab.target_v4, lab.target_v6]
    with lab.entered("client"):
        async with open_transport() as transport:
            for target in targets:  # iputils ping, a program of its own, as root
                lab.run("client", "ping", "-c", "5", "-i", "0.01", target)
            foreign = transport.counters.received
            ours = await ping_many_with(transport, targets, PingOptions(count=3, interval_s=0.01))
            errors = await ping_many_with(transport, targets, PingOptions(count=1, ttl=2))
    assert foreign == 0
    assert [result.received for result in ours] == [3, 3]
    assert [len(result.errors) for result in errors] == [1, 1]
    assert transport.counters.unmatched == 0


async def test_a_udp_transport_opened_in_a_namespace_opens_its_later_sockets_there(
    lab: Lab,
) -> None:
    """The unprivileged UDP transport opens a socket per source port as probes need
    it, after the block that entered the lab's namespace has ended: those sockets
    belong to the namespace the transport was opened in, not to the host's (whose
    routes lead out of the lab: an early check sent probes that way). Checked by the
    socket's own namespace (SIOCGSKNS); nothing is sent."""
    import fcntl
    import socket

    from rawprobe.transport.udp_dgram import open_udp_transport

    siocgskns = 0x894C
    client = os.stat(lab.netns_path("client"))
    with lab.entered("client"):
        transport_cm = open_udp_transport(rate_pps=0)
        transport = await transport_cm.__aenter__()
    try:
        sock = transport._socket(socket.AF_INET, 40123)  # as a probe's send would
        namespace_fd = fcntl.ioctl(sock.fileno(), siocgskns)
        try:
            found = os.fstat(namespace_fd)
        finally:
            os.close(namespace_fd)
        assert (found.st_dev, found.st_ino) == (client.st_dev, client.st_ino)
        host = os.stat("/proc/thread-self/ns/net")
        assert (host.st_dev, host.st_ino) != (client.st_dev, client.st_ino)  # (left it)
    finally:
        await transport_cm.__aexit__(None, None, None)
