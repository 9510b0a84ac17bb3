"""Hand-crafted packets: every field given lands in the bytes, defaults as the kernel's."""

from __future__ import annotations

import pytest

from rawprobe import ICMP, IP, TCP, UDP, craft
from rawprobe.errors import UsageError
from rawprobe.transport.wire import (
    parse_icmp,
    parse_icmpv6,
    parse_ipv4,
    parse_ipv6,
    parse_tcp,
    parse_udp,
    verify_icmpv6_checksum,
    verify_ipv4_checksum,
    verify_tcp_checksum,
    verify_udp_checksum,
)
from rawprobe.transport.wire.dissect import dissect
from rawprobe.transport.wire.tcp import mss

SRC4, DST4, SRC6, DST6 = "198.18.1.2", "198.19.0.5", "2001:db8:1::2", "2001:db8:ff::5"


def test_ipv4_tcp_fields_as_given_and_checksums_computed() -> None:
    ip = IP(ttl=2, tos=0xB8, ident=4242, df=True, fragment_offset=0, options=b"\x01\x01")
    layer = TCP(dport=80, sport=40000, flags="SA", seq=7, ack=99, window=1234, urgent=5,
                options=(mss(1400),))  # fmt: skip
    packet = craft(DST4, layer, src=SRC4, ip=ip, payload=b"hi")
    header, upper = parse_ipv4(packet)
    assert (header.ttl, header.tos, header.ident, header.flags, header.protocol) == (
        2, 0xB8, 4242, 0b010, 6,
    )  # fmt: skip
    assert header.options == b"\x01\x01\x00\x00" and header.total_length == len(packet)
    assert verify_ipv4_checksum(packet)
    tcp, data = parse_tcp(upper)
    assert (tcp.src_port, tcp.dst_port, tcp.seq, tcp.ack, tcp.window, tcp.urgent) == (
        40000, 80, 7, 99, 1234, 5,
    )  # fmt: skip
    assert tcp.flags == 0x12 and tcp.options[0].mss == 1400 and data == b"hi"
    assert verify_tcp_checksum(upper, src=SRC4, dst=DST4)


def test_ack_defaults_to_seq_when_the_ack_flag_is_set() -> None:
    _, upper = parse_ipv4(craft(DST4, TCP(dport=80, flags="A", seq=5), src=SRC4))
    assert parse_tcp(upper)[0].ack == 5
    _, upper = parse_ipv4(craft(DST4, TCP(dport=80, flags="S", seq=5), src=SRC4))
    assert parse_tcp(upper)[0].ack == 0


def test_ipv6_udp_with_flow_label_and_traffic_class() -> None:
    packet = craft(DST6, UDP(dport=53, sport=1111), src=SRC6,
                   ip=IP(ttl=9, tos=0x20, flow_label=0xABCDE), payload=b"q")  # fmt: skip
    header, protocol, upper = parse_ipv6(packet)
    assert (header.hop_limit, header.traffic_class, header.flow_label, protocol) == (
        9, 0x20, 0xABCDE, 17,
    )  # fmt: skip
    udp, data = parse_udp(upper)
    assert (udp.src_port, udp.dst_port, udp.length, data) == (1111, 53, 9, b"q")
    assert verify_udp_checksum(upper, src=SRC6, dst=DST6)


def test_icmp_echo_defaults_per_family_and_explicit_fields() -> None:
    _, upper = parse_ipv4(craft(DST4, ICMP(ident=7, seq=3), src=SRC4, payload=b"x"))
    message = parse_icmp(upper)
    assert (message.type, message.ident, message.seq, message.body) == (8, 7, 3, b"x")
    _, _, upper6 = parse_ipv6(craft(DST6, ICMP(ident=7), src=SRC6))
    assert parse_icmpv6(upper6).type == 128
    assert verify_icmpv6_checksum(upper6, src=SRC6, dst=DST6)
    _, upper = parse_ipv4(craft(DST4, ICMP(type=13, code=0, ident=1), src=SRC4))
    assert parse_icmp(upper).body == bytes(12)  # three zero timestamps


@pytest.mark.parametrize(
    "layer", [TCP(dport=80), UDP(dport=53), ICMP()], ids=["tcp", "udp", "icmp"]
)
@pytest.mark.parametrize("dst,src", [(DST4, SRC4), (DST6, SRC6)], ids=["v4", "v6"])
def test_bad_checksum_on_purpose_is_seen_as_wrong(
    layer: TCP | UDP | ICMP, dst: str, src: str
) -> None:
    good = dissect(craft(dst, layer, src=src, payload=b"abc"))
    bad = dissect(craft(dst, layer, src=src, payload=b"abc", bad_checksum=True))
    assert "(correct)" in good.layers[1].field("checksum").text  # type: ignore[union-attr]
    assert "incorrect" in bad.layers[1].field("checksum").text  # type: ignore[union-attr]


def test_explicit_checksum_and_lengths_are_sent_as_given() -> None:
    packet = craft(DST4, UDP(dport=9, sport=9, checksum=0xBEEF, length=100), src=SRC4,
                   ip=IP(length=1000, checksum=0x1234))  # fmt: skip
    assert packet[2:4] == (1000).to_bytes(2, "big") and packet[10:12] == b"\x12\x34"
    assert packet[24:26] == (100).to_bytes(2, "big") and packet[26:28] == b"\xbe\xef"


@pytest.mark.parametrize(
    "ip", [IP(df=True), IP(ident=5), IP(options=b"\x01"), IP(fragment_offset=1), IP(checksum=1)]
)
def test_ipv4_only_fields_are_refused_for_ipv6(ip: IP) -> None:
    with pytest.raises(UsageError):
        craft(DST6, ICMP(), src=SRC6, ip=ip)


def test_family_mismatch_and_out_of_range_values_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="family"):
        craft(DST6, ICMP(), src=SRC4)
    with pytest.raises(UsageError, match="flow label"):
        craft(DST4, ICMP(), src=SRC4, ip=IP(flow_label=1))
    with pytest.raises(UsageError):
        craft(DST4, TCP(dport=70000), src=SRC4)
    with pytest.raises(UsageError):
        craft(DST4, ICMP(), src=SRC4, ip=IP(ttl=300))
    with pytest.raises(UsageError):
        craft(DST4, None, src=SRC4)
