"""Classic pcap files (the libpcap format tcpdump and Wireshark read and write).

Written files use nanosecond timestamps (magic 0xa1b23c4d) and, by default,
LINKTYPE_RAW (101): each record is a bare IPv4 or IPv6 packet. Reading accepts both
byte orders, micro- and nanosecond files, and the link types a Linux capture is
likely to use: Ethernet (1), raw IP (101, 228, 229), Linux cooked v1 (113) and v2
(276); ``network_packet`` strips the link header and returns the direction when the
link type records it.

Pure format code: bytes and binary streams in and out, no sockets, no clock. Bad or
truncated files raise ``MalformedPacket``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from rawprobe.errors import MalformedPacket, UsageError

from .fields import pack_fields

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_RAW",
    "PACKET_OUTGOING",
    "LinkPacket",
    "PcapHeader",
    "PcapReader",
    "PcapRecord",
    "PcapWriter",
    "decode_header",
    "encode_header",
    "encode_record",
    "encode_sll2",
    "network_packet",
]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

#: sll_pkttype values (linux/if_packet.h), also used by the cooked link types.
PACKET_HOST = 0
PACKET_OUTGOING = 4

MAGIC_MICRO = 0xA1B2C3D4
MAGIC_NANO = 0xA1B23C4D
DEFAULT_SNAPLEN = 262144

_GLOBAL = {"<": struct.Struct("<IHHiIII"), ">": struct.Struct(">IHHiIII")}
_RECORD = {"<": struct.Struct("<IIII"), ">": struct.Struct(">IIII")}
_SLL = struct.Struct("!HHH8sH")
_SLL2 = struct.Struct("!HHIHBB8s")
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100))
_ARPHRD_NONE = 0xFFFE


@dataclass(frozen=True, slots=True)
class PcapHeader:
    """The global header: link type, snapshot length, timestamp unit, byte order."""

    linktype: int
    snaplen: int = DEFAULT_SNAPLEN
    nanosecond: bool = True
    byte_order: str = "<"


@dataclass(frozen=True, slots=True)
class PcapRecord:
    """One captured frame. ``timestamp_ns`` is nanoseconds since the Unix epoch;
    ``data`` is the link-layer frame as stored (``original_length`` may be larger
    when the capture was cut at the snapshot length)."""

    timestamp_ns: int
    data: bytes
    original_length: int


@dataclass(frozen=True, slots=True)
class LinkPacket:
    """A network-layer packet taken out of a frame; ``outgoing`` None means unknown."""

    packet: bytes
    outgoing: bool | None = None
    ifindex: int | None = None


def encode_header(
    linktype: int = LINKTYPE_RAW, *, snaplen: int = DEFAULT_SNAPLEN, nanosecond: bool = True
) -> bytes:
    """The 24-byte global header (little-endian, like tcpdump on x86)."""
    magic = MAGIC_NANO if nanosecond else MAGIC_MICRO
    return pack_fields(_GLOBAL["<"], "pcap header field", magic, 2, 4, 0, 0, snaplen, linktype)


def encode_record(
    timestamp_ns: int,
    data: bytes,
    *,
    original_length: int | None = None,
    snaplen: int = DEFAULT_SNAPLEN,
    nanosecond: bool = True,
) -> bytes:
    """One record: 16-byte record header plus at most ``snaplen`` bytes of ``data``."""
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    fraction = nanos if nanosecond else nanos // 1000
    stored = data[:snaplen]
    original = len(data) if original_length is None else original_length
    return (
        pack_fields(_RECORD["<"], "pcap record field", seconds, fraction, len(stored), original)
        + stored
    )


def decode_header(data: bytes) -> PcapHeader:
    """Parse the global header; raises MalformedPacket for anything but classic pcap."""
    if len(data) < 24:
        raise MalformedPacket(f"pcap header truncated: {len(data)} of 24 bytes")
    for order in ("<", ">"):
        magic, major, _minor, _zone, _sigfigs, snaplen, linktype = _GLOBAL[order].unpack_from(data)
        if magic in (MAGIC_MICRO, MAGIC_NANO):
            if major != 2:
                raise MalformedPacket(f"pcap version {major} is not supported")
            return PcapHeader(linktype & 0xFFFF, snaplen, magic == MAGIC_NANO, order)
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        raise MalformedPacket("pcapng files are not supported: convert with `editcap -F pcap`")
    raise MalformedPacket(f"not a pcap file (magic {data[:4].hex()})")


class PcapReader:
    """Reads the pcap file open in a binary stream: ``header`` at once, then iterate
    for records. A file cut inside a record (a capture killed mid-write) yields every
    complete record, then raises MalformedPacket."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.header = decode_header(stream.read(24))

    def __iter__(self) -> Iterator[PcapRecord]:
        header = self.header
        record_struct = _RECORD[header.byte_order]
        scale = 1 if header.nanosecond else 1000
        limit = max(header.snaplen, DEFAULT_SNAPLEN) * 4
        read = self._stream.read
        while True:
            raw = read(16)
            if not raw:
                return
            if len(raw) < 16:
                raise MalformedPacket(f"pcap record header truncated: {len(raw)} of 16 bytes")
            seconds, fraction, captured, original = record_struct.unpack(raw)
            if captured > limit:
                raise MalformedPacket(f"pcap record of {captured} bytes is not plausible")
            data = read(captured)
            if len(data) < captured:
                raise MalformedPacket(f"pcap record truncated: {len(data)} of {captured} bytes")
            yield PcapRecord(seconds * 1_000_000_000 + fraction * scale, data, original)


def encode_sll2(
    packet: bytes, *, ifindex: int = 0, outgoing: bool = False, hatype: int = _ARPHRD_NONE
) -> bytes:
    """A LINKTYPE_LINUX_SLL2 frame (20-byte cooked header) around an IP packet."""
    protocol = _ETHERTYPE_IPV6 if packet[:1] and packet[0] >> 4 == 6 else _ETHERTYPE_IPV4
    pkttype = PACKET_OUTGOING if outgoing else PACKET_HOST
    return _SLL2.pack(protocol, 0, ifindex, hatype, pkttype, 0, b"") + packet


def network_packet(linktype: int, frame: bytes) -> LinkPacket | None:
    """The IPv4/IPv6 packet inside a frame of ``linktype``; None for other traffic
    (ARP, for instance). Raises MalformedPacket for a frame cut inside its link header
    and UsageError for a link type this module cannot read."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return LinkPacket(frame)
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            raise MalformedPacket(f"Ethernet header truncated: {len(frame)} of 14 bytes")
        offset = 12
        ethertype = int.from_bytes(frame[offset : offset + 2], "big")
        while ethertype in _VLAN_TYPES and len(frame) >= offset + 6:
            offset += 4
            ethertype = int.from_bytes(frame[offset : offset + 2], "big")
        return _by_ethertype(ethertype, frame[offset + 2 :], None, None)
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < _SLL.size:
            raise MalformedPacket(f"Linux cooked header truncated: {len(frame)} of 16 bytes")
        pkttype, _hatype, _alen, _addr, protocol = _SLL.unpack_from(frame)
        return _by_ethertype(protocol, frame[_SLL.size :], pkttype, None)
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < _SLL2.size:
            raise MalformedPacket(f"Linux cooked v2 header truncated: {len(frame)} of 20 bytes")
        protocol, _res, ifindex, _hatype, pkttype, _alen, _addr = _SLL2.unpack_from(frame)
        return _by_ethertype(protocol, frame[_SLL2.size :], pkttype, ifindex)
    raise UsageError(f"pcap link type {linktype} is not supported (Ethernet, raw IP, Linux SLL)")


def _by_ethertype(
    ethertype: int, packet: bytes, pkttype: int | None, ifindex: int | None
) -> LinkPacket | None:
    if ethertype not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return None
    outgoing = None if pkttype is None else pkttype == PACKET_OUTGOING
    return LinkPacket(packet, outgoing, ifindex)


class PcapWriter:
    """Writes a pcap file to a binary stream: the header at once, then one record per
    ``write``. The caller owns (opens, flushes, closes) the stream."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        linktype: int = LINKTYPE_RAW,
        snaplen: int = DEFAULT_SNAPLEN,
        nanosecond: bool = True,
    ) -> None:
        self._stream = stream
        self.linktype = linktype
        self._snaplen = snaplen
        self._nanosecond = nanosecond
        self.records = 0
        stream.write(encode_header(linktype, snaplen=snaplen, nanosecond=nanosecond))

    def write(self, timestamp_ns: int, frame: bytes, original_length: int | None = None) -> None:
        self._stream.write(
            encode_record(
                timestamp_ns,
                frame,
                original_length=original_length,
                snaplen=self._snaplen,
                nanosecond=self._nanosecond,
            )
        )
        self.records += 1
