"""rawprobe: async raw-socket network probes for asyncio and trio.

The front door: ``await rawprobe.ping("198.19.0.5", count=3)`` opens a transport for
the call; pass ``transport=`` (from ``rawprobe.open_transport()``) to share one set of
sockets between many concurrent probes. The names below live in ``rawprobe.api`` and
are loaded on first use, so ``import rawprobe.errors`` (or a CLI subcommand) does not
pay for every probe's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    # What type checkers see: every public name, explicitly (no module __getattr__ for
    # them, so ``rawprobe.pign`` is an error). At run time they load on first use.
    from rawprobe.api import (
        DEFAULT_RATE_PPS,
        ICMP,
        IP,
        TCP,
        UDP,
        Captured,
        Dissection,
        HopStats,
        HostPorts,
        PacketFilter,
        PcapRecorder,
        PingError,
        PingOptions,
        PingReply,
        PingResult,
        PortResult,
        RawTransport,
        ScanOptions,
        ScanProgress,
        ScanResult,
        ScanStream,
        Sniffer,
        SweepOptions,
        SweepResult,
        TraceHop,
        TraceOptions,
        TraceResponse,
        TraceResult,
        Transport,
        craft,
        dissect,
        open_sniffer,
        open_transport,
        ping,
        ping_many,
        record_pcap,
        resolve,
        sweep,
        syn_scan,
        syn_scan_stream,
        traceroute,
        traceroute_many,
    )

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
    "SweepOptions",
    "SweepResult",
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
    "sweep",
    "syn_scan",
    "syn_scan_stream",
    "traceroute",
    "traceroute_many",
]

_ERRORS = {
    "LabError",
    "MalformedPacket",
    "PrivilegeError",
    "RawProbeError",
    "ResolutionError",
    "SendError",
    "TransportClosed",
    "TransportError",
    "UsageError",
}


if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Load the public API on first use (PEP 562); hidden from type checkers,
        which see the imports above instead."""
        if name in __all__ and name not in _ERRORS:
            from rawprobe import api

            value = getattr(api, name)
            globals()[name] = value
            return value
        raise AttributeError(f"module 'rawprobe' has no attribute {name!r}")
