"""Kernel transmit stamps: which send each SO_TIMESTAMPING stamp belongs to. Pure.

An RTT is the kernel's receive stamp minus a send stamp. Taken in user space right
before ``sendto``, the send stamp also counts the host's own send path (the system
call, routing, netfilter: tens of microseconds on a quiet machine, more when its caches
are cold). The kernel can stamp the packet where tcpdump sees it leave
(``SOF_TIMESTAMPING_TX_SOFTWARE``: the driver's transmit, on the same CLOCK_REALTIME as
the receive stamp), and report the stamp on the sending socket's error queue, after the
send returned. The raw transport sends every probe through one ``IPPROTO_RAW`` socket per
family, so that socket's error queue carries the stamps; ``SOF_TIMESTAMPING_OPT_ID``
keys each with a counter the kernel keeps per socket (``sk_tskey``, 32 bits, from 0),
and ``OPT_TSONLY`` leaves the packet itself out. This module turns keys back into sends.

The counting rules, checked on Linux 6.18 for IPv4 and IPv6 ``IPPROTO_RAW`` sockets
(tests/lab/test_txstamps_lab.py keeps checking them):

- every send that succeeded took one key, in order, across batches and probes;
- a refused send took one when the kernel had built the packet before refusing it:
  ``ENOBUFS`` (a full queue dropped it) and ``EPERM`` (netfilter dropped it) did;
  routing errors (``ENETUNREACH``, ``EHOSTUNREACH``, ``EACCES`` of a prohibit route),
  ``EMSGSIZE`` and ``EAGAIN`` (a full send buffer) did not;
- a key may never be stamped (a driver that does not stamp, a packet that died in a
  queue or waiting for ARP, an error queue that overflowed): that send keeps its
  user-space stamp.

Two guards catch a count gone wrong (an errno the rules above do not know): a stamp
for a key a refused send took, and a stamp earlier than the user-space stamp taken
before its send. Either turns kernel stamps off for the socket (``lost``): its RTTs
fall back to user-space stamps, less precise but never attributed to the wrong probe.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence

from rawprobe.transport.sockets import RECVERR, SCM_TIMESTAMPING

__all__ = ["TAKES_KEY", "WINDOW", "TxStamp", "TxStamps", "tx_stamp_of"]

#: Errnos of refused sends that took a key (see the module docstring).
TAKES_KEY = frozenset((errno.ENOBUFS, errno.EPERM))
#: Sends awaiting their stamp, at most: an older one's stamp, if it ever comes, is
#: ignored (the send keeps its user-space stamp).
WINDOW = 65536
_KEYS = 0xFFFFFFFF

# linux/errqueue.h: the origin and ee_info of a transmit stamp's error record
SO_EE_ORIGIN_TIMESTAMPING = 4
SCM_TSTAMP_SND = 0
#: struct scm_timestamping: three timespecs, the first the software stamp.
_TIMESPEC = struct.Struct("=qq")
#: The fields of EXTENDED_ERR a transmit stamp's record is told by, and its key.
_ORIGIN_INFO_DATA = struct.Struct("=4xB3xII")


class TxStamp:
    """One send's kernel transmit stamp: ``kernel_ns`` (CLOCK_REALTIME) is 0 until the
    kernel's report is read, and stays 0 if none comes. ``not_before_ns`` is the
    user-space stamp taken before the send: the kernel's cannot be earlier."""

    __slots__ = ("kernel_ns", "not_before_ns")

    def __init__(self, not_before_ns: int) -> None:
        self.kernel_ns = 0
        self.not_before_ns = not_before_ns

    def __repr__(self) -> str:
        return f"TxStamp(kernel_ns={self.kernel_ns}, not_before_ns={self.not_before_ns})"


class TxStamps:
    """The keys of one socket's sends, and the stamps the kernel reports for them.

    Call ``sent`` after each send the kernel accepted, ``refused`` after each it
    refused, in the order of the system calls; ``stamped`` for each report read from
    the error queue, in any order and at any time.
    """

    __slots__ = ("_awaited", "_next", "lost")

    def __init__(self) -> None:
        self._next = 0  # the key the kernel gives the next packet it builds
        #: key -> the stamp awaited, or None for a key a refused send took
        self._awaited: dict[int, TxStamp | None] = {}
        #: True once the count went wrong: no kernel stamp is used any more.
        self.lost = False

    def sent(self, not_before_ns: int) -> TxStamp | None:
        """A send succeeded: the stamp it will get (None once ``lost``)."""
        if self.lost:
            return None
        stamp = TxStamp(not_before_ns)
        self._take(stamp)
        return stamp

    def refused(self, code: int | None) -> None:
        """A send failed with errno ``code``: count the key it took, if it took one."""
        if code in TAKES_KEY and not self.lost:
            self._take(None)

    def stamped(self, key: int, kernel_ns: int) -> None:
        """The kernel reported ``kernel_ns`` for the packet it keyed ``key``."""
        if self.lost or key not in self._awaited:
            return  # late (past the window) or a key counted before lost: ignored
        stamp = self._awaited.pop(key)
        if stamp is None or kernel_ns < stamp.not_before_ns:
            self._lose()
            return
        stamp.kernel_ns = kernel_ns

    @property
    def awaited(self) -> int:
        """Sends whose stamp has not come (yet)."""
        return sum(1 for stamp in self._awaited.values() if stamp is not None)

    def _take(self, stamp: TxStamp | None) -> None:
        key = self._next
        self._next = (key + 1) & _KEYS
        awaited = self._awaited
        awaited[key] = stamp
        if len(awaited) > WINDOW:
            awaited.pop((key - WINDOW) & _KEYS, None)

    def _lose(self) -> None:
        self.lost = True
        self._awaited.clear()


def tx_stamp_of(ancillary: Sequence[tuple[int, int, bytes]]) -> tuple[int, int] | None:
    """(key, CLOCK_REALTIME ns) of an error-queue message that is a software transmit
    stamp (``SCM_TIMESTAMPING`` plus an ``IP_RECVERR``/``IPV6_RECVERR`` record of origin
    ``SO_EE_ORIGIN_TIMESTAMPING``); None for anything else (an ICMP or local error)."""
    kernel_ns = key = None
    try:
        for level, kind, value in ancillary:
            if kind == SCM_TIMESTAMPING and level == socket.SOL_SOCKET:
                seconds, nanos = _TIMESPEC.unpack_from(value)
                kernel_ns = seconds * 1_000_000_000 + nanos
            elif (level, kind) in RECVERR:
                origin, info, data = _ORIGIN_INFO_DATA.unpack_from(value)
                if origin == SO_EE_ORIGIN_TIMESTAMPING and info == SCM_TSTAMP_SND:
                    key = data
    except struct.error:  # (never from a kernel: a record too short)
        return None
    if not kernel_ns or key is None:
        return None
    return key, kernel_ns
