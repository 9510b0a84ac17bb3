"""Layered dissection (transport/wire/dissect.py) against the golden vectors.

The summaries are checked against tcpdump's own one-line decoding of the same packets
(``tcpdump -nn -tt -S -r``, run once on a pcap of the vectors and pasted below): an
independent oracle, not our parser.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import output_check
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import ip_packets
from wire_vectors import load_vector, vector_names

from rawprobe.transport.wire import (
    IPv4Header,
    MplsLabel,
    build_extensions,
    build_icmp,
    build_ipv4,
    build_mpls_object,
)
from rawprobe.transport.wire.dissect import dissect
from rawprobe.transport.wire.pcap import PcapWriter

TCPDUMP_LINES = {
    "icmp4_admin_prohibited": "IP 198.18.2.2 > 198.18.1.2: ICMP host 198.18.2.2 unreachable - admin prohibited filter, length 68",  # noqa: E501
    "icmp4_echo_reply": "IP 198.18.2.2 > 198.18.1.2: ICMP echo reply, id 4818, seq 1, length 64",
    "icmp4_echo_request": "IP 198.18.1.2 > 198.18.2.2: ICMP echo request, id 4818, seq 1, length 64",  # noqa: E501
    "icmp4_port_unreachable": "IP 198.18.2.2 > 198.18.1.2: ICMP 198.18.2.2 udp port 33434 unreachable, length 53",  # noqa: E501
    "icmp4_time_exceeded": "IP 198.18.1.1 > 198.18.1.2: ICMP time exceeded in-transit, length 92",
    "icmp6_admin_prohibited": "IP6 2001:db8:2::2 > 2001:db8:1::2: ICMP6, destination unreachable,  unreachable prohibited 2001:db8:2::2, length 88",  # noqa: E501
    "icmp6_echo_reply": "IP6 2001:db8:2::2 > 2001:db8:1::2: ICMP6, echo reply, id 4825, seq 1, length 64",  # noqa: E501
    "icmp6_port_unreachable": "IP6 2001:db8:2::2 > 2001:db8:1::2: ICMP6, destination unreachable, unreachable port, 2001:db8:2::2 udp port 33434, length 73",  # noqa: E501
    "icmp6_time_exceeded": "IP6 2001:db8:1::1 > 2001:db8:1::2: ICMP6, time exceeded in-transit for 2001:db8:2::2, length 112",  # noqa: E501
    "ipv4_frag_first": "IP 198.18.1.2 > 198.18.2.2: ICMP echo request, id 4868, seq 1, length 1480",
    "ipv4_frag_last": "IP 198.18.1.2 > 198.18.2.2: ip-proto-1",
    "ipv4_rr_echo_request": "IP 198.18.1.2 > 198.18.2.2: ICMP echo request, id 4861, seq 1, length 64",  # noqa: E501
    "ipv6_frag_first": "IP6 2001:db8:1::2 > 2001:db8:2::2: frag (0|1448) ICMP6, echo request, id 4875, seq 1, length 1448",  # noqa: E501
    "ipv6_frag_last": "IP6 2001:db8:1::2 > 2001:db8:2::2: frag (1448|560)",
    "tcp4_rst": "IP 198.18.2.2.8081 > 198.18.1.2.55476: Flags [R.], seq 0, ack 2904753460, win 0, length 0",  # noqa: E501
    "tcp4_syn": "IP 198.18.1.2.39948 > 198.18.2.2.8080: Flags [S], seq 1584000546, win 64240, options [mss 1460,sackOK,TS val 2211609049 ecr 0,nop,wscale 10], length 0",  # noqa: E501
    "tcp4_synack": "IP 198.18.2.2.8080 > 198.18.1.2.39948: Flags [S.], seq 3289824791, ack 1584000547, win 65160, options [mss 1460,sackOK,TS val 822909761 ecr 2211609049,nop,wscale 10], length 0",  # noqa: E501
    "tcp6_rst": "IP6 2001:db8:2::2.8081 > 2001:db8:1::2.55422: Flags [R.], seq 0, ack 1445423114, win 0, length 0",  # noqa: E501
    "tcp6_synack": "IP6 2001:db8:2::2.8080 > 2001:db8:1::2.34064: Flags [S.], seq 1425928754, ack 1944828765, win 64260, options [mss 1440,sackOK,TS val 622469524 ecr 2549536589,nop,wscale 10], length 0",  # noqa: E501
    "udp4_datagram": "IP 198.18.1.2.40001 > 198.18.2.2.33434: UDP, length 17",
    "udp6_datagram": "IP6 2001:db8:1::2.40001 > 2001:db8:2::2.33434: UDP, length 17",
}
ALL = vector_names()


@pytest.mark.parametrize("name", sorted(TCPDUMP_LINES))
def test_summary_is_tcpdumps_line(name: str) -> None:
    assert dissect(load_vector(name)).summary == TCPDUMP_LINES[name]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_agrees_on_every_vector_written_to_a_pcap(tmp_path: Path) -> None:
    path = tmp_path / "vectors.pcap"
    with path.open("wb") as stream:
        writer = PcapWriter(stream)
        for i, name in enumerate(ALL):
            writer.write(1_700_000_000_000_000_000 + i * 1000, load_vector(name))
    done = subprocess.run(
        ["tcpdump", "-r", str(path), "-nn", "-tt", "-S"], capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    assert len(lines) == len(ALL)
    for i, (name, line) in enumerate(zip(ALL, lines, strict=True)):
        stamp, text = line.split(" ", 1)
        assert stamp == f"1700000000.{i:06d}"  # nanosecond file, microsecond print
        if name != "ipv6_hbh_mld_report":  # MLD records are beyond our summary
            assert dissect(load_vector(name)).summary == text.rstrip(), name


@pytest.mark.parametrize("name", ALL)
def test_every_vector_dissects_with_correct_checksums(name: str) -> None:
    dissection = dissect(load_vector(name))
    assert not dissection.malformed
    assert dissection.layers[0].name in ("IPv4", "IPv6")
    texts = [
        field.text
        for layer in dissection.layers
        for nested in layer.walk()
        for field in nested.fields
        if field.name == "checksum"
    ]
    assert not any("incorrect" in text for text in texts), texts
    assert texts or name == "ipv6_frag_last"  # IPv6 has no header checksum
    json.dumps(output_check.part(dissection.to_data(), "sniff", "dissection"))  # JSON-ready


def test_time_exceeded_shows_the_quoted_header() -> None:
    dissection = dissect(load_vector("icmp4_time_exceeded"))
    assert [layer.name for layer in dissection.layers] == ["IPv4", "ICMP"]
    icmp = dissection.layers[1]
    assert icmp.value("type") == 11 and icmp.field("type").text == "11 (time exceeded)"  # type: ignore[union-attr]
    quoted = icmp.child("Quoted packet")
    assert quoted is not None
    names = [layer.name for layer in quoted.children]
    assert names == ["IPv4", "ICMP", "Payload"]
    inner_ip, inner_icmp = quoted.children[0], quoted.children[1]
    assert (inner_ip.value("ttl"), inner_ip.value("ident"), inner_ip.value("dst")) == (
        1,
        10504,
        "198.18.2.2",
    )
    assert inner_ip.field("flags").text == "[DF]"  # type: ignore[union-attr]
    assert (inner_icmp.value("type"), inner_icmp.value("ident")) == (8, 4837)


def test_quoted_tcp_with_only_eight_bytes_shows_ports_and_seq() -> None:
    packet = load_vector("icmp4_admin_prohibited")
    # Cut the quote to IP header + 8 TCP bytes, as RFC 792 routers do.
    ip = IPv4Header(src="198.18.2.2", dst="198.18.1.2", protocol=1)
    short = build_ipv4(ip, build_icmp(3, 13, 0, packet[28 : 28 + 28]))
    quoted = dissect(short).layers[1].child("Quoted packet")
    assert quoted is not None
    tcp = quoted.children[1]
    assert tcp.name == "TCP"
    assert (tcp.value("src_port"), tcp.value("dst_port"), tcp.value("seq")) == (
        54218,
        8082,
        3594558933,
    )


def test_wrong_checksums_are_called_out() -> None:
    packet = bytearray(load_vector("tcp4_syn"))
    packet[36] ^= 0xFF  # TCP checksum
    packet[10] ^= 0x01  # IP header checksum
    dissection = dissect(bytes(packet))
    ip_sum = dissection.layers[0].field("checksum")
    tcp_sum = dissection.layers[1].field("checksum")
    assert ip_sum is not None and "incorrect, should be 0x" in ip_sum.text
    assert tcp_sum is not None and tcp_sum.text.endswith("(incorrect, should be 0xb80e)")


def test_ipv4_options_and_fragments_are_named() -> None:
    request = dissect(load_vector("ipv4_rr_echo_request"))
    options = request.layers[0].field("options")
    assert options is not None and options.text.startswith("NOP, RR ptr 8 198.18.1.2 0.0.0.0")
    later = dissect(load_vector("ipv6_frag_last"))
    assert [layer.name for layer in later.layers] == ["IPv6", "IPv6 Fragment", "Fragment data"]
    fragment = later.layers[1]
    assert (fragment.value("fragment_offset"), fragment.value("more_fragments")) == (181, False)


def test_mpls_extension_is_a_nested_layer() -> None:
    labels = (MplsLabel(16005, 0, False, 1), MplsLabel(24001, 5, True, 1))
    original = load_vector("icmp4_echo_request_ttl1").ljust(128, b"\x00")
    body = original + build_extensions([build_mpls_object(labels)])
    ip = IPv4Header(src="198.18.1.1", dst="198.18.1.2", protocol=1)
    dissection = dissect(build_ipv4(ip, build_icmp(11, 0, 32 << 16, body)))
    icmp = dissection.layers[1]
    assert icmp.value("original_length") == 128
    extensions = icmp.child("ICMP extensions")
    assert extensions is not None
    stack = extensions.children[0]
    assert stack.name == "MPLS label stack"
    assert [(c.value("label"), c.value("bottom")) for c in stack.children] == [
        (16005, False),
        (24001, True),
    ]
    assert not dissection.malformed


@pytest.mark.parametrize("name", ALL)
def test_every_prefix_dissects_without_raising(name: str) -> None:
    packet = load_vector(name)
    header_length = 40 if packet[0] >> 4 == 6 else (packet[0] & 0x0F) * 4
    for cut in range(len(packet)):
        dissection = dissect(packet[:cut])
        if cut < header_length:
            assert dissection.malformed
            assert dissection.layers[-1].name == "Malformed"
        assert dissection.length == cut


def test_garbage_is_a_malformed_layer_with_the_reason() -> None:
    dissection = dissect(b"\x75" + bytes(30))
    assert dissection.malformed
    error = dissection.layers[0].field("error")
    assert error is not None and "version 7" in error.text
    assert dissect(b"").malformed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    json.dumps(output_check.part(dissect(data).to_data(), "sniff", "dissection"))


@settings(max_examples=150, deadline=None)
@given(ip_packets())
def test_generated_packets_dissect_cleanly(packet: bytes) -> None:
    dissection = dissect(packet)
    json.dumps(output_check.part(dissection.to_data(), "sniff", "dissection"))
    assert dissection.layers[0].name in ("IPv4", "IPv6")
    # Builders compute every checksum: none of the outer layers may call one wrong.
    for layer in dissection.layers:
        checksum = layer.field("checksum")
        assert checksum is None or "incorrect" not in checksum.text, layer
