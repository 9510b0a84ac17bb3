"""UDP header codec (RFC 768, RFC 8200 §8.1 for the IPv6 checksum)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rawprobe.errors import MalformedPacket, UsageError

from .checksum import internet_checksum, ones_complement_sum, pseudo_header
from .fields import pack_fields, put_checksum
from .protocols import PROTO_UDP

__all__ = ["UdpHeader", "build_udp", "parse_udp", "verify_udp_checksum"]

_HEADER = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class UdpHeader:
    """A UDP header. ``length`` (header + payload) and ``checksum`` None mean "compute
    on build"; given values are sent as is (checksum 0 means "none" over IPv4)."""

    src_port: int
    dst_port: int
    length: int | None = None
    checksum: int | None = None


def build_udp(header: UdpHeader, payload: bytes, *, src: str, dst: str) -> bytes:
    """Encode ``header + payload``; ``src``/``dst`` feed the pseudo-header.

    A computed checksum of 0 is sent as 0xFFFF (0 means "no checksum").
    """
    length = header.length
    if length is None:
        length = 8 + len(payload)
        if length > 0xFFFF:
            raise UsageError(f"UDP datagram too long: {length} bytes")
    fixed = pack_fields(_HEADER, "UDP header field", header.src_port, header.dst_port, length, 0)
    datagram = fixed + payload
    # The pseudo-header carries the UDP length field, as a receiver will check it.
    pseudo = ones_complement_sum(pseudo_header(src, dst, PROTO_UDP, length))
    return put_checksum(datagram, 6, header.checksum, "UDP", pseudo, udp=True)


def parse_udp(
    datagram: bytes | bytearray | memoryview, *, quoted: bool = False
) -> tuple[UdpHeader, bytes]:
    """Parse a UDP datagram into ``(header, payload)``. The checksum is not verified.

    Strict (default): the buffer must hold ``length`` bytes; bytes past it are ignored.
    ``quoted=True`` (inside an ICMP error): the 8-byte header must be present, the
    payload is whatever is there up to ``length``.
    """
    try:
        src_port, dst_port, length, checksum = _HEADER.unpack_from(datagram, 0)
    except struct.error as exc:
        raise MalformedPacket(f"UDP header truncated: {len(datagram)} of 8 bytes") from exc
    if length < 8:
        raise MalformedPacket(f"UDP length {length} is below 8")
    if not quoted and len(datagram) < length:
        raise MalformedPacket(f"UDP datagram truncated: {len(datagram)} of {length} bytes")
    return UdpHeader(src_port, dst_port, length, checksum), bytes(datagram[8:length])


def verify_udp_checksum(datagram: bytes | bytearray | memoryview, *, src: str, dst: str) -> bool:
    """True when the checksum is correct, or absent (0) over IPv4 (never over IPv6).

    Covers the ``length`` bytes the header declares; False when the buffer is shorter.
    """
    if len(datagram) < 8:
        return False
    _, _, length, checksum = _HEADER.unpack_from(datagram, 0)
    if length < 8 or len(datagram) < length:
        return False
    pseudo = pseudo_header(src, dst, PROTO_UDP, length)
    if checksum == 0:
        return len(pseudo) == 12
    return internet_checksum(memoryview(datagram)[:length], ones_complement_sum(pseudo)) == 0
