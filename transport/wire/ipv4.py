"""IPv4 header codec (RFC 791)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rawprobe.errors import MalformedPacket, UsageError

from .addr import ntop4, pton_pair
from .checksum import internet_checksum
from .fields import pack_fields, put_checksum
from .protocols import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

__all__ = [
    "DF",
    "EVIL",
    "MF",
    "PROTO_ICMP",
    "PROTO_ICMPV6",
    "PROTO_TCP",
    "PROTO_UDP",
    "IPv4Header",
    "build_ipv4",
    "parse_ipv4",
    "verify_ipv4_checksum",
]

#: Flag bits as stored in ``IPv4Header.flags`` (the top 3 bits of the flags/offset word).
DF = 0x2
MF = 0x1
EVIL = 0x4  # the reserved bit (RFC 3514); representable so it can be sent and seen

_HEADER = struct.Struct("!BBHHHBBH4s4s")
_MAX_OPTIONS = 40


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """An IPv4 header.

    ``fragment_offset`` is in the wire unit, 8-byte blocks. ``options`` are the raw
    option bytes: ``build_ipv4`` pads them with EOL (zero) bytes to a multiple of 4, and
    ``parse_ipv4`` returns every byte between the fixed header and IHL, padding included.
    ``total_length`` and ``checksum`` set to None mean "compute on build"; parsing fills
    in the values found on the wire, and any value given is sent as is (a wrong checksum
    or length on purpose is possible).
    """

    src: str
    dst: str
    protocol: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    flags: int = 0
    fragment_offset: int = 0
    options: bytes = b""
    total_length: int | None = None
    checksum: int | None = None

    @property
    def header_length(self) -> int:
        """Header length in bytes: 20 plus the options padded to a multiple of 4."""
        return 20 + ((len(self.options) + 3) & ~3)

    @property
    def fragment_offset_bytes(self) -> int:
        return self.fragment_offset * 8

    @property
    def is_fragment(self) -> bool:
        """True for any fragment of a fragmented datagram (first, middle or last)."""
        return bool(self.flags & MF) or self.fragment_offset != 0


def build_ipv4(header: IPv4Header, payload: bytes) -> bytes:
    """Return the IPv4 packet ``header + payload`` as new bytes.

    IHL is derived from the options; the checksum covers the header only.
    """
    options = header.options
    if len(options) > _MAX_OPTIONS:
        raise UsageError(f"IPv4 options are at most {_MAX_OPTIONS} bytes, got {len(options)}")
    pad = -len(options) % 4
    if pad:
        options = options + b"\x00" * pad
    header_length = 20 + len(options)
    total_length = header.total_length
    if total_length is None:
        total_length = header_length + len(payload)
        if total_length > 0xFFFF:
            raise UsageError(f"IPv4 packet too long: {total_length} bytes")
    src, dst = pton_pair(header.src, header.dst, 4)
    if not 0 <= header.flags <= 7 or not 0 <= header.fragment_offset <= 0x1FFF:
        raise UsageError(f"flags {header.flags} / offset {header.fragment_offset} out of range")
    fixed = pack_fields(
        _HEADER,
        "IPv4 header field",
        0x40 | (header_length >> 2),
        header.tos,
        total_length,
        header.ident,
        (header.flags << 13) | header.fragment_offset,
        header.ttl,
        header.protocol,
        0,
        src,
        dst,
    )
    raw_header = fixed + options if options else fixed
    return put_checksum(raw_header, 10, header.checksum, "IPv4") + payload


def parse_ipv4(
    packet: bytes | bytearray | memoryview, *, quoted: bool = False
) -> tuple[IPv4Header, bytes]:
    """Parse an IPv4 packet into ``(header, payload)``. The checksum is not verified.

    Strict (default): the buffer must hold ``total_length`` bytes; bytes past it (link
    padding) are ignored. ``quoted=True`` is for the datagram quoted in an ICMP error:
    the header must be complete, the payload is whatever is present up to
    ``total_length``. Raises ``MalformedPacket`` for anything else.
    """
    try:
        vihl, tos, total_length, ident, flags_offset, ttl, protocol, checksum, src, dst = (
            _HEADER.unpack_from(packet, 0)
        )
    except struct.error as exc:
        raise MalformedPacket(f"IPv4 header truncated: {len(packet)} of 20 bytes") from exc
    if vihl >> 4 != 4:
        raise MalformedPacket(f"not IPv4: version {vihl >> 4}")
    header_length = (vihl & 0x0F) * 4
    if header_length < 20:
        raise MalformedPacket(f"IPv4 IHL {vihl & 0x0F} is below 5")
    if len(packet) < header_length:
        raise MalformedPacket(f"IPv4 header truncated: {len(packet)} of {header_length} bytes")
    if total_length < header_length:
        raise MalformedPacket(
            f"IPv4 total length {total_length} is shorter than its header ({header_length})"
        )
    if not quoted and len(packet) < total_length:
        raise MalformedPacket(f"IPv4 packet truncated: {len(packet)} of {total_length} bytes")
    header = IPv4Header(
        src=ntop4(src),
        dst=ntop4(dst),
        protocol=protocol,
        ttl=ttl,
        tos=tos,
        ident=ident,
        flags=flags_offset >> 13,
        fragment_offset=flags_offset & 0x1FFF,
        options=bytes(packet[20:header_length]),
        total_length=total_length,
        checksum=checksum,
    )
    return header, bytes(packet[header_length:total_length])


def verify_ipv4_checksum(packet: bytes | bytearray | memoryview) -> bool:
    """True when the IPv4 header checksum is correct (False if the header is cut)."""
    if len(packet) < 20:
        return False
    header_length = (packet[0] & 0x0F) * 4
    if header_length < 20 or len(packet) < header_length:
        return False
    return internet_checksum(packet[:header_length]) == 0
