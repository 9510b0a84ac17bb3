"""ICMP multi-part message extensions (RFC 4884) and MPLS label stacks (RFC 4950).

Shared by ICMPv4 and ICMPv6: the extension structure that may follow the quoted
datagram of a Destination Unreachable or Time Exceeded message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from rawprobe.errors import MalformedPacket, UsageError

from .checksum import internet_checksum
from .fields import pack_fields, put_checksum

__all__ = [
    "CLASS_INTERFACE_INFO",
    "CLASS_MPLS",
    "ExtensionObject",
    "MplsLabel",
    "build_extensions",
    "build_mpls_object",
    "parse_extensions",
    "verify_extensions_checksum",
]

EXTENSION_VERSION = 2
#: Class-Num of the MPLS Label Stack object (RFC 4950; its only C-Type is 1).
CLASS_MPLS = 1
#: Class-Num of the Interface Information object (RFC 5837; payload kept raw).
CLASS_INTERFACE_INFO = 2

_EXT_HEADER = struct.Struct("!BxH")
_OBJ_HEADER = struct.Struct("!HBB")
_MPLS_ENTRY = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class MplsLabel:
    """One MPLS label stack entry; ``tc`` is the traffic class (formerly EXP)."""

    label: int
    tc: int
    bottom: bool
    ttl: int


@dataclass(frozen=True, slots=True)
class ExtensionObject:
    """One object of the extension structure; unknown classes are kept as raw bytes."""

    class_num: int
    c_type: int
    payload: bytes

    @property
    def mpls_labels(self) -> tuple[MplsLabel, ...] | None:
        """The decoded label stack for an MPLS object (class 1, c-type 1), else None.

        Raises ``MalformedPacket`` when the payload is not whole 4-byte entries.
        """
        if self.class_num != CLASS_MPLS or self.c_type != 1:
            return None
        if len(self.payload) % 4:
            raise MalformedPacket(f"MPLS label stack of {len(self.payload)} bytes")
        return tuple(
            MplsLabel(word >> 12, (word >> 9) & 0x7, bool(word & 0x100), word & 0xFF)
            for (word,) in _MPLS_ENTRY.iter_unpack(self.payload)
        )


def parse_extensions(data: bytes | bytearray | memoryview) -> tuple[ExtensionObject, ...]:
    """Parse an extension structure (4-byte header then objects). Empty data gives ().

    The checksum is not verified (see ``verify_extensions_checksum``). A version other
    than 2, an object length below 4 or one overrunning the data raises
    ``MalformedPacket``.
    """
    if not data:
        return ()
    try:
        version_byte, _checksum = _EXT_HEADER.unpack_from(data, 0)
    except struct.error as exc:
        raise MalformedPacket(f"ICMP extension header truncated: {len(data)} bytes") from exc
    if version_byte >> 4 != EXTENSION_VERSION:
        raise MalformedPacket(f"ICMP extension version {version_byte >> 4}, expected 2")
    objects: list[ExtensionObject] = []
    offset = _EXT_HEADER.size
    while offset < len(data):
        try:
            length, class_num, c_type = _OBJ_HEADER.unpack_from(data, offset)
        except struct.error as exc:
            raise MalformedPacket(f"ICMP extension object header truncated at {offset}") from exc
        if length < _OBJ_HEADER.size or offset + length > len(data):
            raise MalformedPacket(
                f"ICMP extension object length {length} at {offset} is invalid "
                f"for {len(data)} bytes"
            )
        objects.append(
            ExtensionObject(class_num, c_type, bytes(data[offset + 4 : offset + length]))
        )
        offset += length
    return tuple(objects)


def verify_extensions_checksum(data: bytes | bytearray | memoryview) -> bool:
    """True when the extension structure's checksum is correct."""
    return len(data) >= _EXT_HEADER.size and internet_checksum(data) == 0


def build_extensions(objects: Iterable[ExtensionObject], *, checksum: int | None = None) -> bytes:
    """Encode an extension structure; the checksum is computed unless given."""
    parts = [b"\x20\x00\x00\x00"]
    for obj in objects:
        length = _OBJ_HEADER.size + len(obj.payload)
        parts.append(
            pack_fields(_OBJ_HEADER, "ICMP extension object", length, obj.class_num, obj.c_type)
        )
        parts.append(obj.payload)
    return put_checksum(b"".join(parts), 2, checksum, "ICMP extension")


def build_mpls_object(labels: Iterable[MplsLabel]) -> ExtensionObject:
    """An MPLS Label Stack object (RFC 4950) for ``build_extensions``."""
    entries = []
    for entry in labels:
        if not (0 <= entry.label < 1 << 20 and 0 <= entry.tc < 8 and 0 <= entry.ttl < 256):
            raise UsageError(f"MPLS label stack entry out of range: {entry}")
        word = (entry.label << 12) | (entry.tc << 9) | (int(entry.bottom) << 8) | entry.ttl
        entries.append(_MPLS_ENTRY.pack(word))
    return ExtensionObject(CLASS_MPLS, 1, b"".join(entries))
