"""Golden vectors: real packets captured from the Linux kernel (see tests/vectors/).

Expected field values come from tcpdump's own decoding of the same capture (kept as
comments in each .hex file), not from our parser.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from wire_vectors import dissect, is_fragment, load_vector, parse_ip, vector_names

from rawprobe.transport.wire import (
    ACK,
    DF,
    MF,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    RST,
    SYN,
    build_icmp,
    build_icmpv6,
    build_ipv4,
    build_ipv6,
    build_tcp,
    build_udp,
    find_fragment_header,
    flags_text,
    internet_checksum,
    ones_complement_sum,
    parse_icmp,
    parse_icmpv6,
    parse_ipv4,
    parse_ipv6,
    parse_ports_seq,
    parse_tcp,
    parse_udp,
    pseudo_header,
    verify_icmp_checksum,
    verify_icmpv6_checksum,
    verify_ipv4_checksum,
    verify_tcp_checksum,
    verify_udp_checksum,
)
from rawprobe.transport.wire import icmp as icmp4
from rawprobe.transport.wire import icmpv6 as icmp6

ALL = vector_names()
CLIENT4, ROUTER4, TARGET4 = "198.18.1.2", "198.18.1.1", "198.18.2.2"
CLIENT6, ROUTER6, TARGET6 = "2001:db8:1::2", "2001:db8:1::1", "2001:db8:2::2"


def test_vector_set_is_complete() -> None:
    # A lost capture must not silently shrink the suite.
    assert len(ALL) >= 27


@pytest.mark.parametrize("name", ALL)
def test_vector_dissects_strictly(name: str) -> None:
    assert dissect(load_vector(name))


@pytest.mark.parametrize("name", ALL)
def test_vector_checksums_match_the_kernel(name: str) -> None:
    packet = load_vector(name)
    _, protocol, upper, src, dst = parse_ip(packet)
    if packet[0] >> 4 == 4:
        assert verify_ipv4_checksum(packet)
    if is_fragment(packet):
        return  # the transport checksum covers the reassembled datagram: see below
    verify = {
        PROTO_TCP: lambda: verify_tcp_checksum(upper, src=src, dst=dst),
        PROTO_UDP: lambda: verify_udp_checksum(upper, src=src, dst=dst),
        PROTO_ICMP: lambda: verify_icmp_checksum(upper),
        PROTO_ICMPV6: lambda: verify_icmpv6_checksum(upper, src=src, dst=dst),
    }[protocol]
    assert verify()
    # A single flipped bit anywhere in the transport bytes is detected.
    flipped = bytearray(upper)
    flipped[len(flipped) // 2] ^= 0x10
    upper = bytes(flipped)
    assert not verify()


@pytest.mark.parametrize("name", ALL)
def test_vector_rebuilds_to_the_same_bytes(name: str) -> None:
    """Parse, then build with every computed field (lengths, checksums) recomputed."""
    packet = load_vector(name)
    if packet[0] >> 4 == 4:
        header4, upper = parse_ipv4(packet)
        assert build_ipv4(replace(header4, total_length=None, checksum=None), upper) == packet
        protocol, src, dst = header4.protocol, header4.src, header4.dst
    else:
        header6, protocol, upper = parse_ipv6(packet)
        assert build_ipv6(replace(header6, payload_length=None), packet[40:]) == packet
        src, dst = header6.src, header6.dst
    if is_fragment(packet):
        return
    if protocol == PROTO_TCP:
        tcp, data = parse_tcp(upper)
        rebuilt = build_tcp(replace(tcp, data_offset=None, checksum=None), data, src=src, dst=dst)
    elif protocol == PROTO_UDP:
        udp, data = parse_udp(upper)
        rebuilt = build_udp(replace(udp, length=None, checksum=None), data, src=src, dst=dst)
    elif protocol == PROTO_ICMP:
        m4 = parse_icmp(upper)
        rebuilt = build_icmp(m4.type, m4.code, m4.rest, m4.body)
    else:
        m6 = parse_icmpv6(upper)
        rebuilt = build_icmpv6(m6.type, m6.code, m6.rest, m6.body, src=src, dst=dst)
    assert rebuilt == upper


def test_icmp4_echo_request_and_reply() -> None:
    request, payload = parse_ipv4(load_vector("icmp4_echo_request"))
    assert (request.src, request.dst, request.ttl, request.flags) == (CLIENT4, TARGET4, 64, DF)
    assert (request.ident, request.total_length, request.protocol) == (10465, 84, PROTO_ICMP)
    echo = parse_icmp(payload)
    assert (echo.type, echo.code, echo.ident, echo.seq) == (icmp4.ECHO_REQUEST, 0, 4818, 1)
    assert not echo.is_error and echo.quoted == b""
    assert len(echo.body) == 56 and echo.body[-8:] == bytes(range(0x30, 0x38))

    reply_header, reply_payload = parse_ipv4(load_vector("icmp4_echo_reply"))
    reply = parse_icmp(reply_payload)
    assert (reply_header.src, reply_header.ttl, reply_header.flags) == (TARGET4, 63, 0)
    assert (reply.type, reply.ident, reply.seq) == (icmp4.ECHO_REPLY, 4818, 1)
    assert reply.body == echo.body


def test_icmp6_echo_request_and_reply() -> None:
    request, protocol, upper = parse_ipv6(load_vector("icmp6_echo_request"))
    assert (request.src, request.dst, request.hop_limit) == (CLIENT6, TARGET6, 64)
    assert (request.flow_label, request.payload_length, protocol) == (0x1474A, 64, PROTO_ICMPV6)
    echo = parse_icmpv6(upper)
    assert (echo.type, echo.ident, echo.seq) == (icmp6.ECHO_REQUEST, 4825, 1)
    reply_header, _, reply_upper = parse_ipv6(load_vector("icmp6_echo_reply"))
    reply = parse_icmpv6(reply_upper)
    assert (reply_header.src, reply_header.flow_label) == (TARGET6, 0x54E7B)
    assert (reply.type, reply.ident, reply.seq, reply.body) == (129, 4825, 1, echo.body)


def test_icmp4_time_exceeded_quotes_the_probe() -> None:
    outer, payload = parse_ipv4(load_vector("icmp4_time_exceeded"))
    assert (outer.src, outer.dst, outer.tos) == (ROUTER4, CLIENT4, 0xC0)
    error = parse_icmp(payload)
    assert (error.type, error.code) == (icmp4.TIME_EXCEEDED, icmp4.EXCEEDED_TTL)
    assert error.is_error and error.extensions == b"" and error.rfc4884_length == 0
    inner, inner_payload = parse_ipv4(error.quoted, quoted=True)
    assert (inner.src, inner.dst, inner.ttl, inner.ident) == (CLIENT4, TARGET4, 1, 10504)
    probe = parse_icmp(inner_payload)
    assert (probe.type, probe.ident, probe.seq) == (icmp4.ECHO_REQUEST, 4837, 1)
    # The quote is the very packet that was sent, except the TTL the router decremented.
    sent = load_vector("icmp4_echo_request_ttl1")
    assert error.quoted[20:] == sent[20:] and error.quoted[:8] == sent[:8]


def test_icmp6_time_exceeded_quotes_the_probe() -> None:
    outer, _, upper = parse_ipv6(load_vector("icmp6_time_exceeded"))
    assert (outer.src, outer.dst) == (ROUTER6, CLIENT6)
    error = parse_icmpv6(upper)
    assert (error.type, error.code, error.is_error) == (icmp6.TIME_EXCEEDED, 0, True)
    assert error.quoted == load_vector("icmp6_echo_request_hlim1")
    inner, protocol, inner_upper = parse_ipv6(error.quoted, quoted=True)
    assert (inner.hop_limit, protocol, parse_icmpv6(inner_upper).ident) == (1, 58, 4854)


def test_icmp4_port_unreachable_quotes_the_udp_datagram() -> None:
    outer, payload = parse_ipv4(load_vector("icmp4_port_unreachable"))
    error = parse_icmp(payload)
    assert (outer.src, error.type, error.code) == (TARGET4, 3, icmp4.UNREACH_PORT)
    inner, inner_payload = parse_ipv4(error.quoted, quoted=True)
    udp, data = parse_udp(inner_payload, quoted=True)
    assert (inner.protocol, udp.src_port, udp.dst_port, udp.length) == (PROTO_UDP, 40001, 33434, 25)
    assert data == b"rawprobe-udp-test"
    # The quote minus the decremented TTL and its checksum is the sent datagram.
    sent = load_vector("udp4_datagram")
    assert error.quoted[12:] == sent[12:]


def test_icmp6_port_unreachable_quotes_the_udp_datagram() -> None:
    _, _, upper = parse_ipv6(load_vector("icmp6_port_unreachable"))
    error = parse_icmpv6(upper)
    assert (error.type, error.code) == (icmp6.DEST_UNREACH, icmp6.UNREACH_PORT)
    _, protocol, inner_upper = parse_ipv6(error.quoted, quoted=True)
    udp, data = parse_udp(inner_upper, quoted=True)
    assert (protocol, udp.src_port, udp.dst_port, data) == (17, 40001, 33434, b"rawprobe-udp-test")


def test_admin_prohibited_quotes_the_syn() -> None:
    _, payload = parse_ipv4(load_vector("icmp4_admin_prohibited"))
    error = parse_icmp(payload)
    assert (error.type, error.code) == (icmp4.DEST_UNREACH, icmp4.UNREACH_ADMIN_PROHIBITED)
    _, inner_payload = parse_ipv4(error.quoted, quoted=True)
    assert parse_ports_seq(inner_payload) == (54218, 8082, 3594558933)
    assert parse_tcp(inner_payload, quoted=True)[0].flags == SYN

    _, _, upper = parse_ipv6(load_vector("icmp6_admin_prohibited"))
    error6 = parse_icmpv6(upper)
    assert (error6.type, error6.code) == (icmp6.DEST_UNREACH, icmp6.UNREACH_ADMIN_PROHIBITED)
    _, protocol, inner_upper = parse_ipv6(error6.quoted, quoted=True)
    assert protocol == PROTO_TCP
    assert parse_ports_seq(inner_upper) == (54200, 8082, 4163554440)


def test_rfc792_minimum_quote_gives_ports_and_seq_only() -> None:
    """Routers may quote only the IP header + 8 bytes: ports and seq are all there is."""
    _, payload = parse_ipv4(load_vector("icmp4_admin_prohibited"))
    short_quote = parse_icmp(payload).quoted[: 20 + 8]
    _, inner_payload = parse_ipv4(short_quote, quoted=True)
    assert parse_ports_seq(inner_payload) == (54218, 8082, 3594558933)
    with pytest.raises(ValueError):  # MalformedPacket: the TCP header is cut
        parse_tcp(inner_payload, quoted=True)


@pytest.mark.parametrize("family", ["tcp4", "tcp6"])
def test_kernel_syn_synack_rst(family: str) -> None:
    _, _, syn_bytes, _, _ = parse_ip(load_vector(f"{family}_syn"))
    syn, data = parse_tcp(syn_bytes)
    assert (syn.flags, flags_text(syn.flags), syn.ack, data) == (SYN, "S", 0, b"")
    assert syn.data_offset == 10 and syn.dst_port == 8080
    assert [o.name for o in syn.options] == ["mss", "sackOK", "TS", "nop", "wscale"]
    assert syn.options[0].mss == (1460 if family == "tcp4" else 1440)
    assert syn.options[4].window_scale == 10
    tsval, tsecr = syn.options[2].timestamps or (None, None)
    assert tsecr == 0 and tsval == (2211609049 if family == "tcp4" else 2549536589)

    _, _, synack_bytes, _, _ = parse_ip(load_vector(f"{family}_synack"))
    synack, _ = parse_tcp(synack_bytes)
    assert flags_text(synack.flags) == "S." and synack.flags == SYN | ACK
    assert synack.ack == syn.seq + 1
    assert (synack.src_port, synack.dst_port) == (syn.dst_port, syn.src_port)
    echoed = synack.option(8)
    assert echoed is not None and echoed.timestamps is not None
    assert echoed.timestamps[1] == tsval

    _, _, rst_bytes, _, _ = parse_ip(load_vector(f"{family}_rst"))
    rst, _ = parse_tcp(rst_bytes)
    assert (rst.flags, flags_text(rst.flags), rst.window, rst.options) == (RST | ACK, "R.", 0, ())
    assert (rst.src_port, rst.data_offset) == (8081, 5)


def test_udp_datagrams() -> None:
    header, payload = parse_ipv4(load_vector("udp4_datagram"))
    udp, data = parse_udp(payload)
    assert (header.src, udp.src_port, udp.dst_port, udp.length) == (CLIENT4, 40001, 33434, 25)
    assert data == b"rawprobe-udp-test"
    header6, protocol, upper = parse_ipv6(load_vector("udp6_datagram"))
    udp6, data6 = parse_udp(upper)
    assert (header6.src, protocol, udp6.length, data6) == (CLIENT6, 17, 25, data)
    assert udp6.checksum != udp.checksum  # different pseudo-headers, both verified above


def test_ipv4_record_route_options_are_honoured() -> None:
    """IHL 15: the options (NOP + RR) are 40 bytes and the ICMP starts at byte 60."""
    packet = load_vector("ipv4_rr_echo_request")
    header, payload = parse_ipv4(packet)
    assert header.header_length == 60 and packet[0] == 0x4F
    assert header.options[:4] == bytes([1, 7, 39, 8])  # NOP, RR len 39 pointer 8
    assert header.options[4:8] == bytes([198, 18, 1, 2])
    assert parse_icmp(payload).ident == 4861
    reply, reply_payload = parse_ipv4(load_vector("ipv4_rr_echo_reply"))
    recorded = [reply.options[i : i + 4] for i in range(3, 23, 4)]
    assert [".".join(map(str, r)) for r in recorded] == [
        "198.18.1.2",
        "198.18.2.1",
        "198.18.2.2",
        "198.18.2.2",
        "198.18.1.1",
    ]
    assert parse_icmp(reply_payload).type == icmp4.ECHO_REPLY


def test_ipv4_fragments_reassemble_to_a_valid_echo() -> None:
    first, first_payload = parse_ipv4(load_vector("ipv4_frag_first"))
    last, last_payload = parse_ipv4(load_vector("ipv4_frag_last"))
    assert (first.flags, first.fragment_offset, first.is_fragment) == (MF, 0, True)
    assert (last.flags, last.fragment_offset_bytes, last.is_fragment) == (0, 1480, True)
    assert first.ident == last.ident == 10759
    datagram = first_payload + last_payload
    assert len(datagram) == 8 + 2000 and verify_icmp_checksum(datagram)
    assert parse_icmp(datagram).ident == 4868


def test_ipv6_fragments_reassemble_to_a_valid_echo() -> None:
    chunks = []
    for name in ("ipv6_frag_first", "ipv6_frag_last"):
        packet = load_vector(name)
        header, protocol, upper = parse_ipv6(packet)
        fragment = find_fragment_header(packet, 40, header.next_header)
        assert fragment is not None and fragment.ident == 0xB079DEE7
        assert protocol == PROTO_ICMPV6 == fragment.next_header
        chunks.append((fragment.offset * 8, fragment.more, upper))
    assert [(offset, more) for offset, more, _ in chunks] == [(0, True), (1448, False)]
    datagram = chunks[0][2] + chunks[1][2]
    assert len(datagram) == 8 + 2000
    assert verify_icmpv6_checksum(datagram, src=CLIENT6, dst=TARGET6)
    # Same thing spelled with the pseudo-header primitives.
    pseudo = pseudo_header(CLIENT6, TARGET6, PROTO_ICMPV6, len(datagram))
    assert internet_checksum(datagram, ones_complement_sum(pseudo)) == 0


def test_ipv6_hop_by_hop_is_skipped() -> None:
    """The kernel's MLDv2 report carries a hop-by-hop router-alert header."""
    header, protocol, upper = parse_ipv6(load_vector("ipv6_hbh_mld_report"))
    assert (header.next_header, header.dst, header.hop_limit) == (0, "ff02::16", 1)
    assert header.src == "fe80::488f:7fff:fef1:4ed0"
    assert protocol == PROTO_ICMPV6 and len(upper) == 36 - 8
    report = parse_icmpv6(upper)
    assert report.type == 143  # MLDv2 report: unknown to us, still representable
    assert verify_icmpv6_checksum(upper, src=header.src, dst=header.dst)


@pytest.mark.parametrize("name", ["tcp4_syn", "icmp6_time_exceeded", "ipv6_hbh_mld_report"])
def test_parsers_accept_memoryview_and_bytearray(name: str) -> None:
    """A receive loop hands out memoryviews of one buffer; results must not alias it."""
    packet = load_vector(name)
    buffer = bytearray(packet)
    layers = dissect(memoryview(buffer))  # type: ignore[arg-type]
    assert layers == dissect(packet) == dissect(bytearray(packet))  # type: ignore[arg-type]
    buffer[:] = b"\x00" * len(buffer)  # reusing the buffer must not change parsed values
    assert layers == dissect(packet)
