"""Network-layer monitoring: an AF_PACKET socket that sees every IP packet, both ways.

``async with open_sniffer(packet_filter) as sniffer: async for captured in sniffer``
yields each IPv4/IPv6 packet the host sends or receives on any interface (or one):
its bytes from the IP header on (SOCK_DGRAM strips the link header), the kernel's
receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME ns), the direction (``sll_pkttype``)
and the interface. Non-IP frames (ARP ...) are skipped before anything is built;
the filter reads bytes (see ``wire/pktfilter.py``) and only kept packets become
objects. The socket is opened in the calling thread's network namespace.

Reading follows the transport's rules: try ``recvmsg`` first, wait for readability
only on ``BlockingIOError``, drain a batch per wake-up, then yield to the event loop
so a flood cannot starve it. Kernel drops are read from PACKET_STATISTICS.
"""

from __future__ import annotations

import collections
import fcntl
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from rawprobe.errors import TransportError, UsageError
from rawprobe.transport import privileges
from rawprobe.transport.sockets import (
    DEFAULT_RCVBUF_BYTES,
    ETH_P_ALL,
    ETH_P_IP,
    ETH_P_IPV6,
    PACKET_STATISTICS,
    SCM_TIMESTAMPNS,
    SO_TIMESTAMPNS,
    SOL_PACKET,
    _set_rcvbuf,
    new_socket,
)
from rawprobe.transport.wire.pktfilter import PacketFilter

__all__ = ["Captured", "SniffStats", "Sniffer", "open_sniffer"]

#: Frames read per wake-up before yielding to the event loop.
RECV_BATCH = 256
_RECV_BYTES = 65535 + 64
_ANCILLARY_BYTES = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("=qq")
_STATS = struct.Struct("=II")
_IFREQ = struct.Struct("16si12x")
_SIOCGIFINDEX = 0x8933
_IP_PROTOCOLS = frozenset((ETH_P_IP, ETH_P_IPV6))
_OUTGOING = socket.PACKET_OUTGOING

_PRIVILEGE_HINT = (
    "capturing packets needs root or CAP_NET_RAW: run with sudo, or grant the "
    "capability with `sudo setcap cap_net_raw+ep $(readlink -f $(which python3))`"
)


@dataclass(frozen=True, slots=True)
class Captured:
    """One packet seen by the sniffer: the IP packet, when the kernel received or
    sent it (CLOCK_REALTIME ns), its direction and interface."""

    packet: bytes
    timestamp_ns: int
    outgoing: bool
    ifindex: int
    interface: str


@dataclass(frozen=True, slots=True)
class SniffStats:
    """``seen``: IP packets read; ``kept``: passed the filter; ``kernel_drops``:
    packets the kernel dropped because the socket's buffer was full."""

    seen: int
    kept: int
    kernel_drops: int


def open_packet_socket(
    interface: str | None = None, *, rcvbuf_bytes: int = DEFAULT_RCVBUF_BYTES
) -> socket.socket:
    """A non-blocking AF_PACKET/SOCK_DGRAM socket for all protocols, with kernel
    timestamps and a large receive buffer, bound to ``interface`` if given.

    Raises PrivilegeError without CAP_NET_RAW, UsageError for an unknown interface.
    """
    protocol = socket.htons(ETH_P_ALL)
    sock = new_socket(
        socket.AF_PACKET, socket.SOCK_DGRAM, protocol, "packet socket", _PRIVILEGE_HINT
    )
    try:
        sock.setblocking(False)
        _set_rcvbuf(sock, rcvbuf_bytes)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if interface is not None:
            try:
                sock.bind((interface, ETH_P_ALL))
            except OSError as exc:
                raise UsageError(f"no such interface: {interface!r}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


class Sniffer:
    """Async iterator of ``Captured`` packets. Create with ``open_sniffer``."""

    def __init__(self, sock: socket.socket, packet_filter: PacketFilter | None = None) -> None:
        self._sock = sock
        self._filter = packet_filter if packet_filter and not packet_filter.is_empty else None
        self._buffer: collections.deque[Captured] = collections.deque()
        self._closed = False
        self._full_batch = False
        self._ifindex: dict[str, int] = {}
        self.seen = 0
        self.kept = 0
        self._kernel_drops = 0

    def __aiter__(self) -> Sniffer:
        return self

    async def __anext__(self) -> Captured:
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._full_batch:
                # The last drain stopped at the batch limit: let others run first.
                await anyio.lowlevel.checkpoint()
            blocked = self._drain()
            if blocked and not self._buffer:
                try:
                    await anyio.wait_readable(self._sock)
                except (anyio.ClosedResourceError, OSError):
                    if self._closed:
                        raise StopAsyncIteration from None
                    raise

    def _drain(self) -> bool:
        """Read up to RECV_BATCH frames into the buffer; True if the socket ran dry."""
        sock = self._sock
        keep = self._filter.matches if self._filter is not None else None
        buffer = self._buffer
        for _ in range(RECV_BATCH):
            try:
                data, ancillary, _flags, address = sock.recvmsg(_RECV_BYTES, _ANCILLARY_BYTES)
            except (BlockingIOError, InterruptedError):
                self._full_batch = False
                return True
            except OSError as exc:
                if self._closed:
                    return True
                raise TransportError(f"packet socket read failed: {exc.strerror}") from exc
            if address[1] not in _IP_PROTOCOLS:
                continue
            self.seen += 1
            outgoing = address[2] == _OUTGOING
            if keep is not None and not keep(data, outgoing):
                continue
            self.kept += 1
            timestamp_ns = 0
            for level, kind, value in ancillary:
                if kind == SCM_TIMESTAMPNS and level == socket.SOL_SOCKET:
                    seconds, nanos = _TIMESPEC.unpack_from(value)
                    timestamp_ns = seconds * 1_000_000_000 + nanos
            if not timestamp_ns:
                timestamp_ns = time.time_ns()
            name = address[0]
            buffer.append(Captured(data, timestamp_ns, outgoing, self._index_of(name), name))
        self._full_batch = True
        return False

    def _index_of(self, name: str) -> int:
        """Interface index, asked of this socket (so of its namespace), cached."""
        index = self._ifindex.get(name)
        if index is None:
            try:
                reply = fcntl.ioctl(
                    self._sock.fileno(), _SIOCGIFINDEX, _IFREQ.pack(name.encode(), 0)
                )
                index = int(_IFREQ.unpack(reply)[1])
            except OSError:
                index = 0  # the interface vanished meanwhile
            self._ifindex[name] = index
        return index

    def stats(self) -> SniffStats:
        """Counters so far (reading the kernel's drop counter resets it: accumulated)."""
        if not self._closed:
            try:
                raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
                self._kernel_drops += _STATS.unpack(raw)[1]
            except OSError:
                pass
        return SniffStats(self.seen, self.kept, self._kernel_drops)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self.stats()
        self._closed = True
        anyio.notify_closing(self._sock)
        self._sock.close()


@asynccontextmanager
async def open_sniffer(
    packet_filter: PacketFilter | None = None,
    *,
    interface: str | None = None,
    rcvbuf_bytes: int = DEFAULT_RCVBUF_BYTES,
) -> AsyncIterator[Sniffer]:
    """A Sniffer for the duration of the block; the socket is closed on exit.

    Opened in the calling thread's network namespace. Raises PrivilegeError without
    CAP_NET_RAW.
    """
    sniffer = Sniffer(open_packet_socket(interface, rcvbuf_bytes=rcvbuf_bytes), packet_filter)
    try:
        privileges.sockets_opened()  # drops them if the process opted in (the CLI)
        yield sniffer
    finally:
        sniffer.close()
