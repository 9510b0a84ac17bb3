"""Address bytes <-> canonical text, without the ``socket`` module.

Text output matches ``socket.inet_ntop`` on Linux/glibc exactly (RFC 5952 compression,
lowercase hex, ``::ffff:a.b.c.d`` and ``::a.b.c.d`` for mapped/compatible addresses), so
addresses parsed from packets compare equal to addresses the kernel reports.
"""

from __future__ import annotations

import functools
import ipaddress
import struct

from rawprobe.errors import MalformedPacket, UsageError

_WORDS = struct.Struct("!8H")


def ntop4(packed: bytes | bytearray | memoryview) -> str:
    """Dotted-quad text of a 4-byte IPv4 address."""
    if len(packed) != 4:
        raise MalformedPacket(f"IPv4 address needs 4 bytes, got {len(packed)}")
    return "%d.%d.%d.%d" % tuple(packed)  # noqa: UP031 - fastest for 4 small ints


def ntop6(packed: bytes | bytearray | memoryview) -> str:
    """RFC 5952 text of a 16-byte IPv6 address, identical to glibc ``inet_ntop``."""
    try:
        words = _WORDS.unpack(packed)
    except struct.error as exc:
        raise MalformedPacket(f"IPv6 address needs 16 bytes, got {len(packed)}") from exc
    best_start = -1
    best_len = 0
    cur_start = 0
    cur_len = 0
    for i, word in enumerate(words):
        if word == 0:
            if cur_len == 0:
                cur_start = i
            cur_len += 1
            if cur_len > best_len:
                best_start, best_len = cur_start, cur_len
        else:
            cur_len = 0
    if best_len < 2:
        return ":".join(["%x" % w for w in words])  # noqa: UP031
    if best_start == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
        prefix = "::ffff:" if best_len == 5 else "::"
        return prefix + ntop4(bytes(packed[12:16]))
    head = ":".join(["%x" % w for w in words[:best_start]])  # noqa: UP031
    tail = ":".join(["%x" % w for w in words[best_start + best_len :]])  # noqa: UP031
    return head + "::" + tail


@functools.lru_cache(maxsize=4096)
def pton(text: str) -> bytes:
    """Packed bytes of an IPv4 or IPv6 address given as text (family chosen by ``:``).

    Raises ``UsageError`` (a ``ValueError``) for text that is not an address: this is
    caller input, not packet bytes. Cached: builders pack the same few addresses for
    every packet (ipaddress's parser was a tenth of a simulated trace's time).
    """
    try:
        if ":" in text:
            return ipaddress.IPv6Address(text).packed
        return ipaddress.IPv4Address(text).packed
    except ValueError as exc:
        raise UsageError(f"not an IP address: {text!r}") from exc


def pton_pair(src: str, dst: str, size: int) -> tuple[bytes, bytes]:
    """``src`` and ``dst`` packed, both ``size`` bytes long (4: IPv4, 16: IPv6), else
    UsageError."""
    packed = pton(src), pton(dst)
    if len(packed[0]) != size or len(packed[1]) != size:
        raise UsageError(f"not IPv{4 if size == 4 else 6} addresses: {src!r}, {dst!r}")
    return packed
