"""Malformed input from the network: random and mutated packets through every parser
and through the receive path (key extraction and the demultiplexer).

Contract under test:
- ``key_of_reply_v4/v6`` return a key or None, or raise MalformedPacket; nothing else;
- ``Demux.dispatch_v4/v6`` never raise, and every packet is accounted for exactly once:
  ``received == delivered + unmatched + malformed + forged + inbox_overflow``;
- the wire parsers raise nothing but MalformedPacket, and ``dissect`` never raises.

The mutation fuzzer is seeded (reproducible) and cheap, so it runs well over 100k cases
in a few seconds; hypothesis adds structured cases (ICMP errors quoting truncated or
inconsistent headers, IPv6 extension-header chains that loop or overrun).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe.errors import MalformedPacket
from rawprobe.transport.base import Counters, Inbox, Reply
from rawprobe.transport.demux import Demux
from rawprobe.transport.keys import (
    Cookies,
    MatchKey,
    key_of_reply_v4,
    key_of_reply_v6,
    keys_of_sent,
)
from rawprobe.transport.wire import (
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
    parse_icmp,
    parse_icmpv6,
    parse_ipv4,
    parse_ipv6,
    parse_tcp,
    parse_udp,
)
from rawprobe.transport.wire.dissect import dissect
from rawprobe.transport.wire.icmpext import parse_extensions
from rawprobe.transport.wire.ipv6 import MAX_EXTENSION_HEADERS, skip_extension_headers
from rawprobe.transport.wire.tcp import parse_options

ME4, PEER4, ROUTER4 = "198.18.1.2", "198.19.0.5", "198.18.1.1"
ME6, PEER6, ROUTER6 = "2001:db8:1::2", "2001:db8:ff::5", "2001:db8:1::1"
PACKED_PEER6 = socket.inet_pton(socket.AF_INET6, PEER6)
PACKED_ROUTER6 = socket.inet_pton(socket.AF_INET6, ROUTER6)
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58

COOKIES = Cookies(b"k" * 32)
IDENT = COOKIES.new_ident()


# -- a corpus of valid probes and the replies they get --------------------------------


def _probes_v4() -> list[bytes]:
    echo_key: MatchKey = (1, socket.inet_aton(PEER4), IDENT, 1)
    echo = build_echo(IDENT, 1, COOKIES.echo_payload(echo_key, 56))
    tcp = build_tcp(TcpHeader(40000, 80, seq=0x12345678), b"", src=ME4, dst=PEER4)
    udp = build_udp(UdpHeader(40001, 33434), b"\x00" * 12, src=ME4, dst=PEER4)
    return [
        build_ipv4(IPv4Header(ME4, PEER4, PROTO_ICMP, ttl=1), echo),
        build_ipv4(IPv4Header(ME4, PEER4, PROTO_TCP), tcp),
        build_ipv4(IPv4Header(ME4, PEER4, PROTO_UDP, ttl=3), udp),
    ]


def _replies_v4(probes: list[bytes]) -> list[bytes]:
    echo_probe, _tcp_probe, _udp_probe = probes
    echo = echo_probe[20:]
    reply = build_icmp(0, 0, struct.unpack_from("!I", echo, 4)[0], echo[8:])
    syn_ack = build_tcp(
        TcpHeader(80, 40000, seq=7, ack=0x12345679, flags=0x12), b"", src=PEER4, dst=ME4
    )
    rst = build_tcp(
        TcpHeader(80, 40000, seq=0, ack=0x12345679, flags=0x14), b"", src=PEER4, dst=ME4
    )
    out = [
        build_ipv4(IPv4Header(PEER4, ME4, PROTO_ICMP), reply),
        build_ipv4(IPv4Header(PEER4, ME4, PROTO_TCP), syn_ack),
        build_ipv4(IPv4Header(PEER4, ME4, PROTO_TCP), rst),
    ]
    for probe, (icmp_type, code) in zip(probes, [(11, 0), (3, 13), (3, 3)], strict=True):
        for quote in (probe[:28], probe):  # RFC 792's 8 bytes, and a whole quote
            error = build_icmp(icmp_type, code, 0, quote)
            out.append(build_ipv4(IPv4Header(ROUTER4, ME4, PROTO_ICMP), error))
    return out


def _probes_v6() -> list[bytes]:
    echo_key: MatchKey = (1, PACKED_PEER6, IDENT, 2)
    echo = build_echo6(IDENT, 2, COOKIES.echo_payload(echo_key, 56), src=ME6, dst=PEER6)
    tcp = build_tcp(TcpHeader(40000, 443, seq=0xABCDEF01), b"", src=ME6, dst=PEER6)
    udp = build_udp(UdpHeader(40001, 33435), b"\x00" * 12, src=ME6, dst=PEER6)
    return [
        build_ipv6(IPv6Header(ME6, PEER6, PROTO_ICMPV6, hop_limit=1), echo),
        build_ipv6(IPv6Header(ME6, PEER6, PROTO_TCP), tcp),
        build_ipv6(IPv6Header(ME6, PEER6, PROTO_UDP), udp),
    ]


def _replies_v6(probes: list[bytes]) -> list[tuple[bytes, bytes, int]]:
    """(message without IPv6 header, packed source, socket protocol)."""
    echo_probe, _tcp_probe, _udp_probe = probes
    echo = echo_probe[40:]
    rest = struct.unpack_from("!I", echo, 4)[0]
    reply = build_icmpv6(129, 0, rest, echo[8:], src=PEER6, dst=ME6)
    syn_ack = build_tcp(
        TcpHeader(443, 40000, seq=9, ack=0xABCDEF02, flags=0x12), b"", src=PEER6, dst=ME6
    )
    udp_answer = build_udp(UdpHeader(33435, 40001), b"hello", src=PEER6, dst=ME6)
    out = [
        (reply, PACKED_PEER6, PROTO_ICMPV6),
        (syn_ack, PACKED_PEER6, PROTO_TCP),
        (udp_answer, PACKED_PEER6, PROTO_UDP),
    ]
    for probe, icmp_type in zip(probes, (3, 1, 1), strict=True):
        for quote in (probe[:48], probe):
            error = build_icmpv6(icmp_type, 4, 0, quote, src=ROUTER6, dst=ME6)
            out.append((error, PACKED_ROUTER6, PROTO_ICMPV6))
    return out


PROBES_V4 = _probes_v4()
PROBES_V6 = _probes_v6()
REPLIES_V4 = _replies_v4(PROBES_V4)
REPLIES_V6 = _replies_v6(PROBES_V6)
VECTORS = [
    bytes.fromhex("".join(line for line in path.read_text().splitlines() if line[:1] != "#"))
    for path in sorted((Path(__file__).resolve().parent.parent / "vectors").glob("*.hex"))
]


def _demux() -> tuple[Demux, Counters]:
    """A demultiplexer with every corpus probe registered (so mutated packets also
    reach the cookie check and delivery, not only the key extraction)."""
    counters = Counters()
    demux = Demux(COOKIES, counters, lambda _address: ME6)
    demux.recorder = _NullRecorder()
    for index, probe in enumerate(PROBES_V4 + PROBES_V6):
        for key in keys_of_sent(probe):
            demux.register(key, Inbox(4 if index % 2 else 1 << 20))
    return demux, counters


class _NullRecorder:
    def __init__(self) -> None:
        self.records = 0

    def record(self, packet: bytes, timestamp_ns: int, outgoing: bool) -> None:
        self.records += 1
        dissect(packet)  # what a recorder downstream (pcap, sniff) would do


def _accounted(counters: Counters) -> bool:
    return counters.received == (
        counters.delivered
        + counters.unmatched
        + counters.malformed
        + counters.forged
        + counters.inbox_overflow
    )


def test_the_corpus_is_delivered_before_mutation() -> None:
    demux, counters = _demux()
    for packet in REPLIES_V4:
        demux.dispatch_v4(packet, 1, 1.0)
    for message, source, protocol in REPLIES_V6:
        demux.dispatch_v6(message, source, 64, 1, 1.0, protocol)
    assert counters.delivered == len(REPLIES_V4) + len(REPLIES_V6)
    assert counters.malformed == counters.unmatched == counters.forged == 0


# -- the mutation fuzzer ---------------------------------------------------------------

_INTERESTING = (0x00, 0x01, 0x05, 0x0F, 0x40, 0x45, 0x46, 0x4F, 0x60, 0x7F, 0x80, 0xFF)


def _mutate(rng: random.Random, packet: bytes, others: list[bytes]) -> bytes:
    data = bytearray(packet)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(10)
        if choice == 0 and data:  # flip a bit
            index = rng.randrange(len(data))
            data[index] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:  # an interesting byte
            data[rng.randrange(len(data))] = rng.choice(_INTERESTING)
        elif choice == 2:  # truncate
            del data[rng.randrange(len(data) + 1) :]
        elif choice == 3:  # random tail
            data += rng.randbytes(rng.randrange(64))
        elif choice == 4 and data:  # IHL / version nibble (outer or quoted header)
            index = rng.choice((0, 28, 8, 48) if len(data) > 48 else (0,))
            if index < len(data):
                data[index] = rng.randrange(256)
        elif choice == 5 and len(data) > 4:  # length fields
            index = rng.choice((2, 4, 30, 32, 44, 52))
            if index + 2 <= len(data):
                data[index : index + 2] = rng.choice((0, 1, 0xFFFF, rng.randrange(65536))).to_bytes(
                    2, "big"
                )
        elif choice == 6:  # splice with another packet
            other = rng.choice(others)
            cut = rng.randrange(len(data) + 1)
            data = data[:cut] + other[rng.randrange(len(other) + 1) :]
        elif choice == 7 and data:  # delete or duplicate a span
            start = rng.randrange(len(data))
            span = rng.randrange(1, 16)
            if rng.random() < 0.5:
                del data[start : start + span]
            else:
                data[start:start] = data[start : start + span]
        elif choice == 8:
            data = bytearray(rng.randbytes(rng.randrange(96)))  # pure noise
        elif choice == 9 and data:  # next-header / protocol bytes
            index = rng.choice((6, 9, 14, 37, 40, 48, 54))
            if index < len(data):
                data[index] = rng.choice((0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 135, 255))
    return bytes(data)


def _extremes() -> Iterator[bytes]:
    """Zero-length, one-byte, headers alone, and jumbo datagrams."""
    yield b""
    yield b"\x45"
    yield b"\x60"
    yield bytes(20)
    yield b"\x45" + bytes(19)
    yield b"\x4f" + bytes(19)  # IHL 15 with nothing behind it
    yield b"\x41" + bytes(30)  # IHL 1
    yield bytes(65535)
    yield b"\x45" + bytes(8) + b"\x01" + bytes(10) + b"\x03\x03" + bytes(65535 - 22)
    jumbo = build_ipv4(
        IPv4Header(PEER4, ME4, PROTO_ICMP), build_icmp(0, 0, IDENT << 16, bytes(65000))
    )
    yield jumbo
    yield jumbo[:-1000]


def _check_parsers(data: bytes) -> None:
    """Every parser: a value or MalformedPacket, never another exception."""
    parsers: list[Callable[[bytes], object]] = [
        parse_ipv4,
        parse_ipv6,
        parse_icmp,
        parse_icmpv6,
        parse_tcp,
        parse_udp,
        parse_options,
        parse_extensions,
        lambda d: skip_extension_headers(d, 40, d[6] if len(d) > 6 else 0),
        lambda d: skip_extension_headers(d, 0, 0),
    ]
    for parse in parsers:
        with contextlib.suppress(MalformedPacket):
            parse(data)


def _check_keys(data: bytes) -> None:
    for extract in (
        key_of_reply_v4,
        lambda d: key_of_reply_v6(d, PACKED_PEER6, PROTO_ICMPV6),
        lambda d: key_of_reply_v6(d, PACKED_PEER6, PROTO_TCP),
        lambda d: key_of_reply_v6(d, PACKED_PEER6, PROTO_UDP),
    ):
        try:
            key = extract(data)
        except MalformedPacket:
            continue
        assert key is None or (len(key) == 4 and isinstance(key[1], bytes))


@pytest.mark.parametrize("seed", range(4))
def test_mutated_packets_never_escape_the_demultiplexer(seed: int) -> None:
    """4 x 30k = 120k mutated packets through the demux; 1 in 6 through every parser."""
    rng = random.Random(seed)
    demux, counters = _demux()
    seeds_v4 = [*REPLIES_V4, *PROBES_V4, *VECTORS]
    seeds_v6 = [m for m, _s, _p in REPLIES_V6] + [p[40:] for p in PROBES_V6] + VECTORS
    for packet in _extremes():
        demux.dispatch_v4(packet, 1, 1.0)
        demux.dispatch_v6(packet, PACKED_PEER6, None, 1, 1.0, PROTO_ICMPV6)
        _check_parsers(packet)
        _check_keys(packet)
        dissect(packet)
    for case in range(30_000):
        if case % 2:
            packet = _mutate(rng, rng.choice(seeds_v4), seeds_v4)
            demux.dispatch_v4(packet, 1, 1.0)
        else:
            message, source, protocol = rng.choice(REPLIES_V6)
            if rng.random() < 0.2:
                message = rng.choice(seeds_v6)
                protocol = rng.choice((PROTO_ICMPV6, PROTO_TCP, PROTO_UDP))
            packet = _mutate(rng, message, seeds_v6)
            demux.dispatch_v6(packet, source, rng.choice((None, 0, 64, 255)), 1, 1.0, protocol)
        if case % 6 == 0:
            _check_parsers(packet)
            _check_keys(packet)
            dissect(packet)
    assert counters.received == 30_000 + 2 * len(list(_extremes()))
    assert _accounted(counters)
    # Mutations hit every outcome, including delivery of still-valid packets.
    assert counters.malformed > 1000 and counters.unmatched > 1000
    assert counters.delivered > 100 and counters.forged > 10 and counters.inbox_overflow > 0


# -- structured cases (hypothesis) -----------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_are_counted_not_raised(data: bytes) -> None:
    demux, counters = _demux()
    demux.dispatch_v4(data, 1, 1.0)
    for protocol in (PROTO_ICMPV6, PROTO_TCP, PROTO_UDP):
        demux.dispatch_v6(data, PACKED_PEER6, 64, 1, 1.0, protocol)
    assert counters.received == 4 and _accounted(counters)
    assert counters.delivered == 0
    _check_parsers(data)
    dissect(data)


@settings(max_examples=300, deadline=None)
@given(
    probe=st.sampled_from(PROBES_V4),
    cut=st.integers(0, 80),
    quoted_first=st.integers(0, 255),
    icmp_type=st.sampled_from((3, 4, 5, 11, 12)),
)
def test_icmp_errors_quoting_truncated_or_inconsistent_headers(
    probe: bytes, cut: int, quoted_first: int, icmp_type: int
) -> None:
    quote = bytes([quoted_first]) + probe[1:cut]
    packet = build_ipv4(IPv4Header(ROUTER4, ME4, PROTO_ICMP), build_icmp(icmp_type, 0, 0, quote))
    demux, counters = _demux()
    demux.dispatch_v4(packet, 1, 1.0)
    assert _accounted(counters)
    honest = quoted_first == probe[0] and cut >= 28
    if honest:
        assert counters.delivered == 1
    else:
        # A quoted header cut short, or with another version/IHL: never attributed to
        # the probe it resembles.
        if quoted_first >> 4 != 4 or (quoted_first & 0x0F) < 5 or cut < 20 + 8:
            assert counters.delivered == 0
    dissect(packet)


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(st.sampled_from((0, 43, 60, 44, 51)), min_size=1, max_size=20),
    lengths=st.lists(st.integers(0, 255), min_size=20, max_size=20),
    loop=st.booleans(),
    keep=st.integers(0, 400),
)
def test_ipv6_extension_chains_that_loop_or_overrun(
    kinds: list[int], lengths: list[int], loop: bool, keep: int
) -> None:
    """Quoted IPv6 probes whose extension chain points back at itself (hop-by-hop
    after hop-by-hop to the end), runs past the quote, or is longer than allowed."""
    chain = b""
    for position, _kind in enumerate(kinds):
        following = kinds[position + 1] if position + 1 < len(kinds) else PROTO_UDP
        if loop:
            following = 0
        chain += bytes([following, lengths[position]]) + bytes(6)
    probe = build_ipv6(IPv6Header(ME6, PEER6, kinds[0]), chain + bytes(8))[: 40 + keep]
    message = build_icmpv6(1, 4, 0, probe, src=ROUTER6, dst=ME6)
    demux, counters = _demux()
    demux.dispatch_v6(message, PACKED_ROUTER6, 64, 1, 1.0, PROTO_ICMPV6)
    assert _accounted(counters) and counters.delivered == 0
    if loop and len(kinds) > MAX_EXTENSION_HEADERS:
        assert counters.malformed == 1
    whole = build_ipv6(IPv6Header(ROUTER6, ME6, PROTO_ICMPV6), message)
    dissect(whole)
    _check_parsers(whole)


@pytest.mark.parametrize("first", [0x40, 0x41, 0x44, 0x05, 0x65, 0xF5])
def test_bad_version_or_ihl_is_malformed(first: int) -> None:
    demux, counters = _demux()
    for packet in REPLIES_V4:
        demux.dispatch_v4(bytes([first]) + packet[1:], 1, 1.0)
    assert counters.malformed == len(REPLIES_V4)


def test_delivered_replies_are_well_formed() -> None:
    """What reaches a probe's inbox has the fields the probe reads."""
    demux, _counters = _demux()
    inbox = Inbox(16)
    key = keys_of_sent(PROBES_V4[1])[0]
    demux.register(key, inbox)
    demux.dispatch_v4(REPLIES_V4[1], 1, 1.0)
    [reply] = inbox.take_all()
    assert isinstance(reply, Reply) and reply.source == PEER4 and reply.ttl == 64
