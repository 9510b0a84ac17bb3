"""Match keys of sent packets and of replies, and the cookies that authenticate replies.

A match key is a plain tuple ``(kind, remote, a, b)``: ``kind`` names the probe
protocol, ``remote`` is the probed address as packed bytes, ``a``/``b`` are the
protocol's identifying numbers:

==============  =============================================  ======================
kind            a                                              b
==============  =============================================  ======================
KIND_ECHO       ICMP identifier                                ICMP sequence
KIND_QUERY      ICMP identifier (timestamp, info, mask query)  ICMP sequence
KIND_TCP        local port << 16 | remote port                 the probe's sequence
KIND_UDP        local port << 16 | remote port                 the probe's UDP checksum
KIND_UDP_DATA   local port << 16 | remote port                 0
==============  =============================================  ======================

``keys_of_sent`` and ``key_of_reply_*`` must agree: the reply to a packet, or the ICMP
error quoting it (of which only 8 transport bytes are guaranteed), yields a key of that
packet. TCP replies are tied to the probe's sequence number: a SYN-ACK or RST+ACK
acknowledges ``seq + 1`` (SYN and FIN probes), a bare RST (the answer to a segment
with ACK set) carries the probe's acknowledgement number as its sequence, so probes
with ACK set use ``ack == seq``. UDP probes are keyed by their checksum in ICMP errors
(Paris traceroute puts its identity there) and by their ports for UDP answers.

The reply functions run on every packet the raw sockets see, most of them someone
else's, so they read a few bytes and build nothing but the key. Malformed packets
raise MalformedPacket (counted by the demultiplexer); foreign ones return None.
"""

from __future__ import annotations

import hashlib
import os
import struct
from hmac import compare_digest

from rawprobe.errors import MalformedPacket
from rawprobe.transport.wire import icmp_table as _icmp
from rawprobe.transport.wire.ipv6 import skip_extension_headers

KIND_ECHO = 1
KIND_TCP = 2
KIND_UDP = 3
KIND_UDP_DATA = 4
KIND_QUERY = 5

MatchKey = tuple[int, bytes, int, int]

_PROTO_ICMP = 1
_PROTO_TCP = 6
_PROTO_UDP = 17
_PROTO_ICMPV6 = PROTO_ICMPV6 = 58

_ICMP4_ECHO_REPLY = _icmp.ECHO_REPLY[_icmp.AF_INET]
_ICMP4_ECHO_REQUEST = _icmp.ECHO_REQUEST[_icmp.AF_INET]
_ICMP4_QUERIES = _icmp.QUERY_TYPES[_icmp.AF_INET]  # timestamp, information, address mask
_ICMP4_QUERY_REPLIES = _icmp.QUERY_REPLY_TYPES[_icmp.AF_INET]
_ICMP4_ERRORS = _icmp.ERROR_TYPES[_icmp.AF_INET]
_ICMP6_ECHO_REQUEST = _icmp.ECHO_REQUEST[_icmp.AF_INET6]
_ICMP6_ECHO_REPLY = _icmp.ECHO_REPLY[_icmp.AF_INET6]
_ICMP6_ERRORS = _icmp.ERROR_TYPES[_icmp.AF_INET6]

_TCP_SYN = 0x02
_TCP_RST = 0x04
_TCP_ACK = 0x10

_IDENT_SEQ = struct.Struct("!HH")
_WORD = struct.Struct("!H")
_PORTS_SEQ = struct.Struct("!HHI")
_PORTS_SEQ_ACK = struct.Struct("!HHII")
_UDP = struct.Struct("!HHHH")
_COOKIE_FIELDS = struct.Struct("!BII")


def keys_of_sent(packet: bytes) -> tuple[MatchKey, ...]:
    """Every key a reply to this outgoing IPv4/IPv6 packet may carry, primary first.

    Raises MalformedPacket for packets whose replies cannot be told apart (for
    example a protocol without identifying fields).
    """
    try:
        version = packet[0] >> 4
        if version == 4:
            protocol, offset, remote = packet[9], (packet[0] & 0x0F) * 4, packet[16:20]
        elif version == 6:
            protocol, offset = skip_extension_headers(packet, 40, packet[6])
            remote = packet[24:40]
        else:
            raise MalformedPacket(f"not an IP packet (version {version})")
        key = _probe_key(packet, offset, protocol, remote)
    except (IndexError, struct.error) as exc:
        raise MalformedPacket("packet too short for a match key") from exc
    if key is None:
        raise MalformedPacket("no match key: replies to this packet cannot be recognised")
    if key[0] == KIND_UDP:
        return key, (KIND_UDP_DATA, remote, key[2], 0)
    return (key,)


def key_of_sent(packet: bytes) -> MatchKey:
    """The primary key of an outgoing packet (see ``keys_of_sent``)."""
    return keys_of_sent(packet)[0]


def _probe_key(data: bytes, offset: int, protocol: int, remote: bytes) -> MatchKey | None:
    """Key of a probe's transport header at ``offset``: read by both the sent side and
    the quote in an ICMP error, so it uses only the first 8 transport bytes."""
    if protocol == _PROTO_TCP:
        local_port, remote_port, seq = _PORTS_SEQ.unpack_from(data, offset)
        return (KIND_TCP, remote, local_port << 16 | remote_port, seq)
    if protocol == _PROTO_UDP:
        local_port, remote_port, _length, checksum = _UDP.unpack_from(data, offset)
        return (KIND_UDP, remote, local_port << 16 | remote_port, checksum)
    if protocol == _PROTO_ICMP:
        icmp_type = data[offset]
        if icmp_type == _ICMP4_ECHO_REQUEST:
            return (KIND_ECHO, remote, *_IDENT_SEQ.unpack_from(data, offset + 4))
        if icmp_type in _ICMP4_QUERIES:
            return (KIND_QUERY, remote, *_IDENT_SEQ.unpack_from(data, offset + 4))
    elif protocol == _PROTO_ICMPV6 and data[offset] == _ICMP6_ECHO_REQUEST:
        return (KIND_ECHO, remote, *_IDENT_SEQ.unpack_from(data, offset + 4))
    return None


def _answer_key(data: bytes, offset: int, protocol: int, remote: bytes) -> MatchKey | None:
    """Key of a TCP or UDP segment that may answer a probe (not an ICMP error)."""
    if protocol == _PROTO_TCP:
        remote_port, local_port, seq, ack = _PORTS_SEQ_ACK.unpack_from(data, offset)
        flags = data[offset + 13]
        if flags & _TCP_ACK and flags & (_TCP_SYN | _TCP_RST):
            token = (ack - 1) & 0xFFFFFFFF  # SYN-ACK or RST+ACK to a SYN (or FIN) probe
        elif flags & _TCP_RST:
            token = seq  # bare RST: its seq is the ack of the probe, which equals its seq
        else:
            return None  # not an answer (this includes our own SYNs seen on loopback)
        return (KIND_TCP, remote, local_port << 16 | remote_port, token)
    if protocol == _PROTO_UDP:
        remote_port, local_port = _IDENT_SEQ.unpack_from(data, offset)
        return (KIND_UDP_DATA, remote, local_port << 16 | remote_port, 0)
    return None


def key_of_reply_v4(packet: bytes) -> MatchKey | None:
    """Key of an IPv4 packet read from a raw socket (IP header included).

    Echo and query replies and TCP/UDP answers give the key directly; ICMP errors give
    the key of the packet they quote, read through the quoted IP header.
    """
    try:
        first = packet[0]
        ihl = (first & 0x0F) * 4
        if first >> 4 != 4 or ihl < 20:
            raise MalformedPacket(f"not an IPv4 header (first byte {first:#04x})")
        protocol = packet[9]
        if protocol != _PROTO_ICMP:
            return _answer_key(packet, ihl, protocol, packet[12:16])
        icmp_type = packet[ihl]
        if icmp_type == _ICMP4_ECHO_REPLY:
            return (KIND_ECHO, packet[12:16], *_IDENT_SEQ.unpack_from(packet, ihl + 4))
        if icmp_type in _ICMP4_QUERY_REPLIES:
            return (KIND_QUERY, packet[12:16], *_IDENT_SEQ.unpack_from(packet, ihl + 4))
        if icmp_type in _ICMP4_ERRORS:
            quoted = ihl + 8
            if packet[quoted] >> 4 != 4:
                raise MalformedPacket("quoted packet is not IPv4")
            quoted_ihl = (packet[quoted] & 0x0F) * 4
            if quoted_ihl < 20:
                raise MalformedPacket("quoted IPv4 header with IHL < 5")
            remote = packet[quoted + 16 : quoted + 20]
            return _probe_key(packet, quoted + quoted_ihl, packet[quoted + 9], remote)
        return None
    except (IndexError, struct.error) as exc:
        raise MalformedPacket("truncated packet") from exc


def nat_key_v4(packet: bytes, key: MatchKey) -> MatchKey:
    """``key`` (a KIND_UDP key read from an ICMPv4 error) with the quoted IPv4 ID in place
    of the quoted UDP checksum. Probes that carry their identity in both (Paris UDP traces:
    probes/flowprobes.py) are still found when a NAT rewrote the source address or port
    and, with it, the checksum, and did not translate the quote back: Dublin
    traceroute's match (the demultiplexer prefers it when it names a probe: the
    rewritten checksum might name another). Call only on a packet whose
    ``key_of_reply_v4`` gave ``key``."""
    quoted = (packet[0] & 0x0F) * 4 + 8
    return (key[0], key[1], key[2], _WORD.unpack_from(packet, quoted + 4)[0])


def key_of_reply_v6(
    message: bytes, source: bytes, protocol: int = _PROTO_ICMPV6
) -> MatchKey | None:
    """Key of an IPv6 upper-layer message read from a raw socket of ``protocol`` (no IPv6
    header; ``source`` is the packed sender address from recvmsg)."""
    try:
        if protocol != _PROTO_ICMPV6:
            return _answer_key(message, 0, protocol, source)
        icmp_type = message[0]
        if icmp_type == _ICMP6_ECHO_REPLY:
            return (KIND_ECHO, source, *_IDENT_SEQ.unpack_from(message, 4))
        if icmp_type in _ICMP6_ERRORS:
            if message[8] >> 4 != 6:
                raise MalformedPacket("quoted packet is not IPv6")
            quoted_protocol, offset = skip_extension_headers(message, 48, message[14])
            return _probe_key(message, offset, quoted_protocol, message[32:48])
        return None
    except (IndexError, struct.error) as exc:
        raise MalformedPacket("truncated ICMPv6 packet") from exc


def echo_payload_v4(packet: bytes) -> tuple[bytes, bool]:
    """The echo payload an IPv4 echo reply carries, or that an ICMP error quotes, and
    whether it is a quote. Call only on packets whose key matched."""
    ihl = (packet[0] & 0x0F) * 4
    if packet[ihl] == _ICMP4_ECHO_REPLY:
        return packet[ihl + 8 :], False
    quoted = ihl + 8
    return packet[quoted + (packet[quoted] & 0x0F) * 4 + 8 :], True


def echo_payload_v6(message: bytes) -> tuple[bytes, bool]:
    """The echo payload an ICMPv6 echo reply carries, or that an ICMPv6 error quotes,
    and whether it is a quote."""
    if message[0] == _ICMP6_ECHO_REPLY:
        return message[8:], False
    return message[56:], True


class Cookies:
    """Keyed hashes that prove a reply answers a probe this transport sent.

    The secret is per transport, so replies to other processes (or other transports in
    this process) and packets forged by someone who cannot see our traffic fail the
    check. The cookie travels in the echo payload, which the reply echoes back.
    """

    COOKIE_BYTES = 8

    def __init__(self, secret: bytes | None = None) -> None:
        # os.urandom is what the secrets module calls; importing that one would import
        # random as well (5 ms of every probe's start-up on a slow machine).
        secret = secret if secret is not None else os.urandom(32)
        self._ident_prefix, self._ident_counter = os.urandom(2)
        # Keyed once; each cookie copies the keyed state (cheaper than re-keying).
        self._keyed = hashlib.blake2b(key=secret, digest_size=self.COOKIE_BYTES)
        self._fillers: dict[int, bytes] = {}  # payload size -> the pattern after the cookie

    def cookie(self, key: MatchKey) -> bytes:
        """The cookie for a probe with this key (8 bytes of keyed BLAKE2b)."""
        kind, remote, a, b = key
        hasher = self._keyed.copy()
        hasher.update(_COOKIE_FIELDS.pack(kind, a, b) + remote)
        return hasher.digest()

    def echo_payload(self, key: MatchKey, size: int) -> bytes:
        """An echo payload of ``size`` bytes that starts with the cookie.

        The rest is the iputils-style incrementing pattern, so captures look familiar.
        Payloads shorter than the cookie carry a truncated cookie.
        """
        cookie = self.cookie(key)
        if size <= len(cookie):
            return cookie[:size]
        filler = self._fillers.get(size)
        if filler is None:
            filler = self._fillers[size] = bytes(i & 0xFF for i in range(len(cookie), size))
        return cookie + filler

    def verify_echo(self, key: MatchKey, payload: bytes | memoryview, quoted: bool = False) -> bool:
        """True when ``payload`` carries our cookie.

        An echo reply returns the whole payload, so it must hold the whole cookie (a
        probe sent with fewer payload bytes is registered unauthenticated instead). A
        quote in an ICMP error may hold fewer bytes than were sent (RFC 792 guarantees
        none): the bytes that are present must match.
        """
        present = payload[: self.COOKIE_BYTES]  # (compare_digest takes any bytes-like)
        if not quoted and len(present) < self.COOKIE_BYTES:
            return False
        return compare_digest(present, self.cookie(key)[: len(present)])

    @property
    def ident_prefix(self) -> int:
        """High byte shared by every identifier this transport hands out, so a kernel
        filter can drop other programs' echo replies before they wake us."""
        return self._ident_prefix

    def new_ident(self) -> int:
        """A 16-bit ICMP identifier: the transport's prefix and a counter (which wraps
        after 256; keys also hold the remote address, so reuse collides only for two
        concurrent probes of one host)."""
        self._ident_counter = (self._ident_counter + 1) & 0xFF
        return self._ident_prefix << 8 | self._ident_counter
