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

**Templates.** Every probe of a flow is one template with its TTL (hop limit) and
identity fields patched: the header words that never change are summed once per
FlowProbes (or per flow), and a probe's checksums are that sum plus the words it sets,
folded (RFC 1071's sum is the integer value modulo 0xFFFF, so a whole 32-bit or 64-bit
field adds in at once; the Paris compensating word is RFC 1624's eqn. 3). A probe then
costs one keyed hash (ICMP's cookie) and one ``struct`` pack, no parse: its key is
made from the fields it set, not read back from its bytes.
"""

from __future__ import annotations

import functools
import socket
import struct
from typing import NamedTuple

from rawprobe.errors import UsageError
from rawprobe.probes.machine import Outgoing
from rawprobe.transport.base import new_tuple
from rawprobe.transport.keys import KIND_ECHO, KIND_TCP, KIND_UDP, Cookies, MatchKey
from rawprobe.transport.wire.checksum import checksum_of_sum, ones_complement_sum
from rawprobe.transport.wire.ipv4 import DF
from rawprobe.transport.wire.tcp import SYN

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
_NAMES: dict[int, str] = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}
_COOKIE = Cookies.COOKIE_BYTES
#: Bytes an ICMP/UDP probe's payload needs: cookie (ICMP) and the compensating word.
_MIN_PAYLOAD: dict[str, int] = {"icmp": _COOKIE + 2, "udp": 2, "tcp": 0}
_SOURCE_PORTS = 28232  # 32768..60999, Linux's default ephemeral range
#: Steps between the UDP checksums of consecutive probes (prime to 0xFFFD = 13 * 71 * 71,
#: so 0xFFFD consecutive probe numbers still get distinct checksums).
_SPREAD = 40503
_TCP_WINDOW = 5840
_TCP_FLAGS_WORD = 5 << 12 | SYN  # data offset 5 (no options), SYN

# What a probe's pack fills: IPv4's header up to the addresses (first word, ID,
# flags/fragment, TTL, protocol, checksum); IPv6's hop limit sits between its
# first 7 bytes and the addresses.
_IP4 = struct.Struct("!IHHBBH")
_ECHO = struct.Struct(f"!BBHHH{_COOKIE}sH")  # type, code, checksum, ident, seq, cookie, word
_UDP = struct.Struct("!HHHHH")  # ports, length, checksum, then the payload's first word
_TCP = struct.Struct("!HHIIHHHH")  # ports, seq, ack, offset/flags, window, checksum, urgent
_BYTE = [bytes((value,)) for value in range(256)]


def source_port(flow_id: int) -> int:
    """The UDP/TCP source port of a flow id."""
    return 32768 + (flow_id & 0xFFFF) % _SOURCE_PORTS


@functools.cache
def _pattern(start: int, stop: int) -> tuple[bytes, int]:
    """traceroute's payload pattern from ``start`` to ``stop`` (each byte the low byte
    of its count) and its one's complement sum, as the words of an even offset."""
    pattern = bytes(i & 0xFF for i in range(start, stop))
    return pattern, ones_complement_sum(pattern)


def _compensating(checksum: int, wanted: int) -> int:
    """The word that, written where the message had a zero word, turns its checksum
    from ``checksum`` into ``wanted`` (RFC 1624 eqn. 3 solved for the new word:
    ``checksum.compensating_word``, inline on the per-probe path)."""
    total = (checksum ^ 0xFFFF) + wanted
    return ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF


class _Flow(NamedTuple):
    """What one flow id fixes, computed once per flow."""

    sport: int
    icmp_checksum: int  # the constant ICMP checksum (never 0 or 0xFFFF)
    tcp_base: int  # secret base of the TCP sequence numbers
    udp_base: int  # secret base of the UDP checksums
    ip_head: bytes  # IPv6: the header's first 7 bytes (the flow label is the flow id)
    #: Sum of the transport words a probe does not set (UDP: with the port words).
    transport_sum: int


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
        self.family = family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._cookie = cookies.cookie
        try:
            self._remote = socket.inet_pton(family, address)
            self._addresses = socket.inet_pton(family, source) + self._remote
        except OSError as exc:
            raise UsageError(
                f"not a pair of {_NAMES[family]} addresses: {source!r}, {address!r}"
            ) from exc
        self._dport = port
        self.ident = ident & 0xFFFF
        self._tos = tos
        self._flags = DF << 13 if df else 0
        self._proto = _PROTO[method] if method != "icmp" else _ICMP_PROTO[family]
        payload_size = 0
        if method != "tcp":
            size = packet_size or DEFAULT_PACKET_SIZE[family]
            header = _IP_HEADER[family] + 8
            payload_size = max(size - header, _MIN_PAYLOAD[method])
            self.packet_size = header + payload_size
        else:
            self.packet_size = _IP_HEADER[family] + 20
        self._transport_length = length = self.packet_size - _IP_HEADER[family]
        # IPv4: the header's first word, and the sum of its words but TTL, ID, checksum.
        self._ip_first = 0x45 << 24 | tos << 16 | self.packet_size
        self._ip_sum = (self._ip_first >> 16) + (self._ip_first & 0xFFFF) + self._flags
        addresses_sum = int.from_bytes(self._addresses, "big")  # (folded later)
        self._ip_sum += self._proto + addresses_sum
        # The pseudo-header (IPv4's ICMP has none): addresses, protocol, length.
        self._pseudo_sum = 0
        if family == socket.AF_INET6 or method != "icmp":
            self._pseudo_sum = addresses_sum + self._proto + length
        # The payload after the words a probe sets (ICMP: the cookie and the
        # compensating word; UDP: the compensating word), and its sum.
        if method == "icmp":
            self._echo_type = 8 if family == socket.AF_INET else 128
            self._rest, rest_sum = _pattern(_COOKIE + 2, payload_size)
            # The echo request's words but checksum, sequence, cookie and compensating
            # word (ICMPv6 adds the pseudo-header).
            self._echo_sum = (self._echo_type << 8) + self.ident + self._pseudo_sum + rest_sum
        elif method == "udp":
            self._first_word = 0x4041  # the payload's first word (classic mode keeps it)
            self._rest, self._rest_sum = _pattern(0x42, 0x40 + payload_size)
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
        flow = self._flows.get(flow_id)
        if flow is None:
            flow = self._flow(flow_id)
        if self.method == "icmp":
            key, ident, message = self._icmp(flow, number)
        elif self.method == "udp":
            key, ident, message = self._udp(flow, number)
        else:
            key, ident, message = self._tcp(flow, number)
        if self.family == socket.AF_INET:
            checksum = checksum_of_sum(self._ip_sum + (ttl << 8) + ident)
            head = _IP4.pack(self._ip_first, ident, self._flags, ttl, self._proto, checksum)
            packet = b"".join((head, self._addresses, message))
        else:
            packet = b"".join((flow.ip_head, _BYTE[ttl], self._addresses, message))
        return new_tuple(Outgoing, (key, packet, (), True))  # type: ignore[no-any-return]

    # -- per flow --------------------------------------------------------------------

    def _flow(self, flow_id: int) -> _Flow:
        flow_id &= 0xFFFF
        flow = self._flows.get(flow_id)
        if flow is None:
            flow = self._flows[flow_id] = self._new_flow(flow_id)
        return flow

    def _new_flow(self, flow_id: int) -> _Flow:
        sport = source_port(flow_id)
        seed = self._cookie((KIND_TCP, self._remote, sport << 16 | self._dport, 0))
        length = self._transport_length
        ip_head = b""
        if self.family == socket.AF_INET6:
            first = 6 << 28 | self._tos << 20 | flow_id
            ip_head = struct.pack("!IHB", first, length, self._proto)
        transport_sum = 0
        if self.method == "udp":  # ports, length (and the pseudo-header) and the payload
            transport_sum = self._pseudo_sum + sport + length + self._rest_sum
        elif self.method == "tcp":
            transport_sum = self._pseudo_sum + self._dport + _TCP_FLAGS_WORD + _TCP_WINDOW
        return _Flow(
            sport=sport,
            icmp_checksum=1 + (flow_id * _SPREAD) % 0xFFFD,
            tcp_base=int.from_bytes(seed[:4], "big"),
            udp_base=int.from_bytes(seed[4:6], "big"),
            ip_head=ip_head,
            transport_sum=transport_sum,
        )

    # -- per method: (key, the IPv4 ID, the transport message) ---------------------------

    def _icmp(self, flow: _Flow, number: int) -> tuple[MatchKey, int, bytes]:
        seq = number & 0xFFFF
        key: MatchKey = (KIND_ECHO, self._remote, self.ident, seq)
        cookie = self._cookie(key)
        # The checksum with a zero compensating word (a cookie's 64 bits add at once).
        checksum = checksum_of_sum(self._echo_sum + seq + int.from_bytes(cookie, "big"))
        word = 0
        if self.paris:
            word = _compensating(checksum, flow.icmp_checksum)
            checksum = flow.icmp_checksum
        message = _ECHO.pack(self._echo_type, 0, checksum, self.ident, seq, cookie, word)
        return key, seq, message + self._rest

    def _udp(self, flow: _Flow, number: int) -> tuple[MatchKey, int, bytes]:
        dport = self._dport
        if self.paris:
            checksum = checksum_of_sum(flow.transport_sum + dport) or 0xFFFF
            # Never 0 (none) or 0xFFFF; spread, so that the constant change a NAT makes
            # to every checksum (through the pseudo-header) turns none into another's.
            wanted = 1 + (flow.udp_base + number * _SPREAD) % 0xFFFD
            word = _compensating(checksum, wanted)
            checksum = wanted
        else:
            dport = (self._dport + number) & 0xFFFF or 1
            word = self._first_word
            checksum = checksum_of_sum(flow.transport_sum + dport + word) or 0xFFFF
        key: MatchKey = (KIND_UDP, self._remote, flow.sport << 16 | dport, checksum)
        header = _UDP.pack(flow.sport, dport, self._transport_length, checksum, word)
        return key, checksum, header + self._rest

    def _tcp(self, flow: _Flow, number: int) -> tuple[MatchKey, int, bytes]:
        seq = (flow.tcp_base + number) & 0xFFFFFFFF
        sport = flow.sport
        if not self.paris:
            sport = 32768 + (flow.sport - 32768 + number) % _SOURCE_PORTS
        checksum = checksum_of_sum(flow.transport_sum + sport + seq)
        key: MatchKey = (KIND_TCP, self._remote, sport << 16 | self._dport, seq)
        message = _TCP.pack(sport, self._dport, seq, 0, _TCP_FLAGS_WORD, _TCP_WINDOW, checksum, 0)
        return key, seq & 0xFFFF, message
