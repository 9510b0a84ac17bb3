"""The public API that ``rawprobe`` exports (loaded on first use, see __init__.py).

``await rawprobe.ping("198.19.0.5", count=3)`` opens a transport for the call; pass
``transport=`` (from ``rawprobe.open_transport()``) to share one set of sockets between
many concurrent probes.

The contract of every function here: it raises a RawProbeError subclass alone, never
an ExceptionGroup (``_one_error``); it refuses the unspecified address always, and
broadcast and multicast destinations unless ``broadcast=True`` (the CLI's rule,
probes/targets.py); ``privileged=None`` climbs the CLI's privilege ladder
(transport/ladder.py), ``True`` insists on raw sockets, ``False`` on unprivileged ones;
a ``transport=`` given must be open and have the sockets the probe needs.

One signature a family: ``ping`` and ``traceroute`` are made from ``ping_many`` and
``traceroute_many`` (``_for_one_host``, ``_first_of``), ``syn_scan`` and
``syn_scan_stream`` from ``_scan_plan``, which checks a scan's arguments and holds its
transport. Type checkers see the options through ParamSpec, ``help()`` through the
``__signature__`` that ``_public`` sets.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import anyio

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
    sole_error,
)
from rawprobe.probes.connect_scan import ConnectScan as _ConnectScan
from rawprobe.probes.craft import ICMP, IP, TCP, UDP, craft
from rawprobe.probes.multipath import MultipathOptions, multipath_many_with
from rawprobe.probes.pathmtu import METHODS as MTU_METHODS
from rawprobe.probes.pathmtu import path_mtu_many_with
from rawprobe.probes.ping import PingOptions, ping_many_with, ping_protocols
from rawprobe.probes.ping_models import PingError, PingReply, PingResult
from rawprobe.probes.portspec import DEFAULT_TOP_UDP_PORTS as _DEFAULT_TOP_UDP_PORTS
from rawprobe.probes.portspec import top_ports as _top_ports
from rawprobe.probes.scan import ScanOptions, ScanProgress, ScanStream, open_scan, syn_scan_with
from rawprobe.probes.scan import scan_ports as _scan_ports
from rawprobe.probes.scan import scan_protocols as _scan_protocols
from rawprobe.probes.scan_models import HostPorts, PortResult, ScanResult
from rawprobe.probes.sweep import SweepOptions, SweepResult, sweep_with
from rawprobe.probes.sweep import batch_for_rate as _batch_for_rate
from rawprobe.probes.targets import TargetSpace
from rawprobe.probes.targets import parse_block as _parse_block
from rawprobe.probes.targets import refuse_special as _refuse_special
from rawprobe.probes.targets import refuse_special_block as _refuse_special_block
from rawprobe.probes.trace_models import (
    BlackHole,
    HopStats,
    MultipathLink,
    MultipathResult,
    NatHop,
    PathStats,
    QuoteRewrite,
    TraceHop,
    TraceResponse,
    TraceResult,
)
from rawprobe.probes.traceroute import (
    TraceOptions,
    TraceResults,
    trace_many_with,
    trace_protocols,
)
from rawprobe.probes.udp_scan import udp_scan_with as _udp_scan_with
from rawprobe.targets import resolve
from rawprobe.targets import resolve_targets as _resolve_targets
from rawprobe.transport.base import Transport
from rawprobe.transport.base import check_transport as _check_transport
from rawprobe.transport.capture import PcapRecorder, record_pcap
from rawprobe.transport.keys import Cookies
from rawprobe.transport.ladder import Unprivileged
from rawprobe.transport.ladder import open_probe_transport as _open_probe_transport
from rawprobe.transport.ladder import wants_raw as _wants_raw
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.raw import RawTransport
from rawprobe.transport.raw import open_transport as _open_raw_transport
from rawprobe.transport.sniffer import Captured, Sniffer, open_sniffer
from rawprobe.transport.sockets import check_source_address as _check_source_address
from rawprobe.transport.wire.dissect import Dissection, dissect
from rawprobe.transport.wire.pktfilter import PacketFilter

__all__ = [
    "DEFAULT_RATE_PPS",
    "ICMP",
    "IP",
    "TCP",
    "UDP",
    "BlackHole",
    "Captured",
    "Dissection",
    "HopStats",
    "HostPorts",
    "LabError",
    "MalformedPacket",
    "MultipathLink",
    "MultipathOptions",
    "MultipathResult",
    "NatHop",
    "PacketFilter",
    "PathStats",
    "PcapRecorder",
    "PingError",
    "PingOptions",
    "PingReply",
    "PingResult",
    "PortResult",
    "PrivilegeError",
    "QuoteRewrite",
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
    "multipath",
    "multipath_many",
    "open_sniffer",
    "open_transport",
    "path_mtu",
    "path_mtu_many",
    "ping",
    "ping_many",
    "record_pcap",
    "resolve",
    "sweep",
    "syn_scan",
    "syn_scan_stream",
    "traceroute",
    "traceroute_many",
    "udp_scan",
]

_V4: int = socket.AF_INET
_V6: int = socket.AF_INET6
_ICMP: dict[int, int] = {_V4: socket.IPPROTO_ICMP, _V6: socket.IPPROTO_ICMPV6}
_METHOD_PROTOCOL: dict[str, int] = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


@contextmanager
def _one_error() -> Iterator[None]:
    """The public boundary: a RawProbeError raised under a task group (every open
    transport holds one) leaves as itself, not as an ExceptionGroup. A group holding
    anything else (a bug, KeyboardInterrupt) propagates unchanged."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = sole_error(group)
        if error is None:
            raise
        raise error  # noqa: B904 (chained implicitly: __context__ is the group)


# -- one signature a family: the one-host and the scan forms are made from the other ------

_P = ParamSpec("_P")
_R = TypeVar("_R")
_R_co = TypeVar("_R_co", covariant=True)
_F = TypeVar("_F", bound=Callable[..., Any])


class _OneHost(Protocol[_P, _R_co]):
    """A one-host form: ``host`` (by position or name), then the options of ``_P``."""

    def __call__(
        self, host: str, *args: _P.args, **kwargs: _P.kwargs
    ) -> Coroutine[Any, Any, _R_co]: ...


def _for_one_host(
    many: Callable[Concatenate[Sequence[str], _P], Awaitable[list[_R]]], returns: str, doc: str
) -> _OneHost[_P, _R]:
    """The one-host form of ``many`` (``ping`` of ``ping_many``): its options, the one
    result."""

    async def one(host: str, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return (await many([host], *args, **kwargs))[0]

    return _public(one, many.__name__.removesuffix("_many"), many, returns, doc)


def _first_of(
    many: Callable[Concatenate[Sequence[str], _P], AbstractAsyncContextManager[AsyncIterator[_R]]],
    returns: str,
    doc: str,
) -> _OneHost[_P, _R]:
    """The one-host form of a ``many`` that yields results as they come."""

    async def one(host: str, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with many([host], *args, **kwargs) as results:
            async for result in results:
                return result
        raise AssertionError("unreachable: one host always yields one result")

    return _public(one, many.__name__.removesuffix("_many"), many, returns, doc)


def _public(function: _F, name: str, like: Callable[..., object], returns: str, doc: str) -> _F:
    """``function`` as the public ``name``: ``doc``, and for ``help()`` the signature of
    ``like`` returning ``returns`` (``host: str`` in place of ``hosts``: a one-host form)."""
    signature = inspect.signature(like)
    parameters = list(signature.parameters.values())
    if parameters[0].name == "hosts":
        parameters[0] = parameters[0].replace(name="host", annotation="str")
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    vars(function)["__signature__"] = signature.replace(
        parameters=parameters, return_annotation=returns
    )
    return function


def _families(addresses: Iterable[str]) -> set[int]:
    return {_V6 if ":" in address else _V4 for address in addresses}


def _sends(families: Iterable[int], method: str) -> list[tuple[int, int]]:
    """(family, protocol) of the probes a ``method`` (icmp, tcp, udp) sends."""
    return [(f, _METHOD_PROTOCOL.get(method, _ICMP[f])) for f in families]


def _refuse_addresses(addresses: Iterable[str], broadcast: bool) -> None:
    for address in addresses:
        _refuse_special_block(address, _parse_block(address), broadcast)


#: Names ``open_transport(protocols=...)`` takes: ``icmp`` (ICMP and ICMPv6), ``tcp``,
#: ``udp``; a 4 or 6 suffix (``tcp4``) for one family.
_PROTOCOL_NAMES = {
    "icmp": (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6),
    "tcp": (socket.IPPROTO_TCP, socket.IPPROTO_TCP),
    "udp": (socket.IPPROTO_UDP, socket.IPPROTO_UDP),
}


def _protocol_pairs(protocols: Iterable[str | tuple[int, int]]) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    if isinstance(protocols, str):
        protocols = (protocols,)
    for item in protocols:
        if not isinstance(item, str):
            pairs.append((int(item[0]), int(item[1])))
            continue
        name = item.strip().lower()
        families = {"4": (_V4,), "6": (_V6,)}.get(name[-1:], (_V4, _V6))
        base = name.rstrip("46")
        if base not in _PROTOCOL_NAMES or (name != base and len(name) != len(base) + 1):
            raise UsageError(f"bad protocol {item!r}: one of icmp, tcp, udp (or icmp4, tcp6...)")
        v4, v6 = _PROTOCOL_NAMES[base]
        pairs += [(f, v4 if f == _V4 else v6) for f in families]
    return list(dict.fromkeys(pairs))


@asynccontextmanager
async def open_transport(
    protocols: Iterable[str | tuple[int, int]] = ("icmp",),
    *,
    rate_pps: float = DEFAULT_RATE_PPS,
    cookies: Cookies | None = None,
    icmp_filter: bool = True,
    tx_stamps: bool = True,
) -> AsyncIterator[RawTransport]:
    """Raw sockets for the block, to share between probes (``transport=``).

    ``protocols``: names, ``("icmp", "tcp", "udp")``, for both families (``tcp4``,
    ``icmp6``: one), or ``(family, IP protocol)`` pairs. ping needs ``icmp``; a
    traceroute ``icmp`` (UDP method too), plus ``tcp`` for its TCP method; a scan
    ``icmp`` and ``tcp``; a sweep ``icmp``, plus ``tcp`` or ``udp`` for those methods.
    A probe given a transport that lacks what it needs raises UsageError naming it.
    Raises PrivilegeError without CAP_NET_RAW; ``rate_pps=0`` lifts the send-rate cap.
    ``tx_stamps``: the kernel stamps each probe as it leaves, so that RTTs are kernel
    stamps at both ends (``rtt_source`` "kernel"); False saves a little work per probe
    where RTTs only drive timeouts (scans, sweeps).
    """
    with _one_error():
        async with _open_raw_transport(
            _protocol_pairs(protocols), rate_pps=rate_pps, cookies=cookies,
            icmp_filter=icmp_filter, tx_stamps=tx_stamps,
        ) as transport:  # fmt: skip
            yield transport


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
    broadcast: bool = False,
    privileged: bool | None = None,
    transport: Transport | None = None,
) -> list[PingResult]:
    """Ping all ``hosts`` concurrently over one transport; results in input order."""
    with _one_error():
        options = PingOptions(
            count=count,
            interval_s=interval_s,
            timeout_s=timeout_s,
            payload_size=payload_size,
            ttl=ttl,
        )
        addresses = [await resolve(host, family) for host in hosts]
        _refuse_addresses(addresses, broadcast)
        _check_source(source)
        protocols = ping_protocols(addresses)
        if transport is not None:
            _check_transport(transport, protocols, protocols, "ping")
            return await ping_many_with(transport, addresses, options, source=source)
        async with _open_probe_transport(
            protocols, privileged=privileged, unprivileged="icmp", what="ping", tx_stamps=True
        ) as own:
            return await ping_many_with(own, addresses, options, source=source)


ping = _for_one_host(
    ping_many,
    "PingResult",
    """Ping ``host`` and return its PingResult (silence is a result, not an error).

    ``privileged=None`` uses raw sockets when allowed, else ICMP datagram sockets
    (``net.ipv4.ping_group_range``); True / False insist on one. Raises PrivilegeError
    when neither is allowed, ResolutionError for a bad host, UsageError for bad options
    or a broadcast/multicast ``host`` without ``broadcast=True``, TransportClosed for a
    closed ``transport``.
    """,
)


# -- traceroute -----------------------------------------------------------------------


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
    broadcast: bool = False,
    privileged: bool | None = None,
    transport: Transport | None = None,
) -> AsyncIterator[AsyncIterator[TraceResult]]:
    """Trace all ``hosts`` concurrently over one transport; results as each completes::

    async with rawprobe.traceroute_many(hosts, method="udp") as results:
        async for result in results:
            print(result.target, result.reached, result.path)
    """
    with _one_error():
        options = TraceOptions(
            method=method, first_ttl=first_ttl, max_ttl=max_ttl, queries=queries,
            wait_s=wait_s, retries=retries, in_flight=in_flight, port=port, paris=paris,
        )  # fmt: skip
        unprivileged: Unprivileged = None  # TCP: raw sockets only
        if method in ("udp", "icmp"):
            unprivileged = "udp" if method == "udp" else "icmp"
        async with _traces(
            hosts, options, f"a {method.upper()} traceroute", unprivileged, trace_many_with,
            family=family, broadcast=broadcast, source=source, privileged=privileged,
            transport=transport,
        ) as results:  # fmt: skip
            yield results


@asynccontextmanager
async def _traces(
    hosts: Sequence[str],
    options: TraceOptions,
    what: str,
    unprivileged: Unprivileged,
    run: Callable[..., AbstractAsyncContextManager[TraceResults]],
    *,
    family: int | None,
    broadcast: bool,
    source: str | None,
    privileged: bool | None,
    transport: Transport | None,
) -> AsyncIterator[AsyncIterator[TraceResult]]:
    """What traceroute_many and path_mtu_many share: the traces (``run``:
    ``trace_many_with`` or ``path_mtu_many_with``) over ``transport`` or one of the
    ladder's."""
    async with (
        _trace_transport(
            hosts, options.method, what, unprivileged, family=family, broadcast=broadcast,
            source=source, privileged=privileged, transport=transport,
        ) as (own, addresses),
        run(own, addresses, options, targets=list(hosts), source=source) as results,
    ):  # fmt: skip
        yield results


@asynccontextmanager
async def _trace_transport(
    hosts: Sequence[str],
    method: str,
    what: str,
    unprivileged: Unprivileged,
    *,
    family: int | None,
    broadcast: bool,
    source: str | None,
    privileged: bool | None,
    transport: Transport | None,
) -> AsyncIterator[tuple[Transport, list[str]]]:
    """What every trace shares: the hosts resolved and checked, then ``transport``
    (checked) or one of the ladder's (``unprivileged``: its rung below raw sockets),
    with the addresses."""
    addresses = [await resolve(host, family) for host in hosts]
    _refuse_addresses(addresses, broadcast)
    _check_source(source)
    hears = trace_protocols(addresses, method)
    if transport is not None:
        _check_transport(transport, _sends(_families(addresses), method), hears, what)
        yield transport, addresses
        return
    async with _open_probe_transport(
        hears, privileged=privileged, unprivileged=unprivileged, what=what, tx_stamps=True
    ) as own:
        yield own, addresses


traceroute = _first_of(
    traceroute_many,
    "TraceResult",
    """Trace the route to ``host`` (Paris mode unless ``paris=False``); a TraceResult
    whatever the network does. ``privileged=None``: raw sockets when allowed, else ICMP
    datagram sockets (``method="icmp"``) or UDP sockets (``"udp"``, like tracepath);
    ``"tcp"`` needs raw sockets. Raises PrivilegeError, ResolutionError, UsageError.""",
)


# -- path MTU (probes/pathmtu.py) ------------------------------------------------------


@asynccontextmanager
async def path_mtu_many(
    hosts: Sequence[str],
    *,
    method: str = "udp",
    first_ttl: int = 1,
    max_ttl: int = 30,
    wait_s: float = 1.0,
    here: float = 3.0,
    retries: int = 2,
    port: int | None = None,
    start_size: int | None = None,
    source: str | None = None,
    family: int | None = None,
    broadcast: bool = False,
    privileged: bool | None = None,
    transport: Transport | None = None,
) -> AsyncIterator[AsyncIterator[TraceResult]]:
    """Path MTU traces (``trace --mtu``) to all ``hosts`` concurrently; results as each
    completes, TraceResults with ``interface_mtu``, ``path_mtu``, ``black_hole`` and
    each hop's ``mtu`` where it drops::

    async with rawprobe.path_mtu_many(hosts) as results:
        async for result in results:
            print(result.target, result.path_mtu, result.black_hole)
    """
    with _one_error():
        if method not in MTU_METHODS:
            raise UsageError(f"bad method {method!r} for a path MTU trace: udp or icmp")
        options = TraceOptions(
            method=method, first_ttl=first_ttl, max_ttl=max_ttl, wait_s=wait_s, here=here,
            retries=retries, port=port, packet_size=start_size, queries=1,
        )  # fmt: skip
        async with _traces(
            hosts, options, f"a {method.upper()} path MTU trace",
            "udp" if method == "udp" else None,  # (ICMP: raw sockets only)
            path_mtu_many_with, family=family, broadcast=broadcast, source=source,
            privileged=privileged, transport=transport,
        ) as results:  # fmt: skip
            yield results


path_mtu = _first_of(
    path_mtu_many,
    "TraceResult",
    """The path MTU to ``host``, hop by hop, like tracepath, and the first MTU black hole
    (a hop that drops big packets without an ICMP error), which tracepath cannot see: a
    TraceResult with ``interface_mtu``, ``path_mtu``, ``black_hole`` (a BlackHole or
    None) and each hop's ``mtu`` where it drops. UDP probes by default (``"icmp"`` too),
    over raw sockets when allowed, else UDP sockets like tracepath (ICMP needs raw
    sockets); ``start_size`` replaces the interface's MTU as the first size. Raises
    PrivilegeError, ResolutionError, UsageError.""",
)


# -- multipath (MDA) traceroute ---------------------------------------------------------


@asynccontextmanager
async def multipath_many(
    hosts: Sequence[str],
    *,
    method: str = "udp",
    confidence: int = 95,
    first_ttl: int = 1,
    max_ttl: int = 30,
    wait_s: float = 1.0,
    retries: int = 2,
    port: int | None = None,
    max_probes: int = 3000,
    source: str | None = None,
    family: int | None = None,
    broadcast: bool = False,
    transport: Transport | None = None,
) -> AsyncIterator[AsyncIterator[MultipathResult]]:
    """Every load-balanced path to each of ``hosts`` (the MDA), all at once over one
    transport; results as each trace completes::

    async with rawprobe.multipath_many(hosts, confidence=99) as results:
        async for result in results:
            print(result.target, sorted(result.nodes), len(result.links))
    """
    with _one_error():
        options = MultipathOptions(
            method=method, confidence=confidence, first_ttl=first_ttl, max_ttl=max_ttl,
            wait_s=wait_s, retries=retries, port=port, max_probes=max_probes,
        )  # fmt: skip
        async with (
            _trace_transport(
                hosts, method, "an MDA trace", None, family=family, broadcast=broadcast,
                source=source, privileged=True, transport=transport,
            ) as (own, addresses),
            multipath_many_with(
                own, addresses, options, targets=list(hosts), source=source
            ) as results,
        ):  # fmt: skip
            yield results


multipath = _first_of(
    multipath_many,
    "MultipathResult",
    """Every load-balanced path to ``host`` (the MDA: flows varied until the stopping
    rule says, at ``confidence`` 95 or 99, that no interface was missed); a
    MultipathResult whatever the network does. Needs raw sockets. Raises
    PrivilegeError, ResolutionError, UsageError.""",
)


# -- port scan (probes/scan.py) ---------------------------------------------------------


def _raw_scan(technique: str, privileged: bool | None, families: set[int]) -> bool:
    """Whether a scan runs over raw sockets (else a connect() scan, like nmap -sT)."""
    if technique != "syn":
        if privileged is False:
            raise UsageError(f"a {technique.upper()} scan needs raw sockets: privileged=False")
        return True
    return _wants_raw(privileged, families)


def _check_source(source: str | None) -> None:
    """UsageError unless ``source`` (when given) is an address of this host, as the
    CLI's -I/-S/-s: probes from another address would be spoofed, their replies lost."""
    if source is not None:
        _check_source_address(source)


async def _target_space(
    targets: str | Sequence[str], family: int | None, broadcast: bool
) -> TargetSpace:
    """The space of ``targets``, special destinations refused (or, in networks, left
    out) unless ``broadcast``; names that resolve to one are refused too."""
    space = await _resolve_targets(
        [targets] if isinstance(targets, str) else targets,
        family,
        broadcast=broadcast,
        hint="pass broadcast=True",
    )
    _refuse_special(space, broadcast)
    return space


@dataclass(frozen=True)
class _ScanPlan:
    """What a scan runs: checked arguments, and the transport (None: a connect() scan)."""

    space: TargetSpace
    ports: tuple[int, ...]
    options: ScanOptions
    source: str | None
    transport: Transport | None


@asynccontextmanager
async def _scan_plan(
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
    broadcast: bool = False,
    privileged: bool | None = None,
    transport: Transport | None = None,
) -> AsyncIterator[_ScanPlan]:
    """The arguments of ``syn_scan`` and ``syn_scan_stream``, checked; for the block, the
    transport given, or one opened (raw sockets), or none (a connect() scan)."""
    options = ScanOptions(
        technique=technique, retries=retries, max_retries=max(retries, max_retries),
        max_rate_pps=rate_pps, min_rate_pps=min_rate_pps, keep_closed=keep_closed,
    )  # fmt: skip
    if technique == "udp" and ports is None:  # (the UDP scan's own default ports)
        ports, top_ports = _top_ports(top_ports or _DEFAULT_TOP_UDP_PORTS, "udp"), None
    port_list = _scan_ports(ports, top_ports)
    space = await _target_space(targets, family, broadcast)
    _check_source(source)
    hears = _scan_protocols(space, technique)
    if transport is not None:
        sends = "udp" if technique == "udp" else "tcp"
        _check_transport(transport, _sends(space.families, sends), hears, f"a {sends.upper()} scan")
        yield _ScanPlan(space, port_list, options, source, transport)
    elif not _raw_scan(technique, privileged, space.families):
        yield _ScanPlan(space, port_list, options, source, None)
    else:
        async with _open_probe_transport(
            hears, rate_pps=rate_pps, privileged=True, unprivileged=None
        ) as own:
            yield _ScanPlan(space, port_list, options, source, own)


async def _scan_to_end(plan: _ScanPlan) -> ScanResult:
    if plan.transport is None:
        keep_closed = plan.options.keep_closed
        return await _ConnectScan(plan.space, plan.ports, keep_closed=keep_closed).run()
    scan_with = _udp_scan_with if plan.options.technique == "udp" else syn_scan_with
    return await scan_with(plan.transport, plan.space, plan.ports, plan.options, source=plan.source)


@asynccontextmanager
async def _scan_streamed(plan: _ScanPlan) -> AsyncIterator[ScanStream]:
    if plan.transport is not None:
        async with open_scan(
            plan.transport, plan.space, plan.ports, plan.options, source=plan.source
        ) as stream:
            yield stream
        return
    send, receive = anyio.create_memory_object_stream[PortResult](float("inf"))
    connect_stream = ScanStream(None, receive)
    keep_closed = plan.options.keep_closed
    scan = _ConnectScan(plan.space, plan.ports, keep_closed=keep_closed, on_event=send.send_nowait)

    async def run() -> None:
        with send:
            connect_stream.result = await scan.run()

    with receive:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run)
            yield connect_stream
            task_group.cancel_scope.cancel()


def _scan_result(
    plan: Callable[_P, AbstractAsyncContextManager[_ScanPlan]], doc: str, name: str = "syn_scan"
) -> Callable[_P, Coroutine[Any, Any, ScanResult]]:
    async def scan(*args: _P.args, **kwargs: _P.kwargs) -> ScanResult:
        with _one_error():
            async with plan(*args, **kwargs) as planned:
                return await _scan_to_end(planned)

    return _public(scan, name, plan, "ScanResult", doc)


def _scan_stream(
    plan: Callable[_P, AbstractAsyncContextManager[_ScanPlan]], doc: str
) -> Callable[_P, AbstractAsyncContextManager[ScanStream]]:
    @asynccontextmanager
    async def stream(*args: _P.args, **kwargs: _P.kwargs) -> AsyncIterator[ScanStream]:
        with _one_error():
            async with plan(*args, **kwargs) as planned, _scan_streamed(planned) as streamed:
                yield streamed

    return _public(stream, "syn_scan_stream", plan, "AbstractAsyncContextManager[ScanStream]", doc)


syn_scan = _scan_result(
    _scan_plan,
    """TCP SYN scan of ``targets`` (hosts, addresses, CIDR blocks, ranges) on ``ports``
    (nmap syntax ``"22,80,1000-2000"`` or ``"-"``, a list, ``top_ports=N``; default the
    1000 most common). Returns a ScanResult: open and filtered ports listed per host,
    closed ones counted (listed too with ``keep_closed=True``). ``rate_pps=0`` lifts the
    cap (congestion control alone).

    ``privileged=None``: raw sockets when allowed, else a TCP connect() scan (as the
    CLI does; ``technique`` "connect" in the result); False: the connect() scan.
    Raises PrivilegeError, ResolutionError / UsageError for bad targets, ports or
    options.
    """,
)

syn_scan_stream = _scan_stream(
    _scan_plan,
    """Like ``syn_scan``, but yields a stream of PortResults as they are decided::

        async with rawprobe.syn_scan_stream("198.19.0.5", "1-1024") as stream:
            async for port in stream:
                print(port.port, port.state, port.reason)
        print(stream.result)  # the ScanResult, once the scan ran to its end

    Leaving the block early cancels the scan.
    """,
)


def _udp_scan_plan(
    targets: str | Sequence[str], ports: str | Sequence[int] | None = None, **options: Any
) -> AbstractAsyncContextManager[_ScanPlan]:
    """``_scan_plan`` of a UDP scan (raw sockets always): ``syn_scan``'s keywords."""
    return _scan_plan(targets, ports, **options, technique="udp", privileged=True)


udp_scan = _scan_result(
    _udp_scan_plan,
    """nmap's UDP scan (``nmap -sU``) of ``targets`` on ``ports`` (as ``syn_scan``;
    default the 100 UDP ports most often open). Each port is open (a UDP reply,
    "udp-response"), closed (an ICMP port unreachable from the target,
    "port-unreach"), filtered (another ICMP unreachable: its reason) or open|filtered
    (silence, "no-response"). Well-known ports get a protocol request (DNS, NTP,
    SNMP...). Needs raw sockets (UsageError without them). A target's ICMP rate
    limit (Linux: about one error a second after a burst) makes closed ports slow.
    """,
    "udp_scan",
)


# -- host sweep (probes/sweep.py) -------------------------------------------------------


async def sweep(
    targets: str | Sequence[str],
    *,
    method: str = "icmp",
    port: int | None = None,
    retries: int = 1,
    timeout_s: float = 1.0,
    rate_pps: float = DEFAULT_RATE_PPS,
    seed: int | None = None,
    family: int | None = None,
    broadcast: bool = False,
    privileged: bool | None = None,
    transport: Transport | None = None,
) -> SweepResult:
    """Find the live hosts of ``targets`` (addresses, CIDR blocks ``198.19.0.0/24``,
    ranges ``198.19.0.1-20``, names), like ``rawprobe sweep`` / ``fping -g``: every
    address probed once in a random order (``seed`` fixes it), plus ``retries``.

    ``method``: ``icmp`` (echo), ``tcp-syn``, ``tcp-ack`` or ``udp`` (these need
    ``port``). Returns a SweepResult: ``alive`` (addresses that answered, in target
    order), ``alive_count``, ``dead_count``, ``probes_sent``, ``elapsed_s``.
    ``privileged=None``: raw sockets when allowed, else ICMP datagram sockets for
    ``icmp`` (the TCP and UDP methods need raw sockets). Raises as ``ping`` does.
    """
    with _one_error():
        options = SweepOptions(
            method=method, port=port, retries=retries, timeout_s=timeout_s,
            batch=_batch_for_rate(rate_pps),
        )  # fmt: skip
        space = await _target_space(targets, family, broadcast)
        hears = [p for p in options.socket_protocols if p[0] in space.families]
        what = f"a {method} sweep"
        if transport is not None:
            sends = _sends(space.families, method.partition("-")[0])
            _check_transport(transport, sends, hears, what)
            return await sweep_with(transport, space, options, seed=seed)
        async with _open_probe_transport(
            hears,
            rate_pps=rate_pps,
            privileged=privileged,
            unprivileged="icmp" if method == "icmp" else None,
            what=what,
        ) as own:
            return await sweep_with(own, space, options, seed=seed)
