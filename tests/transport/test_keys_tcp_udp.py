"""Keys of TCP and UDP probes: the answers and the ICMP errors quoting them agree."""

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawprobe.transport.keys import (
    KIND_QUERY,
    KIND_TCP,
    KIND_UDP,
    KIND_UDP_DATA,
    key_of_reply_v4,
    key_of_reply_v6,
    key_of_sent,
    keys_of_sent,
)
from rawprobe.transport.wire.icmp import build_icmp
from rawprobe.transport.wire.icmpv6 import build_icmpv6
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.ipv6 import IPv6Header, build_ipv6
from rawprobe.transport.wire.tcp import ACK, RST, SYN, TcpHeader, build_tcp
from rawprobe.transport.wire.udp import UdpHeader, build_udp

US4, THEM4, ROUTER4 = "198.18.1.2", "198.19.0.5", "198.18.2.2"
US6, THEM6 = "2001:db8:1::2", "2001:db8:ff::5"
ports = st.integers(1, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def ip4(src: str, dst: str, protocol: int, payload: bytes) -> bytes:
    return build_ipv4(IPv4Header(src=src, dst=dst, protocol=protocol), payload)


def syn4(sport: int, dport: int, seq: int) -> bytes:
    segment = build_tcp(TcpHeader(sport, dport, seq=seq, flags=SYN), b"", src=US4, dst=THEM4)
    return ip4(US4, THEM4, 6, segment)


@given(ports, ports, u32, st.sampled_from([SYN | ACK, RST | ACK]))
def test_syn_ack_and_rst_ack_answer_the_syn(sport: int, dport: int, seq: int, flags: int) -> None:
    probe = syn4(sport, dport, seq)
    key = key_of_sent(probe)
    assert key == (KIND_TCP, socket.inet_aton(THEM4), sport << 16 | dport, seq)
    answer = TcpHeader(dport, sport, seq=12345, ack=(seq + 1) & 0xFFFFFFFF, flags=flags)
    reply = ip4(THEM4, US4, 6, build_tcp(answer, b"", src=THEM4, dst=US4))
    assert key_of_reply_v4(reply) == key


@given(ports, ports, u32)
def test_bare_rst_answers_an_ack_probe_whose_ack_equals_its_seq(
    sport: int, dport: int, seq: int
) -> None:
    header = TcpHeader(sport, dport, seq=seq, ack=seq, flags=ACK)
    probe = ip4(US4, THEM4, 6, build_tcp(header, b"", src=US4, dst=THEM4))
    rst = TcpHeader(dport, sport, seq=seq, flags=RST)
    reply = ip4(THEM4, US4, 6, build_tcp(rst, b"", src=THEM4, dst=US4))
    assert key_of_reply_v4(reply) == key_of_sent(probe)


@given(ports, ports, u32)
def test_icmp_error_quoting_8_bytes_of_a_syn_matches(sport: int, dport: int, seq: int) -> None:
    probe = syn4(sport, dport, seq)
    error = ip4(ROUTER4, US4, 1, build_icmp(11, 0, 0, probe[: 20 + 8]))
    assert key_of_reply_v4(error) == key_of_sent(probe)


def test_our_own_syn_seen_on_loopback_is_not_an_answer() -> None:
    assert key_of_reply_v4(syn4(40000, 80, 7)) is None


def test_a_syn_ack_for_another_sequence_does_not_match() -> None:
    probe = syn4(40000, 80, 1000)
    answer = TcpHeader(80, 40000, seq=1, ack=5000, flags=SYN | ACK)
    reply = ip4(THEM4, US4, 6, build_tcp(answer, b"", src=THEM4, dst=US4))
    assert key_of_reply_v4(reply) != key_of_sent(probe)


@given(ports, ports, st.binary(max_size=32))
def test_udp_errors_match_by_checksum_and_answers_by_ports(
    sport: int, dport: int, payload: bytes
) -> None:
    datagram = build_udp(UdpHeader(sport, dport), payload, src=US4, dst=THEM4)
    probe = ip4(US4, THEM4, 17, datagram)
    error_key, data_key = keys_of_sent(probe)
    checksum = int.from_bytes(datagram[6:8])
    assert error_key == (KIND_UDP, socket.inet_aton(THEM4), sport << 16 | dport, checksum)
    assert data_key == (KIND_UDP_DATA, socket.inet_aton(THEM4), sport << 16 | dport, 0)
    unreachable = ip4(THEM4, US4, 1, build_icmp(3, 3, 0, probe[:28]))
    assert key_of_reply_v4(unreachable) == error_key
    answer = build_udp(UdpHeader(dport, sport), b"x", src=THEM4, dst=US4)
    assert key_of_reply_v4(ip4(THEM4, US4, 17, answer)) == data_key


def test_v6_tcp_and_udp_keys() -> None:
    them = socket.inet_pton(socket.AF_INET6, THEM6)
    segment = build_tcp(TcpHeader(40000, 443, seq=99, flags=SYN), b"", src=US6, dst=THEM6)
    probe = build_ipv6(IPv6Header(src=US6, dst=THEM6, next_header=6), segment)
    key = key_of_sent(probe)
    answer = build_tcp(TcpHeader(443, 40000, ack=100, flags=SYN | ACK), b"", src=THEM6, dst=US6)
    assert key_of_reply_v6(answer, them, socket.IPPROTO_TCP) == key
    error = build_icmpv6(1, 1, 0, probe, src=THEM6, dst=US6)
    assert key_of_reply_v6(error, them) == key
    datagram = build_udp(UdpHeader(40000, 53), b"q", src=US6, dst=THEM6)
    udp_probe = build_ipv6(IPv6Header(src=US6, dst=THEM6, next_header=17), datagram)
    unreachable = build_icmpv6(1, 4, 0, udp_probe, src=THEM6, dst=US6)
    assert key_of_reply_v6(unreachable, them) == keys_of_sent(udp_probe)[0]


def test_timestamp_query_and_reply() -> None:
    request = ip4(US4, THEM4, 1, build_icmp(13, 0, 0x00070001, bytes(12)))
    reply = ip4(THEM4, US4, 1, build_icmp(14, 0, 0x00070001, bytes(12)))
    key = key_of_sent(request)
    assert key[0] == KIND_QUERY and key_of_reply_v4(reply) == key


def test_packets_without_identity_have_no_key() -> None:
    from rawprobe.errors import MalformedPacket

    with pytest.raises(MalformedPacket):
        key_of_sent(ip4(US4, THEM4, 47, b"GRE!"))  # GRE: nothing identifies replies
