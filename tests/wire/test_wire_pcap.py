"""Classic pcap files: write, read back, and the link types a Linux capture uses."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from wire_vectors import load_vector, vector_names

from rawprobe.errors import MalformedPacket, UsageError
from rawprobe.transport.wire.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    PcapReader,
    PcapWriter,
    encode_header,
    encode_record,
    encode_sll2,
    network_packet,
)

T0_NS = 1_700_000_000_123_456_789


def test_write_then_read_back_keeps_every_packet_and_nanosecond(tmp_path: Path) -> None:
    packets = [load_vector(name) for name in vector_names()]
    path = tmp_path / "x.pcap"
    with path.open("wb") as stream:
        writer = PcapWriter(stream)
        for i, packet in enumerate(packets):
            writer.write(T0_NS + i, packet)
    assert writer.records == len(packets)
    with path.open("rb") as stream:
        reader = PcapReader(stream)
        records = list(reader)
    assert reader.header.linktype == LINKTYPE_RAW and reader.header.nanosecond
    assert [r.data for r in records] == packets
    assert [r.timestamp_ns for r in records] == [T0_NS + i for i in range(len(packets))]
    assert all(r.original_length == len(r.data) for r in records)


def test_header_is_what_libpcap_writes() -> None:
    header = encode_header()
    assert header[:4] == bytes.fromhex("4d3cb2a1")  # nanosecond magic, little-endian
    assert struct.unpack("<HHiIII", header[4:]) == (2, 4, 0, 0, 262144, 101)


def test_microsecond_and_big_endian_files_are_read() -> None:
    micro = encode_header(nanosecond=False) + encode_record(T0_NS, b"abc", nanosecond=False)
    (record,) = PcapReader(io.BytesIO(micro))
    assert record.timestamp_ns == T0_NS // 1000 * 1000 and record.data == b"abc"
    big = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    big += struct.pack(">IIII", 10, 5, 3, 3) + b"xyz"
    reader = PcapReader(io.BytesIO(big))
    assert reader.header.linktype == LINKTYPE_ETHERNET
    assert [(r.timestamp_ns, r.data) for r in reader] == [(10_000_005_000, b"xyz")]


def test_snaplen_cuts_the_stored_bytes_not_the_original_length() -> None:
    data = encode_header(snaplen=10) + encode_record(T0_NS, bytes(100), snaplen=10)
    (record,) = PcapReader(io.BytesIO(data))
    assert (len(record.data), record.original_length) == (10, 100)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"\x0a\x0d\x0d\x0a" + bytes(28), "pcapng"),
        (b"GIF89a" + bytes(30), "not a pcap file"),
    ],
)
def test_bad_files_raise_malformed(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message):
        PcapReader(io.BytesIO(data))


def test_a_file_cut_mid_record_yields_the_complete_ones_first() -> None:
    data = encode_header() + encode_record(T0_NS, b"one") + encode_record(T0_NS, b"two")
    seen = []
    with pytest.raises(MalformedPacket, match="truncated"):
        for record in PcapReader(io.BytesIO(data[:-1])):
            seen.append(record.data)
    assert seen == [b"one"]


def test_link_headers_are_stripped_with_direction() -> None:
    packet = load_vector("icmp4_echo_request")
    ethernet = bytes(12) + b"\x08\x00" + packet
    assert network_packet(LINKTYPE_ETHERNET, ethernet).packet == packet  # type: ignore[union-attr]
    vlan = bytes(12) + b"\x81\x00\x00\x05" + b"\x86\xdd" + b"v6"
    assert network_packet(LINKTYPE_ETHERNET, vlan).packet == b"v6"  # type: ignore[union-attr]
    assert network_packet(LINKTYPE_ETHERNET, bytes(12) + b"\x08\x06" + bytes(28)) is None  # ARP
    sll = struct.pack("!HHH8sH", 4, 1, 6, b"", 0x0800) + packet
    assert network_packet(LINKTYPE_LINUX_SLL, sll).outgoing is True  # type: ignore[union-attr]
    framed = network_packet(LINKTYPE_LINUX_SLL2, encode_sll2(packet, ifindex=7, outgoing=False))
    assert framed is not None and (framed.packet, framed.outgoing, framed.ifindex) == (
        packet,
        False,
        7,
    )
    with pytest.raises(MalformedPacket):
        network_packet(LINKTYPE_LINUX_SLL2, b"short")
    with pytest.raises(UsageError, match="link type 105"):
        network_packet(105, packet)
