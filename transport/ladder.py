"""The privilege ladder: raw sockets when allowed, else the unprivileged sockets a
probe can use. Shared by the CLI (``--privileged`` / ``--unprivileged``) and the
library (``privileged=True | False | None``), so both climb down the same way.

Rungs: raw sockets (root or CAP_NET_RAW); below them ICMP datagram sockets for ICMP
echo (users whose group is in ``net.ipv4.ping_group_range``) and UDP sockets with
``IP_RECVERR`` for a UDP traceroute (tracepath's way). A TCP SYN scan's unprivileged
rung is a connect() scan, which is not a transport: see ``wants_raw``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal, TypeAlias

from rawprobe.errors import PrivilegeError, UsageError
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.raw import open_transport
from rawprobe.transport.sockets import raw_sockets_allowed

if TYPE_CHECKING:  # the unprivileged rungs load when climbed down to (start-up time)
    from rawprobe.transport.dgram import DatagramTransport
    from rawprobe.transport.raw import RawTransport
    from rawprobe.transport.udp_dgram import UdpTransport

#: What a probe can use without privilege: ICMP echo ("icmp"), UDP probes ("udp"), or
#: nothing (None: TCP needs raw sockets).
Unprivileged = Literal["icmp", "udp"] | None

LadderTransport: TypeAlias = "RawTransport | DatagramTransport | UdpTransport"


@asynccontextmanager
async def open_probe_transport(
    protocols: Iterable[tuple[int, int]],
    *,
    rate_pps: float = DEFAULT_RATE_PPS,
    privileged: bool | None = None,
    unprivileged: Unprivileged = "icmp",
    what: str = "this probe",
    tx_stamps: bool = False,
) -> AsyncIterator[LadderTransport]:
    """A transport for a probe needing the raw sockets ``protocols``.

    ``privileged=True``: raw sockets only (PrivilegeError says what to do).
    ``False``: the unprivileged sockets only (UsageError when ``unprivileged`` is None:
    ``what`` has no unprivileged way). ``None``: raw sockets when allowed, else the
    unprivileged ones; PrivilegeError naming both remedies when neither is allowed.
    ``tx_stamps``: raw sockets ask for the kernel's transmit stamps (ping, traceroute).
    """
    protocols = list(protocols)
    if privileged is False and unprivileged is None:
        raise UsageError(f"{what} needs raw sockets: it has no unprivileged way")
    async with contextlib.AsyncExitStack() as stack:
        transport: LadderTransport
        if privileged is False:
            assert unprivileged is not None
            transport = await stack.enter_async_context(
                _unprivileged(protocols, rate_pps, unprivileged)
            )
        else:
            try:
                transport = await stack.enter_async_context(
                    open_transport(protocols, rate_pps=rate_pps, tx_stamps=tx_stamps)
                )
            except PrivilegeError as raw_refused:
                if privileged or unprivileged is None:
                    raise
                try:
                    transport = await stack.enter_async_context(
                        _unprivileged(protocols, rate_pps, unprivileged)
                    )
                except PrivilegeError as exc:
                    raise PrivilegeError(f"{raw_refused}; or {exc}") from exc
        yield transport


def _unprivileged(
    protocols: list[tuple[int, int]], rate_pps: float, kind: Literal["icmp", "udp"]
) -> contextlib.AbstractAsyncContextManager[DatagramTransport | UdpTransport]:
    """UDP sockets for UDP probes (tracepath's way), ICMP datagram sockets for echo."""
    from rawprobe.transport import dgram, udp_dgram

    if kind == "udp":
        return udp_dgram.open_udp_transport(rate_pps=rate_pps)
    families = sorted({family for family, _protocol in protocols})
    return dgram.open_datagram_transport(families, rate_pps=rate_pps)


def wants_raw(privileged: bool | None, families: Iterable[int]) -> bool:
    """Whether a probe with a non-transport fallback (the scan's connect() rung) uses
    raw sockets: always with True, never with False, when allowed with None."""
    if privileged is not None:
        return privileged
    return all(raw_sockets_allowed(family) for family in set(families) or {socket.AF_INET})


def rung_privileged(rung: str) -> bool | None:
    """The CLI's ``--privileged`` / ``--unprivileged`` / default as ``privileged=``."""
    return {"raw": True, "datagram": False}.get(rung)
