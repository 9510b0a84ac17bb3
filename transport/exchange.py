"""What every transport shares: the one send path, and request/replies on top of it.

**One send path.** ``TransportBase.send_batch`` is the only code that paces, stamps,
maps send errors, counts and records; a transport supplies only the system call
(``_transmit``: send one whole IP packet, raising OSError; it returns the kernel's
transmit stamp to come, when it asked for one) and how to clear an error pending on its
socket (``_clear_pending_error``). Per packet: a token from the transport's one
TokenBucket, the two stamps (CLOCK_MONOTONIC, then CLOCK_REALTIME right before the
syscall: the RTT's start unless the kernel's transmit stamp comes, DESIGN.md's clock
rule), the syscall, one ``new_tuple(Sent, ...)``; no await unless pacing or full queues
make it wait. Refusals take a slow path, one errno policy for every transport:

- full kernel queues (ENOBUFS from the qdisc, EAGAIN from a full socket buffer) are
  waited out, polling every millisecond, cancellably: a probe is never lost for them.
  The wait is bounded: queues still full after ``QUEUE_PATIENCE_S`` (5 s; a wedged
  interface, a zero-rate qdisc) raise SendError, a tool failure said once, rather than
  a probe that hangs forever;
- an error pending on the socket (an earlier probe's ICMP error, ``sk_err``, reported
  by the next send, which did not go out): the socket's error queue is read and the
  send tried once more;
- the network's refusals (``NETWORK_SEND_ERRORS``: no route, a prohibit route or a
  firewall's EPERM, EMSGSIZE...) become a Sent whose ``error`` names the errno, a
  result the probe reports;
- anything else raises SendError, chained from the OSError.

Every packet that left is given to the recorder (``--pcap``) as it leaves, so a batch
cancelled half-way records exactly what went out.

**Request/replies.** The match keys are derived from the packet itself
(``keys_of_sent``), so any probe the key table knows (ICMP echo and queries, TCP, UDP)
can be sent and awaited this way.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc

from rawprobe.errors import SendError, TransportClosed
from rawprobe.transport.base import Counters, Inbox, Recorder, Reply, Sent, new_tuple
from rawprobe.transport.demux import Demux
from rawprobe.transport.keys import Cookies, MatchKey, keys_of_sent
from rawprobe.transport.pacing import TokenBucket
from rawprobe.transport.sockets import RouteLookup

if TYPE_CHECKING:
    from rawprobe.transport.txstamps import TxStamp

#: Send errors that are the network's answer, reported as results, not exceptions.
NETWORK_SEND_ERRORS = frozenset(
    (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.EPERM,
        errno.EACCES,
        errno.EADDRNOTAVAIL,
        errno.EMSGSIZE,
    )
)
#: What a send reports for an ICMP error an earlier probe drew (``sk_err``; Linux's
#: icmp_err_convert): the socket's error queue is read and the send tried once more.
PENDING_ERRORS = NETWORK_SEND_ERRORS | {errno.ECONNREFUSED, errno.ENOPROTOOPT, errno.EPROTO}
#: Full kernel queues: waited out (EINTR too: try again).
QUEUES_FULL = frozenset((errno.ENOBUFS, errno.EAGAIN, errno.EINTR))
#: How long a send waits for full queues to drain before it gives up (SendError).
QUEUE_PATIENCE_S = 5.0
_QUEUE_POLL_S = 0.001


def destination_of(packet: bytes) -> str:
    """The destination address of a whole IPv4 or IPv6 packet."""
    if packet[0] >> 4 == 4:
        return socket.inet_ntop(socket.AF_INET, packet[16:20])
    return socket.inet_ntop(socket.AF_INET6, packet[24:40])


class TransportBase:
    """What every transport shares: the demultiplexer and its counters, key
    registration, the recorder hook, the send path, and request/replies on top.
    Subclasses provide ``_transmit`` (and set ``_closed`` when they close).

    ``clock`` and ``clock_ns`` are the send stamps' clocks (monotonic seconds, realtime
    nanoseconds; a simulated network gives the event loop's clock for both)."""

    def __init__(
        self,
        cookies: Cookies | None,
        local_address: Callable[[str], str],
        rate_pps: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.cookies = cookies or Cookies()
        self.counters = Counters()
        self._demux = Demux(self.cookies, self.counters, local_address)
        self._closed = False
        self._clock, self._clock_ns = clock, clock_ns
        self._bucket = TokenBucket(rate_pps, now=clock())
        self._queue_patience_s = QUEUE_PATIENCE_S

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def recorder(self) -> Recorder | None:
        """Sees every sent packet and every delivered reply (e.g. a pcap writer)."""
        return self._demux.recorder

    @recorder.setter
    def recorder(self, recorder: Recorder | None) -> None:
        self._demux.recorder = recorder

    @property
    def registered(self) -> int:
        """Keys currently routed (0 once every probe has finished)."""
        return self._demux.registered

    def register(self, key: MatchKey, inbox: Inbox, *, authenticated: bool = True) -> None:
        """Route replies carrying ``key`` to ``inbox`` (see Transport.register)."""
        if self._closed:
            raise TransportClosed("transport is closed")
        self._demux.register(key, inbox, authenticated=authenticated)

    def unregister(self, key: MatchKey) -> None:
        self._demux.unregister(key)

    def register_route(self, kind: int, a: int, inbox: Inbox) -> None:
        """Route every key ``(kind, *, a, *)`` to ``inbox`` (see Transport)."""
        if self._closed:
            raise TransportClosed("transport is closed")
        self._demux.register_route(kind, a, inbox)

    def unregister_route(self, kind: int, a: int) -> None:
        self._demux.unregister_route(kind, a)

    def interface_mtu(self, destination: str) -> int | None:
        """MTU of the interface towards ``destination`` (see Transport); None: unknown."""
        return None

    def _check_open(self, message: str = "transport is closed") -> None:
        if self._closed:
            raise TransportClosed(message)

    # -- the send path -------------------------------------------------------------

    def _transmit(self, packet: bytes) -> TxStamp | None:
        """The system call: send one whole IP packet (OSError when refused); the
        kernel's transmit stamp to come, for a transport that asked for them."""
        raise NotImplementedError

    def _clear_pending_error(self, packet: bytes) -> None:
        """Read the error queue of the socket ``packet`` goes out on: a send failed
        with an earlier send's error (nothing to do without sockets)."""

    async def send(self, packet: bytes) -> Sent:
        """Send a whole IP packet. Network refusals come back in ``Sent.error``."""
        return (await self.send_batch((packet,)))[0]

    async def send_batch(
        self, packets: Sequence[bytes], stamps: list[Sent] | None = None
    ) -> list[Sent]:
        """Send whole IP packets in order, paced; one Sent per packet, appended to
        ``stamps`` as each leaves (the module docstring has the errno policy).

        No per-packet await unless pacing or full kernel queues make the loop wait.
        """
        self._check_open()
        if stamps is None:
            stamps = []
        bucket = self._bucket
        paced = bucket.rate_pps != 0
        clock, clock_ns, transmit = self._clock, self._clock_ns, self._transmit
        counters = self.counters
        recorder = self._demux.recorder
        for packet in packets:
            if paced and (delay := bucket.take(clock())) > 0.0:
                await anyio.sleep(delay)
                self._check_open("transport closed while sending")
            monotonic_s = clock()
            realtime_ns = clock_ns()  # the RTT's start: right before the syscall
            try:
                tx = transmit(packet)
            except OSError as exc:
                sent = await self._send_refused(packet, exc, realtime_ns, monotonic_s)
            else:
                counters.sent += 1
                sent = new_tuple(Sent, (realtime_ns, monotonic_s, None, tx))
            stamps.append(sent)
            if recorder is not None and sent.error is None:
                recorder.record(packet, sent.realtime_ns, True)
        return stamps

    async def _send_refused(
        self, packet: bytes, exc: OSError, realtime_ns: int, monotonic_s: float
    ) -> Sent:
        """The slow path of a send the kernel refused: wait out full queues, clear a
        pending error once, and map the errno (module docstring)."""
        deadline = self._clock() + self._queue_patience_s
        cleared = False
        while True:
            code = exc.errno
            if code in QUEUES_FULL:
                if self._clock() > deadline:
                    self.counters.send_errors += 1
                    raise SendError(
                        f"send to {destination_of(packet)}: kernel buffers stayed full"
                        f" for {self._queue_patience_s:g} s"
                    ) from exc
                await anyio.sleep(_QUEUE_POLL_S)
                self._check_open("transport closed while sending")
            elif code in PENDING_ERRORS and not cleared:
                cleared = True
                self._clear_pending_error(packet)
            else:
                self.counters.send_errors += 1
                if code in NETWORK_SEND_ERRORS:
                    return Sent(realtime_ns, monotonic_s, errno.errorcode[code])
                raise SendError(f"send to {destination_of(packet)} failed: {exc.strerror}") from exc
            monotonic_s, realtime_ns = self._clock(), self._clock_ns()
            try:
                tx = self._transmit(packet)
            except OSError as again:
                exc = again
                continue
            self.counters.sent += 1
            return Sent(realtime_ns, monotonic_s, None, tx)

    def read_pending(self) -> None:
        """Deliver what the sockets already hold, now (see Transport.read_pending); a
        transport whose readers deliver as packets arrive has nothing to do."""

    def filter_tcp(self, local_ports: Sequence[int]) -> None:
        """Deliver only TCP segments to ``local_ports`` (a kernel filter on raw
        sockets; nothing to do for a simulated network)."""

    # -- request and replies ---------------------------------------------------------

    async def request(
        self, packet: bytes, timeout_s: float = 2.0, *, authenticated: bool = True
    ) -> Reply | None:
        """Send ``packet`` and return the first reply, or None after ``timeout_s``.

        Echo replies count only if they carry this transport's cookie (put it in the
        payload with ``cookies.echo_payload``) unless ``authenticated`` is False.

        Raises MalformedPacket when replies to the packet cannot be recognised, and
        SendError when the local stack refused to send it (the errno is named).
        """
        first = self.replies(packet, timeout_s, limit=1, authenticated=authenticated)
        async with aclosing(first) as replies:
            async for reply in replies:
                return reply
        return None

    async def replies(
        self,
        packet: bytes,
        timeout_s: float = 2.0,
        *,
        limit: int | None = None,
        authenticated: bool = True,
    ) -> AsyncGenerator[Reply, None]:
        """Send ``packet`` and yield each reply (duplicates, several routers' errors...)
        until ``timeout_s`` has passed since the send, or ``limit`` replies came.

        Leaving the loop early leaves keys registered until the generator is closed:
        wrap it in ``contextlib.aclosing`` to release them at once.
        """
        keys = keys_of_sent(packet)
        inbox = Inbox(64)
        try:
            for key in keys:
                # Before sending: a reply can beat the send's return.
                self.register(key, inbox, authenticated=authenticated)
            sent = await self.send(packet)
            if sent.error is not None:
                raise SendError(f"sendto: {sent.error}")
            deadline = anyio.current_time() + timeout_s
            count = 0
            while limit is None or count < limit:
                # The cancel scope never spans a yield (unsafe in async generators).
                with anyio.move_on_after(deadline - anyio.current_time()):
                    await inbox.wait()
                replies = inbox.take_all()
                if not replies:
                    return
                for reply in replies[: None if limit is None else limit - count]:
                    count += 1
                    yield reply
        finally:
            inbox.closed = True
            for key in keys:
                self.unregister(key)


class SocketTransport(TransportBase):
    """A TransportBase over kernel sockets (raw, ICMP datagram, UDP): source addresses
    from the route lookup, the sockets it owns, the send path's clocks (CLOCK_MONOTONIC
    and CLOCK_REALTIME, which the kernel's receive stamps use), and the block that runs
    its readers and closes it (mark closed, wake the readers, close the sockets)."""

    def __init__(self, cookies: Cookies | None, rate_pps: float) -> None:
        self._routes = RouteLookup()
        self._sockets: dict[Any, socket.socket] = {}
        super().__init__(cookies, self._routes.source_for, rate_pps)

    def source_for(self, destination: str) -> str:
        if self._closed:
            raise TransportClosed("transport is closed")
        return self._routes.source_for(destination)

    def interface_mtu(self, destination: str) -> int | None:
        self._check_open()
        return self._routes.interface_mtu(destination)

    @property
    def socket_count(self) -> int:
        """Sockets this transport holds: constant, however many probes run."""
        return len(self._sockets)

    def _start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the readers (or keep the group, for sockets opened later)."""
        raise NotImplementedError

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Self]:
        """The transport, its readers running, for the block; closed however it ends."""
        try:
            async with anyio.create_task_group() as task_group:
                try:
                    self._start(task_group)
                    yield self
                finally:
                    self._close()
                    task_group.cancel_scope.cancel()
        finally:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sock in self._sockets.values():
            anyio.notify_closing(sock)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._routes.close()
