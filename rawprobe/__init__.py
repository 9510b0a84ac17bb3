"""rawprobe: async raw-socket network probes for asyncio and trio.

The front door: ``await rawprobe.ping("198.19.0.5", count=3)`` opens a transport for
the call; pass ``transport=`` (from ``rawprobe.open_transport()``) to share one set of
sockets between many concurrent probes.
"""

from __future__ import annotations

from collections.abc import Sequence

from rawprobe.errors import (
    LabError,
    MalformedPacket,
    PrivilegeError,
    RawProbeError,
    ResolutionError,
    SendError,
    TransportClosed,
    TransportError,
    UsageError,
)
from rawprobe.probes.models import PingError, PingReply, PingResult
from rawprobe.probes.ping import PingOptions, ping_many_with, ping_protocols
from rawprobe.targets import resolve
from rawprobe.transport.base import Transport
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.raw import RawTransport, open_transport

__all__ = [
    "DEFAULT_RATE_PPS",
    "LabError",
    "MalformedPacket",
    "PingError",
    "PingOptions",
    "PingReply",
    "PingResult",
    "PrivilegeError",
    "RawProbeError",
    "RawTransport",
    "ResolutionError",
    "SendError",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UsageError",
    "open_transport",
    "ping",
    "ping_many",
    "resolve",
]


async def ping(
    host: str,
    *,
    count: int = 4,
    interval_s: float = 1.0,
    timeout_s: float = 2.0,
    payload_size: int = 56,
    ttl: int = 64,
    source: str | None = None,
    family: int | None = None,
    transport: Transport | None = None,
) -> PingResult:
    """Ping ``host`` and return its PingResult (silence is a result, not an error).

    Raises PrivilegeError without CAP_NET_RAW, ResolutionError for a bad host,
    UsageError for bad options.
    """
    results = await ping_many(
        [host],
        count=count,
        interval_s=interval_s,
        timeout_s=timeout_s,
        payload_size=payload_size,
        ttl=ttl,
        source=source,
        family=family,
        transport=transport,
    )
    return results[0]


async def ping_many(
    hosts: Sequence[str],
    *,
    count: int = 4,
    interval_s: float = 1.0,
    timeout_s: float = 2.0,
    payload_size: int = 56,
    ttl: int = 64,
    source: str | None = None,
    family: int | None = None,
    transport: Transport | None = None,
) -> list[PingResult]:
    """Ping all ``hosts`` concurrently over one transport; results in input order."""
    options = PingOptions(
        count=count,
        interval_s=interval_s,
        timeout_s=timeout_s,
        payload_size=payload_size,
        ttl=ttl,
    )
    addresses = [await resolve(host, family) for host in hosts]
    if transport is not None:
        return await ping_many_with(transport, addresses, options, source=source)
    async with open_transport(ping_protocols(addresses)) as own:
        return await ping_many_with(own, addresses, options, source=source)
