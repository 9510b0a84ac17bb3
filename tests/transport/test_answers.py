"""Typed answers (transport/answers.py): each kind's fields, read once from the bytes,
as the demultiplexer hands them to probes."""

from __future__ import annotations

import pickle
import socket

from rawprobe.transport.answers import (
    EchoAnswer,
    IcmpError,
    Reply,
    TcpAnswer,
    UdpAnswer,
    answer_v4,
    answer_v6,
)
from rawprobe.transport.base import Counters, Inbox
from rawprobe.transport.demux import Demux
from rawprobe.transport.keys import (
    KIND_ECHO,
    KIND_TCP,
    KIND_UDP,
    KIND_UDP_DATA,
    Cookies,
    key_of_reply_v4,
)
from rawprobe.transport.wire import (
    ACK,
    SYN,
    IPv4Header,
    IPv6Header,
    MplsLabel,
    TcpHeader,
    UdpHeader,
    build_echo,
    build_extensions,
    build_icmp,
    build_icmpv6,
    build_ipv4,
    build_ipv6,
    build_mpls_object,
    build_tcp,
    build_udp,
)

US, HOST, ROUTER = "198.18.1.2", "198.19.0.1", "198.18.2.1"
US6, HOST6 = "2001:db8:1::2", "2001:db8:ff::1"


def ipv4(src: str, dst: str, protocol: int, payload: bytes, ttl: int = 61) -> bytes:
    return build_ipv4(IPv4Header(src=src, dst=dst, protocol=protocol, ttl=ttl), payload)


def udp_probe(ttl: int = 3) -> bytes:
    udp = build_udp(UdpHeader(40000, 33434), b"x" * 12, src=US, dst=HOST)
    return ipv4(US, HOST, 17, udp, ttl)


def test_a_syn_ack_gives_its_flags_seq_ack_and_window() -> None:
    segment = build_tcp(
        TcpHeader(80, 40000, seq=7, ack=1001, flags=SYN | ACK, window=29200), b"", src=HOST, dst=US
    )
    packet = ipv4(HOST, US, 6, segment)
    key = key_of_reply_v4(packet)
    assert key is not None and key[0] == KIND_TCP
    answer = answer_v4(key, packet, 5, 0.5)
    assert isinstance(answer, TcpAnswer) and isinstance(answer, Reply)
    assert (answer.flags, answer.seq, answer.ack, answer.window) == (SYN | ACK, 7, 1001, 29200)
    assert (answer.source, answer.ttl, answer.offset, answer.protocol) == (HOST, 61, 20, 6)
    assert (answer.received_ns, answer.received_s) == (5, 0.5)


def test_a_udp_answer_gives_its_ports_and_payload() -> None:
    packet = ipv4(HOST, US, 17, build_udp(UdpHeader(53, 40000), b"answer", src=HOST, dst=US))
    answer = answer_v4((KIND_UDP_DATA, socket.inet_aton(HOST), 40000 << 16 | 53, 0), packet, 0, 0)
    assert isinstance(answer, UdpAnswer)
    assert (answer.sport, answer.dport, answer.payload) == (53, 40000, b"answer")


def test_an_echo_reply_gives_type_size_and_payload() -> None:
    packet = ipv4(HOST, US, 1, build_echo(0x4201, 3, b"cookie!!pattern", reply=True))
    answer = answer_v4((KIND_ECHO, socket.inet_aton(HOST), 0x4201, 3), packet, 0, 0)
    assert isinstance(answer, EchoAnswer)
    assert (answer.icmp_type, answer.code, answer.size) == (0, 0, 8 + 15)
    assert answer.payload == b"cookie!!pattern"


def test_a_port_unreachable_gives_type_code_and_the_quoted_ttl() -> None:
    probe = udp_probe(ttl=1)
    packet = ipv4(HOST, US, 1, build_icmp(3, 3, 0, probe))
    key = key_of_reply_v4(packet)
    assert key is not None and key[0] == KIND_UDP
    answer = answer_v4(key, packet, 0, 0)
    assert isinstance(answer, IcmpError)
    assert (answer.icmp_type, answer.code, answer.mtu, answer.quoted_ttl) == (3, 3, 0, 1)
    assert answer.quote == probe and answer.extensions == b""
    assert answer.from_target


def test_frag_needed_gives_the_next_hop_mtu_and_a_router_is_not_the_target() -> None:
    packet = ipv4(ROUTER, US, 1, build_icmp(3, 4, 1400, udp_probe()))
    key = key_of_reply_v4(packet)
    assert key is not None
    answer = answer_v4(key, packet, 0, 0)
    assert isinstance(answer, IcmpError) and answer.mtu == 1400 and not answer.from_target


def test_rfc4884_extensions_are_split_from_the_quote() -> None:
    quote = udp_probe().ljust(128, b"\0")
    extensions = build_extensions([build_mpls_object([MplsLabel(16001, 0, True, 1)])])
    rest = (len(quote) // 4) << 16  # the RFC 4884 length, in 32-bit words
    packet = ipv4(ROUTER, US, 1, build_icmp(11, 0, rest, quote + extensions))
    key = key_of_reply_v4(packet)
    assert key is not None
    answer = answer_v4(key, packet, 0, 0)
    assert isinstance(answer, IcmpError)
    assert answer.quote == quote and answer.extensions == extensions


def test_the_pre_rfc4884_layout_is_found_by_its_checksum() -> None:
    quote = udp_probe().ljust(128, b"\0")
    extensions = build_extensions([build_mpls_object([MplsLabel(16001, 0, True, 1)])])
    packet = ipv4(ROUTER, US, 1, build_icmp(11, 0, 0, quote + extensions))
    key = key_of_reply_v4(packet)
    assert key is not None
    answer = answer_v4(key, packet, 0, 0)
    assert isinstance(answer, IcmpError) and answer.extensions == extensions
    broken = bytearray(extensions)
    broken[2] ^= 0xFF  # a wrong checksum: 128 bytes of quote and nothing else
    packet = ipv4(ROUTER, US, 1, build_icmp(11, 0, 0, quote + bytes(broken)))
    answer = answer_v4(key, packet, 0, 0)
    assert isinstance(answer, IcmpError) and answer.extensions == b""


def test_icmpv6_packet_too_big_and_time_exceeded() -> None:
    udp = build_udp(UdpHeader(40000, 33434), b"x" * 12, src=US6, dst=HOST6)
    probe = build_ipv6(IPv6Header(src=US6, dst=HOST6, next_header=17, hop_limit=2), udp)
    key = (KIND_UDP, socket.inet_pton(socket.AF_INET6, HOST6), 40000 << 16 | 33434, 0)
    source = socket.inet_pton(socket.AF_INET6, "2001:db8:2::1")
    too_big = build_icmpv6(2, 0, 1280, probe, src="2001:db8:2::1", dst=US6)
    answer = answer_v6(key, source, too_big, 63, 0, 0.0, 58)
    assert isinstance(answer, IcmpError)
    assert (answer.icmp_type, answer.mtu, answer.quoted_ttl, answer.offset) == (2, 1280, 2, 0)
    exceeded = build_icmpv6(3, 0, 0, probe, src="2001:db8:2::1", dst=US6)
    answer = answer_v6(key, source, exceeded, 63, 0, 0.0, 58)
    assert isinstance(answer, IcmpError) and (answer.icmp_type, answer.mtu) == (3, 0)
    assert answer.source == "2001:db8:2::1" and answer.ttl == 63


def test_reply_built_by_hand_is_typed_and_a_short_one_stays_bare() -> None:
    packet = ipv4(HOST, US, 1, build_echo(1, 2, b"12345678", reply=True))
    key = (KIND_ECHO, socket.inet_aton(HOST), 1, 2)
    typed = Reply(key, socket.AF_INET, packet[12:16], packet, 61, 0, 0.0, 1)
    assert isinstance(typed, EchoAnswer) and typed.icmp_type == 0
    bare = Reply(key, socket.AF_INET, packet[12:16], b"", 61, 0, 0.0, 1)
    assert type(bare) is Reply and bare.data == b"" and bare.key == key
    assert pickle.loads(pickle.dumps(typed)) == typed
    assert "EchoAnswer(key=" in repr(typed)


def test_the_demux_counts_a_matched_packet_too_short_to_type_as_malformed() -> None:
    cookies, counters = Cookies(), Counters()
    demux = Demux(cookies, counters)
    demux.verify_icmp = demux.verify_ip_header = False
    inbox = Inbox(4)
    key = (KIND_TCP, socket.inet_aton(HOST), 40000 << 16 | 80, 1000)
    demux.register(key, inbox)
    segment = build_tcp(
        TcpHeader(80, 40000, seq=9, ack=1001, flags=SYN | ACK), b"", src=HOST, dst=US
    )
    packet = ipv4(HOST, US, 6, segment)
    demux.dispatch_v4(packet[:34], 0, 0.0)  # the key's bytes are there, the window is not
    assert (counters.malformed, len(inbox)) == (1, 0)
    demux.dispatch_v4(packet, 0, 0.0)
    (answer,) = inbox.take_all()
    assert isinstance(answer, TcpAnswer) and answer.window == 65535
