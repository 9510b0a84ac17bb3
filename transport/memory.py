"""A simulated network behind the transport interface, for tests and dry runs.

MemoryTransport accepts the same packets as RawTransport and feeds replies through the
same Demux, so probes, keys, cookies and counters are exercised exactly as on the wire.
The network is a table of hosts behind a chain of routers, each host with its delay,
loss, duplication, ICMP errors, TCP ports (open, dropped, rejected; the rest closed),
UDP services, and the MTUs on its path (links that answer "fragmentation needed" /
"packet too big", a black hole that drops big packets silently). ``inject`` delivers
arbitrary (forged, foreign, malformed) packets.
Time is the event loop's clock, so trio's autojump clock makes long probes instant.
"""

from __future__ import annotations

import errno
import hashlib
import random
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import anyio.lowlevel

from rawprobe.errors import MalformedPacket, TransportClosed
from rawprobe.transport.base import ALL_PROTOCOLS, Sent
from rawprobe.transport.exchange import TransportBase
from rawprobe.transport.keys import Cookies
from rawprobe.transport.wire.icmp import build_echo, build_icmp
from rawprobe.transport.wire.icmp_table import ECHO_REQUEST, PORT_UNREACHABLE
from rawprobe.transport.wire.icmpv6 import build_echo6, build_icmpv6
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.ipv6 import skip_extension_headers
from rawprobe.transport.wire.tcp import ACK, RST, SYN, TcpHeader, build_tcp
from rawprobe.transport.wire.udp import UdpHeader, build_udp


def _loop_ns() -> int:
    """The event loop's clock in nanoseconds: the simulated network's only clock."""
    return int(anyio.current_time() * 1e9)


_V4: int = socket.AF_INET
_V6: int = socket.AF_INET6
#: (ICMP type, code) per family for the errors the network sends (and PORT_UNREACHABLE).
_TIME_EXCEEDED: dict[int, tuple[int, int]] = {_V4: (11, 0), _V6: (3, 0)}
_ADMIN_PROHIBITED: dict[int, tuple[int, int]] = {_V4: (3, 13), _V6: (1, 1)}


@dataclass
class SimHost:
    """How one simulated address behaves.

    ``error`` makes the last router answer every probe with that (type, code) ICMP
    error instead of delivering it. ``quote_bytes`` limits how much of the probe an
    ICMP error quotes (8 transport bytes is the RFC 792 minimum; None quotes it whole).
    ``paths`` > 1 models per-flow load balancing: the routers at ``hops`` - 1 differ by
    a hash of the flow (addresses, protocol, ports or ICMP identifier and checksum).
    ``mtu_links`` are (router, MTU) pairs: the router at that hop (1-based) forwards
    packets up to MTU bytes, and answers larger ones that may not be fragmented (IPv4
    DF, every IPv6 packet) with "fragmentation needed" / "packet too big"; larger IPv4
    packets without DF pass (as if fragmented). ``black_hole`` (router, size): that
    router silently drops every packet over ``size`` bytes it forwards.

    ``routes`` models it hop by hop, as Linux routers do (it overrides ``hops`` and
    ``paths``): each router, named by the address its errors come from, with its next
    hops (``""`` is the client; no next hop: the host itself is next). A router with
    several picks one by a keyed hash of what Linux's L4 policy reads: addresses,
    protocol and, for TCP and UDP, the ports; over IPv6 also the flow label (never an
    ICMP field). The key is the network's ``seed`` and the router, so a new seed moves
    flows, like ``fib_multipath_hash_seed`` in the lab. ``silent_hops`` still counts TTLs.
    """

    alive: bool = True
    delay_s: float = 0.001
    loss: float = 0.0
    duplicates: int = 0
    hops: int = 3
    reply_ttl: int = 64
    error: tuple[int, int] | None = None
    quote_bytes: int | None = None
    open_ports: frozenset[int] = frozenset()
    dropped_ports: frozenset[int] = frozenset()
    rejected_ports: frozenset[int] = frozenset()
    udp_services: frozenset[int] = frozenset()
    silent_hops: frozenset[int] = frozenset()
    paths: int = 1
    mtu_links: tuple[tuple[int, int], ...] = ()
    black_hole: tuple[int, int] | None = None
    routes: Mapping[str, Sequence[str]] | None = None


@dataclass
class MemoryNetwork:
    """Hosts behind ``routers`` (one per hop); the client's addresses are ``source_*``."""

    source_v4: str = "198.18.1.2"
    source_v6: str = "2001:db8:1::2"
    routers_v4: Sequence[str] = ("198.18.1.1", "198.18.2.2", "198.18.3.2")
    routers_v6: Sequence[str] = ("2001:db8:1::1", "2001:db8:2::2", "2001:db8:3::2")
    hosts: dict[str, SimHost] = field(default_factory=dict)
    seed: int = 0
    #: Send a forged echo reply (right ident and seq, wrong cookie) before each real one.
    forge_replies: bool = False
    #: Outages: (start, end) on the event-loop clock; a probe sent or an answer due
    #: inside one is lost (a link down, a DROP rule), whatever the host.
    outages: list[tuple[float, float]] = field(default_factory=list)
    #: The client's interface MTU: a longer packet is refused at send (EMSGSIZE).
    local_mtu: int = 1500
    #: Deliver answers at once, inside the send (no delay, no task per answer): answers
    #: come in the order of the probes, and a test over many probes runs fast.
    instant: bool = False

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add(self, address: str, **behaviour: object) -> SimHost:
        host = SimHost(**behaviour)  # type: ignore[arg-type]
        self.hosts[address] = host
        return host

    def cut(self, start_s: float, length_s: float) -> None:
        """An outage of ``length_s`` seconds from ``start_s`` (event-loop clock)."""
        self.outages.append((start_s, start_s + length_s))

    def is_down(self, now: float) -> bool:
        return any(start <= now < end for start, end in self.outages)

    def router(self, family: int, hop: int, path: int = 0) -> str:
        """Address of the router at ``hop`` (1-based); other paths get other addresses."""
        routers = self.routers_v4 if family == _V4 else self.routers_v6
        address = routers[(hop - 1) % len(routers)]
        if path == 0:
            return address
        packed = bytearray(socket.inet_pton(family, address))
        packed[-2] ^= path  # a sibling router on another path
        return socket.inet_ntop(family, bytes(packed))


#: A reply the network sends back: (data, IPv6 source or None for IPv4, hop limit,
#: protocol). IPv4 data is the whole packet, IPv6 data the upper layer only.
_Delivery = tuple[bytes, str | None, int, int]
_Answer = tuple[float, _Delivery]


@dataclass(frozen=True)
class _Probe:
    family: int
    src: str
    dst: str
    ttl: int
    protocol: int
    packet: bytes
    header_length: int  # offset of the transport header in ``packet``

    @property
    def transport(self) -> bytes:
        return self.packet[self.header_length :]


def flow_path(routes: Mapping[str, Sequence[str]], seed: int, packet: bytes) -> list[str]:
    """The routers an IP ``packet`` crosses through ``routes`` (see ``SimHost.routes``),
    in order: hop by hop, each router with several next hops picks one by a keyed hash
    (key: ``seed`` and the router) of what Linux's L4 policy reads: addresses,
    protocol, TCP/UDP ports, and over IPv6 the flow label. Pure."""
    probe = _parse(packet)
    fields = [probe.src, probe.dst, str(probe.protocol)]
    if probe.protocol in (6, 17):
        fields.append(probe.transport[0:4].hex())  # the ports
    if probe.family == _V6:
        fields.append(str(int.from_bytes(packet[1:4]) & 0xFFFFF))  # the flow label
    flow = "/".join(fields).encode()
    path: list[str] = []
    at = ""
    for _ in range(255):
        nexts = routes[at]
        if not nexts:
            return path
        if len(nexts) > 1:
            key = f"{seed}/{at}".encode()[:64]
            digest = hashlib.blake2b(flow, key=key, digest_size=8).digest()
            at = nexts[int.from_bytes(digest) % len(nexts)]
        else:
            at = nexts[0]
        path.append(at)
    raise ValueError("the routes loop")


def _parse(packet: bytes) -> _Probe:
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        src = socket.inet_ntop(_V4, packet[12:16])
        dst = socket.inet_ntop(_V4, packet[16:20])
        return _Probe(_V4, src, dst, packet[8], packet[9], packet, ihl)
    if version == 6:
        protocol, offset = skip_extension_headers(packet, 40, packet[6])
        src = socket.inet_ntop(_V6, packet[8:24])
        dst = socket.inet_ntop(_V6, packet[24:40])
        return _Probe(_V6, src, dst, packet[7], protocol, packet, offset)
    raise MalformedPacket("not an IP packet")


class MemoryTransport(TransportBase):
    """The Transport interface over a MemoryNetwork."""

    socket_count = 2

    def __init__(
        self,
        network: MemoryNetwork,
        task_group: anyio.abc.TaskGroup,
        *,
        cookies: Cookies | None = None,
        rate_pps: float = 0.0,
    ) -> None:
        self.network = network
        super().__init__(cookies, self.source_for, rate_pps, anyio.current_time, _loop_ns)
        self.sent_packets: list[bytes] = []
        self._task_group = task_group

    #: A simulated network answers every probe.
    sends = hears = ALL_PROTOCOLS

    def source_for(self, destination: str) -> str:
        if self._closed:
            raise TransportClosed("transport is closed")
        return self.network.source_v6 if ":" in destination else self.network.source_v4

    def interface_mtu(self, destination: str) -> int | None:
        return self.network.local_mtu

    async def send(self, packet: bytes) -> Sent:
        """The one send path (exchange.py: paced, stamped, counted, recorded) for one
        packet, after a checkpoint: every simulated send is an await."""
        await anyio.lowlevel.checkpoint()
        return (await super().send_batch((packet,)))[0]

    async def send_batch(
        self, packets: Sequence[bytes], stamps: list[Sent] | None = None
    ) -> list[Sent]:
        """One ``send`` per packet (an ``instant`` network: one await for the batch)."""
        if stamps is None:
            stamps = []
        if self.network.instant:
            await anyio.lowlevel.checkpoint()
            return await super().send_batch(packets, stamps)
        for packet in packets:
            stamps.append(await self.send(packet))
        return stamps

    def _transmit(self, packet: bytes) -> None:
        """Put ``packet`` on the simulated network: its answers are scheduled."""
        now = anyio.current_time()
        if len(packet) > self.network.local_mtu:
            raise OSError(errno.EMSGSIZE, "Message too long")
        self.sent_packets.append(packet)
        try:
            answers = [] if self.network.is_down(now) else self._answers(_parse(packet))
        except (MalformedPacket, IndexError, ValueError):
            answers = []
        for delay_s, delivery in answers:
            if self.network.instant:
                self.inject(*delivery)
            else:
                self._task_group.start_soon(self._deliver_later, delay_s, delivery)

    def inject(
        self, data: bytes, source: str | None = None, hop_limit: int = 64, protocol: int = 58
    ) -> None:
        """Deliver a packet now as if a socket read it: a whole IPv4 packet, or (with an
        IPv6 ``source``) an IPv6 upper-layer message of ``protocol``."""
        now = anyio.current_time()
        if source is None:
            self._demux.dispatch_v4(data, int(now * 1e9), now)
        else:
            packed = socket.inet_pton(_V6, source)
            self._demux.dispatch_v6(data, packed, hop_limit, int(now * 1e9), now, protocol)

    def close(self) -> None:
        self._closed = True

    async def _deliver_later(self, delay_s: float, delivery: _Delivery) -> None:
        await anyio.sleep(delay_s)
        if not self._closed and not self.network.is_down(anyio.current_time()):
            self.inject(*delivery)

    # -- the simulated network -----------------------------------------------------

    def _answers(self, probe: _Probe) -> list[_Answer]:
        """What the network sends back for ``probe``: (delay, delivery) pairs."""
        network = self.network
        host = network.hosts.get(probe.dst)
        if host is None or network.rng.random() < host.loss:
            return []
        routers = self._routers(probe, host)
        hops = len(routers)
        too_big = self._mtu_check(probe, host, routers)
        if too_big is not None:
            return too_big
        if probe.ttl <= hops or host.error is not None:
            hop = probe.ttl if probe.ttl <= hops else hops
            if hop in host.silent_hops:
                return []
            icmp = _TIME_EXCEEDED[probe.family] if probe.ttl <= hops else host.error
            assert icmp is not None
            delivery = self._icmp_error(probe, routers[hop - 1], icmp, host, 64 - hop + 1)
            return [(host.delay_s * hop / (hops + 1), delivery)]
        if not host.alive:
            return []
        answers = self._host_answers(probe, host, hops)
        delivered = [(host.delay_s, d) for d in answers for _ in range(1 + host.duplicates)]
        return delivered

    def _mtu_check(self, probe: _Probe, host: SimHost, routers: list[str]) -> list[_Answer] | None:
        """What the ``routers`` the probe crosses before its TTL runs out do about its
        size: None (it passes), [] (a black hole drops it), or a router's "too big"
        error."""
        size = len(probe.packet)
        mtus, hole = dict(host.mtu_links), host.black_hole
        for hop in range(1, min(probe.ttl - 1, len(routers)) + 1):  # the routers it crosses
            if hole is not None and hole[0] == hop and size > hole[1]:
                return []
            mtu = mtus.get(hop)
            if mtu is None or size <= mtu:
                continue
            if probe.family == _V4 and not probe.packet[6] & 0x40:
                continue  # no DF: the router fragments it (not modelled)
            if hop in host.silent_hops:
                return []
            icmp = (3, 4) if probe.family == _V4 else (2, 0)
            delivery = self._icmp_error(probe, routers[hop - 1], icmp, host, 64 - hop + 1, rest=mtu)
            return [(host.delay_s * hop / (len(routers) + 1), delivery)]
        return None

    def _routers(self, probe: _Probe, host: SimHost) -> list[str]:
        """The routers ``probe``'s flow crosses on its way to ``host``, in order."""
        if host.routes is not None:
            return flow_path(host.routes, self.network.seed, probe.packet)
        path = self._path(probe, host)
        return [
            self.network.router(probe.family, hop, path if hop == host.hops - 1 else 0)
            for hop in range(1, host.hops + 1)
        ]

    @staticmethod
    def _path(probe: _Probe, host: SimHost) -> int:
        """Per-flow load balancing: hash what routers hash (not ICMP seq, not TCP seq)."""
        if host.paths <= 1:
            return 0
        t = probe.transport
        flow = t[0:4] if probe.protocol in (6, 17) else t[2:6]  # ports | checksum+ident
        return hash((probe.src, probe.dst, probe.protocol, flow)) % host.paths

    def _host_answers(self, probe: _Probe, host: SimHost, hops: int) -> list[_Delivery]:
        family, t = probe.family, probe.transport
        ttl = max(1, host.reply_ttl - hops)
        if probe.protocol in (1, 58):
            if t[0] != ECHO_REQUEST[family]:
                return []
            answers = []
            if self.network.forge_replies:
                forged = self._echo_reply(probe, bytes(len(t) - 8))
                answers.append(self._ip(probe.dst, probe.src, probe.protocol, forged, ttl))
            answers.append(
                self._ip(probe.dst, probe.src, probe.protocol, self._echo_reply(probe, t[8:]), ttl)
            )
            return answers
        if probe.protocol == 6:
            sport, dport = int.from_bytes(t[0:2]), int.from_bytes(t[2:4])
            seq, ack, flags = int.from_bytes(t[4:8]), int.from_bytes(t[8:12]), t[13]
            if dport in host.dropped_ports:
                return []
            if dport in host.rejected_ports:
                return [self._icmp_error(probe, probe.dst, _ADMIN_PROHIBITED[family], host, ttl)]
            if flags & SYN and not flags & ACK:
                reply_flags = SYN | ACK if dport in host.open_ports else RST | ACK
                header = TcpHeader(dport, sport, seq=0x1000, ack=(seq + 1) & 0xFFFFFFFF,
                                   flags=reply_flags)  # fmt: skip
            elif flags & ACK:
                header = TcpHeader(dport, sport, seq=ack, ack=0, flags=RST, window=0)
            else:
                return []
            segment = build_tcp(header, b"", src=probe.dst, dst=probe.src)
            return [self._ip(probe.dst, probe.src, 6, segment, ttl)]
        if probe.protocol == 17:
            sport, dport = int.from_bytes(t[0:2]), int.from_bytes(t[2:4])
            if dport in host.udp_services:
                datagram = build_udp(UdpHeader(dport, sport), b"ok", src=probe.dst, dst=probe.src)
                return [self._ip(probe.dst, probe.src, 17, datagram, ttl)]
            return [self._icmp_error(probe, probe.dst, PORT_UNREACHABLE[family], host, ttl)]
        return []

    @staticmethod
    def _echo_reply(probe: _Probe, payload: bytes) -> bytes:
        t = probe.transport
        ident, seq = int.from_bytes(t[4:6]), int.from_bytes(t[6:8])
        if probe.family == _V4:
            return build_echo(ident, seq, payload, reply=True)
        return build_echo6(ident, seq, payload, src=probe.dst, dst=probe.src, reply=True)

    def _icmp_error(
        self,
        probe: _Probe,
        sender: str,
        icmp: tuple[int, int],
        host: SimHost,
        ttl: int,
        rest: int = 0,
    ) -> _Delivery:
        quote = probe.packet
        if host.quote_bytes is not None:
            quote = quote[: probe.header_length + host.quote_bytes]
        if probe.family == _V4:
            return self._ip(sender, probe.src, 1, build_icmp(icmp[0], icmp[1], rest, quote), ttl)
        message = build_icmpv6(icmp[0], icmp[1], rest, quote, src=sender, dst=probe.src)
        return self._ip(sender, probe.src, 58, message, ttl)

    @staticmethod
    def _ip(src: str, dst: str, protocol: int, payload: bytes, ttl: int) -> _Delivery:
        if ":" in src:
            return (payload, src, ttl, protocol)
        header = IPv4Header(src=src, dst=dst, protocol=protocol, ttl=ttl)
        return (build_ipv4(header, payload), None, ttl, protocol)


@asynccontextmanager
async def open_memory_transport(
    network: MemoryNetwork, *, cookies: Cookies | None = None, rate_pps: float = 0.0
) -> AsyncIterator[MemoryTransport]:
    """A MemoryTransport whose in-flight replies die with the block; ``rate_pps``
    paces its sends (0: none)."""
    async with anyio.create_task_group() as task_group:
        transport = MemoryTransport(network, task_group, cookies=cookies, rate_pps=rate_pps)
        try:
            yield transport
        finally:
            transport.close()
            task_group.cancel_scope.cancel()
