"""Inconsistent bytes raise MalformedPacket (a ValueError) with a cause, never crash."""

from __future__ import annotations

import struct

import pytest
from wire_strategies import extension_chain
from wire_vectors import load_vector

from rawprobe.errors import MalformedPacket
from rawprobe.transport.wire import (
    IPv4Header,
    IPv6Header,
    TcpHeader,
    TcpOption,
    UdpHeader,
    build_ipv4,
    build_ipv6,
    build_tcp,
    build_udp,
    find_fragment_header,
    parse_icmp,
    parse_ipv4,
    parse_ipv6,
    parse_options,
    parse_tcp,
    parse_udp,
    skip_extension_headers,
)
from rawprobe.transport.wire.ipv6 import MAX_EXTENSION_HEADERS

V4 = build_ipv4(IPv4Header("198.18.0.1", "198.18.0.2", 17), b"12345678")


def with_byte(packet: bytes, index: int, value: int) -> bytes:
    return packet[:index] + bytes([value]) + packet[index + 1 :]


def test_malformed_is_a_value_error_chained_from_struct_error() -> None:
    with pytest.raises(ValueError) as info:
        parse_ipv4(V4[:19])
    assert isinstance(info.value, MalformedPacket)
    assert isinstance(info.value.__cause__, struct.error)


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ipv4_ihl_below_5(ihl: int) -> None:
    with pytest.raises(MalformedPacket, match="IHL"):
        parse_ipv4(with_byte(V4, 0, 0x40 | ihl), quoted=True)


def test_ipv4_ihl_beyond_the_buffer() -> None:
    # IHL 15 says 60 bytes of header; only 28 bytes exist (total length says 28 too).
    with pytest.raises(MalformedPacket, match="truncated"):
        parse_ipv4(with_byte(V4, 0, 0x4F), quoted=True)


def test_ipv4_total_length_shorter_than_header() -> None:
    packet = V4[:2] + (19).to_bytes(2, "big") + V4[4:]
    with pytest.raises(MalformedPacket, match="total length"):
        parse_ipv4(packet, quoted=True)


@pytest.mark.parametrize("version", [0, 5, 6, 15])
def test_ipv4_parser_checks_the_version(version: int) -> None:
    with pytest.raises(MalformedPacket, match="version"):
        parse_ipv4(with_byte(V4, 0, version << 4 | 5))


def test_ipv4_strict_versus_quoted_length() -> None:
    with pytest.raises(MalformedPacket, match="truncated"):
        parse_ipv4(V4[:-1])
    header, payload = parse_ipv4(V4[:-1], quoted=True)
    assert header.total_length == 28 and payload == b"1234567"


def test_ipv4_options_are_read_from_ihl_not_assumed() -> None:
    packet = build_ipv4(IPv4Header("198.18.0.1", "198.18.0.2", 17, options=b"\x01" * 8), b"xy")
    header, payload = parse_ipv4(packet)
    assert (header.options, payload) == (b"\x01" * 8, b"xy")


def test_ipv6_parser_checks_the_version() -> None:
    packet = load_vector("icmp6_echo_request")
    with pytest.raises(MalformedPacket, match="version"):
        parse_ipv6(with_byte(packet, 0, 0x40))


def test_ipv6_strict_versus_quoted_length() -> None:
    packet = build_ipv6(IPv6Header("::1", "::2", 17), b"abcdef")
    with pytest.raises(MalformedPacket):
        parse_ipv6(packet[:-1])
    assert parse_ipv6(packet[:-1], quoted=True)[2] == b"abcde"
    assert parse_ipv6(packet + b"\x00\x00")[2] == b"abcdef"


def test_ipv6_chain_of_max_headers_is_walked() -> None:
    first, chain = extension_chain([(60, 0)] * MAX_EXTENSION_HEADERS, 17)
    assert skip_extension_headers(chain, 0, first) == (17, 8 * MAX_EXTENSION_HEADERS)


def test_ipv6_overlong_chain_raises() -> None:
    # A chain of destination-options headers (a "loop" of one kind) one too long.
    first, chain = extension_chain([(60, 0)] * (MAX_EXTENSION_HEADERS + 1), 17)
    with pytest.raises(MalformedPacket, match="more than"):
        skip_extension_headers(chain, 0, first)
    packet = build_ipv6(IPv6Header("::1", "::2", first), chain + b"\x00" * 8)
    with pytest.raises(MalformedPacket):
        parse_ipv6(packet)


def test_ipv6_self_referencing_header_cannot_loop_forever() -> None:
    # A hop-by-hop header whose next-header is hop-by-hop again, repeated to the end.
    chain = bytes([0, 0]) + b"\x00" * 6
    packet = build_ipv6(IPv6Header("::1", "::2", 0), chain * 40)
    with pytest.raises(MalformedPacket):
        parse_ipv6(packet)


@pytest.mark.parametrize(("kind", "units"), [(0, 3), (43, 1), (60, 200), (51, 9), (44, 0)])
def test_ipv6_extension_header_overrunning_the_packet(kind: int, units: int) -> None:
    first, chain = extension_chain([(kind, units)], 6)
    packet = build_ipv6(IPv6Header("::1", "::2", first), chain[:-1])
    with pytest.raises(MalformedPacket, match=r"overruns|truncated"):
        parse_ipv6(packet)


def test_ipv6_extension_lengths_are_honoured() -> None:
    # hop-by-hop 16 bytes, AH (4+2)*4 = 24 bytes, fragment 8 bytes, then UDP.
    first, chain = extension_chain([(0, 1), (51, 4), (44, 0)], 17)
    assert len(chain) == 16 + 24 + 8
    packet = build_ipv6(IPv6Header("::1", "::2", first), chain + b"UDPHEADR")
    assert parse_ipv6(packet)[1:] == (17, b"UDPHEADR")
    fragment = find_fragment_header(packet, 40, first)
    assert fragment is not None and (fragment.next_header, fragment.offset) == (17, 0)


@pytest.mark.parametrize(("next_header", "expected"), [(59, 59), (50, 50), (253, 253), (6, 6)])
def test_ipv6_walk_stops_at_non_extension_headers(next_header: int, expected: int) -> None:
    packet = build_ipv6(IPv6Header("::1", "::2", next_header), b"rest")
    assert parse_ipv6(packet)[1:] == (expected, b"rest")


def test_no_next_header_after_an_extension() -> None:
    first, chain = extension_chain([(60, 0)], 59)
    packet = build_ipv6(IPv6Header("::1", "::2", first), chain)
    assert parse_ipv6(packet)[1:] == (59, b"")


@pytest.mark.parametrize(
    "options",
    [
        b"\x02\x00\x05\xb4",  # MSS with length 0
        b"\x02\x01\x05\xb4",  # MSS with length 1
        b"\x01\x01\x08\x0b",  # timestamps claiming 11 bytes in a 4-byte area
        b"\x01\x01\x01\x1e",  # unknown kind 30 on the last byte: no length byte
    ],
)
def test_tcp_bad_option_lengths(options: bytes) -> None:
    segment = build_tcp(TcpHeader(1, 2, data_offset=6), b"", src="::1", dst="::1")
    segment = segment[:20] + options
    with pytest.raises(MalformedPacket, match="TCP option"):
        parse_tcp(segment)


def test_tcp_eol_ends_the_options() -> None:
    options = parse_options(b"\x01\x00\x02\x04")  # NOP, EOL, then junk-looking padding
    assert options == (TcpOption(1),)


def test_tcp_data_offset_below_5_or_beyond_the_buffer() -> None:
    segment = build_tcp(TcpHeader(1, 2), b"payload", src="::1", dst="::1")
    with pytest.raises(MalformedPacket, match="below 5"):
        parse_tcp(with_byte(segment, 12, 4 << 4))
    with pytest.raises(MalformedPacket, match="truncated"):
        parse_tcp(with_byte(segment, 12, 15 << 4)[:30])


def test_udp_length_inconsistent() -> None:
    datagram = build_udp(UdpHeader(1, 2), b"abcd", src="::1", dst="::1")
    with pytest.raises(MalformedPacket, match="below 8"):
        parse_udp(datagram[:4] + b"\x00\x07" + datagram[6:])
    with pytest.raises(MalformedPacket, match="truncated"):
        parse_udp(datagram[:-1])
    assert parse_udp(datagram[:-1], quoted=True)[1] == b"abc"
    assert parse_udp(datagram + b"pad")[1] == b"abcd"


def test_icmp_shorter_than_its_header() -> None:
    with pytest.raises(MalformedPacket):
        parse_icmp(b"\x08\x00\x00\x00\x00\x01\x00")
