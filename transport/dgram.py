"""DatagramTransport: ICMP echo without privilege, over ICMP datagram ("ping") sockets.

The first rung below raw sockets. Linux lets a process open SOCK_DGRAM ICMP sockets
when its group is in ``net.ipv4.ping_group_range``; they send echo requests only, the
kernel sets the identifier to the socket's port and fills in the IP header, and
replies arrive without it. ICMP errors about our probes come through the socket's
error queue (``IP_RECVERR``). This transport turns all of that back into what the raw
transport delivers (whole IPv4 packets, ICMPv6 messages, ICMP errors quoting the probe),
so the same demultiplexer, keys, cookies and probe machines run unchanged.

Every identifier this transport hands out is the socket's port (both families are
bound to one port), so probes' keys match what the kernel writes on the wire.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import anyio
import anyio.abc
import anyio.lowlevel

from rawprobe.errors import SendError
from rawprobe.transport import privileges
from rawprobe.transport.exchange import SocketTransport, destination_of
from rawprobe.transport.keys import Cookies
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.raw import RECV_BATCH
from rawprobe.transport.sockets import (
    EXTENDED_ERR,
    IP_RECVERR,
    IPV6_HOPLIMIT,
    IPV6_RECVERR,
    IPV6_RECVHOPLIMIT,
    RECVERR,
    SCM_TIMESTAMPNS,
    SO_TIMESTAMPNS,
    new_socket,
)

IP_RECVTTL = 12
IPV6_UNICAST_HOPS = 16
#: sock_extended_err.ee_origin values of ICMP and ICMPv6 errors.
ORIGINS = frozenset((2, 3))
_TIMESPEC = struct.Struct("=qq")
_HOPS = {(socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)}
_INT = struct.Struct("=i")
_ICMP = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
#: The socket options that set the TTL (hop limit) of what a datagram socket sends.
TTL_OPTIONS: dict[int, tuple[int, int]] = {
    socket.AF_INET: (socket.IPPROTO_IP, socket.IP_TTL),
    socket.AF_INET6: (socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS),
}

_HINT = (
    "ICMP datagram sockets are not allowed for this user: add its group to "
    "net.ipv4.ping_group_range (e.g. `sudo sysctl -w net.ipv4.ping_group_range='0 "
    "2147483647'`), or run with sudo / CAP_NET_RAW"
)


def ip_fields(packet: bytes) -> tuple[int, int, int, int]:
    """(family, TTL or hop limit, offset of the upper layer, its protocol) of a whole IP
    packet (a probe: no IPv6 extension headers)."""
    if packet[0] >> 4 == 4:
        return socket.AF_INET, packet[8], (packet[0] & 0x0F) * 4, packet[9]
    return socket.AF_INET6, packet[7], 40, packet[6]


def offender_of(extended_err: bytes) -> str | None:
    """The address that sent the ICMP error: the sockaddr after sock_extended_err."""
    offset = EXTENDED_ERR.size
    family = struct.unpack_from("=H", extended_err, offset)[0]
    if family == socket.AF_INET and len(extended_err) >= offset + 8:
        return socket.inet_ntop(socket.AF_INET, extended_err[offset + 4 : offset + 8])
    if family == socket.AF_INET6 and len(extended_err) >= offset + 24:
        return socket.inet_ntop(socket.AF_INET6, extended_err[offset + 8 : offset + 24])
    return None


def hop_limit_of(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The TTL / hop limit in a message's ancillary data (IP_RECVTTL, IPV6_RECVHOPLIMIT)."""
    for level, kind, value in ancillary:
        if (level, kind) in _HOPS and len(value) >= _INT.size:
            hops: int = _INT.unpack_from(value)[0]
            return hops
    return None


class QueuedError(NamedTuple):
    """An ICMP error read from a socket's error queue (IP_RECVERR)."""

    icmp_type: int
    code: int
    info: int  # ee_info: the next-hop MTU of "fragmentation needed" / "packet too big"
    offender: str  # who sent the error
    payload: bytes  # what our probe carried above its transport header
    address: Any  # the probe's destination, as recvmsg gives it
    ancillary: list[tuple[int, int, bytes]]


def icmp_errors(sock: socket.socket) -> Iterator[QueuedError]:
    """Drain ``sock``'s error queue, yielding each ICMP or ICMPv6 error in it."""
    while True:
        try:
            payload, ancillary, _flags, address = sock.recvmsg(65535, 512, socket.MSG_ERRQUEUE)
        except OSError:  # BlockingIOError included: the queue is empty
            return
        for level, kind, value in ancillary:
            if (level, kind) not in RECVERR or len(value) < EXTENDED_ERR.size:
                continue
            _errno, origin, icmp_type, code, _pad, info, _data = EXTENDED_ERR.unpack_from(value)
            offender = offender_of(value)
            if origin in ORIGINS and offender is not None:
                yield QueuedError(icmp_type, code, info, offender, payload, address, ancillary)


class _PortCookies(Cookies):
    """Cookies whose identifiers are the datagram sockets' port (the kernel's choice)."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port

    @property
    def ident_prefix(self) -> int:
        return self._port >> 8

    def new_ident(self) -> int:
        return self._port


class DatagramTransport(SocketTransport):
    """ICMP echo over ICMP datagram sockets (no privilege needed). Create with
    ``open_datagram_transport``. Sends ICMP echo requests only."""

    def __init__(self, families: Sequence[int], *, rate_pps: float = DEFAULT_RATE_PPS) -> None:
        super().__init__(None, rate_pps)
        # Packets rebuilt from what the kernel verified: nothing to check again.
        self._demux.verify_icmp = self._demux.verify_ip_header = False
        self._ttl: dict[int, int] = {}
        try:
            port = self._open(families)
        except BaseException:
            self._close_sockets()
            raise
        # Identifiers are the sockets' port, known only now.
        self.cookies = self._demux.cookies = _PortCookies(port)
        privileges.sockets_opened()

    def _open(self, families: Sequence[int]) -> int:
        port = 0
        for family in families:
            protocol = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
            sock = new_socket(family, socket.SOCK_DGRAM, protocol, "an ICMP datagram socket", _HINT)
            self._sockets[family] = sock
            sock.setblocking(False)
            sock.bind(("0.0.0.0", port) if family == socket.AF_INET else ("::", port))
            port = sock.getsockname()[1]
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        return port

    @property
    def sends(self) -> frozenset[tuple[int, int]]:
        """ICMP echo requests on the families opened."""
        return frozenset((f, _ICMP[f]) for f in self._sockets)

    @property
    def hears(self) -> frozenset[tuple[int, int]]:
        return self.sends

    # -- the system call of the send path (exchange.py) -----------------------------

    def _transmit(self, packet: bytes) -> None:
        """The ICMP echo request inside a whole IP packet: the IP header's TTL becomes
        the socket's, the rest of it is the kernel's to write."""
        family, ttl, offset, _protocol = ip_fields(packet)
        sock = self._sockets.get(family)
        if sock is None or packet[offset : offset + 1] not in (b"\x08", b"\x80"):
            raise SendError("ICMP datagram sockets send ICMP echo requests only")
        if self._ttl.get(family) != ttl:
            sock.setsockopt(*TTL_OPTIONS[family], ttl)
            self._ttl[family] = ttl
        sock.sendto(packet[offset:], (destination_of(packet), 0))

    def _clear_pending_error(self, packet: bytes) -> None:
        family = ip_fields(packet)[0]
        self._read_error_queue(self._sockets[family], family)

    # -- receiving -------------------------------------------------------------------

    async def _reader(self, sock: socket.socket, family: int) -> None:
        while not self._closed:
            for _ in range(RECV_BATCH):
                try:
                    data, ancillary, _flags, address = sock.recvmsg(65535, 256)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    if self._closed:
                        return
                    self._read_error_queue(sock, family)
                    continue
                self._deliver(family, data, ancillary, address[0])
            else:
                await anyio.lowlevel.checkpoint()
                continue
            self._read_error_queue(sock, family)
            try:
                await anyio.wait_readable(sock)
            except (anyio.ClosedResourceError, OSError):
                return

    def _read_error_queue(self, sock: socket.socket, family: int) -> None:
        """ICMP errors about our probes: rebuilt as the ICMP error packets they were."""
        for error in icmp_errors(sock):
            message = self._error_message(
                family, error.icmp_type, error.code, error.payload, error.address[0]
            )
            self._deliver(family, message, error.ancillary, error.offender)

    def _error_message(
        self, family: int, icmp_type: int, code: int, probe: bytes, destination: str
    ) -> bytes:
        """An ICMP error quoting ``probe`` (our echo request) as the router sent it."""
        source = socket.inet_pton(family, self.source_for(destination))
        target = socket.inet_pton(family, destination)
        if family == socket.AF_INET:
            quoted = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(probe), 0, 0, 1, 1, 0)
            return bytes([icmp_type, code, 0, 0, 0, 0, 0, 0]) + quoted + source + target + probe
        header = struct.pack("!IHBB", 6 << 28, len(probe), 58, 1)
        return bytes([icmp_type, code, 0, 0, 0, 0, 0, 0]) + header + source + target + probe

    def _deliver(
        self,
        family: int,
        message: bytes,
        ancillary: list[tuple[int, int, bytes]],
        sender: str,
    ) -> None:
        received_s = time.monotonic()
        received_ns = 0
        hops = 64
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanos = _TIMESPEC.unpack_from(value)
                received_ns = seconds * 1_000_000_000 + nanos
            elif (level, kind) in _HOPS:
                hops = _INT.unpack_from(value)[0]
        received_ns = received_ns or time.time_ns()
        if family == socket.AF_INET:
            us = socket.inet_pton(family, self.source_for(sender))
            header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(message), 0, 0, hops, 1, 0)
            packet = header + socket.inet_pton(family, sender) + us + message
            self._demux.dispatch_v4(packet, received_ns, received_s)
        else:
            source = socket.inet_pton(family, sender.split("%")[0])
            self._demux.dispatch_v6(message, source, hops, received_ns, received_s)

    # -- lifecycle -------------------------------------------------------------------

    def _start(self, task_group: anyio.abc.TaskGroup) -> None:
        for family, sock in self._sockets.items():
            task_group.start_soon(self._reader, sock, family)


@asynccontextmanager
async def open_datagram_transport(
    families: Sequence[int] = (socket.AF_INET, socket.AF_INET6),
    *,
    rate_pps: float = DEFAULT_RATE_PPS,
) -> AsyncIterator[DatagramTransport]:
    """Open a DatagramTransport for the block. Raises PrivilegeError (saying which sysctl
    to change) when the kernel refuses ICMP datagram sockets to this user."""
    async with DatagramTransport(families, rate_pps=rate_pps)._running() as transport:
        yield transport
