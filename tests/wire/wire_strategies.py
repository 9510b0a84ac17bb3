"""Hypothesis strategies for wire headers (shared by the round-trip and prefix tests)."""

from __future__ import annotations

import socket
from dataclasses import replace

from hypothesis import strategies as st

from rawprobe.transport.wire import IPv4Header, IPv6Header, TcpHeader, TcpOption, UdpHeader

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)

# Canonical text as the kernel (inet_ntop) spells it, which is what parsers return.
ipv4_text = st.ip_addresses(v=4).map(lambda a: socket.inet_ntop(socket.AF_INET, a.packed))
ipv6_text = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(socket.AF_INET6, a.packed))


@st.composite
def ipv4_headers(draw: st.DrawFn, protocol: int | None = None) -> IPv4Header:
    option_words = draw(st.integers(0, 10))
    return IPv4Header(
        src=draw(ipv4_text),
        dst=draw(ipv4_text),
        protocol=draw(u8) if protocol is None else protocol,
        ttl=draw(u8),
        tos=draw(u8),
        ident=draw(u16),
        flags=draw(st.integers(0, 7)),
        fragment_offset=draw(st.integers(0, 0x1FFF)),
        options=draw(st.binary(min_size=4 * option_words, max_size=4 * option_words)),
    )


@st.composite
def ipv6_headers(draw: st.DrawFn, next_header: int | None = None) -> IPv6Header:
    return IPv6Header(
        src=draw(ipv6_text),
        dst=draw(ipv6_text),
        next_header=draw(u8) if next_header is None else next_header,
        hop_limit=draw(u8),
        traffic_class=draw(u8),
        flow_label=draw(st.integers(0, 0xFFFFF)),
    )


# Known options with valid contents, plus unknown kinds with arbitrary data. EOL is left
# out on purpose: it ends the list, so what follows it is padding by definition.
tcp_option = st.one_of(
    st.just(TcpOption(1)),
    u16.map(lambda v: TcpOption(2, v.to_bytes(2, "big"))),
    st.integers(0, 14).map(lambda s: TcpOption(3, bytes([s]))),
    st.just(TcpOption(4)),
    st.binary(min_size=8, max_size=8).map(lambda b: TcpOption(8, b)),
    st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=3).map(
        lambda blocks: TcpOption(5, b"".join(blocks))
    ),
    st.builds(TcpOption, st.integers(2, 255), st.binary(max_size=12)),
)


def _options_length(options: list[TcpOption]) -> int:
    return sum(1 if o.kind in (0, 1) else 2 + len(o.data) for o in options)


@st.composite
def tcp_headers(draw: st.DrawFn) -> TcpHeader:
    options = draw(
        st.lists(tcp_option, max_size=8).filter(lambda opts: _options_length(opts) <= 40)
    )
    return TcpHeader(
        src_port=draw(u16),
        dst_port=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        flags=draw(st.integers(0, 0xFFF)),
        window=draw(u16),
        urgent=draw(u16),
        options=tuple(options),
    )


udp_headers = st.builds(UdpHeader, u16, u16)


# --- whole packets -----------------------------------------------------------------

EXTENSION_KINDS = (0, 43, 60, 44, 51)


def extension_chain(kinds: list[tuple[int, int]], upper_protocol: int) -> tuple[int, bytes]:
    """Encode extension headers ``[(kind, units), ...]`` in front of ``upper_protocol``.

    Returns (first next-header value, bytes). Fragment headers are atomic (offset 0, M 0).
    """
    chunks = []
    following = upper_protocol
    for kind, units in reversed(kinds):
        if kind == 44:
            chunk = bytes([following, 0, 0, 0]) + b"\x12\x34\x56\x78"
        elif kind == 51:
            chunk = bytes([following, units]) + b"\xa5" * ((units + 2) * 4 - 2)
        else:
            chunk = bytes([following, units]) + b"\x01" * ((units + 1) * 8 - 2)
        chunks.append(chunk)
        following = kind
    return following, b"".join(reversed(chunks))


extension_kinds = st.lists(
    st.tuples(st.sampled_from(EXTENSION_KINDS), st.integers(0, 3)), max_size=4
)


@st.composite
def transport_layers(draw: st.DrawFn, src: str, dst: str, v6: bool) -> tuple[int, bytes]:
    """(protocol, bytes) of a valid TCP, UDP or ICMP/ICMPv6 message from src to dst."""
    from rawprobe.transport.wire import build_icmp, build_icmpv6, build_tcp, build_udp
    from rawprobe.transport.wire.icmp import ERROR_TYPES

    payload = draw(st.binary(max_size=40))
    kind = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    if kind == "tcp":
        return 6, build_tcp(draw(tcp_headers()), payload, src=src, dst=dst)
    if kind == "udp":
        return 17, build_udp(draw(udp_headers), payload, src=src, dst=dst)
    # Any type but the errors (ip_packets builds those, with a quote to dissect):
    # found by hypothesis, a random "unreachable" carried no quoted datagram.
    code, rest = draw(u8), draw(u32)
    if v6:
        type_ = draw(st.integers(128, 255))
        return 58, build_icmpv6(type_, code, rest, payload, src=src, dst=dst)
    type_ = draw(u8.filter(lambda t: t not in ERROR_TYPES))
    return 1, build_icmp(type_, code, rest, payload)


@st.composite
def ip_packets(draw: st.DrawFn, max_depth: int = 1) -> bytes:
    """A valid IPv4 or IPv6 packet (with options / extension headers) carrying TCP, UDP
    or ICMP; sometimes an ICMP error quoting another such packet, cut after >= 8 bytes
    of its transport header as RFC 792 allows."""
    from rawprobe.transport.wire import build_icmp, build_icmpv6, build_ipv4, build_ipv6

    v6 = draw(st.booleans())
    header4 = draw(ipv4_headers())
    header6 = draw(ipv6_headers())
    src, dst = (header6.src, header6.dst) if v6 else (header4.src, header4.dst)
    if max_depth and draw(st.booleans()):
        inner = draw(ip_packets(max_depth=0))
        inner_header = 40 + _chain_length(inner) if inner[0] >> 4 == 6 else (inner[0] & 15) * 4
        quote = inner[: draw(st.integers(inner_header + 8, len(inner)))]
        type_ = draw(st.sampled_from([1, 3] if v6 else [3, 11, 12]))
        if v6:
            protocol, upper = 58, build_icmpv6(type_, 0, 0, quote, src=src, dst=dst)
        else:
            protocol, upper = 1, build_icmp(type_, 0, 0, quote)
    else:
        protocol, upper = draw(transport_layers(src, dst, v6))
    if v6:
        first, chain = extension_chain(draw(extension_kinds), protocol)
        return build_ipv6(replace(header6, next_header=first), chain + upper)
    # No fragments here: a later fragment carries no transport header.
    return build_ipv4(replace(header4, protocol=protocol, flags=0, fragment_offset=0), upper)


def _chain_length(packet: bytes) -> int:
    from rawprobe.transport.wire import skip_extension_headers

    return skip_extension_headers(packet, 40, packet[6])[1] - 40
