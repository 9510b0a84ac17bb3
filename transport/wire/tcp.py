"""TCP header codec (RFC 9293) with options (RFC 7323, RFC 2018)."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from rawprobe.errors import MalformedPacket, UsageError

from .checksum import internet_checksum, ones_complement_sum, pseudo_header
from .fields import pack_fields, put_checksum
from .protocols import PROTO_TCP

__all__ = [
    "ACK",
    "AE",
    "CWR",
    "ECE",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "TcpHeader",
    "TcpOption",
    "build_tcp",
    "encode_options",
    "eol",
    "flags_text",
    "mss",
    "nop",
    "parse_flags",
    "parse_options",
    "parse_ports_seq",
    "parse_tcp",
    "sack_permitted",
    "timestamps",
    "verify_tcp_checksum",
    "window_scale",
]

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
#: Accurate ECN bit (RFC 9768; formerly NS, RFC 3540): the low bit of the offset byte.
AE = 0x100

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8

_HEADER = struct.Struct("!HHIIBBHHH")
_PORTS_SEQ = struct.Struct("!HHI")
_U16 = struct.Struct("!H")
_U32_PAIR = struct.Struct("!II")

# tcpdump's letters, in tcpdump's order (print-tcp.c).
_FLAG_LETTERS = (
    (FIN, "F"),
    (SYN, "S"),
    (RST, "R"),
    (PSH, "P"),
    (ACK, "."),
    (URG, "U"),
    (ECE, "E"),
    (CWR, "W"),
    (AE, "e"),
)
_LETTER_FLAGS = {letter: flag for flag, letter in _FLAG_LETTERS} | {"A": ACK}


def flags_text(flags: int) -> str:
    """tcpdump's rendering of TCP flags: ``"S"``, ``"S."``, ``"R."``, ``"none"`` for 0.

    Reserved bits (0x200-0x800) have no letter and are not shown.
    """
    text = "".join([letter for flag, letter in _FLAG_LETTERS if flags & flag])
    return text or "none"


def parse_flags(text: str) -> int:
    """Flags from letters: tcpdump's ``FSRPUEW.e`` plus ``A`` for ACK (``"SA"``, ``"S."``).

    Case matters (``e`` is AE, ``E`` is ECE); ``"none"`` or ``""`` is 0. Anything else
    raises ``UsageError`` (a ``ValueError``).
    """
    if text == "none":
        return 0
    flags = 0
    for char in text:
        flag = _LETTER_FLAGS.get(char)
        if flag is None:
            raise UsageError(f"unknown TCP flag {char!r} in {text!r}; use F S R P A(or .) U E W e")
        flags |= flag
    return flags


@dataclass(frozen=True, slots=True)
class TcpOption:
    """One TCP option. EOL (0) and NOP (1) are single bytes; other kinds are encoded
    as kind, length (2 + len(data)), data. Unknown kinds are carried as raw data."""

    kind: int
    data: bytes = b""

    @property
    def mss(self) -> int | None:
        """Maximum segment size for an MSS option (kind 2), else None."""
        if self.kind == OPT_MSS and len(self.data) == 2:
            return int(_U16.unpack(self.data)[0])
        return None

    @property
    def window_scale(self) -> int | None:
        """Shift count for a Window Scale option (kind 3), else None."""
        if self.kind == OPT_WSCALE and len(self.data) == 1:
            return self.data[0]
        return None

    @property
    def timestamps(self) -> tuple[int, int] | None:
        """``(tsval, tsecr)`` for a Timestamps option (kind 8), else None."""
        if self.kind == OPT_TIMESTAMPS and len(self.data) == 8:
            tsval, tsecr = _U32_PAIR.unpack(self.data)
            return int(tsval), int(tsecr)
        return None

    @property
    def sack_blocks(self) -> tuple[tuple[int, int], ...] | None:
        """``((left, right), ...)`` edges for a SACK option (kind 5), else None."""
        if self.kind == OPT_SACK and len(self.data) % 8 == 0:
            return tuple((int(a), int(b)) for a, b in _U32_PAIR.iter_unpack(self.data))
        return None

    @property
    def name(self) -> str:
        """tcpdump's name for the option kind (``mss``, ``sackOK``, ``TS`` ...)."""
        return _OPTION_NAMES.get(self.kind, f"opt-{self.kind}")


_OPTION_NAMES = {
    OPT_EOL: "eol",
    OPT_NOP: "nop",
    OPT_MSS: "mss",
    OPT_WSCALE: "wscale",
    OPT_SACK_PERMITTED: "sackOK",
    OPT_SACK: "sack",
    OPT_TIMESTAMPS: "TS",
}


def mss(value: int) -> TcpOption:
    if not 0 <= value <= 0xFFFF:
        raise UsageError(f"MSS out of range: {value}")
    return TcpOption(OPT_MSS, _U16.pack(value))


def window_scale(shift: int) -> TcpOption:
    if not 0 <= shift <= 0xFF:
        raise UsageError(f"window scale shift out of range: {shift}")
    return TcpOption(OPT_WSCALE, bytes((shift,)))


def sack_permitted() -> TcpOption:
    return TcpOption(OPT_SACK_PERMITTED)


def timestamps(tsval: int, tsecr: int) -> TcpOption:
    if not (0 <= tsval <= 0xFFFFFFFF and 0 <= tsecr <= 0xFFFFFFFF):
        raise UsageError(f"timestamps out of range: {tsval}, {tsecr}")
    return TcpOption(OPT_TIMESTAMPS, _U32_PAIR.pack(tsval, tsecr))


def nop() -> TcpOption:
    return TcpOption(OPT_NOP)


def eol() -> TcpOption:
    return TcpOption(OPT_EOL)


def encode_options(options: Iterable[TcpOption]) -> bytes:
    """Encode options in order, without padding."""
    parts = []
    for option in options:
        if option.kind in (OPT_EOL, OPT_NOP):
            if option.data:
                raise UsageError(f"TCP option kind {option.kind} is a single byte, no data")
            parts.append(bytes((option.kind,)))
        else:
            length = 2 + len(option.data)
            if not 0 <= option.kind <= 0xFF or length > 0xFF:
                raise UsageError(f"TCP option kind {option.kind} / length {length} invalid")
            parts.append(bytes((option.kind, length)) + option.data)
    return b"".join(parts)


def parse_options(data: bytes | bytearray | memoryview) -> tuple[TcpOption, ...]:
    """Decode the options area of a TCP header.

    Parsing stops at EOL, which is not returned (it and what follows are padding).
    A length byte below 2 or one overrunning the area raises ``MalformedPacket``.
    """
    options: list[TcpOption] = []
    offset = 0
    end = len(data)
    while offset < end:
        kind = data[offset]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            options.append(TcpOption(OPT_NOP))
            offset += 1
            continue
        if offset + 1 >= end:
            raise MalformedPacket(f"TCP option {kind} at {offset} has no length byte")
        length = data[offset + 1]
        if length < 2 or offset + length > end:
            raise MalformedPacket(
                f"TCP option {kind} at {offset} has invalid length {length} "
                f"({end - offset} bytes left)"
            )
        options.append(TcpOption(kind, bytes(data[offset + 2 : offset + length])))
        offset += length
    return tuple(options)


@dataclass(frozen=True, slots=True)
class TcpHeader:
    """A TCP header.

    ``flags`` holds 12 bits: the 8 classic flags, ``AE`` (0x100) and the 3 reserved
    bits (0x200-0x800), so that any header survives a parse/build round trip.
    ``data_offset`` is in 32-bit words; None means "compute on build". A given
    ``data_offset`` larger than the options is honoured by padding with zero bytes (so
    a parsed header rebuilds to the same bytes); a smaller one is written as is (a lie).
    ``checksum`` None means "compute on build"; a given value is sent as is.
    """

    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    flags: int = SYN
    window: int = 65535
    urgent: int = 0
    options: tuple[TcpOption, ...] = ()
    data_offset: int | None = None
    checksum: int | None = None

    @property
    def header_length(self) -> int:
        """Header length in bytes as it will be built (or as parsed)."""
        return max((self.data_offset or 0) * 4, _options_padded_length(self.options) + 20)

    def option(self, kind: int) -> TcpOption | None:
        """The first option of ``kind``, or None."""
        for option in self.options:
            if option.kind == kind:
                return option
        return None


def _options_padded_length(options: tuple[TcpOption, ...]) -> int:
    length = 0
    for option in options:
        length += 1 if option.kind in (OPT_EOL, OPT_NOP) else 2 + len(option.data)
    return (length + 3) & ~3


def build_tcp(header: TcpHeader, payload: bytes, *, src: str, dst: str) -> bytes:
    """Encode ``header + payload`` as new bytes; ``src``/``dst`` feed the pseudo-header.

    Options are padded with EOL (zero) bytes to a multiple of 4 (or to ``data_offset``).
    """
    options = encode_options(header.options)
    padded = (len(options) + 3) & ~3
    if header.data_offset is not None:
        if not 0 <= header.data_offset <= 15:
            raise UsageError(f"TCP data offset out of range: {header.data_offset}")
        padded = max(padded, header.data_offset * 4 - 20)
        data_offset = header.data_offset
    else:
        data_offset = (20 + padded) // 4
    if padded > 40:
        raise UsageError(f"TCP options are at most 40 bytes, got {len(options)}")
    options += b"\x00" * (padded - len(options))
    if not 0 <= header.flags <= 0xFFF:
        raise UsageError(f"TCP flags out of range: {header.flags:#x}")
    fixed = pack_fields(
        _HEADER,
        "TCP header field",
        header.src_port,
        header.dst_port,
        header.seq,
        header.ack,
        (data_offset << 4) | (header.flags >> 8),
        header.flags & 0xFF,
        header.window,
        0,
        header.urgent,
    )
    segment = fixed + options + payload
    pseudo = ones_complement_sum(pseudo_header(src, dst, PROTO_TCP, len(segment)))
    return put_checksum(segment, 16, header.checksum, "TCP", pseudo)


def parse_tcp(
    segment: bytes | bytearray | memoryview, *, quoted: bool = False
) -> tuple[TcpHeader, bytes]:
    """Parse a TCP segment into ``(header, payload)``. The checksum is not verified.

    The header, options included, must be complete. TCP declares no length of its own,
    so ``quoted`` changes nothing (the payload is whatever follows); an ICMP error often
    quotes only 8 bytes of TCP: read those with ``parse_ports_seq``.
    """
    try:
        src_port, dst_port, seq, ack, offset_byte, flag_byte, window, checksum, urgent = (
            _HEADER.unpack_from(segment, 0)
        )
    except struct.error as exc:
        raise MalformedPacket(f"TCP header truncated: {len(segment)} of 20 bytes") from exc
    data_offset = offset_byte >> 4
    header_length = data_offset * 4
    if header_length < 20:
        raise MalformedPacket(f"TCP data offset {data_offset} is below 5")
    if len(segment) < header_length:
        raise MalformedPacket(f"TCP header truncated: {len(segment)} of {header_length} bytes")
    header = TcpHeader(
        src_port=src_port,
        dst_port=dst_port,
        seq=seq,
        ack=ack,
        flags=((offset_byte & 0x0F) << 8) | flag_byte,
        window=window,
        urgent=urgent,
        options=parse_options(memoryview(segment)[20:header_length]),
        data_offset=data_offset,
        checksum=checksum,
    )
    return header, bytes(segment[header_length:])


def parse_ports_seq(segment: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """``(src_port, dst_port, seq)`` from the first 8 bytes, all an ICMP error must quote."""
    try:
        src_port, dst_port, seq = _PORTS_SEQ.unpack_from(segment, 0)
    except struct.error as exc:
        raise MalformedPacket(f"TCP ports/seq truncated: {len(segment)} of 8 bytes") from exc
    return src_port, dst_port, seq


def verify_tcp_checksum(segment: bytes | bytearray | memoryview, *, src: str, dst: str) -> bool:
    """True when the checksum of the whole segment (from ``src`` to ``dst``) is correct."""
    if len(segment) < 20:
        return False
    pseudo = pseudo_header(src, dst, PROTO_TCP, len(segment))
    return internet_checksum(segment, ones_complement_sum(pseudo)) == 0
