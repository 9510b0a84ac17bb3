"""RFC 1071 Internet checksum, pseudo-headers and RFC 1624 incremental update.

The sum is computed with one big-integer conversion: since 2**16 == 1 (mod 0xFFFF), the
one's complement sum of the 16-bit words is the integer value of the whole buffer modulo
0xFFFF, except that a nonzero sum is never 0 in one's complement (it is 0xFFFF). Measured
on this class of machine: ~0.4 us for 20 bytes, ~3-4 us for 1500 bytes, 4-5x faster than
summing an ``array('H')``.
"""

from __future__ import annotations

import struct

from rawprobe.errors import UsageError

from .addr import pton

_PSEUDO4 = struct.Struct("!4s4sxBH")
_PSEUDO6 = struct.Struct("!16s16sI3xB")


def ones_complement_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Folded 16-bit one's complement sum of ``data`` plus ``initial`` (not inverted).

    Odd lengths are padded with a zero byte. The result is in 0..0xFFFF and is 0 only
    when every word and ``initial`` are zero.
    """
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    total = int.from_bytes(data, "big") + initial
    folded = total % 0xFFFF
    if folded == 0 and total:
        return 0xFFFF
    return folded


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """RFC 1071 checksum: one's complement of the one's complement sum of ``data``.

    ``initial`` is an extra partial sum (for instance ``ones_complement_sum`` of a
    pseudo-header, or the raw sum of its words) added in before inverting. Verifying a
    received packet: the checksum over the packet including its checksum field is 0.
    """
    return ~ones_complement_sum(data, initial) & 0xFFFF


def checksum_of_sum(total: int) -> int:
    """The Internet checksum of a plain sum of 16-bit words: any non-negative integer
    that sums them (a 32-bit word or a whole address adds directly, as 2**16 == 1
    modulo 0xFFFF). The bulk engine's templates inline this expression per probe."""
    return (0xFFFF - total % 0xFFFF) % 0xFFFF


def pseudo_header(src: str, dst: str, protocol: int, length: int) -> bytes:
    """The IPv4 (12 bytes, RFC 793) or IPv6 (40 bytes, RFC 8200 §8.1) pseudo-header.

    The family is taken from the address text; both addresses must be of one family.
    """
    src_packed = pton(src)
    dst_packed = pton(dst)
    if len(src_packed) != len(dst_packed):
        raise UsageError(f"address families differ: {src!r} and {dst!r}")
    try:
        if len(src_packed) == 4:
            return _PSEUDO4.pack(src_packed, dst_packed, protocol, length)
        return _PSEUDO6.pack(src_packed, dst_packed, length, protocol)
    except struct.error as exc:
        raise UsageError(f"pseudo-header field out of range: {exc}") from exc


def checksum_update16(checksum: int, old_word: int, new_word: int) -> int:
    """Stored checksum after one 16-bit word changes from ``old_word`` to ``new_word``.

    RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). It agrees with full recomputation
    (``internet_checksum``) whenever the updated data is not entirely zero; for all-zero
    data the full checksum is 0xFFFF while eqn. 3 gives 0x0000 (RFC 1624 §3: the
    one's complement sum cannot be +0 after an addition). Real headers are never all
    zero (IPv4's version nibble, for instance), so this corner is harmless.
    """
    total = (~checksum & 0xFFFF) + (~old_word & 0xFFFF) + new_word
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def compensating_word(checksum_with_zero: int, wanted: int) -> int:
    """The 16-bit word that, written where the message had a zero word, turns its
    checksum from ``checksum_with_zero`` into ``wanted`` (never 0 or 0xFFFF): Paris
    traceroute's constant checksum. RFC 1624 eqn. 3 solved for the new word, so
    ``checksum_update16(checksum_with_zero, 0, word) == wanted``."""
    return checksum_update16(0xFFFF, checksum_with_zero, wanted)
