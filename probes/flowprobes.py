"""The probe packet for a (TTL, flow id) pair: ICMP, UDP and TCP over IPv4 and IPv6.
Pure: bytes out, no socket, no clock.

A **flow id** (0..65535) names the values a per-flow load balancer hashes, and only
those. Linux's multipath hash (``fib_multipath_hash_policy`` 1: L4) reads addresses,
protocol and ports; over IPv6 the L3 policy (0, the default) reads the flow label and a
custom policy (3) may read both. So a flow id sets:

=======  ============================================  ==================================
method   what the flow id sets                          what it leaves alone
=======  ============================================  ==================================
udp      source port ``32768 + flow % 28232``           destination port
tcp      source port ``32768 + flow % 28232``           destination port
icmp     the checksum, held constant for the flow       identifier (the transport's own:
         (Linux does not hash it; other balancers do)   its socket filter admits no other)
=======  ============================================  ==================================

and over IPv6 also the flow label (``= flow``), for every method: the one field that can
move ICMPv6 probes between paths. ICMPv4 flows all take one path through a Linux
router hashing L4 (or L3): it reads no ICMP field. Everything that tells probes apart — the **probe
number** — travels where balancers do not look (Paris traceroute): the ICMP sequence
(a payload word keeps the checksum constant, RFC 1624), the UDP checksum (set through a
payload word), the TCP sequence number (keyed by the transport's cookie), and over
IPv4 also the IP identification. So every probe of one flow id follows one path, and
probes of other flow ids may take others (the multipath discovery algorithm varies
them).

``paris=False`` is the original traceroute instead: the probe number moves the UDP
destination port, the TCP source port, or the ICMP sequence without compensation, so
each probe may take another path.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from rawprobe.probes.machine import Outgoing
from rawprobe.transport.keys import KIND_ECHO, KIND_TCP, Cookies, MatchKey, key_of_sent
from rawprobe.transport.wire.checksum import (
    checksum_update16,
    compensating_word,
    internet_checksum,
    ones_complement_sum,
    pseudo_header,
)
from rawprobe.transport.wire.ipv4 import DF, IPv4Header, build_ipv4
from rawprobe.transport.wire.ipv6 import IPv6Header, build_ipv6
from rawprobe.transport.wire.tcp import SYN, TcpHeader, build_tcp
from rawprobe.transport.wire.udp import UdpHeader, build_udp

__all__ = [
    "DEFAULT_PACKET_SIZE",
    "FLOW_IDS",
    "FlowProbes",
    "source_port",
]

#: traceroute's default packet sizes (whole IP packet, bytes) for ICMP and UDP.
DEFAULT_PACKET_SIZE: dict[int, int] = {socket.AF_INET: 60, socket.AF_INET6: 80}
#: How many flow ids there are (16 bits); UDP and TCP have 28232 distinct source ports.
FLOW_IDS = 0x10000
_IP_HEADER: dict[int, int] = {socket.AF_INET: 20, socket.AF_INET6: 40}
_ICMP_PROTO: dict[int, int] = {socket.AF_INET: 1, socket.AF_INET6: 58}
_PROTO: dict[str, int] = {"udp": 17, "tcp": 6}
_COOKIE = Cookies.COOKIE_BYTES
#: Bytes an ICMP/UDP probe's payload needs: cookie (ICMP) and the compensating word.
_MIN_PAYLOAD: dict[str, int] = {"icmp": _COOKIE + 2, "udp": 2, "tcp": 0}
_WORD = struct.Struct("!H")
_ECHO_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_SOURCE_PORTS = 28232  # 32768..60999, Linux's default ephemeral range
#: Steps between the UDP checksums of consecutive probes (prime to 0xFFFD = 13 * 71 * 71,
#: so 0xFFFD consecutive probe numbers still get distinct checksums).
_SPREAD = 40503


def source_port(flow_id: int) -> int:
    """The UDP/TCP source port of a flow id."""
    return 32768 + (flow_id & 0xFFFF) % _SOURCE_PORTS


class _Flow(NamedTuple):
    """What one flow id fixes, computed once per flow."""

    sport: int
    icmp_checksum: int  # the constant ICMP checksum (never 0 or 0xFFFF)
    tcp_base: int  # secret base of the TCP sequence numbers
    udp_base: int  # secret base of the UDP checksums
    ip_template: bytes  # the IP header with TTL 0 (and IPv4 ID 0)


class FlowProbes:
    """Probe packets to one address from one source, for any (TTL, flow id, probe
    number). ``packet(ttl, flow_id, number)`` gives an Outgoing whose key the
    transport's demultiplexer will find in the reply (or the ICMP error's quote).

    ``port`` is the destination port (UDP and TCP); ``packet_size`` the whole IP
    packet for ICMP and UDP (None: 60 bytes over IPv4, 80 over IPv6, like traceroute;
    at least the header and the payload bytes the identity needs); TCP probes are bare
    SYNs. Probe numbers should not repeat within a flow while replies may still come
    (they are 16 bits in the ICMP sequence and the UDP checksum). ``ident`` is the ICMP
    identifier of every probe (``Cookies.new_ident()``: the transport admits echo
    replies to its own identifiers only). ``df`` sets IPv4's don't-fragment bit (path MTU
    discovery). Instances of several sizes with the same arguments make probes of the
    same flows (the flow's fields do not depend on the size).
    """

    def __init__(
        self,
        *,
        source: str,
        address: str,
        method: str,
        cookies: Cookies,
        port: int,
        ident: int = 0,
        paris: bool = True,
        packet_size: int | None = None,
        tos: int = 0,
        df: bool = False,
    ) -> None:
        self.source = source
        self.address = address
        self.method = method
        self.paris = paris
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._cookies = cookies
        self._remote = socket.inet_pton(self.family, address)
        self._dport = port
        self.ident = ident & 0xFFFF
        self._tos = tos
        self._flags = DF if df else 0
        self._proto = _PROTO[method] if method != "icmp" else _ICMP_PROTO[self.family]
        self._payload_size = 0
        if method != "tcp":
            size = packet_size or DEFAULT_PACKET_SIZE[self.family]
            header = _IP_HEADER[self.family] + 8
            self._payload_size = max(size - header, _MIN_PAYLOAD[method])
            self.packet_size = header + self._payload_size
        else:
            self.packet_size = _IP_HEADER[self.family] + 20
        transport_length = self.packet_size - _IP_HEADER[self.family]
        self._transport_length = transport_length
        self._pseudo_sum = 0
        if self.family == socket.AF_INET6 or method != "icmp":
            pseudo = pseudo_header(source, address, self._proto, transport_length)
            self._pseudo_sum = ones_complement_sum(pseudo)
        self._echo_type = 8 if self.family == socket.AF_INET else 128
        # The echo request's header words (type, identifier; ICMPv6 adds the pseudo-header).
        self._echo_sum = (self._echo_type << 8) + self.ident + self._pseudo_sum
        self._flows: dict[int, _Flow] = {}

    def flow(self, flow_id: int) -> tuple[int, int]:
        """What the flow's probes hold constant, as a trace reports it: (identifier,
        checksum) for ICMP (checksum 0 outside Paris mode: it varies), (source port,
        destination port) for UDP and TCP."""
        flow = self._flow(flow_id)
        if self.method == "icmp":
            return (self.ident, flow.icmp_checksum if self.paris else 0)
        return (flow.sport, self._dport)

    def packet(self, ttl: int, flow_id: int, number: int) -> Outgoing:
        """Probe ``number`` of flow ``flow_id`` with this TTL (hop limit)."""
        flow = self._flow(flow_id)
        if self.method == "icmp":
            transport, ident = self._icmp(flow, number)
        elif self.method == "udp":
            transport, ident = self._udp(flow, number)
        else:
            transport, ident = self._tcp(flow, number)
        packet = self._with_ttl(flow.ip_template, ttl, ident & 0xFFFF) + transport
        return Outgoing(key_of_sent(packet), packet)

    # -- per flow --------------------------------------------------------------------

    def _flow(self, flow_id: int) -> _Flow:
        flow_id &= 0xFFFF
        flow = self._flows.get(flow_id)
        if flow is None:
            flow = self._flows[flow_id] = self._new_flow(flow_id)
        return flow

    def _new_flow(self, flow_id: int) -> _Flow:
        sport = source_port(flow_id)
        seed = self._cookies.cookie((KIND_TCP, self._remote, sport << 16 | self._dport, 0))
        return _Flow(
            sport=sport,
            icmp_checksum=1 + (flow_id * 40503) % 0xFFFD,
            tcp_base=int.from_bytes(seed[:4], "big"),
            udp_base=int.from_bytes(seed[4:6], "big"),
            ip_template=self._ip_header(flow_label=flow_id),
        )

    def _ip_header(self, flow_label: int) -> bytes:
        """The IP header of every probe of a flow, built once with TTL 0 and IP ID 0."""
        placeholder = bytes(self._transport_length)
        if self.family == socket.AF_INET:
            header4 = IPv4Header(
                src=self.source, dst=self.address, protocol=self._proto, ttl=0,
                tos=self._tos, flags=self._flags,
            )  # fmt: skip
            return build_ipv4(header4, placeholder)[:20]
        header6 = IPv6Header(
            src=self.source, dst=self.address, next_header=self._proto, hop_limit=0,
            traffic_class=self._tos, flow_label=flow_label,
        )  # fmt: skip
        return build_ipv6(header6, placeholder)[:40]

    def _with_ttl(self, template: bytes, ttl: int, ident: int) -> bytes:
        """The template with this TTL (and IPv4 ID), checksum updated (RFC 1624)."""
        t = template
        if self.family == socket.AF_INET6:
            return t[:7] + bytes((ttl,)) + t[8:]
        checksum = _WORD.unpack_from(t, 10)[0]
        checksum = checksum_update16(checksum, self._proto, ttl << 8 | self._proto)
        checksum = checksum_update16(checksum, 0, ident)
        return b"".join((t[:4], _WORD.pack(ident), t[6:8], bytes((ttl,)), t[9:10],
                         _WORD.pack(checksum), t[12:]))  # fmt: skip

    # -- per method ------------------------------------------------------------------

    def _icmp(self, flow: _Flow, number: int) -> tuple[bytes, int]:
        seq = number & 0xFFFF
        key: MatchKey = (KIND_ECHO, self._remote, self.ident, seq)
        payload = bytearray(self._cookies.echo_payload(key, self._payload_size))
        payload[_COOKIE : _COOKIE + 2] = b"\x00\x00"
        # The checksum of the message with a zero checksum field: header words (type,
        # identifier, sequence; ICMPv6 adds the pseudo-header) plus the payload.
        checksum = internet_checksum(payload, self._echo_sum + seq)
        if self.paris:
            word = compensating_word(checksum, flow.icmp_checksum)
            payload[_COOKIE : _COOKIE + 2] = _WORD.pack(word)
            checksum = flow.icmp_checksum
        message = _ECHO_HEADER.pack(self._echo_type, 0, checksum, self.ident, seq) + payload
        return message, seq

    def _udp(self, flow: _Flow, number: int) -> tuple[bytes, int]:
        payload = bytearray(i & 0xFF for i in range(0x40, 0x40 + self._payload_size))
        dport = self._dport
        if self.paris:
            payload[0:2] = b"\x00\x00"
        else:
            dport = (self._dport + number) & 0xFFFF or 1
        zero = build_udp(UdpHeader(flow.sport, dport, checksum=0), bytes(payload),
                         src=self.source, dst=self.address)  # fmt: skip
        checksum = internet_checksum(zero, self._pseudo_sum) or 0xFFFF
        if self.paris:
            # Never 0 (none) or 0xFFFF; spread, so that the constant change a NAT makes
            # to every checksum (through the pseudo-header) turns none into another's.
            wanted = 1 + (flow.udp_base + number * _SPREAD) % 0xFFFD
            payload[0:2] = _WORD.pack(compensating_word(checksum, wanted))
            checksum = wanted
        header = UdpHeader(flow.sport, dport, checksum=checksum)
        return build_udp(header, bytes(payload), src=self.source, dst=self.address), checksum

    def _tcp(self, flow: _Flow, number: int) -> tuple[bytes, int]:
        seq = (flow.tcp_base + number) & 0xFFFFFFFF
        sport = flow.sport
        if not self.paris:
            sport = 32768 + (flow.sport - 32768 + number) % _SOURCE_PORTS
        header = TcpHeader(sport, self._dport, seq=seq, flags=SYN, window=5840, checksum=0)
        zero = build_tcp(header, b"", src=self.source, dst=self.address)
        checksum = internet_checksum(zero, self._pseudo_sum)
        return zero[:16] + _WORD.pack(checksum) + zero[18:], seq
