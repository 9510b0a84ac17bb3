"""A simulated network behind the transport interface, for tests and dry runs.

MemoryTransport accepts the same packets as RawTransport and feeds replies through the
same Demux, so probes, keys, cookies and counters are exercised exactly as on the wire.
The network is a table of hosts behind a chain of routers, with per-host delay,
loss, duplication and ICMP errors; ``inject`` delivers arbitrary (forged, foreign,
malformed) packets. Time is the event loop's clock, so trio's autojump clock makes a
ten-second ping finish instantly.
"""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from rawprobe.errors import MalformedPacket, TransportClosed
from rawprobe.transport.base import Counters, Reply, Sent
from rawprobe.transport.demux import Demux
from rawprobe.transport.keys import Cookies, MatchKey
from rawprobe.transport.wire.icmp import build_echo, build_icmp, parse_icmp
from rawprobe.transport.wire.icmpv6 import build_echo6, build_icmpv6, parse_icmpv6
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4, parse_ipv4
from rawprobe.transport.wire.ipv6 import parse_ipv6

#: A reply the network sends back: (packet, IPv6 source or None for IPv4, hop limit).
_Delivery = tuple[bytes, str | None, int]
_Answer = tuple[float, _Delivery]


@dataclass
class SimHost:
    """How one simulated address behaves.

    ``error`` makes the last router answer with that (type, code) ICMP error instead
    of delivering. ``quote_bytes`` limits how much of the probe an ICMP error quotes
    (8 transport bytes is the RFC 792 minimum; None quotes it whole).
    """

    alive: bool = True
    delay_s: float = 0.001
    loss: float = 0.0
    duplicates: int = 0
    hops: int = 3
    reply_ttl: int = 64
    error: tuple[int, int] | None = None
    quote_bytes: int | None = None


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

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add(self, address: str, **behaviour: object) -> SimHost:
        host = SimHost(**behaviour)  # type: ignore[arg-type]
        self.hosts[address] = host
        return host

    def router(self, family: int, hop: int) -> str:
        routers = self.routers_v4 if family == socket.AF_INET else self.routers_v6
        return routers[min(hop, len(routers)) - 1]


class MemoryTransport:
    """The Transport interface over a MemoryNetwork."""

    def __init__(
        self,
        network: MemoryNetwork,
        task_group: anyio.abc.TaskGroup,
        *,
        cookies: Cookies | None = None,
    ) -> None:
        self.network = network
        self.cookies = cookies or Cookies()
        self.counters = Counters()
        self.sent_packets: list[bytes] = []
        self._demux = Demux(self.cookies, self.counters)
        self._task_group = task_group
        self._closed = False

    socket_count = 2

    def source_for(self, destination: str) -> str:
        return self.network.source_v6 if ":" in destination else self.network.source_v4

    def register(self, key: MatchKey, inbox: MemoryObjectSendStream[Reply]) -> None:
        if self._closed:
            raise TransportClosed("transport is closed")
        self._demux.register(key, inbox)

    def unregister(self, key: MatchKey) -> None:
        self._demux.unregister(key)

    @property
    def registered(self) -> int:
        return self._demux.registered

    async def send(self, packet: bytes) -> Sent:
        if self._closed:
            raise TransportClosed("transport is closed")
        await anyio.lowlevel.checkpoint()
        now = anyio.current_time()
        self.sent_packets.append(packet)
        self.counters.sent += 1
        for delay_s, reply in self._answers(packet):
            self._task_group.start_soon(self._deliver_later, delay_s, reply)
        return Sent(int(now * 1e9), now)

    def inject(self, packet: bytes, source: str | None = None, hop_limit: int = 64) -> None:
        """Deliver a packet now as if the socket read it: an IPv4 packet, or (with an
        IPv6 ``source``) an ICMPv6 message."""
        now = anyio.current_time()
        if source is None:
            self._demux.dispatch_v4(packet, int(now * 1e9), now)
        else:
            packed = socket.inet_pton(socket.AF_INET6, source)
            self._demux.dispatch_v6(packet, packed, hop_limit, int(now * 1e9), now)

    def close(self) -> None:
        self._closed = True

    async def _deliver_later(self, delay_s: float, reply: _Delivery) -> None:
        await anyio.sleep(delay_s)
        if not self._closed:
            self.inject(*reply)

    # -- the simulated network -----------------------------------------------------

    def _answers(self, packet: bytes) -> list[_Answer]:
        """What the network sends back for ``packet``: (delay, reply) pairs."""
        try:
            if packet[0] >> 4 == 4:
                return self._answers_v4(packet)
            return self._answers_v6(packet)
        except (MalformedPacket, IndexError):
            return []

    def _answers_v4(self, packet: bytes) -> list[_Answer]:
        network = self.network
        header, payload = parse_ipv4(packet)
        host = network.hosts.get(header.dst)
        if header.protocol != 1 or host is None:
            return []
        message = parse_icmp(payload)
        if message.type != 8 or network.rng.random() < host.loss:
            return []
        delay = host.delay_s
        if header.ttl <= host.hops or host.error is not None:
            hop = header.ttl if header.ttl <= host.hops else host.hops
            icmp_type, code = (11, 0) if header.ttl <= host.hops else host.error or (3, 1)
            quote = (
                packet
                if host.quote_bytes is None
                else packet[: header.header_length + host.quote_bytes]
            )
            router = network.router(socket.AF_INET, hop)
            error = build_icmp(icmp_type, code, 0, quote)
            reply = IPv4Header(src=router, dst=header.src, protocol=1, ttl=64 - hop + 1)
            return [(delay * hop / (host.hops + 1), (build_ipv4(reply, error), None, 0))]
        if not host.alive:
            return []
        answers: list[_Answer] = []
        if network.forge_replies:
            forged = build_echo(message.ident, message.seq, bytes(len(message.body)), reply=True)
            forged_header = IPv4Header(src=header.dst, dst=header.src, protocol=1, ttl=64)
            answers.append((delay / 2, (build_ipv4(forged_header, forged), None, 0)))
        echo = build_echo(message.ident, message.seq, message.body, reply=True)
        ttl = max(1, host.reply_ttl - host.hops)
        reply_header = IPv4Header(src=header.dst, dst=header.src, protocol=1, ttl=ttl)
        reply_packet = build_ipv4(reply_header, echo)
        answers.extend((delay, (reply_packet, None, 0)) for _ in range(1 + host.duplicates))
        return answers

    def _answers_v6(self, packet: bytes) -> list[_Answer]:
        network = self.network
        header, protocol, upper = parse_ipv6(packet)
        host = network.hosts.get(header.dst)
        if protocol != 58 or host is None:
            return []
        message = parse_icmpv6(upper)
        if message.type != 128 or network.rng.random() < host.loss:
            return []
        delay = host.delay_s
        if header.hop_limit <= host.hops or host.error is not None:
            exceeded = header.hop_limit <= host.hops
            hop = header.hop_limit if exceeded else host.hops
            icmp_type, code = (3, 0) if exceeded else host.error or (1, 3)
            quote = packet if host.quote_bytes is None else packet[: 40 + host.quote_bytes]
            router = network.router(socket.AF_INET6, hop)
            error = build_icmpv6(icmp_type, code, 0, quote, src=router, dst=header.src)
            return [(delay * hop / (host.hops + 1), (error, router, 64 - hop + 1))]
        if not host.alive:
            return []
        answers: list[_Answer] = []
        if network.forge_replies:
            forged = build_echo6(
                message.ident,
                message.seq,
                bytes(len(message.body)),
                src=header.dst,
                dst=header.src,
                reply=True,
            )
            answers.append((delay / 2, (forged, header.dst, 64)))
        echo = build_echo6(
            message.ident, message.seq, message.body, src=header.dst, dst=header.src, reply=True
        )
        hop_limit = max(1, host.reply_ttl - host.hops)
        answers.extend((delay, (echo, header.dst, hop_limit)) for _ in range(1 + host.duplicates))
        return answers


@asynccontextmanager
async def open_memory_transport(
    network: MemoryNetwork, *, cookies: Cookies | None = None
) -> AsyncIterator[MemoryTransport]:
    """A MemoryTransport whose in-flight replies die with the block."""
    async with anyio.create_task_group() as task_group:
        transport = MemoryTransport(network, task_group, cookies=cookies)
        try:
            yield transport
        finally:
            transport.close()
            task_group.cancel_scope.cancel()
