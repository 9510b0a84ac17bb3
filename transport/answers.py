"""Typed answers: what the transport hands a probe, classified once.

The demultiplexer reads a received packet's key from a few bytes; only when the key
matches a probe and the packet is authenticated does it build an answer here, from the
header offsets it already knows. Probes then read typed fields (``flags``, ``icmp_type``,
``mtu``...) and never parse the bytes again.

Four kinds, all subclasses of :class:`Reply`:

- :class:`EchoAnswer`: an echo reply (or a timestamp/information/mask reply);
- :class:`IcmpError`: an ICMP/ICMPv6 error quoting a probe, with type, code, next-hop
  MTU, the quoted TTL and the RFC 4884 extensions;
- :class:`TcpAnswer`: a TCP segment answering a probe, with flags, seq, ack and window;
- :class:`UdpAnswer`: a UDP datagram answering a probe, with its payload.

Design: answers are tuples (one is made per matched packet, so they are as cheap as
NamedTuples) whose fields are read through C-level tuple getters, with typed names for
mypy. The first eight fields are those of the reply type that preceded them, so
``Reply(key, family, source, data, ttl, received_ns, received_s, protocol)`` still builds
one (it parses ``data`` and returns the typed subclass): tests and tools that make
replies by hand keep working.
"""

from __future__ import annotations

import socket
import struct
from _collections import _tuplegetter as _getter  # type: ignore[import-not-found]  # (C field getter)
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from rawprobe.errors import MalformedPacket
from rawprobe.transport.keys import KIND_ECHO, KIND_QUERY, MatchKey
from rawprobe.transport.wire import icmp_table
from rawprobe.transport.wire.icmpext import verify_extensions_checksum

__all__ = [
    "Answer",
    "EchoAnswer",
    "IcmpError",
    "Reply",
    "TcpAnswer",
    "UdpAnswer",
    "answer_v4",
    "answer_v6",
]

_V4 = socket.AF_INET
_V6 = socket.AF_INET6
_PROTO_ICMP, _PROTO_TCP, _PROTO_UDP, _PROTO_ICMPV6 = 1, 6, 17, 58
_TCP = struct.Struct("!HHIIxBH")  # ports, seq, ack, (offset), flags, window
_UDP_PORTS = struct.Struct("!HH")
_REST = struct.Struct("!I")
#: Pre-RFC 4884 extensions (RFC 4950's first layout) start after a 128-byte quote.
_COMPAT_QUOTE = 128
_ECHO_KINDS = frozenset((KIND_ECHO, KIND_QUERY))
_ERRORS4 = icmp_table.ERROR_TYPES[_V4]  # ICMPv4 errors (they quote a probe)
_ERRORS6 = range(128)  # ICMPv6 errors: types 0-127 (RFC 4443)
_COMMON = ("key", "family", "source_packed", "data", "ttl", "received_ns", "received_s",
           "protocol", "offset")  # fmt: skip


class Reply(tuple):  # type: ignore[type-arg]
    """A packet that matched a registered key and passed authentication.

    ``data`` is the whole IPv4 packet for IPv4, and the ICMPv6 (or upper-layer) message
    without the IPv6 header for IPv6, as raw sockets deliver them; ``offset`` is where
    its ICMP, TCP or UDP header starts. Calling ``Reply(...)`` with the first eight
    fields parses ``data`` into the typed answer.
    """

    __slots__ = ()
    _fields: tuple[str, ...] = _COMMON

    if TYPE_CHECKING:
        key: MatchKey
        family: int
        source_packed: bytes  # the sender's address, 4 or 16 bytes
        data: bytes
        ttl: int | None
        received_ns: int
        received_s: float
        protocol: int  # IP protocol of ``data`` (IPv4: the packet's; IPv6: the socket's)
        offset: int

    def __new__(
        cls,
        key: MatchKey,
        family: int,
        source_packed: bytes,
        data: bytes,
        ttl: int | None,
        received_ns: int,
        received_s: float,
        protocol: int,
    ) -> Reply:
        try:
            if family == _V4:
                return answer_v4(key, data, received_ns, received_s)
            return answer_v6(key, source_packed, data, ttl, received_ns, received_s, protocol)
        except (MalformedPacket, IndexError):
            # Too short to type: a bare Reply (only hand-made ones; the demux drops such
            # packets as malformed, so probes never receive one from a transport).
            fields = (key, family, source_packed, data, ttl, received_ns, received_s, protocol)
            bare: Reply = _new(cls, (*fields, 0))
            return bare

    @property
    def source(self) -> str:
        """The sender's address as text (made on demand: most replies never need it)."""
        return socket.inet_ntop(self.family, self.source_packed)

    def __repr__(self) -> str:
        pairs = zip(self._fields, self, strict=True)
        fields = ", ".join(f"{name}={value!r}" for name, value in pairs)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return tuple.__new__, (type(self), tuple(self))


class EchoAnswer(Reply):
    """An echo reply (KIND_ECHO) or a timestamp/information/mask reply (KIND_QUERY).
    Identifier and sequence are the key's ``key[2]`` and ``key[3]``."""

    __slots__ = ()
    _fields = (*_COMMON, "icmp_type", "code")

    if TYPE_CHECKING:
        icmp_type: int
        code: int

    @property
    def size(self) -> int:
        """Bytes of the ICMP message (header included), as ping reports them."""
        return len(self.data) - self.offset

    @property
    def payload(self) -> bytes:
        return self.data[self.offset + 8 :]


class IcmpError(Reply):
    """An ICMP or ICMPv6 error quoting one of our probes."""

    __slots__ = ()
    _fields = (*_COMMON, "icmp_type", "code", "mtu", "quoted_ttl", "quote", "extensions")

    if TYPE_CHECKING:
        icmp_type: int
        code: int
        mtu: int  # next-hop MTU (fragmentation needed, packet too big), else 0
        quoted_ttl: int | None  # TTL / hop limit of the quoted IP header
        quote: bytes  # the quoted packet, without the extensions
        extensions: bytes  # the RFC 4884 extension structure, or b""

    @property
    def from_target(self) -> bool:
        """True when the probed address itself sent the error."""
        return self.source_packed == self.key[1]

    @property
    def kind(self) -> str:
        """time-exceeded, unreachable, packet-too-big, parameter-problem or other."""
        return icmp_table.kind(self.family, self.icmp_type)


class TcpAnswer(Reply):
    """A TCP segment answering a probe (SYN-ACK, RST...)."""

    __slots__ = ()
    _fields = (*_COMMON, "flags", "seq", "ack", "window")

    if TYPE_CHECKING:
        flags: int
        seq: int
        ack: int
        window: int


class UdpAnswer(Reply):
    """A UDP datagram answering a probe; ``sport`` is the probed port."""

    __slots__ = ()
    _fields = (*_COMMON, "sport", "dport")

    if TYPE_CHECKING:
        sport: int
        dport: int

    @property
    def payload(self) -> bytes:
        return self.data[self.offset + 8 :]


for _cls in (Reply, EchoAnswer, IcmpError, TcpAnswer, UdpAnswer):
    for _index, _name in enumerate(_cls._fields):
        if _name not in _cls.__dict__:
            setattr(_cls, _name, _getter(_index, f"Field {_index}: {_name}"))

Answer: TypeAlias = EchoAnswer | IcmpError | TcpAnswer | UdpAnswer

_new = tuple.__new__


def answer_v4(key: MatchKey, packet: bytes, received_ns: int, received_s: float) -> Answer:
    """The typed answer of a matched IPv4 packet (IP header included)."""
    offset = (packet[0] & 0x0F) * 4
    protocol = packet[9]
    if protocol == _PROTO_ICMP and key[0] in _ECHO_KINDS and packet[offset] not in _ERRORS4:
        echo: EchoAnswer = _new(EchoAnswer, (  # (inline: the sweep's path, one per host)
            key, _V4, packet[12:16], packet, packet[8], received_ns, received_s, protocol,
            offset, packet[offset], packet[offset + 1],
        ))  # fmt: skip
        return echo
    common = (key, _V4, packet[12:16], packet, packet[8], received_ns, received_s, protocol,
              offset)  # fmt: skip
    return _typed(common, packet, offset, protocol, False)


def answer_v6(
    key: MatchKey,
    source: bytes,
    message: bytes,
    hop_limit: int | None,
    received_ns: int,
    received_s: float,
    protocol: int = _PROTO_ICMPV6,
) -> Answer:
    """The typed answer of a matched IPv6 upper-layer message (no IPv6 header)."""
    common = (key, _V6, source, message, hop_limit, received_ns, received_s, protocol, 0)
    return _typed(common, message, 0, protocol, True)


def _typed(common: tuple[Any, ...], data: bytes, offset: int, protocol: int, v6: bool) -> Answer:
    """The answer of the message at ``offset`` of ``data``; ``common``: the fields
    every answer has."""
    try:
        if protocol == (_PROTO_ICMPV6 if v6 else _PROTO_ICMP):
            icmp_type, code = data[offset], data[offset + 1]
            # (ICMPv6 errors are types 0-127, RFC 4443)
            if common[0][0] in _ECHO_KINDS and icmp_type not in (_ERRORS6 if v6 else _ERRORS4):
                echo: EchoAnswer = _new(EchoAnswer, (*common, icmp_type, code))
                return echo
            return _icmp_error(common, data, offset, icmp_type, code, v6)
        if protocol == _PROTO_TCP:
            _sport, _dport, seq, ack, flags, window = _TCP.unpack_from(data, offset)
            tcp: TcpAnswer = _new(TcpAnswer, (*common, flags, seq, ack, window))
            return tcp
        if protocol == _PROTO_UDP:
            if len(data) < offset + 8:
                raise MalformedPacket("UDP answer shorter than its header")
            udp: UdpAnswer = _new(UdpAnswer, (*common, *_UDP_PORTS.unpack_from(data, offset)))
            return udp
    except (IndexError, struct.error) as exc:
        raise MalformedPacket("answer too short for its headers") from exc
    raise MalformedPacket(f"no answer of IP protocol {protocol}")


def _icmp_error(
    common: tuple[Any, ...],
    data: bytes,
    offset: int,
    icmp_type: int,
    code: int,
    v6: bool,
) -> IcmpError:
    """An error's fields: MTU, the RFC 4884 split of quote and extensions (or the
    pre-RFC 4884 layout, found by its checksum), the quoted TTL."""
    (rest,) = _REST.unpack_from(data, offset + 4)
    body = data[offset + 8 :]
    mtu = 0
    if v6 and icmp_type == 2:  # packet too big
        mtu = rest
    elif not v6 and icmp_type == 3 and code == 4:  # fragmentation needed
        mtu = rest & 0xFFFF
    # RFC 4884: the quote's length in 32-bit (v4) or 64-bit (v6) words, in the rest word.
    words = (rest >> 24) if v6 else (rest >> 16) & 0xFF
    with_length = icmp_type in ((1, 3) if v6 else (3, 11, 12))
    length = words * (8 if v6 else 4) if with_length else 0
    if length:
        fits = length <= len(body)
        quote, extensions = (body[:length], body[length:]) if fits else (body, b"")
    elif (
        len(body) >= _COMPAT_QUOTE + 8
        and body[_COMPAT_QUOTE] >> 4 == 2
        and verify_extensions_checksum(body[_COMPAT_QUOTE:])
    ):
        quote, extensions = body[:_COMPAT_QUOTE], body[_COMPAT_QUOTE:]
    else:
        quote, extensions = body, b""
    ttl_at = 7 if v6 else 8
    quoted_ttl = quote[ttl_at] if len(quote) > ttl_at else None
    answer: IcmpError = _new(
        IcmpError, (*common, icmp_type, code, mtu, quoted_ttl, quote, extensions)
    )
    return answer
