"""ICMPv4 codec (RFC 792, RFC 4884 multi-part messages)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Self

from rawprobe.errors import MalformedPacket, UsageError

from .addr import ntop4
from .checksum import internet_checksum
from .fields import pack_fields, put_checksum

__all__ = [
    "DEST_UNREACH",
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "ERROR_TYPES",
    "PARAMETER_PROBLEM",
    "REDIRECT",
    "SOURCE_QUENCH",
    "TIMESTAMP",
    "TIMESTAMP_REPLY",
    "TIME_EXCEEDED",
    "IcmpMessage",
    "build_echo",
    "build_icmp",
    "parse_icmp",
    "verify_icmp_checksum",
]

ECHO_REPLY = 0
DEST_UNREACH = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
TIMESTAMP = 13
TIMESTAMP_REPLY = 14

#: Types whose body quotes the offending datagram (IP header + at least 8 bytes).
ERROR_TYPES = frozenset({DEST_UNREACH, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED, PARAMETER_PROBLEM})
#: Types whose byte 5 is the RFC 4884 length of the original datagram (32-bit words).
RFC4884_TYPES = frozenset({DEST_UNREACH, TIME_EXCEEDED, PARAMETER_PROBLEM})

# Codes the package names (every code's name and wording: icmp_table.py).
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4
UNREACH_ADMIN_PROHIBITED = 13
EXCEEDED_TTL = 0

_HEADER = struct.Struct("!BBHI")


class IcmpFormat(NamedTuple):
    """Where ICMPv4 and ICMPv6 messages differ, for the code they share."""

    kind: str  # "ICMP" or "ICMPv6", in messages
    errors: frozenset[int]  # the types whose body quotes the offending datagram
    rfc4884: frozenset[int]  # the types with an RFC 4884 length field
    length_shift: int  # where in ``rest`` that 8-bit field sits
    length_unit: int  # and its unit, in bytes


@dataclass(frozen=True, slots=True)
class IcmpCommon:
    """What an ICMPv4 and an ICMPv6 message share: the header (``rest`` is the 32-bit
    word after the checksum) and the RFC 4884 quote. A subclass gives its FORMAT."""

    FORMAT: ClassVar[IcmpFormat]
    type: int
    code: int
    checksum: int
    rest: int
    body: bytes

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Self:
        """Parse a message (the IP payload). The checksum is not verified."""
        try:
            type_, code, checksum, rest = _HEADER.unpack_from(data, 0)
        except struct.error as exc:
            kind = cls.FORMAT.kind
            raise MalformedPacket(f"{kind} header truncated: {len(data)} of 8 bytes") from exc
        return cls(type_, code, checksum, rest, bytes(data[8:]))

    @property
    def ident(self) -> int:
        """Echo (ICMPv4: also timestamp) identifier (upper 16 bits of ``rest``)."""
        return self.rest >> 16

    @property
    def seq(self) -> int:
        """Echo (ICMPv4: also timestamp) sequence number (lower 16 bits of ``rest``)."""
        return self.rest & 0xFFFF

    @property
    def is_error(self) -> bool:
        return self.type in self.FORMAT.errors

    @property
    def rfc4884_length(self) -> int:
        """Length of the original datagram in bytes from the RFC 4884 field, 0 if unset."""
        _, _, rfc4884, shift, unit = self.FORMAT
        if self.type not in rfc4884:
            return 0
        return ((self.rest >> shift) & 0xFF) * unit

    @property
    def quoted(self) -> bytes:
        """The original datagram quoted by an error message (b"" for other types).

        With a nonzero RFC 4884 length that fits the body, only that many bytes (the
        datagram, zero padded to 32 or 64 bits); otherwise the whole body.
        """
        if self.type not in self.FORMAT.errors:
            return b""
        length = self.rfc4884_length
        if length and length <= len(self.body):
            return self.body[:length]
        return self.body

    @property
    def extensions(self) -> bytes:
        """The raw RFC 4884 extension structure after the quoted datagram, or b""."""
        length = self.rfc4884_length  # nonzero only for an error type
        if length and length <= len(self.body):
            return self.body[length:]
        return b""


@dataclass(frozen=True, slots=True)
class IcmpMessage(IcmpCommon):
    """An ICMPv4 message. ``rest`` is the 32-bit word after the checksum."""

    FORMAT = IcmpFormat("ICMP", ERROR_TYPES, RFC4884_TYPES, 16, 4)  # byte 5, 32-bit words

    @property
    def next_hop_mtu(self) -> int:
        """Next-hop MTU of "fragmentation needed" (type 3 code 4, RFC 1191)."""
        return self.rest & 0xFFFF

    @property
    def pointer(self) -> int:
        """Byte offset of the problem in a Parameter Problem message."""
        return self.rest >> 24

    @property
    def gateway(self) -> str:
        """Gateway address of a Redirect message."""
        return ntop4(self.rest.to_bytes(4, "big"))


def encode_icmp(
    kind: str,
    type: int,
    code: int,
    rest: int,
    body: bytes,
    checksum: int | None,
    start: Callable[[int], int] | None = None,
) -> bytes:
    """Encode an ICMP or ICMPv6 (``kind``) message; the checksum is computed unless
    given, from ``start(length)`` (the pseudo-header's sum) on."""
    message = pack_fields(_HEADER, f"{kind} header field", type, code, 0, rest) + body
    initial = start(len(message)) if start and checksum is None else 0
    return put_checksum(message, 2, checksum, kind, initial)


def build_icmp(
    type: int, code: int, rest: int, body: bytes, *, checksum: int | None = None
) -> bytes:
    """Encode an ICMPv4 message; the checksum is computed unless given."""
    return encode_icmp("ICMP", type, code, rest, body, checksum)


def build_echo(ident: int, seq: int, payload: bytes, *, reply: bool = False) -> bytes:
    """Encode an Echo Request (or Echo Reply with ``reply=True``)."""
    if not (0 <= ident <= 0xFFFF and 0 <= seq <= 0xFFFF):
        raise UsageError(f"echo ident {ident} / seq {seq} out of range")
    return build_icmp(ECHO_REPLY if reply else ECHO_REQUEST, 0, (ident << 16) | seq, payload)


def parse_icmp(data: bytes | bytearray | memoryview) -> IcmpMessage:
    """Parse an ICMPv4 message (the IP payload). The checksum is not verified."""
    return IcmpMessage.parse(data)


def verify_icmp_checksum(data: bytes | bytearray | memoryview) -> bool:
    """True when the checksum of the ICMPv4 message ``data`` is correct."""
    return len(data) >= 8 and internet_checksum(data) == 0
