"""UdpTransport: UDP traceroute without privilege, the way tracepath does it.

Ordinary UDP sockets, one per source port, with the TTL set as a socket option before
each probe and ``IP_RECVERR`` / ``IPV6_RECVERR``: the ICMP errors our probes draw
(time exceeded from routers, port unreachable from the destination) arrive on the
socket's error queue with the probe's payload and the sender's address. They are
rebuilt into the ICMP errors the raw transport would have read, quoting the probe's
IP and UDP headers (the checksum recomputed as the kernel sent it), so the keys and
probe machines run unchanged. Sends UDP only.

Path MTU (``trace --mtu``), as tracepath: the sockets are in ``IP_PMTUDISC_PROBE`` mode
(DF set, the kernel's learned path MTU ignored), the error queue's ``ee_info`` is the
MTU a "fragmentation needed" / "packet too big" reported (put back in the rebuilt
error), and a probe longer than a router quotes (Linux quotes 548 bytes of an IPv4
packet, 1232 of an IPv6 one) has its checksum remembered, since the queued payload is
cut short and no longer gives it.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel

from rawprobe.errors import SendError
from rawprobe.transport.dgram import IP_RECVTTL, TTL_OPTIONS, hop_limit_of, icmp_errors, ip_fields
from rawprobe.transport.exchange import SocketTransport, destination_of
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.raw import RECV_BATCH
from rawprobe.transport.sockets import (
    IP_RECVERR,
    IPV6_RECVERR,
    IPV6_RECVHOPLIMIT,
    NamespacePin,
    pmtu_probe_mode,
)
from rawprobe.transport.wire.udp import UdpHeader, build_udp

_IPV4 = struct.Struct("!BBHHHBBH")
_IPV6 = struct.Struct("!IHBB")
#: Payload bytes every Linux router's quote keeps (576-byte ICMPv4 errors, after the
#: quoted IP and UDP headers): longer probes have their checksums remembered, by this
#: much of their payload.
_QUOTED_PAYLOAD = 512
_REMEMBERED_CHECKSUMS = 4096
#: (family, ICMP type) of errors whose rest word is the next-hop MTU.
_TOO_BIG = {(socket.AF_INET, 3), (socket.AF_INET6, 2)}


class UdpTransport(SocketTransport):
    """UDP probes over unprivileged UDP sockets. Create with ``open_udp_transport``."""

    def __init__(self, *, rate_pps: float = DEFAULT_RATE_PPS) -> None:
        super().__init__(None, rate_pps)
        # Packets rebuilt from what the kernel verified: nothing to check again.
        self._demux.verify_icmp = self._demux.verify_ip_header = False
        self._ttl: dict[tuple[int, int], int] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._netns = NamespacePin()  # sockets open later, in the namespace of now
        #: (family, source port, payload prefix) -> UDP checksum of long probes.
        self._checksums: dict[tuple[int, int, bytes], int] = {}

    def _start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group  # each socket's reader starts with the socket

    #: UDP probes on both families; their answers are the ICMP errors of the sockets'
    #: error queues.
    sends = frozenset(((socket.AF_INET, socket.IPPROTO_UDP), (socket.AF_INET6, socket.IPPROTO_UDP)))
    hears = frozenset(
        ((socket.AF_INET, socket.IPPROTO_ICMP), (socket.AF_INET6, socket.IPPROTO_ICMPV6))
    )

    # -- the system call of the send path (exchange.py) -----------------------------

    def _transmit(self, packet: bytes) -> None:
        """The UDP payload of a whole IP packet, from its source port's socket."""
        family, ttl, offset, protocol = ip_fields(packet)
        if protocol != socket.IPPROTO_UDP:
            raise SendError("unprivileged UDP sockets send UDP probes only")
        sport, dport = struct.unpack_from("!HH", packet, offset)
        sock = self._socket(family, sport)
        if self._ttl.get((family, sport)) != ttl:
            sock.setsockopt(*TTL_OPTIONS[family], ttl)
            self._ttl[(family, sport)] = ttl
        payload = packet[offset + 8 :]
        if len(payload) > _QUOTED_PAYLOAD:
            checksums = self._checksums
            if len(checksums) >= _REMEMBERED_CHECKSUMS:
                del checksums[next(iter(checksums))]
            prefix = payload[:_QUOTED_PAYLOAD]
            checksums[(family, sport, prefix)] = struct.unpack_from("!H", packet, offset + 6)[0]
        sock.sendto(payload, (destination_of(packet), dport))

    def _clear_pending_error(self, packet: bytes) -> None:
        """An ICMP error drawn by an earlier probe is also reported by the next send
        (sk_err): deliver what the queue holds."""
        family, _ttl, offset, _protocol = ip_fields(packet)
        sport = struct.unpack_from("!H", packet, offset)[0]
        self._read_error_queue(self._sockets[(family, sport)], family, sport)

    def _socket(self, family: int, sport: int) -> socket.socket:
        sock = self._sockets.get((family, sport))
        if sock is not None:
            return sock
        sock = self._netns.socket(family, socket.SOCK_DGRAM, "UDP socket")
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
                sock.bind(("::", sport))
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
                sock.bind(("0.0.0.0", sport))
            pmtu_probe_mode(sock, family)
        except OSError as exc:
            sock.close()
            raise SendError(f"cannot use UDP source port {sport}: {exc.strerror}") from exc
        self._sockets[(family, sport)] = sock
        assert self._task_group is not None
        self._task_group.start_soon(self._reader, sock, family, sport)
        return sock

    def _close_sockets(self) -> None:
        super()._close_sockets()
        self._netns.close()

    async def _reader(self, sock: socket.socket, family: int, sport: int) -> None:
        while not self._closed:
            self._read_error_queue(sock, family, sport)
            for _ in range(RECV_BATCH):
                try:
                    sock.recvmsg(65535, 256)  # UDP answers: a traceroute ignores them
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    if self._closed:
                        return
                    self._read_error_queue(sock, family, sport)
            try:
                await anyio.wait_readable(sock)
            except (anyio.ClosedResourceError, OSError):
                return

    def _read_error_queue(self, sock: socket.socket, family: int, sport: int) -> None:
        for error in icmp_errors(sock):
            mtu = error.info if (family, error.icmp_type) in _TOO_BIG else 0
            hops = hop_limit_of(error.ancillary) or 64
            self._deliver_error(
                family, error.icmp_type, error.code, error.offender, sport, error.address,
                error.payload, mtu, hops,
            )  # fmt: skip

    def _deliver_error(
        self,
        family: int,
        icmp_type: int,
        code: int,
        offender: str,
        sport: int,
        address: tuple[str, int],
        payload: bytes,
        mtu: int = 0,
        hops: int = 64,
    ) -> None:
        destination, dport = address[0].split("%")[0], address[1]
        source = self.source_for(destination)
        checksum = None
        if len(payload) >= _QUOTED_PAYLOAD:  # maybe cut short: the checksum sent, if known
            checksum = self._checksums.get((family, sport, payload[:_QUOTED_PAYLOAD]))
        header = UdpHeader(sport, dport, checksum=checksum)
        datagram = build_udp(header, payload, src=source, dst=destination)
        src, dst = socket.inet_pton(family, source), socket.inet_pton(family, destination)
        now_s, now_ns = time.monotonic(), time.time_ns()
        head = struct.pack("!BBHI", icmp_type, code, 0, mtu)
        if family == socket.AF_INET:
            quoted = _IPV4.pack(0x45, 0, 20 + len(datagram), 0, 0, 1, 17, 0) + src + dst
            error = head + quoted + datagram
            outer = _IPV4.pack(0x45, 0, 20 + len(error), 0, 0, hops, 1, 0)
            packet = outer + socket.inet_pton(family, offender) + src + error
            self._demux.dispatch_v4(packet, now_ns, now_s)
        else:
            quoted = _IPV6.pack(6 << 28, len(datagram), 17, 1) + src + dst
            sender = socket.inet_pton(family, offender)
            self._demux.dispatch_v6(head + quoted + datagram, sender, hops, now_ns, now_s)


@asynccontextmanager
async def open_udp_transport(*, rate_pps: float = DEFAULT_RATE_PPS) -> AsyncIterator[UdpTransport]:
    """An unprivileged UDP transport for the block (sockets open as probes need them)."""
    async with UdpTransport(rate_pps=rate_pps)._running() as transport:
        yield transport
