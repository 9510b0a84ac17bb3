"""Header fields given by a caller, packed: a value out of range is the caller's error."""

from __future__ import annotations

import struct

from rawprobe.errors import UsageError


def pack_fields(layout: struct.Struct, what: str, *fields: int | bytes) -> bytes:
    """``layout.pack(*fields)``; a field out of range raises UsageError naming ``what``
    (``"IPv4 header field"``: "IPv4 header field out of range: ...")."""
    try:
        return layout.pack(*fields)
    except struct.error as exc:
        raise UsageError(f"{what} out of range: {exc}") from exc
