"""Header fields given by a caller, packed: a value out of range is the caller's error."""

from __future__ import annotations

import struct

from rawprobe.errors import UsageError

from .checksum import internet_checksum


def pack_fields(layout: struct.Struct, what: str, *fields: int | bytes) -> bytes:
    """``layout.pack(*fields)``; a field out of range raises UsageError naming ``what``
    (``"IPv4 header field"``: "IPv4 header field out of range: ...")."""
    try:
        return layout.pack(*fields)
    except struct.error as exc:
        raise UsageError(f"{what} out of range: {exc}") from exc


def put_checksum(
    data: bytes, offset: int, given: int | None, what: str, initial: int = 0, *, udp: bool = False
) -> bytes:
    """``data`` with its checksum at ``offset``: ``given`` as is (wrong on purpose,
    maybe; UsageError naming ``what`` when it does not fit 16 bits), else the Internet
    checksum of ``data`` (the field zero) from ``initial`` (a pseudo-header's sum).
    ``udp``: a computed 0 is sent as 0xFFFF (0 means "no checksum")."""
    checksum = given
    if checksum is None:
        checksum = internet_checksum(data, initial) or (0xFFFF if udp else 0)
    elif not 0 <= checksum <= 0xFFFF:
        raise UsageError(f"{what} checksum out of range: {checksum}")
    return data[:offset] + checksum.to_bytes(2, "big") + data[offset + 2 :]
