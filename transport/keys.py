"""Match keys of sent packets and of replies, and the cookies that authenticate replies.

A match key is a plain tuple ``(kind, remote, ident, seq)``: ``kind`` names the probe
protocol, ``remote`` is the probed address as packed bytes, ``ident``/``seq`` are the
protocol's identifying numbers. ``key_of_sent`` and ``key_of_reply_*`` must agree: the
reply to a packet (or the ICMP error quoting it) yields the key of that packet.

The reply functions run on every packet the raw sockets see, most of them someone
else's, so they read a few bytes and build nothing but the key. Malformed packets
raise MalformedPacket (counted by the demultiplexer); foreign ones return None.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct

from rawprobe.errors import MalformedPacket

KIND_ECHO = 1

MatchKey = tuple[int, bytes, int, int]

_ICMP4_ECHO_REPLY = 0
_ICMP4_ECHO_REQUEST = 8
_ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
_ICMP6_ECHO_REQUEST = 128
_ICMP6_ECHO_REPLY = 129
_ICMP6_ERRORS = frozenset((1, 2, 3, 4))
_PROTO_ICMP = 1
_PROTO_ICMPV6 = 58

_IDENT_SEQ = struct.Struct("!HH")


def key_of_sent(packet: bytes) -> MatchKey:
    """Key of an outgoing IPv4 or IPv6 packet (full IP header included)."""
    try:
        version = packet[0] >> 4
        if version == 4:
            ihl = (packet[0] & 0x0F) * 4
            if packet[9] == _PROTO_ICMP and packet[ihl] == _ICMP4_ECHO_REQUEST:
                ident, seq = _IDENT_SEQ.unpack_from(packet, ihl + 4)
                return (KIND_ECHO, packet[16:20], ident, seq)
        elif version == 6 and packet[6] == _PROTO_ICMPV6 and packet[40] == _ICMP6_ECHO_REQUEST:
            ident, seq = _IDENT_SEQ.unpack_from(packet, 44)
            return (KIND_ECHO, packet[24:40], ident, seq)
    except (IndexError, struct.error) as exc:
        raise MalformedPacket("packet too short for a match key") from exc
    raise MalformedPacket("no match key: not a probe this transport knows how to send")


def key_of_reply_v4(packet: bytes) -> MatchKey | None:
    """Key of an IPv4 packet read from a raw ICMP socket (IP header included).

    Echo replies give the key directly; ICMP errors give the key of the packet they
    quote, read through the quoted IP header (only 8 transport bytes are guaranteed).
    """
    try:
        ihl = (packet[0] & 0x0F) * 4
        icmp_type = packet[ihl]
        if icmp_type == _ICMP4_ECHO_REPLY:
            ident, seq = _IDENT_SEQ.unpack_from(packet, ihl + 4)
            return (KIND_ECHO, packet[12:16], ident, seq)
        if icmp_type in _ICMP4_ERRORS:
            quoted = ihl + 8
            quoted_ihl = (packet[quoted] & 0x0F) * 4
            if quoted_ihl < 20:
                raise MalformedPacket("quoted IPv4 header with IHL < 5")
            inner = quoted + quoted_ihl
            if packet[quoted + 9] == _PROTO_ICMP and packet[inner] == _ICMP4_ECHO_REQUEST:
                ident, seq = _IDENT_SEQ.unpack_from(packet, inner + 4)
                return (KIND_ECHO, packet[quoted + 16 : quoted + 20], ident, seq)
        return None
    except (IndexError, struct.error) as exc:
        raise MalformedPacket("truncated ICMP packet") from exc


def key_of_reply_v6(message: bytes, source: bytes) -> MatchKey | None:
    """Key of an ICMPv6 message read from a raw socket (no IPv6 header; ``source`` is
    the packed sender address from recvmsg)."""
    try:
        icmp_type = message[0]
        if icmp_type == _ICMP6_ECHO_REPLY:
            ident, seq = _IDENT_SEQ.unpack_from(message, 4)
            return (KIND_ECHO, source, ident, seq)
        if icmp_type in _ICMP6_ERRORS:
            # Quoted IPv6 header at offset 8; extension headers before ICMPv6 are
            # not skipped here because our own probes never carry any.
            if message[8] >> 4 != 6:
                raise MalformedPacket("quoted packet is not IPv6")
            if message[8 + 6] == _PROTO_ICMPV6 and message[48] == _ICMP6_ECHO_REQUEST:
                ident, seq = _IDENT_SEQ.unpack_from(message, 52)
                return (KIND_ECHO, message[32:48], ident, seq)
        return None
    except (IndexError, struct.error) as exc:
        raise MalformedPacket("truncated ICMPv6 packet") from exc


def echo_payload_v4(packet: bytes) -> bytes:
    """The echo payload an IPv4 echo reply carries, or that an ICMP error quotes.

    Call only on packets whose key matched (``key_of_reply_v4`` accepted them)."""
    ihl = (packet[0] & 0x0F) * 4
    if packet[ihl] == _ICMP4_ECHO_REPLY:
        return packet[ihl + 8 :]
    quoted = ihl + 8
    return packet[quoted + (packet[quoted] & 0x0F) * 4 + 8 :]


def echo_payload_v6(message: bytes) -> bytes:
    """The echo payload an ICMPv6 echo reply carries, or that an ICMPv6 error quotes."""
    if message[0] == _ICMP6_ECHO_REPLY:
        return message[8:]
    return message[56:]


class Cookies:
    """Keyed hashes that prove a reply answers a probe this transport sent.

    The secret is per transport, so replies to other processes (or other transports in
    this process) and packets forged by someone who cannot see our traffic fail the
    check. The cookie travels in the echo payload, which the reply echoes back.
    """

    COOKIE_BYTES = 8

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def cookie(self, key: MatchKey) -> bytes:
        """The cookie for a probe with this key (8 bytes)."""
        kind, remote, ident, seq = key
        data = struct.pack("!BHH", kind, ident, seq) + remote
        return hashlib.blake2b(data, key=self._secret, digest_size=self.COOKIE_BYTES).digest()

    def echo_payload(self, key: MatchKey, size: int) -> bytes:
        """An echo payload of ``size`` bytes that starts with the cookie.

        The rest is the iputils-style incrementing pattern, so captures look familiar.
        Payloads shorter than the cookie carry a truncated cookie.
        """
        cookie = self.cookie(key)
        if size <= len(cookie):
            return cookie[:size]
        filler = bytes(i & 0xFF for i in range(len(cookie), size))
        return cookie + filler

    def verify_echo(self, key: MatchKey, payload: bytes | memoryview) -> bool:
        """True when ``payload`` (an echoed or quoted echo payload) carries our cookie.

        A quote may hold fewer payload bytes than were sent (RFC 792 guarantees none);
        the bytes that are present must match.
        """
        present = bytes(payload[: self.COOKIE_BYTES])
        return hmac.compare_digest(present, self.cookie(key)[: len(present)])

    @staticmethod
    def new_ident() -> int:
        """A random 16-bit ICMP identifier."""
        return secrets.randbits(16)
