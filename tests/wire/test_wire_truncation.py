"""Every prefix of a valid packet parses or raises MalformedPacket, never anything else;
a prefix that cuts a header or a declared length always raises."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_strategies import ip_packets
from wire_vectors import (
    dissect,
    is_fragment,
    load_vector,
    parse_ip,
    vector_names,
)

from rawprobe.errors import MalformedPacket
from rawprobe.transport.wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    parse_icmp,
    parse_icmpv6,
    parse_ipv4,
    parse_ipv6,
    parse_ports_seq,
    parse_tcp,
    parse_udp,
)

ALL = vector_names()
ERRORS = [
    name
    for name in ALL
    if name.startswith("icmp") and ("unreach" in name or "exceeded" in name or "prohib" in name)
]


def declared_length(packet: bytes) -> int:
    if packet[0] >> 4 == 4:
        return int.from_bytes(packet[2:4], "big")
    return 40 + int.from_bytes(packet[4:6], "big")


def check_every_prefix(packet: bytes) -> None:
    declared = declared_length(packet)
    for cut in range(len(packet)):
        if cut < declared:
            with pytest.raises(MalformedPacket):
                dissect(packet[:cut])
        else:
            dissect(packet[:cut])
    assert dissect(packet)
    # Link-layer padding past the declared length is ignored, not parsed.
    assert dissect(packet + b"\x00" * 18) == dissect(packet)


@pytest.mark.parametrize("name", ALL)
def test_every_prefix_of_a_vector(name: str) -> None:
    check_every_prefix(load_vector(name))


@given(ip_packets())
def test_every_prefix_of_a_built_packet(packet: bytes) -> None:
    check_every_prefix(packet)


def transport_minimum(protocol: int, upper: bytes) -> int:
    """Bytes a transport parser needs before it may succeed (strict mode)."""
    if protocol == PROTO_TCP:
        return (upper[12] >> 4) * 4
    if protocol == PROTO_UDP:
        return int.from_bytes(upper[4:6], "big")
    return 8


@pytest.mark.parametrize("name", [n for n in ALL if not is_fragment(load_vector(n))])
def test_every_prefix_of_the_transport_layer(name: str) -> None:
    _, protocol, upper, _, _ = parse_ip(load_vector(name))
    parser = {
        PROTO_TCP: parse_tcp,
        PROTO_UDP: parse_udp,
        PROTO_ICMP: parse_icmp,
        PROTO_ICMPV6: parse_icmpv6,
    }[protocol]
    minimum = transport_minimum(protocol, upper)
    for cut in range(len(upper) + 1):
        if cut < minimum:
            with pytest.raises(MalformedPacket):
                parser(upper[:cut])
        else:
            parser(upper[:cut])


@pytest.mark.parametrize("name", ERRORS)
def test_every_prefix_of_a_quoted_datagram(name: str) -> None:
    """Quoted mode: the IP header must be whole, the rest may be cut anywhere."""
    _, protocol, upper, _, _ = parse_ip(load_vector(name))
    quoted = (parse_icmp(upper) if protocol == PROTO_ICMP else parse_icmpv6(upper)).quoted
    v6 = quoted[0] >> 4 == 6
    header_length = 40 if v6 else (quoted[0] & 0x0F) * 4
    for cut in range(len(quoted) + 1):
        prefix = quoted[:cut]
        if cut < header_length:
            with pytest.raises(MalformedPacket):
                parse_ipv6(prefix, quoted=True) if v6 else parse_ipv4(prefix, quoted=True)
            continue
        if v6:
            _, inner_protocol, inner_upper = parse_ipv6(prefix, quoted=True)
        else:
            inner, inner_upper = parse_ipv4(prefix, quoted=True)
            inner_protocol = inner.protocol
        assert inner_upper == quoted[header_length:cut]
        if cut - header_length < 8:
            with pytest.raises(MalformedPacket):
                parse_ports_seq(inner_upper)
            if inner_protocol == PROTO_UDP:
                with pytest.raises(MalformedPacket):
                    parse_udp(inner_upper, quoted=True)
        else:
            parse_ports_seq(inner_upper)
            if inner_protocol == PROTO_UDP:
                assert parse_udp(inner_upper, quoted=True)[1] == inner_upper[8:]
        # Strict mode refuses a cut quote: the declared length is not there.
        if cut < len(quoted):
            with pytest.raises(MalformedPacket):
                parse_ipv6(prefix) if v6 else parse_ipv4(prefix)


@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_raise_anything_but_malformed(data: bytes) -> None:
    for parse in (
        lambda: parse_ipv4(data),
        lambda: parse_ipv4(data, quoted=True),
        lambda: parse_ipv6(data),
        lambda: parse_ipv6(data, quoted=True),
        lambda: parse_tcp(data),
        lambda: parse_udp(data),
        lambda: parse_udp(data, quoted=True),
        lambda: parse_icmp(data),
        lambda: parse_icmpv6(data),
        lambda: parse_ports_seq(data),
    ):
        with contextlib.suppress(MalformedPacket):
            parse()


@given(st.binary(min_size=40, max_size=200))
def test_arbitrary_ipv6_chains_never_raise_anything_but_malformed(data: bytes) -> None:
    # Force version 6 and a payload length that fits, so the extension walker runs.
    packet = bytes([0x60]) + data[1:4] + (len(data) - 40).to_bytes(2, "big") + data[6:]
    with contextlib.suppress(MalformedPacket):
        dissect(packet)
