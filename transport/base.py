"""What every transport offers probes: sent stamps, replies, RTT, and the interface.

Two clocks meet here. Scheduling uses the event loop's monotonic clock. RTT uses the
kernel's receive stamp (CLOCK_REALTIME, SO_TIMESTAMPNS) minus a CLOCK_REALTIME stamp
taken right at ``sendto``; when that difference is absurd (a clock step between send
and receive) the monotonic difference is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from anyio.streams.memory import MemoryObjectSendStream

from rawprobe.transport.keys import Cookies, MatchKey


@dataclass(frozen=True, slots=True)
class Sent:
    """When a packet left, on both clocks; ``error`` names an errno for a send the
    network refused (e.g. ``ENETUNREACH``), which the probe reports as a result."""

    realtime_ns: int
    monotonic_s: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A packet that matched a registered key and passed authentication.

    ``data`` is the whole IPv4 packet for IPv4, and the ICMPv6 (or upper-layer)
    message without the IPv6 header for IPv6, as raw sockets deliver them.
    """

    key: MatchKey
    family: int
    source: str
    data: bytes
    ttl: int | None
    received_ns: int
    received_s: float
    protocol: int  # IP protocol of ``data`` (IPv4: the packet's; IPv6: the socket's)


#: Tolerance between the two clocks' views of an RTT before the kernel stamp is
#: distrusted (a clock step between send and receive).
_CLOCK_STEP_TOLERANCE_S = 0.05


def rtt_s(sent: Sent, reply: Reply) -> float:
    """Round-trip time in seconds: kernel receive stamp minus the send stamp.

    Falls back to the monotonic difference when the realtime difference is negative
    or disagrees with it by more than the tolerance (a wall-clock step).
    """
    kernel = (reply.received_ns - sent.realtime_ns) / 1e9
    monotonic = reply.received_s - sent.monotonic_s
    if kernel < 0 or abs(kernel - monotonic) > _CLOCK_STEP_TOLERANCE_S:
        return max(monotonic, 0.0)
    return kernel


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
        return {
            "received": self.received,
            "delivered": self.delivered,
            "unmatched": self.unmatched,
            "malformed": self.malformed,
            "forged": self.forged,
            "inbox_overflow": self.inbox_overflow,
            "kernel_drops": self.kernel_drops,
            "sent": self.sent,
            "send_errors": self.send_errors,
        }


class Recorder(Protocol):
    """Sees every packet a transport sends and every reply it delivers (pcap files)."""

    def record(self, packet: bytes, timestamp_ns: int, outgoing: bool) -> None:
        """``packet`` is a whole IPv4/IPv6 packet; ``timestamp_ns`` is CLOCK_REALTIME."""
        ...


class Transport(Protocol):
    """The interface probes use; RawTransport and MemoryTransport both implement it."""

    cookies: Cookies
    counters: Counters

    def source_for(self, destination: str) -> str:
        """Source address the kernel would use towards ``destination``."""
        ...

    def register(
        self,
        key: MatchKey,
        inbox: MemoryObjectSendStream[Reply],
        *,
        authenticated: bool = True,
    ) -> None:
        """Route replies carrying ``key`` to ``inbox``. Call before sending.

        Echo replies must carry this transport's cookie unless ``authenticated`` is
        False (hand-made packets with a payload of the caller's choosing)."""
        ...

    def unregister(self, key: MatchKey) -> None:
        """Stop routing ``key``; unknown keys are ignored."""
        ...

    async def send(self, packet: bytes) -> Sent:
        """Send a whole IPv4/IPv6 packet, paced by the transport's rate."""
        ...
