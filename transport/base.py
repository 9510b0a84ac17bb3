"""What every transport offers probes: sent stamps, replies, RTT, and the interface.

Two clocks meet here. Scheduling uses the event loop's monotonic clock. RTT uses the
kernel's receive stamp (CLOCK_REALTIME, SO_TIMESTAMPNS) minus a CLOCK_REALTIME send
stamp: the kernel's transmit stamp where the transport asked for one and it came
(``rtt_source`` "kernel": both ends stamped where tcpdump sees the packet, see
transport/txstamps.py), else the one taken right before ``sendto`` ("user"). When the
difference is absurd (a clock step between send and receive) the monotonic difference
is used instead ("user").
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import anyio
import anyio.lowlevel

from rawprobe.errors import TransportClosed, UsageError
from rawprobe.transport.answers import (
    Answer,
    EchoAnswer,
    IcmpError,
    Reply,
    TcpAnswer,
    UdpAnswer,
)
from rawprobe.transport.keys import Cookies, MatchKey

if TYPE_CHECKING:
    from rawprobe.transport.txstamps import TxStamp

__all__ = ["Answer", "EchoAnswer", "IcmpError", "Reply", "TcpAnswer", "UdpAnswer"]

#: ``tuple.__new__``: builds a NamedTuple (Sent, Reply, Outgoing) from a tuple of all its
#: fields without the class's Python-level ``__new__``, at half the cost, on paths
#: that make one per packet: ``new_tuple(Sent, (realtime_ns, monotonic_s, None, None))``.
new_tuple: Any = tuple.__new__


class Sent(NamedTuple):
    """When a packet left, on both clocks; ``error`` names an errno for a send the
    network refused (e.g. ``ENETUNREACH``), which the probe reports as a result.
    ``tx`` is the kernel's transmit stamp, filled in when its report is read, for
    transports that ask for one (None otherwise).

    A NamedTuple rather than a dataclass: one is made per packet sent.
    """

    realtime_ns: int
    monotonic_s: float
    error: str | None = None
    tx: TxStamp | None = None


#: Which send stamp an RTT used: the kernel's transmit stamp, or the user-space one.
RttSource = Literal["kernel", "user"]


#: Slack between the two clocks' views of an RTT before the kernel stamp is
#: distrusted (a forward clock step between send and receive).
_CLOCK_STEP_TOLERANCE_S = 0.05


def measured_rtt(sent: Sent, reply: Reply) -> tuple[float, RttSource]:
    """Round-trip time in seconds, kernel receive stamp minus the send stamp, and which
    send stamp it used: the kernel's transmit stamp when it came (never earlier than the
    user-space one), else the user-space one.

    The kernel stamps a packet before we read it, so its RTT is at most the monotonic
    one (read time minus send time, however late the read). Only a wall-clock step can
    make it negative or larger: then the monotonic difference is used instead.
    """
    start = sent.realtime_ns
    source: RttSource = "user"
    tx = sent.tx
    if tx is not None and tx.kernel_ns >= start:
        start = tx.kernel_ns
        source = "kernel"
    kernel = (reply.received_ns - start) / 1e9
    monotonic = reply.received_s - sent.monotonic_s
    if 0.0 <= kernel <= monotonic + _CLOCK_STEP_TOLERANCE_S:
        return kernel, source
    return max(monotonic, 0.0), "user"


def rtt_s(sent: Sent, reply: Reply) -> float:
    """``measured_rtt`` without its source."""
    return measured_rtt(sent, reply)[0]


@dataclass(slots=True)
class Counters:
    """What the receive path saw that was not a delivered reply. Never logged per packet."""

    received: int = 0
    delivered: int = 0
    unmatched: int = 0
    malformed: int = 0
    forged: int = 0
    inbox_overflow: int = 0
    kernel_drops: int = 0
    sent: int = 0
    send_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class Inbox:
    """A bounded queue of replies for one consumer (a probe's driver).

    The demultiplexer fills it synchronously (``put`` returns False when full: the
    caller counts the overflow); one task drains it with ``take_all`` and sleeps in
    ``wait``. Lighter than a memory object stream on the per-packet path.
    """

    __slots__ = ("_event", "_items", "closed", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closed = False
        self._items: list[Reply] = []
        self._event: anyio.Event | None = None

    def put(self, reply: Reply) -> bool:
        items = self._items
        if len(items) >= self.limit:
            return False
        items.append(reply)
        if self._event is not None:
            self._event.set()
            self._event = None
        return True

    def take_all(self) -> list[Reply]:
        """Every queued reply, oldest first; the queue is left empty."""
        items, self._items = self._items, []
        return items

    async def wait(self) -> None:
        """Return once a reply is queued (at once if one already is)."""
        if self._items:
            await anyio.lowlevel.checkpoint()
            return
        event = self._event = anyio.Event()
        await event.wait()

    def __len__(self) -> int:
        return len(self._items)


class Recorder(Protocol):
    """Sees every packet a transport sends and every reply it delivers (pcap files)."""

    def record(self, packet: bytes, timestamp_ns: int, outgoing: bool) -> None:
        """``packet`` is a whole IPv4/IPv6 packet; ``timestamp_ns`` is CLOCK_REALTIME."""
        ...


class Transport(Protocol):
    """The interface probes use; RawTransport and MemoryTransport both implement it."""

    cookies: Cookies
    counters: Counters

    @property
    def closed(self) -> bool:
        """True once the transport's block was left (every use then raises
        TransportClosed)."""
        ...

    @property
    def sends(self) -> frozenset[tuple[int, int]]:
        """(family, IP protocol) of the probes this transport can send."""
        ...

    @property
    def hears(self) -> frozenset[tuple[int, int]]:
        """(family, IP protocol) of the answers it receives (in raw-socket terms: ICMP
        errors about any probe arrive as ICMP)."""
        ...

    def source_for(self, destination: str) -> str:
        """Source address the kernel would use towards ``destination``."""
        ...

    def interface_mtu(self, destination: str) -> int | None:
        """MTU of the interface packets to ``destination`` leave by (None: unknown)."""
        ...

    def register(self, key: MatchKey, inbox: Inbox, *, authenticated: bool = True) -> None:
        """Route replies carrying ``key`` to ``inbox``. Call before sending.

        Echo replies must carry this transport's cookie unless ``authenticated`` is
        False (hand-made packets with a payload of the caller's choosing)."""
        ...

    def unregister(self, key: MatchKey) -> None:
        """Stop routing ``key``; unknown keys are ignored."""
        ...

    def register_route(self, kind: int, a: int, inbox: Inbox) -> None:
        """Route every key ``(kind, *, a, *)`` that has no route of its own to ``inbox``
        (echo keys: ``a`` is the identifier; cookies still checked): one route for many
        probes, declared by a machine (``Machine.routes``)."""
        ...

    def unregister_route(self, kind: int, a: int) -> None:
        """Stop routing ``(kind, a)``; unknown routes are ignored."""
        ...

    def filter_tcp(self, local_ports: Sequence[int]) -> None:
        """Wake the TCP readers only for segments to ``local_ports`` (a scan's source
        ports); transports without raw TCP sockets ignore it."""
        ...

    async def send(self, packet: bytes) -> Sent:
        """Send a whole IPv4/IPv6 packet, paced by the transport's rate."""
        ...

    def read_pending(self) -> None:
        """Deliver every packet already received, without waiting: called by the
        driver before a machine decides what has timed out."""
        ...

    async def send_batch(
        self, packets: Sequence[bytes], stamps: list[Sent] | None = None
    ) -> list[Sent]:
        """Send packets in order, paced; one Sent per packet, appended to ``stamps``
        (returned; a new list when None) as each packet leaves, so a caller cancelled
        mid-batch still knows which packets went out."""
        ...


#: Every (family, IP protocol) a probe may send or hear.
ALL_PROTOCOLS = frozenset(
    (family, protocol)
    for family, icmp in (
        (socket.AF_INET, socket.IPPROTO_ICMP),
        (socket.AF_INET6, socket.IPPROTO_ICMPV6),
    )
    for protocol in (icmp, socket.IPPROTO_TCP, socket.IPPROTO_UDP)
)

_PROTOCOL_NAMES = {
    socket.IPPROTO_ICMP: "ICMP",
    socket.IPPROTO_ICMPV6: "ICMPv6",
    socket.IPPROTO_TCP: "TCP",
    socket.IPPROTO_UDP: "UDP",
}


def protocol_name(family: int, protocol: int) -> str:
    """``TCP/IPv4``, ``ICMPv6``...: for messages."""
    name = _PROTOCOL_NAMES.get(protocol, f"protocol {protocol}")
    if protocol == socket.IPPROTO_ICMPV6:
        return name
    return f"{name}/{'IPv4' if family == socket.AF_INET else 'IPv6'}"


def check_transport(
    transport: Transport,
    sends: Iterable[tuple[int, int]],
    hears: Iterable[tuple[int, int]],
    what: str,
) -> None:
    """Refuse a probe a given transport cannot run: TransportClosed once it is closed,
    UsageError naming what it lacks (a probe over a transport without the sockets its
    answers arrive on would report silence: "not reached", no open port)."""
    if transport.closed:
        raise TransportClosed("transport is closed")
    missing_sends = sorted(set(sends) - transport.sends)
    missing_hears = sorted(set(hears) - transport.hears - set(missing_sends))
    if not missing_sends and not missing_hears:
        return
    parts = []
    if missing_sends:
        parts.append("cannot send " + ", ".join(protocol_name(*p) for p in missing_sends))
    if missing_hears:
        parts.append("has no " + ", ".join(protocol_name(*p) for p in missing_hears) + " sockets")
    raise UsageError(
        f"{what}: the transport given {' and '.join(parts)} (open it with the probe's"
        ' protocols, e.g. rawprobe.open_transport(protocols=("icmp", "tcp", "udp")))'
    )
