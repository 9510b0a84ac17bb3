"""The demultiplexer: routes each received packet to the probe that registered its key.

Shared by the raw and the memory transport, so simulated tests exercise the same code
that runs on the wire. Per packet it extracts the key from bytes, looks it up, and
only for a hit verifies the cookie and builds a Reply. Nothing here raises for a bad
or foreign packet: those are counted.
"""

from __future__ import annotations

import socket

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from rawprobe.errors import MalformedPacket
from rawprobe.transport.base import Counters, Reply
from rawprobe.transport.keys import (
    KIND_ECHO,
    Cookies,
    MatchKey,
    echo_payload_v4,
    echo_payload_v6,
    key_of_reply_v4,
    key_of_reply_v6,
)

Inbox = MemoryObjectSendStream[Reply]


class Demux:
    """Key -> inbox routing with authentication and counters."""

    def __init__(self, cookies: Cookies, counters: Counters) -> None:
        self.cookies = cookies
        self.counters = counters
        self._routes: dict[MatchKey, Inbox] = {}

    def register(self, key: MatchKey, inbox: Inbox) -> None:
        self._routes[key] = inbox

    def unregister(self, key: MatchKey) -> None:
        self._routes.pop(key, None)

    @property
    def registered(self) -> int:
        return len(self._routes)

    def dispatch_v4(self, packet: bytes, received_ns: int, received_s: float) -> None:
        """Handle one IPv4 packet read from a raw socket (IP header included)."""
        counters = self.counters
        counters.received += 1
        try:
            key = key_of_reply_v4(packet)
        except MalformedPacket:
            counters.malformed += 1
            return
        inbox = self._routes.get(key) if key is not None else None
        if inbox is None or key is None:
            counters.unmatched += 1
            return
        if key[0] == KIND_ECHO and not self.cookies.verify_echo(key, echo_payload_v4(packet)):
            counters.forged += 1
            return
        source = socket.inet_ntop(socket.AF_INET, packet[12:16])
        reply = Reply(key, socket.AF_INET, source, packet, packet[8], received_ns, received_s)
        self._deliver(key, inbox, reply)

    def dispatch_v6(
        self,
        message: bytes,
        source: bytes,
        hop_limit: int | None,
        received_ns: int,
        received_s: float,
    ) -> None:
        """Handle one IPv6 upper-layer message (no IPv6 header) from ``source`` (packed)."""
        counters = self.counters
        counters.received += 1
        try:
            key = key_of_reply_v6(message, source)
        except MalformedPacket:
            counters.malformed += 1
            return
        inbox = self._routes.get(key) if key is not None else None
        if inbox is None or key is None:
            counters.unmatched += 1
            return
        if key[0] == KIND_ECHO and not self.cookies.verify_echo(key, echo_payload_v6(message)):
            counters.forged += 1
            return
        text = socket.inet_ntop(socket.AF_INET6, source)
        reply = Reply(key, socket.AF_INET6, text, message, hop_limit, received_ns, received_s)
        self._deliver(key, inbox, reply)

    def _deliver(self, key: MatchKey, inbox: Inbox, reply: Reply) -> None:
        try:
            inbox.send_nowait(reply)
        except anyio.WouldBlock:
            self.counters.inbox_overflow += 1
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._routes.pop(key, None)
            self.counters.unmatched += 1
        else:
            self.counters.delivered += 1
