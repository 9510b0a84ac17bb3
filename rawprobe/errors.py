"""The whole exception tree of rawprobe.

Exceptions are for the tool failing (no privilege, closed transport, bad arguments);
network outcomes (silence, unreachable, TTL exceeded, RST) are results, never
exceptions. This module imports nothing from the package so every layer may use it::

    RawProbeError
    ├── PrivilegeError        (also PermissionError)  raw sockets need root / CAP_NET_RAW
    ├── UsageError            (also ValueError)       bad argument from a caller or the CLI
    │   └── ResolutionError                           a name or address that cannot be used
    ├── TransportError
    │   ├── TransportClosed                           used after close
    │   └── SendError                                 the kernel refused to send
    ├── LabError                                      the network lab could not be built
    └── MalformedPacket       (also ValueError)       truncated or inconsistent bytes
"""

from __future__ import annotations

__all__ = [
    "LabError",
    "MalformedPacket",
    "PrivilegeError",
    "RawProbeError",
    "ResolutionError",
    "SendError",
    "TransportClosed",
    "TransportError",
    "UsageError",
]


class RawProbeError(Exception):
    """Root of every error rawprobe raises on purpose."""


class PrivilegeError(RawProbeError, PermissionError):
    """The operation needs privileges the process lacks; the message says what to do."""


class UsageError(RawProbeError, ValueError):
    """A caller passed an argument rawprobe cannot use."""


class ResolutionError(UsageError):
    """A host name or address cannot be turned into a usable address."""


class TransportError(RawProbeError):
    """The transport failed (not the network: silence and ICMP errors are results)."""


class TransportClosed(TransportError):
    """The transport was used after it was closed."""


class SendError(TransportError):
    """The kernel refused a send for a reason that is not a network outcome."""


class LabError(RawProbeError):
    """The network-namespace lab could not be built, entered or torn down."""


class MalformedPacket(RawProbeError, ValueError):
    """Bytes that do not form the packet they claim to be (truncated or inconsistent)."""
