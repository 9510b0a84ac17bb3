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

import errno
import sys

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


# -- the public boundary: one error, never a group ----------------------------------------


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions of a (nested) group, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += leaves(exc)
        else:
            found.append(exc)
    return found


def _is_cancellation(exc: BaseException) -> bool:
    """asyncio's or trio's cancellation (looked up only if that library is loaded: an
    instance cannot exist otherwise, and ``import rawprobe`` stays cheap)."""
    for module_name, class_name in (("asyncio", "CancelledError"), ("trio", "Cancelled")):
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, getattr(module, class_name)):
            return True
    return False


def sole_error(group: BaseExceptionGroup[BaseException]) -> RawProbeError | None:
    """The first RawProbeError of ``group`` when the group holds nothing else but
    cancellations, else None (then the group is a bug, or a KeyboardInterrupt, and
    must propagate as it is).

    Every open transport holds a task group, so a RawProbeError raised while one is
    open reaches the caller wrapped in an ExceptionGroup; public functions and the CLI
    re-raise it alone (``raise error`` inside ``except``: the group stays reachable
    as ``__context__``, the error's own ``__cause__`` is kept).
    """
    found = [exc for exc in leaves(group) if not _is_cancellation(exc)]
    if found and all(isinstance(exc, RawProbeError) for exc in found):
        first = found[0]
        assert isinstance(first, RawProbeError)
        return first
    return None


# -- failed output writes ----------------------------------------------------------------


#: errno values of a failed write that are the output's fault, not rawprobe's: the
#: reader went away (EPIPE), the disk or quota is full, the file too big, the device bad.
_WRITE_ERRNOS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def write_failure(exc: BaseException) -> OSError | None:
    """The failed output write that ``exc`` is, or None.

    ``exc`` may be a (nested) exception group, as a task group raises it: it counts
    when every leaf is a write failure (a broken pipe first, when there are several)
    or an anyio stream error it caused (a task that died of it was a stream's end).
    rich turns a broken pipe into ``SystemExit(1)`` (``Console.on_broken_pipe``); that
    counts as the broken pipe it comes from. The CLI reports these as one line or, for
    a reader that went away, silently (exit 141); forked workers send them to the
    parent without a traceback.
    """
    failures: list[OSError] = []
    for leaf in leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]:
        if isinstance(leaf, SystemExit) and isinstance(leaf.__context__, BrokenPipeError):
            leaf = leaf.__context__
        if _consequence(leaf):
            continue
        if not isinstance(leaf, OSError) or leaf.errno not in _WRITE_ERRNOS:
            return None
        failures.append(leaf)
    if not failures:
        return None
    return next((f for f in failures if isinstance(f, BrokenPipeError)), failures[0])


def _consequence(exc: BaseException) -> bool:
    """An anyio stream error beside a write failure: the task that died of it had been
    the other end of a stream (trace's hop printer and its feeder, say)."""
    kind = type(exc)
    return kind.__module__.startswith("anyio") and kind.__name__ in _STREAM_ERRORS


_STREAM_ERRORS = frozenset({"BrokenResourceError", "ClosedResourceError", "EndOfStream"})
