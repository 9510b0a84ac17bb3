"""parse(build(x)) == x for every codec, with computed fields as the parser fills them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_strategies import (
    ipv4_headers,
    ipv4_text,
    ipv6_headers,
    ipv6_text,
    tcp_headers,
    u8,
    u16,
    u32,
    udp_headers,
)

from rawprobe.errors import UsageError
from rawprobe.transport.wire import (
    IcmpMessage,
    Icmpv6Message,
    IPv4Header,
    IPv6Header,
    TcpHeader,
    UdpHeader,
    build_echo,
    build_echo6,
    build_icmp,
    build_icmpv6,
    build_ipv4,
    build_ipv6,
    build_tcp,
    build_udp,
    mss,
    parse_icmp,
    parse_icmpv6,
    parse_ipv4,
    parse_ipv6,
    parse_tcp,
    parse_udp,
    verify_icmp_checksum,
    verify_icmpv6_checksum,
    verify_ipv4_checksum,
    verify_tcp_checksum,
    verify_udp_checksum,
)

payloads = st.binary(max_size=300)


@given(ipv4_headers(), payloads)
def test_ipv4_round_trip(header: IPv4Header, payload: bytes) -> None:
    packet = build_ipv4(header, payload)
    parsed, parsed_payload = parse_ipv4(packet)
    assert verify_ipv4_checksum(packet)
    expected = replace(
        header,
        total_length=header.header_length + len(payload),
        checksum=int.from_bytes(packet[10:12], "big"),
    )
    assert (parsed, parsed_payload) == (expected, payload)
    assert packet[0] & 0x0F == header.header_length // 4
    assert build_ipv4(parsed, parsed_payload) == packet


@given(ipv4_headers(), payloads, u16, st.data())
def test_ipv4_given_length_and_checksum_are_sent_verbatim(
    header: IPv4Header, payload: bytes, checksum: int, data: st.DataObject
) -> None:
    total = data.draw(st.integers(header.header_length, header.header_length + len(payload)))
    lying = replace(header, total_length=total, checksum=checksum)
    parsed, parsed_payload = parse_ipv4(build_ipv4(lying, payload))
    assert parsed == lying
    assert parsed_payload == payload[: total - header.header_length]


def test_ipv4_options_are_padded_with_eol() -> None:
    header = IPv4Header("198.18.0.1", "198.18.0.2", 6, options=b"\x01\x94\x04")
    packet = build_ipv4(header, b"x")
    assert header.header_length == 24 and packet[0] == 0x46
    assert parse_ipv4(packet)[0].options == b"\x01\x94\x04\x00"


@given(ipv6_headers(), payloads)
def test_ipv6_round_trip(header: IPv6Header, payload: bytes) -> None:
    # next_header values that are extension headers would make the payload a chain.
    header = replace(header, next_header=6)
    packet = build_ipv6(header, payload)
    parsed, protocol, upper = parse_ipv6(packet)
    assert (parsed, protocol, upper) == (replace(header, payload_length=len(payload)), 6, payload)
    assert build_ipv6(parsed, upper) == packet


@given(tcp_headers(), payloads, ipv4_text, ipv4_text)
def test_tcp_round_trip_ipv4(header: TcpHeader, payload: bytes, src: str, dst: str) -> None:
    segment = build_tcp(header, payload, src=src, dst=dst)
    parsed, parsed_payload = parse_tcp(segment)
    assert verify_tcp_checksum(segment, src=src, dst=dst)
    expected = replace(
        header,
        data_offset=header.header_length // 4,
        checksum=int.from_bytes(segment[16:18], "big"),
    )
    assert (parsed, parsed_payload) == (expected, payload)
    assert build_tcp(parsed, parsed_payload, src=src, dst=dst) == segment


@given(tcp_headers(), payloads, ipv6_text, ipv6_text)
def test_tcp_round_trip_ipv6(header: TcpHeader, payload: bytes, src: str, dst: str) -> None:
    segment = build_tcp(header, payload, src=src, dst=dst)
    assert verify_tcp_checksum(segment, src=src, dst=dst)
    parsed, parsed_payload = parse_tcp(segment)
    assert replace(parsed, data_offset=None, checksum=None) == header
    assert parsed_payload == payload


@given(tcp_headers(), st.data())
def test_tcp_larger_data_offset_pads_the_options(header: TcpHeader, data: st.DataObject) -> None:
    words = data.draw(st.integers(header.header_length // 4, 15))
    segment = build_tcp(replace(header, data_offset=words), b"data", src="::1", dst="::1")
    parsed, payload = parse_tcp(segment)
    assert (parsed.data_offset, parsed.options, payload) == (words, header.options, b"data")
    assert len(segment) == words * 4 + 4


def test_tcp_smaller_data_offset_is_sent_as_a_lie() -> None:
    header = TcpHeader(1, 2, options=(mss(1460),), data_offset=5)
    segment = build_tcp(header, b"", src="198.18.0.1", dst="198.18.0.2")
    parsed, payload = parse_tcp(segment)
    assert (parsed.data_offset, parsed.options, payload) == (5, (), b"\x02\x04\x05\xb4")


@given(udp_headers, payloads, st.booleans(), st.data())
def test_udp_round_trip(header: UdpHeader, payload: bytes, v6: bool, data: st.DataObject) -> None:
    src, dst = data.draw(ipv6_text if v6 else ipv4_text), data.draw(ipv6_text if v6 else ipv4_text)
    datagram = build_udp(header, payload, src=src, dst=dst)
    parsed, parsed_payload = parse_udp(datagram)
    assert verify_udp_checksum(datagram, src=src, dst=dst)
    assert parsed.checksum != 0  # a computed 0 goes out as 0xFFFF
    assert parsed == replace(header, length=8 + len(payload), checksum=parsed.checksum)
    assert parsed_payload == payload
    assert build_udp(parsed, parsed_payload, src=src, dst=dst) == datagram


def test_udp_computed_zero_checksum_is_sent_as_ffff() -> None:
    # Find a payload whose checksum computes to 0, by solving for the last word.
    src, dst = "198.18.0.1", "198.18.0.2"
    probe = build_udp(UdpHeader(1, 2), b"\x00\x00", src=src, dst=dst)
    stored = int.from_bytes(probe[6:8], "big")
    # Adding the stored checksum value into the data makes the sum 0xFFFF: checksum 0.
    datagram = build_udp(UdpHeader(1, 2), stored.to_bytes(2, "big"), src=src, dst=dst)
    assert datagram[6:8] == b"\xff\xff"
    assert verify_udp_checksum(datagram, src=src, dst=dst)


def test_udp_zero_checksum_means_none_on_ipv4_only() -> None:
    datagram = build_udp(UdpHeader(1, 2, checksum=0), b"abc", src="198.18.0.1", dst="198.18.0.2")
    assert verify_udp_checksum(datagram, src="198.18.0.1", dst="198.18.0.2")
    datagram6 = build_udp(UdpHeader(1, 2, checksum=0), b"abc", src="::1", dst="::1")
    assert not verify_udp_checksum(datagram6, src="::1", dst="::1")


@given(u8, u8, u32, payloads)
def test_icmp_round_trip(type_: int, code: int, rest: int, body: bytes) -> None:
    message = build_icmp(type_, code, rest, body)
    parsed = parse_icmp(message)
    assert verify_icmp_checksum(message)
    assert parsed == IcmpMessage(type_, code, parsed.checksum, rest, body)
    assert build_icmp(type_, code, rest, body, checksum=parsed.checksum) == message


@given(u8, u8, u32, payloads, ipv6_text, ipv6_text)
def test_icmpv6_round_trip(
    type_: int, code: int, rest: int, body: bytes, src: str, dst: str
) -> None:
    message = build_icmpv6(type_, code, rest, body, src=src, dst=dst)
    parsed = parse_icmpv6(message)
    assert verify_icmpv6_checksum(message, src=src, dst=dst)
    assert parsed == Icmpv6Message(type_, code, parsed.checksum, rest, body)


@given(u16, u16, payloads, st.booleans())
def test_echo_builders(ident: int, seq: int, payload: bytes, reply: bool) -> None:
    echo = parse_icmp(build_echo(ident, seq, payload, reply=reply))
    assert (echo.type, echo.ident, echo.seq, echo.body) == (0 if reply else 8, ident, seq, payload)
    message6 = build_echo6(ident, seq, payload, src="2001:db8::1", dst="2001:db8::2", reply=reply)
    echo6 = parse_icmpv6(message6)
    assert (echo6.type, echo6.ident, echo6.seq) == (129 if reply else 128, ident, seq)
    assert verify_icmpv6_checksum(message6, src="2001:db8::1", dst="2001:db8::2")
    assert not verify_icmpv6_checksum(message6, src="2001:db8::1", dst="2001:db8::3")


def test_a_wrong_checksum_can_be_sent_on_purpose() -> None:
    good = build_echo(1, 2, b"x")
    bad = build_icmp(8, 0, 0x00010002, b"x", checksum=0x1234)
    assert bad[2:4] == b"\x12\x34" and bad[4:] == good[4:]
    assert not verify_icmp_checksum(bad)
    header = IPv4Header("198.18.0.1", "198.18.0.2", 1, checksum=0xBEEF)
    assert not verify_ipv4_checksum(build_ipv4(header, good))


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_ipv4(IPv4Header("198.18.0.1", "198.18.0.2", 1, ttl=256), b""),
        lambda: build_ipv4(IPv4Header("198.18.0.1", "2001:db8::1", 1), b""),
        lambda: build_ipv4(IPv4Header("198.18.0.1", "198.18.0.2", 1, options=b"\x01" * 41), b""),
        lambda: build_ipv4(IPv4Header("198.18.0.1", "198.18.0.2", 1, flags=8), b""),
        lambda: build_ipv4(IPv4Header("198.18.0.1", "198.18.0.2", 1), b"x" * 65516),
        lambda: build_ipv6(IPv6Header("::1", "::1", 6, flow_label=1 << 20), b""),
        lambda: build_ipv6(IPv6Header("::1", "198.18.0.1", 6), b""),
        lambda: build_tcp(TcpHeader(70000, 1), b"", src="::1", dst="::1"),
        lambda: build_tcp(TcpHeader(1, 1, flags=0x1000), b"", src="::1", dst="::1"),
        lambda: build_tcp(TcpHeader(1, 1, data_offset=16), b"", src="::1", dst="::1"),
        lambda: build_udp(UdpHeader(1, -1), b"", src="::1", dst="::1"),
        lambda: build_udp(UdpHeader(1, 1), b"", src="::1", dst="198.18.0.1"),
        lambda: build_icmp(256, 0, 0, b""),
        lambda: build_echo(0x10000, 0, b""),
        lambda: build_icmpv6(128, 0, 0, b"", src="198.18.0.1", dst="198.18.0.2"),
    ],
)
def test_builders_reject_unencodable_values_with_usage_error(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        build()
