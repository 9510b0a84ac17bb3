"""Send one packet and await its replies: the hand-crafted-packet side of a transport.

Shared by RawTransport and MemoryTransport through ``TransportBase``; the match keys are
derived from the packet itself (``keys_of_sent``), so any probe the key table knows
(ICMP echo and queries, TCP, UDP) can be sent this way.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio

from rawprobe.errors import SendError, TransportClosed
from rawprobe.transport.base import Counters, Inbox, Recorder, Reply, Sent
from rawprobe.transport.demux import Demux
from rawprobe.transport.keys import Cookies, MatchKey, keys_of_sent
from rawprobe.transport.sockets import RouteLookup


class TransportBase:
    """What the raw and the memory transport share: the demultiplexer and its
    counters, key registration, the recorder hook, and request/replies on top.
    Subclasses provide ``send`` (and set ``_closed`` when they close)."""

    def __init__(self, cookies: Cookies | None, local_address: Callable[[str], str]) -> None:
        self.cookies = cookies or Cookies()
        self.counters = Counters()
        self._demux = Demux(self.cookies, self.counters, local_address)
        self._closed = False

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

    async def send(self, packet: bytes) -> Sent:
        raise NotImplementedError

    def read_pending(self) -> None:
        """Deliver what the sockets already hold, now (see Transport.read_pending); a
        transport whose readers deliver as packets arrive has nothing to do."""

    def filter_tcp(self, local_ports: Sequence[int]) -> None:
        """Deliver only TCP segments to ``local_ports`` (a kernel filter on raw
        sockets; nothing to do for a simulated network)."""

    async def request(
        self, packet: bytes, timeout_s: float = 2.0, *, authenticated: bool = True
    ) -> Reply | None:
        """Send ``packet`` and return the first reply, or None after ``timeout_s``.

        Echo replies count only if they carry this transport's cookie (put it in the
        payload with ``cookies.echo_payload``) unless ``authenticated`` is False.

        Raises MalformedPacket when replies to the packet cannot be recognised, and
        SendError when the local stack refused to send it (the errno is named).
        """
        keys = keys_of_sent(packet)
        inbox = Inbox(64)
        try:
            await self._send_registered(packet, keys, inbox, authenticated)
            with anyio.move_on_after(timeout_s):
                await inbox.wait()
            replies = inbox.take_all()
            return replies[0] if replies else None
        finally:
            inbox.closed = True
            for key in keys:
                self.unregister(key)

    async def replies(
        self,
        packet: bytes,
        timeout_s: float = 2.0,
        *,
        limit: int | None = None,
        authenticated: bool = True,
    ) -> AsyncIterator[Reply]:
        """Send ``packet`` and yield each reply (duplicates, several routers' errors...)
        until ``timeout_s`` has passed since the send, or ``limit`` replies came.

        Leaving the loop early leaves keys registered until the generator is closed:
        wrap it in ``contextlib.aclosing`` to release them at once.
        """
        keys = keys_of_sent(packet)
        inbox = Inbox(64)
        try:
            await self._send_registered(packet, keys, inbox, authenticated)
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

    async def _send_registered(
        self,
        packet: bytes,
        keys: tuple[MatchKey, ...],
        inbox: Inbox,
        authenticated: bool,
    ) -> None:
        for key in keys:
            # Before sending: a reply can beat the send's return.
            self.register(key, inbox, authenticated=authenticated)
        sent = await self.send(packet)
        if sent.error is not None:
            raise SendError(f"sendto: {sent.error}")


class SocketTransport(TransportBase):
    """A TransportBase over kernel sockets (raw, ICMP datagram, UDP): source addresses
    from the route lookup, the sockets it owns, and closing them (mark closed, wake the
    readers, close)."""

    def __init__(self, cookies: Cookies | None) -> None:
        self._routes = RouteLookup()
        self._sockets: dict[Any, socket.socket] = {}
        super().__init__(cookies, self._routes.source_for)

    def source_for(self, destination: str) -> str:
        if self._closed:
            raise TransportClosed("transport is closed")
        return self._routes.source_for(destination)

    @property
    def socket_count(self) -> int:
        """Sockets this transport holds: constant, however many probes run."""
        return len(self._sockets)

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
