"""The public API that ``rawprobe`` exports (loaded on first use, see __init__.py).

``await rawprobe.ping("198.19.0.5", count=3)`` opens a transport for the call; pass
``transport=`` (from ``rawprobe.open_transport()``) to share one set of sockets between
many concurrent probes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

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
from rawprobe.probes.craft import ICMP, IP, TCP, UDP, craft
from rawprobe.probes.models import (
    HopStats,
    HostPorts,
    PingError,
    PingReply,
    PingResult,
    PortResult,
    ScanResult,
    TraceHop,
    TraceResponse,
    TraceResult,
)
from rawprobe.probes.ping import PingOptions, ping_many_with, ping_protocols
from rawprobe.probes.scan import ScanOptions, ScanProgress, ScanStream, open_scan, syn_scan_with
from rawprobe.probes.scan import scan_ports as _scan_ports
from rawprobe.probes.scan import scan_protocols as _scan_protocols
from rawprobe.probes.traceroute import TraceOptions, trace_many_with, trace_protocols
from rawprobe.targets import resolve
from rawprobe.targets import resolve_targets as _resolve_targets
from rawprobe.transport.base import Transport
from rawprobe.transport.capture import PcapRecorder, record_pcap
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.raw import RawTransport, open_transport
from rawprobe.transport.sniffer import Captured, Sniffer, open_sniffer
from rawprobe.transport.wire.dissect import Dissection, dissect
from rawprobe.transport.wire.pktfilter import PacketFilter

__all__ = [
    "DEFAULT_RATE_PPS",
    "ICMP",
    "IP",
    "TCP",
    "UDP",
    "Captured",
    "Dissection",
    "HopStats",
    "HostPorts",
    "LabError",
    "MalformedPacket",
    "PacketFilter",
    "PcapRecorder",
    "PingError",
    "PingOptions",
    "PingReply",
    "PingResult",
    "PortResult",
    "PrivilegeError",
    "RawProbeError",
    "RawTransport",
    "ResolutionError",
    "ScanOptions",
    "ScanProgress",
    "ScanResult",
    "ScanStream",
    "SendError",
    "Sniffer",
    "TraceHop",
    "TraceOptions",
    "TraceResponse",
    "TraceResult",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UsageError",
    "craft",
    "dissect",
    "open_sniffer",
    "open_transport",
    "ping",
    "ping_many",
    "record_pcap",
    "resolve",
    "syn_scan",
    "syn_scan_stream",
    "traceroute",
    "traceroute_many",
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


# -- traceroute -----------------------------------------------------------------------


async def traceroute(
    host: str,
    *,
    method: str = "icmp",
    first_ttl: int = 1,
    max_ttl: int = 30,
    queries: int = 3,
    wait_s: float = 1.0,
    retries: int = 2,
    in_flight: int | None = None,
    port: int | None = None,
    paris: bool = True,
    source: str | None = None,
    family: int | None = None,
    transport: Transport | None = None,
) -> TraceResult:
    """Trace the route to ``host`` (Paris mode unless ``paris=False``); a TraceResult
    whatever the network does. Raises PrivilegeError, ResolutionError, UsageError."""
    async with traceroute_many(
        [host], method=method, first_ttl=first_ttl, max_ttl=max_ttl, queries=queries,
        wait_s=wait_s, retries=retries, in_flight=in_flight, port=port, paris=paris,
        source=source, family=family, transport=transport,
    ) as results:  # fmt: skip
        async for result in results:
            return result
    raise AssertionError("unreachable: one trace always yields one result")


@asynccontextmanager
async def traceroute_many(
    hosts: Sequence[str],
    *,
    method: str = "icmp",
    first_ttl: int = 1,
    max_ttl: int = 30,
    queries: int = 3,
    wait_s: float = 1.0,
    retries: int = 2,
    in_flight: int | None = None,
    port: int | None = None,
    paris: bool = True,
    source: str | None = None,
    family: int | None = None,
    transport: Transport | None = None,
) -> AsyncIterator[AsyncIterator[TraceResult]]:
    """Trace all ``hosts`` concurrently over one transport; results as each completes::

    async with rawprobe.traceroute_many(hosts, method="udp") as results:
        async for result in results:
            print(result.target, result.reached, result.path)
    """
    options = TraceOptions(
        method=method, first_ttl=first_ttl, max_ttl=max_ttl, queries=queries, wait_s=wait_s,
        retries=retries, in_flight=in_flight, port=port, paris=paris,
    )  # fmt: skip
    addresses = [await resolve(host, family) for host in hosts]
    names = list(hosts)
    if transport is not None:
        async with trace_many_with(
            transport, addresses, options, targets=names, source=source
        ) as results:
            yield results
        return
    async with (
        open_transport(trace_protocols(addresses, method)) as own,
        trace_many_with(own, addresses, options, targets=names, source=source) as results,
    ):
        yield results


# -- port scan (probes/scan.py) ---------------------------------------------------------


def _scan_options(
    technique: str,
    rate_pps: float,
    min_rate_pps: float,
    retries: int,
    max_retries: int,
    keep_closed: bool,
) -> ScanOptions:
    return ScanOptions(
        technique=technique,
        retries=retries,
        max_retries=max(retries, max_retries),
        max_rate_pps=rate_pps,
        min_rate_pps=min_rate_pps,
        keep_closed=keep_closed,
    )


async def syn_scan(
    targets: str | Sequence[str],
    ports: str | Sequence[int] | None = None,
    *,
    top_ports: int | None = None,
    rate_pps: float = DEFAULT_RATE_PPS,
    min_rate_pps: float = 0.0,
    retries: int = 1,
    max_retries: int = 6,
    technique: str = "syn",
    keep_closed: bool = False,
    family: int | None = None,
    source: str | None = None,
    transport: Transport | None = None,
) -> ScanResult:
    """TCP SYN scan of ``targets`` (hosts, addresses, CIDR blocks, ranges) on ``ports``
    (nmap syntax ``"22,80,1000-2000"`` or ``"-"``, a list, ``top_ports=N``; default the
    1000 most common). Returns a ScanResult: open and filtered ports listed per host,
    closed ones counted. ``rate_pps=0`` lifts the cap (congestion control alone).

    Raises PrivilegeError without CAP_NET_RAW, ResolutionError / UsageError for bad
    targets, ports or options.
    """
    options = _scan_options(technique, rate_pps, min_rate_pps, retries, max_retries, keep_closed)
    port_list = _scan_ports(ports, top_ports)
    space = await _resolve_targets([targets] if isinstance(targets, str) else targets, family)
    if transport is not None:
        return await syn_scan_with(transport, space, port_list, options, source=source)
    async with open_transport(_scan_protocols(space), rate_pps=rate_pps) as own:
        return await syn_scan_with(own, space, port_list, options, source=source)


@asynccontextmanager
async def syn_scan_stream(
    targets: str | Sequence[str],
    ports: str | Sequence[int] | None = None,
    *,
    top_ports: int | None = None,
    rate_pps: float = DEFAULT_RATE_PPS,
    min_rate_pps: float = 0.0,
    retries: int = 1,
    max_retries: int = 6,
    technique: str = "syn",
    family: int | None = None,
    source: str | None = None,
    transport: Transport | None = None,
) -> AsyncIterator[ScanStream]:
    """Like ``syn_scan``, but yields a stream of PortResults as they are decided::

        async with rawprobe.syn_scan_stream("198.19.0.5", "1-1024") as stream:
            async for port in stream:
                print(port.port, port.state, port.reason)
        print(stream.result)  # the ScanResult, once the scan ran to its end

    Leaving the block early cancels the scan.
    """
    options = _scan_options(technique, rate_pps, min_rate_pps, retries, max_retries, False)
    port_list = _scan_ports(ports, top_ports)
    space = await _resolve_targets([targets] if isinstance(targets, str) else targets, family)
    if transport is not None:
        async with open_scan(transport, space, port_list, options, source=source) as stream:
            yield stream
        return
    async with (
        open_transport(_scan_protocols(space), rate_pps=rate_pps) as own,
        open_scan(own, space, port_list, options, source=source) as stream,
    ):
        yield stream
