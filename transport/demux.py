"""The demultiplexer: routes each received packet to the probe that registered its key.

Shared by the raw and the memory transport, so simulated tests exercise the same code
that runs on the wire. Per packet it extracts the key from bytes, looks it up, and
only for a hit verifies the checksums and the cookie and builds a typed answer
(transport/answers.py). Nothing here
raises for a bad or foreign packet: those are counted.

Checksums, of packets that matched a key only (unrelated traffic costs nothing more),
and only what no kernel checked before: a bad one is counted ``malformed``.

- The ICMP checksum of an IPv4 reply: Linux hands raw IPv4 sockets ICMP packets before
  ``icmp_rcv`` verifies it (``verify_icmp``).
- The IPv4 header checksum (``verify_ip_header``): ``ip_rcv`` drops bad ones before any
  raw socket sees them, so the raw transport turns this off; packets injected into the
  simulated network are checked.
- ICMPv6: the kernel verifies the checksum on ICMPv6 raw sockets itself (RFC 3542
  section 3.1; Linux sets the checksum offset of IPPROTO_ICMPV6 raw sockets and drops
  bad ones), so it is not summed again (that would need the pseudo-header too).
- TCP: not checked (on veth and offloading NICs a local segment may carry a partial
  checksum, as the kernel relies on the offload).

Transports that rebuild packets from what the kernel already verified (ICMP and UDP
datagram sockets) turn both off.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from rawprobe.errors import MalformedPacket, RawProbeError
from rawprobe.transport.answers import Reply, answer_v4, answer_v6
from rawprobe.transport.base import Counters, Inbox, Recorder
from rawprobe.transport.keys import (
    KIND_ECHO,
    KIND_UDP,
    PROTO_ICMPV6,
    Cookies,
    MatchKey,
    echo_payload_v4,
    echo_payload_v6,
    key_of_reply_v4,
    key_of_reply_v6,
    nat_key_v4,
)
from rawprobe.transport.wire.checksum import ones_complement_sum
from rawprobe.transport.wire.ipv6 import IPv6Header, build_ipv6

_PROTO_ICMP = 1


def checksums_ok_v4(packet: bytes, header: bool = True, icmp: bool = True) -> bool:
    """True when an IPv4 packet's header checksum (``header``) and, for ICMP, its ICMP
    checksum (``icmp``) are right: a correct sum, checksum field included, is 0xFFFF.

    A right header sums to -0, so the whole packet sums to what its ICMP message does:
    the ICMP check is one sum over the packet, no slice (the raw transport's hot path).
    """
    if header and ones_complement_sum(packet[: (packet[0] & 0x0F) * 4]) != 0xFFFF:
        return False
    return not icmp or packet[9] != _PROTO_ICMP or ones_complement_sum(packet) == 0xFFFF


class Demux:
    """Key -> inbox routing with authentication and counters."""

    def __init__(
        self,
        cookies: Cookies,
        counters: Counters,
        local_address: Callable[[str], str] | None = None,
    ) -> None:
        self.cookies = cookies
        self.counters = counters
        #: Sees every delivered reply (e.g. a pcap writer); set by the transport.
        self.recorder: Recorder | None = None
        #: Verify the ICMP and the IPv4 header checksums of matched IPv4 packets (see
        #: the module's docstring: transports turn off what their kernel checked).
        self.verify_icmp = True
        self.verify_ip_header = True
        self._local_address = local_address
        self._routes: dict[MatchKey, Inbox] = {}
        self._unauthenticated: set[MatchKey] = set()
        #: (key kind, key[2]) -> inbox: wide routes, for keys without a route of their own.
        self._wide: dict[tuple[int, int], Inbox] = {}

    def register(self, key: MatchKey, inbox: Inbox, *, authenticated: bool = True) -> None:
        """Route ``key`` to ``inbox``. ``authenticated=False`` skips the cookie check for
        echo replies (hand-made packets whose payload the caller chose)."""
        self._routes[key] = inbox
        if not authenticated:
            self._unauthenticated.add(key)
        elif self._unauthenticated:
            self._unauthenticated.discard(key)

    def unregister(self, key: MatchKey) -> None:
        self._routes.pop(key, None)
        if self._unauthenticated:
            self._unauthenticated.discard(key)

    def register_route(self, kind: int, a: int, inbox: Inbox) -> None:
        """Route every key ``(kind, *, a, *)`` that has no route of its own to ``inbox``
        (for echo keys, ``a`` is the identifier: echo replies and ICMP errors quoting
        echo requests); cookies are still checked. One route for a whole sweep instead
        of one per probe."""
        self._wide[kind, a] = inbox

    def unregister_route(self, kind: int, a: int) -> None:
        self._wide.pop((kind, a), None)

    @property
    def registered(self) -> int:
        return len(self._routes) + len(self._wide)

    def dispatch_v4(self, packet: bytes, received_ns: int, received_s: float) -> None:
        """Handle one IPv4 packet read from a raw socket (IP header included)."""
        self.counters.received += 1
        try:
            key = key_of_reply_v4(packet)
            if key is not None and key[0] == KIND_UDP:
                key = self._nat_key(packet, key)
            inbox = self._accept(key, packet, echo_payload_v4, True)
            if inbox is None or key is None:
                return
            reply = answer_v4(key, packet, received_ns, received_s)
        except MalformedPacket:
            self.counters.malformed += 1
            return
        if self.recorder is None and not inbox.closed and inbox.put(reply):
            self.counters.delivered += 1  # the common case, without a call
        else:
            self._deliver(reply, inbox)

    def _nat_key(self, packet: bytes, key: MatchKey) -> MatchKey:
        """An ICMPv4 error quoting UDP: the key by the quoted IPv4 ID when that differs
        from the quoted checksum and is a probe's. Paris UDP probes carry their identity
        in both, so a NAT that rewrote the checksum (and the address or port it covers)
        without translating the quote back cannot match it to another probe (keys.py)."""
        alternative = nat_key_v4(packet, key)
        return alternative if alternative != key and alternative in self._routes else key

    def dispatch_v6(
        self,
        message: bytes,
        source: bytes,
        hop_limit: int | None,
        received_ns: int,
        received_s: float,
        protocol: int = PROTO_ICMPV6,
    ) -> None:
        """Handle one IPv6 upper-layer message (no IPv6 header) of ``protocol`` from
        ``source`` (packed), as a raw socket of that protocol delivers it."""
        self.counters.received += 1
        try:
            key = key_of_reply_v6(message, source, protocol)
            inbox = self._accept(key, message, echo_payload_v6, False)
            if inbox is None or key is None:
                return
            answer = answer_v6(key, source, message, hop_limit, received_ns, received_s, protocol)
        except MalformedPacket:
            self.counters.malformed += 1
            return
        self._deliver(answer, inbox)

    def _accept(
        self,
        key: MatchKey | None,
        data: bytes,
        echo_payload: Callable[[bytes], tuple[bytes, bool]],
        check_v4: bool,
    ) -> Inbox | None:
        """The inbox for ``key``, or None (counted) when nobody waits for it, an IPv4
        packet's checksums are wrong (``check_v4``) or an echo reply lacks our cookie.
        Runs only after the cheap key extraction."""
        if key is None:
            self.counters.unmatched += 1
            return None
        inbox = self._routes.get(key)
        if inbox is None:
            if self._wide:
                inbox = self._wide.get((key[0], key[2]))
            if inbox is None:
                self.counters.unmatched += 1
                return None
        if (
            check_v4
            and (self.verify_icmp or self.verify_ip_header)
            and not checksums_ok_v4(data, self.verify_ip_header, self.verify_icmp)
        ):
            self.counters.malformed += 1
            return None
        if key[0] == KIND_ECHO and (not self._unauthenticated or key not in self._unauthenticated):
            payload, quoted = echo_payload(data)
            if not self.cookies.verify_echo(key, payload, quoted):
                self.counters.forged += 1
                return None
        return inbox

    def _full_packet(self, reply: Reply) -> bytes:
        """The reply as a whole IP packet: IPv6 raw sockets strip the header, so one is
        rebuilt (destination: our address towards the sender) for recorders."""
        if reply.family == socket.AF_INET:
            return reply.data
        destination = "::"
        if self._local_address is not None:
            with contextlib.suppress(RawProbeError):
                destination = self._local_address(reply.source)
        header = IPv6Header(
            src=reply.source,
            dst=destination,
            next_header=reply.protocol,
            hop_limit=reply.ttl if reply.ttl is not None else 0,
        )
        return build_ipv6(header, reply.data)

    def _deliver(self, reply: Reply, inbox: Inbox) -> None:
        if self.recorder is None and not inbox.closed and inbox.put(reply):
            self.counters.delivered += 1  # the common case
            return
        if self.recorder is not None:
            self.recorder.record(self._full_packet(reply), reply.received_ns, False)
        if inbox.closed:
            self._routes.pop(reply.key, None)
            self.counters.unmatched += 1
        elif inbox.put(reply):
            self.counters.delivered += 1
        else:
            self.counters.inbox_overflow += 1
