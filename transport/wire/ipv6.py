"""IPv6 header codec (RFC 8200) and extension-header walking."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rawprobe.errors import MalformedPacket, UsageError

from .addr import ntop6, pton_pair
from .fields import pack_fields
from .protocols import (
    PROTO_AH,
    PROTO_DSTOPTS,
    PROTO_FRAGMENT,
    PROTO_HIP,
    PROTO_HOPOPTS,
    PROTO_MOBILITY,
    PROTO_ROUTING,
    PROTO_SHIM6,
)

__all__ = [
    "MAX_EXTENSION_HEADERS",
    "FragmentHeader",
    "IPv6Header",
    "build_ipv6",
    "find_fragment_header",
    "parse_ipv6",
    "skip_extension_headers",
]

_HEADER = struct.Struct("!IHBB16s16s")
_EXT = struct.Struct("!BB")
_FRAGMENT = struct.Struct("!BxHI")

#: Longest extension-header chain walked before the packet is declared malformed.
MAX_EXTENSION_HEADERS = 16

# Extension headers whose length byte counts 8-octet units beyond the first 8 (RFC 8200
# §4, RFC 7045 list). ESP (50) is not here: what follows it is encrypted, so it is
# returned as the upper-layer protocol.
_LENGTH_IN_8 = frozenset(
    {PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS, PROTO_MOBILITY, PROTO_HIP, PROTO_SHIM6}
)


@dataclass(frozen=True, slots=True)
class IPv6Header:
    """The fixed IPv6 header. ``payload_length`` None means "compute on build"."""

    src: str
    dst: str
    next_header: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    payload_length: int | None = None


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """An IPv6 Fragment extension header; ``offset`` is in 8-byte units as on the wire."""

    next_header: int
    offset: int
    more: bool
    ident: int


def build_ipv6(header: IPv6Header, payload: bytes) -> bytes:
    """Return ``header + payload`` as new bytes.

    ``payload`` may begin with extension headers; ``header.next_header`` names the first.
    """
    payload_length = header.payload_length
    if payload_length is None:
        payload_length = len(payload)
        if payload_length > 0xFFFF:
            raise UsageError(f"IPv6 payload too long: {payload_length} bytes (no jumbograms)")
    src, dst = pton_pair(header.src, header.dst, 16)
    if not 0 <= header.traffic_class <= 0xFF or not 0 <= header.flow_label <= 0xFFFFF:
        raise UsageError(
            f"traffic class {header.traffic_class} / flow label {header.flow_label} out of range"
        )
    fixed = pack_fields(
        _HEADER,
        "IPv6 header field",
        0x60000000 | (header.traffic_class << 20) | header.flow_label,
        payload_length,
        header.next_header,
        header.hop_limit,
        src,
        dst,
    )
    return fixed + payload


def extension_header(
    buf: bytes | bytearray | memoryview, offset: int, next_header: int
) -> tuple[int, int] | None:
    """``(following next-header, length)`` of the extension header at ``offset``.

    None when ``next_header`` is not an extension header this module can skip.
    """
    if next_header in _LENGTH_IN_8 or next_header == PROTO_AH:
        try:
            following, units = _EXT.unpack_from(buf, offset)
        except struct.error as exc:
            raise MalformedPacket(f"extension header {next_header} at {offset} truncated") from exc
        length = (units + 2) * 4 if next_header == PROTO_AH else (units + 1) * 8
    elif next_header == PROTO_FRAGMENT:
        length = 8
        following = buf[offset] if offset < len(buf) else -1
    else:
        return None
    if offset + length > len(buf):
        raise MalformedPacket(
            f"extension header {next_header} at {offset} ({length} bytes) overruns "
            f"the {len(buf)}-byte packet"
        )
    return following, length


def skip_extension_headers(
    buf: bytes | bytearray | memoryview, offset: int, next_header: int
) -> tuple[int, int]:
    """Walk the extension-header chain starting at ``offset``.

    Returns ``(upper-layer protocol, offset of the upper layer)``. No Next Header (59),
    ESP (50) and unknown values end the walk and are returned as the protocol. A chain
    longer than ``MAX_EXTENSION_HEADERS`` or one that overruns ``buf`` raises
    ``MalformedPacket``. For a non-first fragment the returned offset points into the
    middle of the upper-layer data: check ``find_fragment_header`` before trusting it.
    """
    for _ in range(MAX_EXTENSION_HEADERS + 1):
        found = extension_header(buf, offset, next_header)
        if found is None:
            return next_header, offset
        next_header, length = found
        offset += length
    raise MalformedPacket(f"more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")


def find_fragment_header(
    buf: bytes | bytearray | memoryview, offset: int, next_header: int
) -> FragmentHeader | None:
    """The first Fragment header in the chain starting at ``offset``, or None."""
    for _ in range(MAX_EXTENSION_HEADERS + 1):
        found = extension_header(buf, offset, next_header)
        if found is None:
            return None
        if next_header == PROTO_FRAGMENT:
            following, offset_flags, ident = _FRAGMENT.unpack_from(buf, offset)
            return FragmentHeader(following, offset_flags >> 3, bool(offset_flags & 1), ident)
        next_header, length = found
        offset += length
    raise MalformedPacket(f"more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")


def parse_ipv6(
    packet: bytes | bytearray | memoryview, *, quoted: bool = False
) -> tuple[IPv6Header, int, bytes]:
    """Parse an IPv6 packet into ``(header, upper-layer protocol, upper-layer bytes)``.

    Extension headers are skipped (see ``skip_extension_headers``). Strict (default):
    the buffer must hold ``40 + payload_length`` bytes; bytes past that are ignored.
    ``quoted=True`` (the datagram inside an ICMPv6 error): the fixed header and the
    extension headers present must be complete, the upper layer is whatever is left up
    to ``payload_length``. Raises ``MalformedPacket`` otherwise.
    """
    try:
        vtf, payload_length, next_header, hop_limit, src, dst = _HEADER.unpack_from(packet, 0)
    except struct.error as exc:
        raise MalformedPacket(f"IPv6 header truncated: {len(packet)} of 40 bytes") from exc
    if vtf >> 28 != 6:
        raise MalformedPacket(f"not IPv6: version {vtf >> 28}")
    end = 40 + payload_length
    if len(packet) < end:
        if not quoted:
            raise MalformedPacket(f"IPv6 packet truncated: {len(packet)} of {end} bytes")
        end = len(packet)
    view = memoryview(packet)[:end]
    protocol, upper = skip_extension_headers(view, 40, next_header)
    header = IPv6Header(
        src=ntop6(src),
        dst=ntop6(dst),
        next_header=next_header,
        hop_limit=hop_limit,
        traffic_class=(vtf >> 20) & 0xFF,
        flow_label=vtf & 0xFFFFF,
        payload_length=payload_length,
    )
    return header, protocol, bytes(view[upper:])
