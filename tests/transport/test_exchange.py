"""request()/replies(): send one hand-made packet, get its answers (simulated network)."""

import pytest

from rawprobe.transport.keys import key_of_sent
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport
from rawprobe.transport.wire.icmp import build_echo, parse_icmp
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4, parse_ipv4
from rawprobe.transport.wire.tcp import ACK, RST, SYN, TcpHeader, build_tcp, parse_tcp
from rawprobe.transport.wire.udp import UdpHeader, build_udp

pytestmark = pytest.mark.anyio
US, TARGET = "198.18.1.2", "198.19.0.5"


def network() -> MemoryNetwork:
    net = MemoryNetwork()
    net.add(TARGET, open_ports=frozenset({80}), dropped_ports=frozenset({1000}),
            rejected_ports=frozenset({2000}), udp_services=frozenset({53}))  # fmt: skip
    return net


def syn(dport: int, ttl: int = 64) -> bytes:
    segment = build_tcp(TcpHeader(40000, dport, seq=77, flags=SYN), b"", src=US, dst=TARGET)
    return build_ipv4(IPv4Header(src=US, dst=TARGET, protocol=6, ttl=ttl), segment)


async def test_tcp_port_states_through_request() -> None:
    async with open_memory_transport(network()) as transport:
        open_reply = await transport.request(syn(80), timeout_s=0.5)
        closed_reply = await transport.request(syn(81), timeout_s=0.5)
        rejected = await transport.request(syn(2000), timeout_s=0.5)
        dropped = await transport.request(syn(1000), timeout_s=0.2)
    assert open_reply is not None and closed_reply is not None and rejected is not None
    open_header, _ = parse_tcp(parse_ipv4(open_reply.data)[1])
    closed_header, _ = parse_tcp(parse_ipv4(closed_reply.data)[1])
    assert open_header.flags == SYN | ACK and open_header.ack == 78
    assert closed_header.flags == RST | ACK
    icmp = parse_icmp(parse_ipv4(rejected.data)[1])
    assert (icmp.type, icmp.code) == (3, 13)
    assert dropped is None
    assert transport.registered == 0  # every key unregistered afterwards


async def test_ttl_exceeded_for_a_tcp_probe_comes_from_the_router() -> None:
    async with open_memory_transport(network()) as transport:
        reply = await transport.request(syn(80, ttl=2), timeout_s=0.5)
    assert reply is not None and reply.source == "198.18.2.2"


async def test_udp_answer_and_port_unreachable() -> None:
    async with open_memory_transport(network()) as transport:
        for dport, expected_protocol in ((53, 17), (54, 1)):
            datagram = build_udp(UdpHeader(40000, dport), b"q", src=US, dst=TARGET)
            packet = build_ipv4(IPv4Header(src=US, dst=TARGET, protocol=17), datagram)
            reply = await transport.request(packet, timeout_s=0.5)
            assert reply is not None and reply.protocol == expected_protocol


async def test_replies_yields_duplicates_until_the_timeout() -> None:
    net = MemoryNetwork()
    net.add(TARGET, duplicates=2)
    async with open_memory_transport(net) as transport:
        key = key_of_sent(
            build_ipv4(IPv4Header(src=US, dst=TARGET, protocol=1), build_echo(5, 1, b""))
        )
        payload = transport.cookies.echo_payload(key, 56)  # echo replies must carry our cookie
        packet = build_ipv4(IPv4Header(src=US, dst=TARGET, protocol=1), build_echo(5, 1, payload))
        replies = [reply async for reply in transport.replies(packet, timeout_s=0.3)]
        uncookied = build_ipv4(IPv4Header(src=US, dst=TARGET, protocol=1), build_echo(5, 2, b"x"))
        assert await transport.request(uncookied, timeout_s=0.1) is None
        assert await transport.request(uncookied, timeout_s=0.1, authenticated=False)
    assert len(replies) == 3
    assert {parse_icmp(parse_ipv4(r.data)[1]).type for r in replies} == {0}
    assert transport.counters.forged == 3  # the uncookied echo's replies were refused


async def test_ack_probe_gets_a_bare_rst() -> None:
    segment = build_tcp(TcpHeader(40000, 81, seq=9, ack=9, flags=ACK), b"", src=US, dst=TARGET)
    packet = build_ipv4(IPv4Header(src=US, dst=TARGET, protocol=6), segment)
    async with open_memory_transport(network()) as transport:
        reply = await transport.request(packet, timeout_s=0.5)
    assert reply is not None
    header, _ = parse_tcp(parse_ipv4(reply.data)[1])
    assert header.flags == RST and header.seq == 9
