"""RawTransport: the raw sockets, one receive loop per socket, and the demultiplexer.

``async with open_transport() as t`` opens one raw socket per (family, protocol),
starts one reader task per socket inside a task group it owns, and on exit marks
itself closed, wakes and closes the sockets, and cancels the readers: no orphan task,
no socket left open, whatever way the block is left.

With ``tx_stamps`` (ping and traces) the send sockets ask for the kernel's transmit
stamps (transport/txstamps.py). Their error queues are read in batches, never per
send: whenever replies are read (first, so the stamp of every send a reply answers is
in: the kernel queued it before the packet left) and whenever a driver reads pending
packets (so the queue never grows).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from socket import AF_INET, AF_INET6, inet_ntop

import anyio
import anyio.abc
import anyio.lowlevel

from rawprobe.errors import TransportError
from rawprobe.transport import privileges
from rawprobe.transport.base import ALL_PROTOCOLS
from rawprobe.transport.exchange import SocketTransport
from rawprobe.transport.keys import Cookies
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.sockets import (
    ICMP_SOCKETS,
    IPV6_HOPLIMIT,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    SCM_TIMESTAMPNS,
    SO_RXQ_OVFL,
    attach_filter,
    enable_tx_stamps,
    icmp_filter_program,
    open_raw_socket,
    open_send_socket,
    tcp_filter_program,
)
from rawprobe.transport.txstamps import TxStamp, TxStamps, tx_stamp_of

#: Datagrams read per wake-up before yielding to the event loop.
RECV_BATCH = 256
#: Datagrams ``read_pending`` takes from one socket at most.
PENDING_LIMIT = 8192
_RECV_BYTES = 65535
_ANCILLARY_BYTES = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(4) * 2
#: A transmit stamp's ancillary data: scm_timestamping (3 timespecs) and the error
#: record (sock_extended_err and an offender sockaddr_in6), with room to spare.
_ERRQUEUE_ANCILLARY_BYTES = socket.CMSG_SPACE(48) + socket.CMSG_SPACE(16 + 28) + 64
_TIMESPEC = struct.Struct("=qq")
_U32 = struct.Struct("=I")
_INT = struct.Struct("=i")

DEFAULT_PROTOCOLS = ICMP_SOCKETS


class RawTransport(SocketTransport):
    """Raw sockets plus demultiplexer. Create with ``open_transport``."""

    def __init__(
        self,
        protocols: Iterable[tuple[int, int]] = DEFAULT_PROTOCOLS,
        *,
        rate_pps: float = DEFAULT_RATE_PPS,
        cookies: Cookies | None = None,
        icmp_filter: bool = True,
        tx_stamps: bool = False,
    ) -> None:
        super().__init__(cookies, rate_pps)
        self._demux.verify_ip_header = False  # ip_rcv dropped bad ones (demux.py)
        self._send_sockets: dict[int, socket.socket] = {}
        #: Send socket -> the keys of its transmit stamps (only those stamping).
        self._tx: dict[socket.socket, TxStamps] = {}
        self._kernel_drops: dict[int, int] = {}
        #: IP version -> (send socket, its transmit stamps or None): ``_transmit``'s.
        self._senders: dict[int, tuple[socket.socket, TxStamps | None]] = {}
        try:
            for family, protocol in protocols:
                try:
                    sock = open_raw_socket(family, protocol)
                except TransportError:
                    if family == socket.AF_INET6:  # a host without IPv6 still pings IPv4
                        continue
                    raise
                self._sockets[(family, protocol)] = sock
                if family not in self._send_sockets:
                    sender = self._send_sockets[family] = open_send_socket(family)
                    if tx_stamps and enable_tx_stamps(sender):
                        self._tx[sender] = TxStamps()
                if icmp_filter and protocol in (PROTO_ICMP, PROTO_ICMPV6):
                    program = icmp_filter_program(family, self.cookies.ident_prefix)
                    attach_filter(sock, program)
            for family, sender in self._send_sockets.items():
                version = 4 if family == socket.AF_INET else 6
                self._senders[version] = (sender, self._tx.get(sender))
            privileges.sockets_opened()  # drops them if the process opted in (the CLI)
        except BaseException:
            self._close_sockets()
            raise

    # -- the system call of the send path (exchange.py) ---------------------------

    def _transmit(self, packet: bytes) -> TxStamp | None:
        version = packet[0] >> 4
        sock, stamps = self._senders.get(version) or self._sender(packet)
        if version == 4:
            address = (inet_ntop(AF_INET, packet[16:20]), 0)
        else:
            address = (inet_ntop(AF_INET6, packet[24:40]), 0)
        if stamps is None:
            sock.sendto(packet, address)
            return None
        before_ns = time.time_ns()
        try:
            sock.sendto(packet, address)
        except OSError as exc:
            stamps.refused(exc.errno)
            raise
        return stamps.sent(before_ns)

    def _clear_pending_error(self, packet: bytes) -> None:
        """Read the send socket's error queue: transmit stamps are kept, the rest
        discarded (the receiving sockets hear the ICMP errors themselves)."""
        _drain_error_queue(*self._sender(packet))

    def _read_tx_stamps(self) -> None:
        """Hand every transmit stamp the kernel reported so far to its send."""
        for sock, stamps in self._tx.items():
            _drain_error_queue(sock, stamps)

    @property
    def tx_stamps(self) -> bool:
        """Whether the kernel stamps what this transport sends (on every family whose
        send socket could ask, and no count went wrong: transport/txstamps.py)."""
        return len(self._tx) == len(self._send_sockets) and not any(
            stamps.lost for stamps in self._tx.values()
        )

    def _sender(self, packet: bytes) -> tuple[socket.socket, TxStamps | None]:
        """The send socket for a whole IP packet (version 4: IPv4, else IPv6) and its
        transmit stamps (``_transmit`` looks the version up inline)."""
        v4 = packet[0] >> 4 == 4
        sender = self._senders.get(4 if v4 else 6)
        if sender is None:
            raise TransportError(f"{'IPv4' if v4 else 'IPv6'} is not available on this host")
        return sender

    def filter_tcp(self, local_ports: Sequence[int]) -> None:
        """Let the raw TCP sockets deliver only segments to ``local_ports``.

        For a process that owns this transport (the scan command): other TCP users of
        the same transport would stop hearing their answers.
        """
        for (family, protocol), sock in self._sockets.items():
            if protocol == PROTO_TCP:
                attach_filter(sock, tcp_filter_program(family, local_ports))

    # -- introspection -------------------------------------------------------------

    @property
    def sends(self) -> frozenset[tuple[int, int]]:
        """Any protocol, on the families with a send socket (``IPPROTO_RAW``)."""
        return frozenset(p for p in ALL_PROTOCOLS if p[0] in self._send_sockets)

    @property
    def hears(self) -> frozenset[tuple[int, int]]:
        """The protocols of its receiving raw sockets."""
        return frozenset(self._sockets)

    # -- lifecycle -----------------------------------------------------------------

    def _start(self, task_group: anyio.abc.TaskGroup) -> None:
        for (family, protocol), sock in self._sockets.items():
            task_group.start_soon(self._reader, sock, family, protocol)

    async def _reader(self, sock: socket.socket, family: int, protocol: int) -> None:
        """Read until closed: try the syscall first, wait only when it would block,
        drain a batch per wake-up, then yield so a flood cannot starve the loop."""
        while not self._closed:
            read = self._read_ready(sock, family, protocol, RECV_BATCH)
            if read is None:
                return
            if read == RECV_BATCH:
                await anyio.lowlevel.checkpoint()
                continue
            try:
                await anyio.wait_readable(sock)
            except (anyio.ClosedResourceError, OSError):
                return

    def read_pending(self) -> None:
        """Hand every packet the kernel already holds to the demultiplexer, now (up to
        ``PENDING_LIMIT`` per socket). The driver calls it before a machine decides
        anything has timed out: the readers take a batch per turn of the event loop,
        and a reply merely waiting in a socket buffer must not count as lost (each
        ``_read_ready`` reads the transmit stamps first)."""
        for (family, protocol), sock in self._sockets.items():
            if self._read_ready(sock, family, protocol, PENDING_LIMIT) is None:
                return

    def _read_ready(
        self, sock: socket.socket, family: int, protocol: int, limit: int
    ) -> int | None:
        """Read up to ``limit`` datagrams without waiting; how many (None once closed)."""
        if self._tx:
            self._read_tx_stamps()  # first: a reply's send was stamped before it left
        demux = self._demux
        fileno = sock.fileno()
        count = 0
        overflows = b""  # the drop counter as last read (parsed only when it moves)
        sol_socket, v4 = socket.SOL_SOCKET, family == socket.AF_INET
        while count < limit:
            try:
                data, ancillary, _flags, address = sock.recvmsg(_RECV_BYTES, _ANCILLARY_BYTES)
            except (BlockingIOError, InterruptedError):
                return count
            except OSError:
                if self._closed:
                    return None
                continue  # a hard ICMP error's sk_err, cleared by this call (the packet comes too)
            count += 1
            received_s = time.monotonic()
            received_ns = 0
            hop_limit: int | None = None
            for level, kind, value in ancillary:
                if kind == SCM_TIMESTAMPNS and level == sol_socket:
                    seconds, nanos = _TIMESPEC.unpack_from(value)
                    received_ns = seconds * 1_000_000_000 + nanos
                elif kind == SO_RXQ_OVFL and level == sol_socket:
                    if value != overflows:
                        overflows = value
                        self._note_drops(fileno, _U32.unpack_from(value)[0])
                elif kind == IPV6_HOPLIMIT and level == socket.IPPROTO_IPV6:
                    hop_limit = _INT.unpack_from(value)[0]
            if received_ns == 0:
                received_ns = time.time_ns()
            if v4:
                demux.dispatch_v4(data, received_ns, received_s)
            else:
                source = socket.inet_pton(socket.AF_INET6, address[0].split("%")[0])
                demux.dispatch_v6(data, source, hop_limit, received_ns, received_s, protocol)
        return count

    @property
    def socket_count(self) -> int:
        """Sockets this transport holds (one receiving per protocol and family, one
        sending per family): constant, however many probes run."""
        return len(self._sockets) + len(self._send_sockets)

    def _close_sockets(self) -> None:
        for sock in self._send_sockets.values():
            sock.close()
        super()._close_sockets()

    def _note_drops(self, fileno: int, cumulative: int) -> None:
        previous = self._kernel_drops.get(fileno, 0)
        if cumulative > previous:
            self.counters.kernel_drops += cumulative - previous
            self._kernel_drops[fileno] = cumulative


def _drain_error_queue(sock: socket.socket, stamps: TxStamps | None) -> None:
    """Read a send socket's error queue to the end: its transmit stamps go to
    ``stamps``; the rest is discarded (IP_RECVERR is on only so that a send the qdisc
    drops reports ENOBUFS, and is retried)."""
    while True:
        try:
            _data, ancillary, _flags, _address = sock.recvmsg(
                0, _ERRQUEUE_ANCILLARY_BYTES, socket.MSG_ERRQUEUE
            )
        except OSError:  # BlockingIOError included: empty
            return
        if stamps is not None:
            stamp = tx_stamp_of(ancillary)
            if stamp is not None:
                stamps.stamped(*stamp)


@asynccontextmanager
async def open_transport(
    protocols: Iterable[tuple[int, int]] = DEFAULT_PROTOCOLS,
    *,
    rate_pps: float = DEFAULT_RATE_PPS,
    cookies: Cookies | None = None,
    icmp_filter: bool = True,
    tx_stamps: bool = False,
) -> AsyncIterator[RawTransport]:
    """Open a RawTransport for the duration of the block.

    Sockets are created here, in the calling thread's network namespace. Raises
    PrivilegeError without CAP_NET_RAW. ``rate_pps=0`` removes the send-rate cap.
    ``icmp_filter=False`` lets every echo reply through the kernel (for hand-made
    probes whose ICMP identifier is not one of this transport's). ``tx_stamps=True``
    has the kernel stamp each probe as it leaves, for RTTs stamped by the kernel at
    both ends (ping and traceroute use it; see transport/txstamps.py).
    A process that opted in with ``privileges.drop_after_open()`` (the CLI) loses its
    privileges right after the sockets exist: it cannot open another transport.
    """
    transport = RawTransport(
        protocols, rate_pps=rate_pps, cookies=cookies, icmp_filter=icmp_filter, tx_stamps=tx_stamps
    )
    async with transport._running():
        yield transport
