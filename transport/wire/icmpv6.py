"""ICMPv6 codec (RFC 4443, RFC 4884 multi-part messages)."""

from __future__ import annotations

from dataclasses import dataclass

from rawprobe.errors import UsageError

from .checksum import internet_checksum, ones_complement_sum, pseudo_header
from .icmp import IcmpCommon, IcmpFormat, encode_icmp
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

# Codes the package names (every code's name and wording: icmp_table.py).
UNREACH_ADMIN_PROHIBITED = 1
UNREACH_PORT = 4


@dataclass(frozen=True, slots=True)
class Icmpv6Message(IcmpCommon):
    """An ICMPv6 message. ``rest`` is the 32-bit word after the checksum."""

    FORMAT = IcmpFormat("ICMPv6", ERROR_TYPES, RFC4884_TYPES, 24, 8)  # byte 4, 64-bit words

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

    def start(length: int) -> int:
        pseudo = pseudo_header(src, dst, PROTO_ICMPV6, length)
        if len(pseudo) != 40:
            raise UsageError(f"ICMPv6 needs IPv6 addresses, got {src!r}, {dst!r}")
        return ones_complement_sum(pseudo)

    return encode_icmp("ICMPv6", type, code, rest, body, checksum, start)


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
    return Icmpv6Message.parse(data)


def verify_icmpv6_checksum(data: bytes | bytearray | memoryview, *, src: str, dst: str) -> bool:
    """True when the checksum of ``data`` (an ICMPv6 message from ``src`` to ``dst``)
    is correct."""
    if len(data) < 8:
        return False
    pseudo = pseudo_header(src, dst, PROTO_ICMPV6, len(data))
    return internet_checksum(data, ones_complement_sum(pseudo)) == 0
