"""ICMPv6 codec (RFC 4443, RFC 4884 multi-part messages)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rawprobe.errors import MalformedPacket, UsageError

from .checksum import internet_checksum, ones_complement_sum, pseudo_header
from .protocols import PROTO_ICMPV6

__all__ = [
    "DEST_UNREACH",
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "ERROR_TYPES",
    "PACKET_TOO_BIG",
    "PARAMETER_PROBLEM",
    "TIME_EXCEEDED",
    "Icmpv6Message",
    "build_echo6",
    "build_icmpv6",
    "parse_icmpv6",
    "verify_icmpv6_checksum",
]

DEST_UNREACH = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129

#: Types whose body quotes the offending packet (as much as fits in 1280 bytes).
ERROR_TYPES = frozenset({DEST_UNREACH, PACKET_TOO_BIG, TIME_EXCEEDED, PARAMETER_PROBLEM})
#: Types whose byte 4 is the RFC 4884 length of the original datagram (64-bit words).
RFC4884_TYPES = frozenset({DEST_UNREACH, TIME_EXCEEDED})

# Destination Unreachable codes (RFC 4443, RFC 7112).
UNREACH_NO_ROUTE = 0
UNREACH_ADMIN_PROHIBITED = 1
UNREACH_BEYOND_SCOPE = 2
UNREACH_ADDRESS = 3
UNREACH_PORT = 4
UNREACH_POLICY_FAILED = 5
UNREACH_REJECT_ROUTE = 6
UNREACH_HEADER_CHAIN = 7
# Time Exceeded codes.
EXCEEDED_HOP_LIMIT = 0
EXCEEDED_REASSEMBLY = 1

_HEADER = struct.Struct("!BBHI")


@dataclass(frozen=True, slots=True)
class Icmpv6Message:
    """An ICMPv6 message. ``rest`` is the 32-bit word after the checksum."""

    type: int
    code: int
    checksum: int
    rest: int
    body: bytes

    @property
    def ident(self) -> int:
        """Echo identifier (upper 16 bits of ``rest``)."""
        return self.rest >> 16

    @property
    def seq(self) -> int:
        """Echo sequence number (lower 16 bits of ``rest``)."""
        return self.rest & 0xFFFF

    @property
    def is_error(self) -> bool:
        return self.type in ERROR_TYPES

    @property
    def rfc4884_length(self) -> int:
        """Length of the original datagram in bytes from the RFC 4884 field, 0 if unset."""
        if self.type not in RFC4884_TYPES:
            return 0
        return (self.rest >> 24) * 8

    @property
    def quoted(self) -> bytes:
        """The packet quoted by an error message (b"" for other types); see icmp.py."""
        if self.type not in ERROR_TYPES:
            return b""
        length = self.rfc4884_length
        if length and length <= len(self.body):
            return self.body[:length]
        return self.body

    @property
    def extensions(self) -> bytes:
        """The raw RFC 4884 extension structure after the quoted packet, or b""."""
        length = self.rfc4884_length
        if length and length <= len(self.body):
            return self.body[length:]
        return b""

    @property
    def mtu(self) -> int:
        """MTU of a Packet Too Big message."""
        return self.rest

    @property
    def pointer(self) -> int:
        """Byte offset of the problem in a Parameter Problem message."""
        return self.rest


def build_icmpv6(
    type: int,
    code: int,
    rest: int,
    body: bytes,
    *,
    src: str,
    dst: str,
    checksum: int | None = None,
) -> bytes:
    """Encode an ICMPv6 message; the checksum (over the IPv6 pseudo-header built from
    ``src`` and ``dst``) is computed unless given."""
    try:
        header = _HEADER.pack(type, code, 0, rest)
    except struct.error as exc:
        raise UsageError(f"ICMPv6 header field out of range: {exc}") from exc
    message = header + body
    if checksum is None:
        pseudo = pseudo_header(src, dst, PROTO_ICMPV6, len(message))
        if len(pseudo) != 40:
            raise UsageError(f"ICMPv6 needs IPv6 addresses, got {src!r}, {dst!r}")
        checksum = internet_checksum(message, ones_complement_sum(pseudo))
    elif not 0 <= checksum <= 0xFFFF:
        raise UsageError(f"ICMPv6 checksum out of range: {checksum}")
    return message[:2] + checksum.to_bytes(2, "big") + message[4:]


def build_echo6(
    ident: int, seq: int, payload: bytes, *, src: str, dst: str, reply: bool = False
) -> bytes:
    """Encode an ICMPv6 Echo Request (or Echo Reply with ``reply=True``)."""
    if not (0 <= ident <= 0xFFFF and 0 <= seq <= 0xFFFF):
        raise UsageError(f"echo ident {ident} / seq {seq} out of range")
    type_ = ECHO_REPLY if reply else ECHO_REQUEST
    return build_icmpv6(type_, 0, (ident << 16) | seq, payload, src=src, dst=dst)


def parse_icmpv6(data: bytes | bytearray | memoryview) -> Icmpv6Message:
    """Parse an ICMPv6 message (the upper-layer bytes). The checksum is not verified."""
    try:
        type_, code, checksum, rest = _HEADER.unpack_from(data, 0)
    except struct.error as exc:
        raise MalformedPacket(f"ICMPv6 header truncated: {len(data)} of 8 bytes") from exc
    return Icmpv6Message(type_, code, checksum, rest, bytes(data[8:]))


def verify_icmpv6_checksum(data: bytes | bytearray | memoryview, *, src: str, dst: str) -> bool:
    """True when the checksum of ``data`` (an ICMPv6 message from ``src`` to ``dst``)
    is correct."""
    if len(data) < 8:
        return False
    pseudo = pseudo_header(src, dst, PROTO_ICMPV6, len(data))
    return internet_checksum(data, ones_complement_sum(pseudo)) == 0
