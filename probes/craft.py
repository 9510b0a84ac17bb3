"""Hand-crafted packets: any IPv4/IPv6, TCP, UDP or ICMP header field, set by you.

``craft("198.19.0.5", TCP(dport=80, flags="SA"), src=..., ip=IP(ttl=2))`` returns the
bytes of a whole IP packet, ready for ``transport.send`` / ``transport.request``.
Every field you leave alone is filled the way the kernel would fill it: lengths,
checksums (over the pseudo-header), data offset. Give a value and it is sent as is,
wrong checksums and lying lengths included (``bad_checksum=True`` breaks the
transport checksum for you).

What the kernel still rewrites on a raw IPv4 socket (``IP_HDRINCL``, see raw(7)): the
IPv4 header checksum and total length are always recomputed, an ``ident`` of 0 is
replaced by one of its own, and a source of 0.0.0.0 by the route's. IPv6 raw
packets go out untouched. Built with the wire codecs; nothing here opens a socket.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from rawprobe.errors import UsageError
from rawprobe.transport.wire.icmp import build_icmp
from rawprobe.transport.wire.icmpv6 import build_icmpv6
from rawprobe.transport.wire.ipv4 import DF, EVIL, MF, IPv4Header, build_ipv4
from rawprobe.transport.wire.ipv6 import IPv6Header, build_ipv6
from rawprobe.transport.wire.protocols import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from rawprobe.transport.wire.tcp import ACK, TcpHeader, TcpOption, build_tcp, parse_flags
from rawprobe.transport.wire.udp import UdpHeader, build_udp

__all__ = ["ICMP", "IP", "TCP", "UDP", "craft"]

_ECHO_REQUEST = {4: 8, 6: 128}
_ICMP4_TIMESTAMP_TYPES = (13, 14)
_TIMESTAMP_BODY = bytes(12)


@dataclass(frozen=True, slots=True)
class IP:
    """IP header fields. ``ttl`` is the hop limit and ``tos`` the traffic class for
    IPv6. IPv4 only: ``ident`` (0: the kernel picks one), ``df``/``mf``/``evil``
    flags, ``fragment_offset`` (8-byte units), ``options`` (raw bytes, padded with
    EOL). IPv6 only: ``flow_label``. ``protocol`` overrides the protocol / next
    header; ``length`` the total length (IPv4) or payload length (IPv6); ``checksum``
    the IPv4 header checksum (the kernel recomputes it on a raw socket)."""

    ttl: int = 64
    tos: int = 0
    ident: int = 0
    df: bool = False
    mf: bool = False
    evil: bool = False
    fragment_offset: int = 0
    options: bytes = b""
    flow_label: int = 0
    protocol: int | None = None
    length: int | None = None
    checksum: int | None = None


@dataclass(frozen=True, slots=True)
class TCP:
    """TCP header fields. ``flags`` as tcpdump letters (``"S"``, ``"SA"``, ``"S."``,
    ``"FPU"``) or an int; ``sport`` and ``seq`` None pick random values. ``ack`` None
    is 0, or the sequence number when the ACK flag is set: a RST answering such a
    segment carries our ack as its seq, and the transport matches it by that."""

    dport: int
    sport: int | None = None
    flags: str | int = "S"
    seq: int | None = None
    ack: int | None = None
    window: int = 64240
    urgent: int = 0
    options: tuple[TcpOption, ...] = ()
    data_offset: int | None = None
    checksum: int | None = None


@dataclass(frozen=True, slots=True)
class UDP:
    """UDP header fields; ``sport`` None picks a random port, ``length`` and
    ``checksum`` None are computed."""

    dport: int
    sport: int | None = None
    length: int | None = None
    checksum: int | None = None


@dataclass(frozen=True, slots=True)
class ICMP:
    """ICMP (IPv4) or ICMPv6 message fields, by the destination's family.

    ``type`` None is an echo request (8, or 128 for IPv6). ``ident`` None picks a
    random identifier. ``rest`` sets the whole 32-bit word after the checksum,
    overriding ``ident``/``seq`` (for the types that use it otherwise). A timestamp
    request (13) without payload gets the 12 zero bytes of its three timestamps."""

    type: int | None = None
    code: int = 0
    ident: int | None = None
    seq: int = 1
    rest: int | None = None
    checksum: int | None = None


Layer = TCP | UDP | ICMP


def craft(
    dst: str,
    layer: Layer | None = None,
    *,
    src: str,
    ip: IP | None = None,
    payload: bytes = b"",
    bad_checksum: bool = False,
) -> bytes:
    """The bytes of one IPv4 or IPv6 packet (family from ``dst``) from ``src``.

    ``layer`` None sends ``payload`` right after the IP header (set ``ip.protocol``).
    ``bad_checksum`` makes the transport checksum wrong (the correct one plus one).
    Raises UsageError for a field that cannot be encoded or does not exist in the
    family (IPv4 flags for IPv6, a flow label for IPv4).
    """
    ip = ip or IP()
    version = 6 if ":" in dst else 4
    if (":" in src) != (version == 6):
        raise UsageError(f"source {src} and destination {dst} are not of one family")
    protocol, upper = _upper(layer, version, src, dst, payload, bad_checksum)
    if ip.protocol is not None:
        protocol = ip.protocol
    if protocol is None:
        raise UsageError("a packet without TCP, UDP or ICMP needs ip.protocol")
    if version == 4:
        if ip.flow_label:
            raise UsageError("the flow label is an IPv6 field")
        flags = (DF if ip.df else 0) | (MF if ip.mf else 0) | (EVIL if ip.evil else 0)
        header4 = IPv4Header(
            src=src,
            dst=dst,
            protocol=protocol,
            ttl=ip.ttl,
            tos=ip.tos,
            ident=ip.ident,
            flags=flags,
            fragment_offset=ip.fragment_offset,
            options=ip.options,
            total_length=ip.length,
            checksum=ip.checksum,
        )
        return build_ipv4(header4, upper)
    if ip.df or ip.mf or ip.evil or ip.fragment_offset or ip.options or ip.ident:
        raise UsageError(
            "ident, DF/MF flags, fragment offset and options are IPv4 header fields "
            "(IPv6 has no fragmentation fields in its header)"
        )
    if ip.checksum is not None:
        raise UsageError("IPv6 has no header checksum")
    header6 = IPv6Header(
        src=src,
        dst=dst,
        next_header=protocol,
        hop_limit=ip.ttl,
        traffic_class=ip.tos,
        flow_label=ip.flow_label,
        payload_length=ip.length,
    )
    return build_ipv6(header6, upper)


def _upper(
    layer: Layer | None, version: int, src: str, dst: str, payload: bytes, bad: bool
) -> tuple[int | None, bytes]:
    if layer is None:
        if bad:
            raise UsageError("bad_checksum needs a TCP, UDP or ICMP layer")
        return None, payload
    if isinstance(layer, TCP):
        flags = parse_flags(layer.flags) if isinstance(layer.flags, str) else layer.flags
        seq = secrets.randbits(32) if layer.seq is None else layer.seq
        ack = layer.ack
        if ack is None:
            ack = seq if flags & ACK else 0
        tcp = TcpHeader(
            src_port=_random_port() if layer.sport is None else layer.sport,
            dst_port=layer.dport,
            seq=seq,
            ack=ack,
            flags=flags,
            window=layer.window,
            urgent=layer.urgent,
            options=layer.options,
            data_offset=layer.data_offset,
            checksum=layer.checksum,
        )
        segment = build_tcp(tcp, payload, src=src, dst=dst)
        return PROTO_TCP, _break_checksum(segment, 16) if bad else segment
    if isinstance(layer, UDP):
        udp = UdpHeader(
            src_port=_random_port() if layer.sport is None else layer.sport,
            dst_port=layer.dport,
            length=layer.length,
            checksum=layer.checksum,
        )
        datagram = build_udp(udp, payload, src=src, dst=dst)
        return PROTO_UDP, _break_checksum(datagram, 6) if bad else datagram
    icmp_type = _ECHO_REQUEST[version] if layer.type is None else layer.type
    rest = layer.rest
    if rest is None:
        ident = secrets.randbits(16) if layer.ident is None else layer.ident
        if not (0 <= ident <= 0xFFFF and 0 <= layer.seq <= 0xFFFF):
            raise UsageError(f"ICMP ident {ident} / seq {layer.seq} out of range")
        rest = (ident << 16) | layer.seq
    body = payload
    if version == 4 and icmp_type in _ICMP4_TIMESTAMP_TYPES and not body:
        body = _TIMESTAMP_BODY
    if version == 4:
        message = build_icmp(icmp_type, layer.code, rest, body, checksum=layer.checksum)
        protocol = PROTO_ICMP
    else:
        message = build_icmpv6(
            icmp_type, layer.code, rest, body, src=src, dst=dst, checksum=layer.checksum
        )
        protocol = PROTO_ICMPV6
    return protocol, _break_checksum(message, 2) if bad else message


def _break_checksum(data: bytes, offset: int) -> bytes:
    """``data`` with the checksum at ``offset`` off by one (never 0: "no checksum"
    for UDP over IPv4)."""
    wrong = (int.from_bytes(data[offset : offset + 2], "big") + 1) & 0xFFFF or 1
    return data[:offset] + wrong.to_bytes(2, "big") + data[offset + 2 :]


def _random_port() -> int:
    """An ephemeral port from Linux's default range (32768-60999)."""
    return 32768 + secrets.randbelow(60999 - 32768 + 1)
