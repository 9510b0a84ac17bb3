"""TCP SYN (and ACK) port scan: a strategy on the bulk engine, plus thin async functions.

What is probed: every (host, port) of a TargetSpace times a port list, in the
engine's lazily generated random order (probes/engine.py: no list of probes exists;
state only for probes in flight). Decided ports go into per-host counters, plus one
PortResult for each port worth listing.

Authentication: each probe's initial sequence number is a keyed cookie of (address,
ports) under the transport's secret (``TcpProbes``). The demultiplexer matches a
SYN-ACK or RST+ACK by (ports, ack - 1) and an ICMP error by the sequence number it
quotes, so an answer reaches the machine only when it proves it saw our probe;
forged SYN-ACKs with a wrong ack are counted as unmatched by the transport and never
become open ports.

The strategy: SYN-ACK open, RST+ACK closed (an ACK scan: RST unfiltered), an ICMP
error filtered with nmap's reason word, silence filtered (no-response) once the
outage guard has proof of life. Timing, retries, the congestion window and outages
are the engine's; tries after the second wait out a target's limit on answering
repeated SYNs (``_SYN_RETRY_GAP_S``).

Rate: ``ScanOptions.max_rate_pps`` configures the transport that ``syn_scan()`` and
the CLI open (its token bucket is the one rate limiter). ``syn_scan_with(transport)``
and ``open_scan(transport)`` send at the rate of the transport they are given: there
``max_rate_pps`` only sizes the machine's polls (10 ms of sending at that rate, so
answers, timeouts and outages are looked at that often; give the transport's rate).
``min_rate_pps`` is a floor the engine keeps.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import math
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from rawprobe.errors import UsageError
from rawprobe.probes.drive import EventCallback, drive
from rawprobe.probes.engine import (
    BulkEngine,
    Decided,
    Pace,
    TcpProbes,
    Verdict,
    block_sources,
    permuted_order,
)
from rawprobe.probes.engine import source_lookup as source_lookup  # (a public name here)
from rawprobe.probes.machine import Outgoing
from rawprobe.probes.multiplex import run_one
from rawprobe.probes.outage import DEFAULT_BUDGET_S
from rawprobe.probes.permute import check_space
from rawprobe.probes.portspec import DEFAULT_TOP_PORTS, parse_ports, top_ports
from rawprobe.probes.scan_models import HostPorts, PortResult, ScanResult, ScanTiming
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.base import IcmpError, Reply, TcpAnswer, Transport
from rawprobe.transport.keys import Cookies
from rawprobe.transport.sockets import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from rawprobe.transport.wire import icmp_table

TECHNIQUES = ("syn", "ack", "udp")
OPEN, CLOSED, FILTERED, UNFILTERED = "open", "closed", "filtered", "unfiltered"

_V4 = socket.AF_INET
_V6 = socket.AF_INET6
_SYN, _RST, _ACK = 0x02, 0x04, 0x10
_SYN_ACK, _RST_ACK = _SYN | _ACK, _RST | _ACK

_SEND_REASONS = {"ENETUNREACH": "net-unreachable", "EHOSTUNREACH": "host-unreachable"}
#: Linux's ICMP error rate limit towards one peer: one a second after a burst (UDP scan).
_ICMP_LIMIT_GAP_S = 1.0
#: Events: a ScanProgress at most this often (event-loop seconds).
_PROGRESS_INTERVAL_S = 0.2
#: A host answers a repeated SYN for a half-open connection (its SYN-ACK was lost) at
#: most once per 500 ms (Linux: tcp_invalid_ratelimit). Tries after the second are
#: spaced by more than that, or a lost SYN-ACK would make an open port look filtered
#: (found in the lab under 10% loss: one open port in ~10 scans was missed).
_SYN_RETRY_GAP_S = 0.55


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """How a scan probes and paces itself; validated on construction (UsageError).

    ``retries``: retransmissions of an unanswered probe; up to ``max_retries`` once
    the scan sees retransmissions answered (loss), like nmap. Timeouts: the smoothed
    RTT plus four deviations, within [``min_rtt_timeout_s``, ``max_rtt_timeout_s``],
    ``initial_rtt_timeout_s`` before the first answer. ``max_rate_pps`` 0: no cap.
    ``keep_closed`` lists closed ports too (else they are counted); ``closed_events``
    False emits no PortResult event for a closed port (saves time when only open and
    filtered ones are shown); ``collect=False`` keeps no per-host results at all
    (stream the PortResults instead). ``host_events`` emits each host's HostPorts as
    soon as every port of it in this scan's order (its shard) is decided.
    """

    technique: str = "syn"
    retries: int = 1
    max_retries: int = 6
    max_rate_pps: float = 10_000.0
    min_rate_pps: float = 0.0
    initial_rtt_timeout_s: float = 1.0
    min_rtt_timeout_s: float = 0.1
    max_rtt_timeout_s: float = 3.0
    initial_cwnd: int = 64
    max_cwnd: int = 4096
    randomize: bool = True
    seed: int | None = None
    shard: int = 0
    shards: int = 1
    source_port: int | None = None
    ttl: int = 64
    keep_closed: bool = False
    closed_events: bool = True
    collect: bool = True
    host_events: bool = False
    outage_budget_s: float = DEFAULT_BUDGET_S

    def __post_init__(self) -> None:
        if self.technique not in TECHNIQUES:
            raise UsageError(f"bad technique {self.technique!r}: one of {', '.join(TECHNIQUES)}")
        if not 0 <= self.shard < self.shards:
            raise UsageError(f"bad shard {self.shard}/{self.shards}: need 0 <= I < N")
        if not 0 <= self.retries <= 20:
            raise UsageError(f"bad retries {self.retries}: must be 0..20")
        if not 0 <= self.max_retries <= 50:
            raise UsageError(f"bad max retries {self.max_retries}: must be 0..50")
        for name in ("max_rate_pps", "min_rate_pps"):
            value = getattr(self, name)
            if not (0 <= value < math.inf):
                raise UsageError(f"bad {name.replace('_pps', '')} {value}: must be >= 0 packets/s")
        if self.max_rate_pps and self.min_rate_pps > self.max_rate_pps:
            raise UsageError(
                f"--min-rate {self.min_rate_pps:g} is above --rate {self.max_rate_pps:g}"
            )
        timeouts = (self.min_rtt_timeout_s, self.initial_rtt_timeout_s, self.max_rtt_timeout_s)
        if not all(0 < t < 1e4 for t in timeouts) or self.min_rtt_timeout_s > min(
            self.initial_rtt_timeout_s, self.max_rtt_timeout_s
        ):
            raise UsageError("bad RTT timeouts: need 0 < min <= initial, max")
        if not 1 <= self.initial_cwnd <= self.max_cwnd <= 1_000_000:
            raise UsageError("bad congestion window: need 1 <= initial <= max <= 1e6")
        if self.source_port is not None and not 1 <= self.source_port <= 65535:
            raise UsageError(f"bad source port {self.source_port}: must be 1..65535")
        if not 1 <= self.ttl <= 255:
            raise UsageError(f"bad ttl {self.ttl}: must be 1..255")
        if not 0 <= self.outage_budget_s <= 3600:
            raise UsageError(f"bad outage limit {self.outage_budget_s:g}: must be 0..3600 s")
        if self.host_events and not self.collect:
            raise UsageError("host events need the per-host results (collect=True)")

    @property
    def allowed_max_retries(self) -> int:
        return max(self.retries, self.max_retries)

    @property
    def pace(self) -> Pace:
        """The engine's timing for these options."""
        return Pace(
            retries=self.retries, max_retries=self.allowed_max_retries,
            initial_timeout_s=self.initial_rtt_timeout_s, min_timeout_s=self.min_rtt_timeout_s,
            max_timeout_s=self.max_rtt_timeout_s, initial_cwnd=self.initial_cwnd,
            max_cwnd=self.max_cwnd, min_rate_pps=self.min_rate_pps,
            # 10 ms of sending a poll at the transport's rate: the machine looks at
            # its answers, timeouts and outages that often (0: the window alone).
            batch=max(1, int(self.max_rate_pps / 100)) if self.max_rate_pps else 1 << 30,
            retry_gap_s=_SYN_RETRY_GAP_S if self.technique != "udp" else 0.0,
            limit_gap_s=_ICMP_LIMIT_GAP_S if self.technique == "udp" else 0.0,
            outage_budget_s=self.outage_budget_s,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """A periodic snapshot for progress bars: ``decided`` of ``total`` (host, port)
    pairs, the send rate over the last interval, the window and the timeout."""

    decided: int
    total: int
    sent: int
    retransmissions: int
    rate_pps: float
    cwnd: float
    timeout_s: float
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average decision rate so far (None before any)."""
        if self.decided == 0 or self.elapsed_s <= 0:
            return None
        return (self.total - self.decided) * self.elapsed_s / self.decided


_ERRORS: dict[tuple[int, int, int, bool], Verdict] = {}


def icmp_verdict(answer: IcmpError) -> Verdict | None:
    """A port filtered by an ICMP error quoting its probe (nmap's reason word), or
    None when the error says nothing about the port (e.g. packet too big)."""
    icmp_type, code, from_target = answer.icmp_type, answer.code, answer.from_target
    verdict = _ERRORS.get((answer.family, icmp_type, code, from_target))
    if verdict is None:
        word = icmp_table.reason(answer.family, icmp_type, code)
        if word is None:
            return None
        verdict = _ERRORS[answer.family, icmp_type, code, from_target] = Verdict(
            FILTERED, word, from_target
        )
    return verdict


def refused(errno: str) -> Verdict:
    """A port whose probe the network refused (ENETUNREACH...)."""
    return Verdict(FILTERED, _SEND_REASONS.get(errno, errno.lower()))


class _SynScan(TcpProbes):
    """The scan's strategy: SYN (or ACK) probes; a TCP answer or an ICMP error
    decides the port, silence makes it filtered."""

    silence = Verdict(FILTERED, "no-response")
    refused = staticmethod(refused)

    def classify(self, answer: Reply) -> Verdict | None:
        if isinstance(answer, TcpAnswer):
            flags = answer.flags
            if self.ack:
                return _UNFILTERED if flags & _RST else None
            if flags & _SYN_ACK == _SYN_ACK:
                return _OPEN
            if flags & _RST_ACK == _RST_ACK:
                return _CLOSED
            return None  # e.g. a bare RST whose seq happens to match: not an answer
        return icmp_verdict(answer) if isinstance(answer, IcmpError) else None


class _AckScan(_SynScan):
    ack = True


_OPEN = Verdict(OPEN, "syn-ack", True, True)
_CLOSED = Verdict(CLOSED, "reset", True, True)
_UNFILTERED = Verdict(UNFILTERED, "reset", True, True)


class _HostTally:
    """Decided ports of one host (when the scan collects results)."""

    __slots__ = ("address", "counts", "listed", "min_rtt_s", "up")

    def __init__(self, address: str) -> None:
        self.address = address
        self.counts: dict[tuple[str, str], int] = {}
        self.listed: list[PortResult] = []
        self.up = False
        self.min_rtt_s: float | None = None


def _address(packed: bytes) -> str:
    return socket.inet_ntop(_V4 if len(packed) == 4 else _V6, packed)


def _host_ports(tally: _HostTally) -> HostPorts:
    counts = tuple((state, reason, n) for (state, reason), n in sorted(tally.counts.items()))
    ports = tuple(sorted(tally.listed, key=lambda p: p.port))
    return HostPorts(tally.address, ports, counts, tally.up, tally.min_rtt_s)


class ScanMachine(BulkEngine[PortResult | ScanProgress | HostPorts]):
    """Scan every (host, port) of ``space`` x ``ports``; pure, time injected.
    ``strategies``: the strategy of each technique this machine scans with.

    ``source_for(address)`` gives our source address towards a target (the
    transport's ``source_for``, or a constant): asked once per target block. Events: a
    PortResult per decided port, a ScanProgress every ~0.2 s and when done, and with
    ``ScanOptions.host_events`` a HostPorts per host once its ports are decided.
    """

    strategies: ClassVar[dict[str, Callable[..., Any]]] = {"syn": _SynScan, "ack": _AckScan}

    def __init__(
        self,
        space: TargetSpace,
        ports: Sequence[int],
        *,
        cookies: Cookies,
        source_for: Callable[[str], str],
        options: ScanOptions | None = None,
    ) -> None:
        options = options or ScanOptions()
        if not ports:
            raise UsageError("no ports to scan")
        self.options = options
        self.ports = tuple(ports)
        self.total = space.size * len(self.ports)
        sport = options.source_port or 32768 + secrets.randbelow(28232)
        kind = self.strategies.get(options.technique)
        if kind is None:
            raise UsageError(f"a {options.technique} scan is not a {type(self).__name__}")
        sources = block_sources(space, source_for)
        strategy = kind(space, self.ports, sources, cookies, sport=sport, ttl=options.ttl)
        order = permuted_order(
            self.total, options.seed, options.shard, options.shards, options.randomize
        )
        # Host events: per host index with items drawn and not yet reported, its
        # [items drawn, items decided, tally, drawn in full].
        self._unreported: dict[int, list[Any]] | None = None
        if options.host_events:
            self._unreported, self._drawn_all = {}, False
            order = self._counted(order)
        super().__init__(space, len(self.ports), order, strategy, options.pace)
        self._sport = sport
        self._hosts: dict[bytes, _HostTally] = {}
        self._totals: dict[str, int] = {}
        self._progress_s = 0.0
        self._progress_sent = 0
        self._rate = 0.0
        self._peak_rate = 0.0

    def poll(self, now: float) -> list[Outgoing]:
        if self._started is None:
            self._progress_s = now
        out = super().poll(now)
        if now >= self._progress_s + _PROGRESS_INTERVAL_S:  # as next_deadline
            self._progress(now)
        return out

    def next_deadline(self) -> float:
        deadline = super().next_deadline()
        return deadline if self.done else min(deadline, self._progress_s + _PROGRESS_INTERVAL_S)

    # -- results -------------------------------------------------------------------

    @property
    def source_port(self) -> int:
        """The TCP source port of every probe (answers come back to it)."""
        return self._sport

    def result(self, now: float | None = None) -> ScanResult:
        """The result so far (complete once ``done``); ``now`` dates an unfinished one."""
        start, finished = self.elapsed_span
        end = finished if finished is not None else (now or start)
        remotes = sorted(self._hosts, key=_address_order)
        hosts = [_host_ports(self._hosts[remote]) for remote in remotes]
        outages, outage_s = self.outages
        return ScanResult(
            technique=self.options.technique,
            hosts=tuple(hosts),
            ports_per_host=len(self.ports),
            host_count=self.space.size,
            decided=self.decided,
            probes_sent=self.sent_count,
            retransmissions=self.retransmissions,
            elapsed_s=max(0.0, end - start),
            timing=ScanTiming(
                srtt_s=self._rtt.srtt_s,
                rttvar_s=self._rtt.rttvar_s,
                timeout_s=self._timeout,
                cwnd=self._cwnd,
                peak_cwnd=self._peak_cwnd,
                backoffs=self._backoffs,
                delay_backoffs=self._delay_backoffs,
                peak_rate_pps=self._peak_rate,
                last_rate_pps=self._rate,
                max_retries_used=self._allowed_retries,
                outages=outages,
                outage_s=outage_s,
            ),
            state_totals=tuple(sorted(self._totals.items())),
            incomplete_reason=self.incomplete_reason,
        )

    @property
    def incomplete_reason(self) -> str | None:
        """Why the scan stopped before deciding every port (None: it did not)."""
        if self.gave_up is None:
            return None
        left = self.total - self.decided
        return f"{self.gave_up}; {left} of {self.total} ports undecided"

    def progress(self, now: float) -> ScanProgress:
        start, finished = self.elapsed_span
        if self._started is None:
            start = now
        end = finished if finished is not None else now
        return ScanProgress(
            decided=self.decided,
            total=self.total,
            sent=self.sent_count,
            retransmissions=self.retransmissions,
            rate_pps=self._rate,
            cwnd=self._cwnd,
            timeout_s=self._timeout,
            elapsed_s=max(0.0, end - start),
        )

    # -- tallies -------------------------------------------------------------------

    def _tally(self, decided: Decided) -> None:
        state, reason, from_host = decided.verdict[:3]
        self._totals[state] = self._totals.get(state, 0) + 1
        remote: bytes = decided.key[1]
        options = self.options
        listed = state != CLOSED or options.keep_closed
        tally = self._hosts.get(remote) if options.collect else None
        if tally is None and options.collect:
            tally = self._hosts[remote] = _HostTally(_address(remote))
        rtt, answer = decided.rtt_s, decided.answer
        if listed or options.closed_events:
            address = tally.address if tally is not None else _address(remote)
            port = PortResult(
                address, self.ports[decided.item % len(self.ports)], state, reason,
                answer.ttl if answer is not None else None, rtt,
                answer.source if answer is not None else None, decided.tries,
            )  # fmt: skip
            self._events.append(port)
        if tally is None:
            return
        counts = tally.counts
        counts[state, reason] = counts.get((state, reason), 0) + 1
        if listed:
            tally.listed.append(port)
        if from_host:
            tally.up = True
            if rtt is not None and (tally.min_rtt_s is None or rtt < tally.min_rtt_s):
                tally.min_rtt_s = rtt
        if self._unreported is not None:
            host = decided.item // len(self.ports)
            record = self._unreported[host]
            record[1] += 1
            record[2] = tally
            if record[1] == record[0] and (
                record[3] or record[0] == len(self.ports) or self._drawn_all
            ):
                self._report(host)

    # -- host events -----------------------------------------------------------------

    def _counted(self, order: Iterator[int]) -> Iterator[int]:
        """``order``, counting the items drawn of each host: a host is decided once its
        items drawn are, and no more can come (all its ports drawn, the order ended,
        or, in port order, the order moved on to the next host)."""
        nports, unreported = len(self.ports), self._unreported
        assert unreported is not None
        in_order, last = not self.options.randomize, -1
        for item in order:
            host = item // nports
            record = unreported.get(host)
            if record is None:
                record = unreported[host] = [0, 0, None, False]
                if in_order and last in unreported:
                    unreported[last][3] = True
                    self._report_if_decided(last)
                last = host
            record[0] += 1
            yield item
        self._drawn_all = True
        for host in list(unreported):
            self._report_if_decided(host)

    def _report_if_decided(self, host: int) -> None:
        assert self._unreported is not None
        drawn, decided = self._unreported[host][:2]
        if drawn == decided:
            self._report(host)

    def _report(self, host: int) -> None:
        assert self._unreported is not None
        tally = self._unreported.pop(host)[2]
        self._events.append(_host_ports(tally))

    def _progress(self, now: float) -> None:
        elapsed = now - self._progress_s
        if elapsed > 0:
            self._rate = (self.sent_count - self._progress_sent) / elapsed
            self._peak_rate = max(self._peak_rate, self._rate)
        self._progress_s, self._progress_sent = now, self.sent_count
        self._events.append(self.progress(now))

    def _finish(self, now: float) -> None:
        self._progress(now)


# -- targets and ports --------------------------------------------------------------


def scan_ports(ports: str | Sequence[int] | None = None, top: int | None = None) -> tuple[int, ...]:
    """The port list of a scan: a spec string, a list, ``top`` most common, or by
    default nmap's default (the top 1000)."""
    if ports is not None and top is not None:
        raise UsageError("give a port list or --top-ports, not both")
    if top is not None:
        return top_ports(top)
    if ports is None:
        return top_ports(DEFAULT_TOP_PORTS)
    if isinstance(ports, str):
        return parse_ports(ports)
    return parse_ports(",".join(str(int(p)) for p in ports)) if ports else ()


def scan_protocols(space: TargetSpace, technique: str = "syn") -> list[tuple[int, int]]:
    """The raw sockets a scan of ``space`` needs: TCP (UDP for a UDP scan) for
    answers, ICMP for errors."""
    answers = PROTO_UDP if technique == "udp" else PROTO_TCP
    protocols: list[tuple[int, int]] = []
    if _V4 in space.families:
        protocols += [(_V4, PROTO_ICMP), (_V4, answers)]
    if _V6 in space.families:
        protocols += [(_V6, PROTO_ICMPV6), (_V6, answers)]
    return protocols


# -- async ---------------------------------------------------------------------------

#: Inbox for a scan's replies: a burst of answers must not overflow it.
SCAN_INBOX = 1 << 16


def _address_order(packed: bytes) -> tuple[int, bytes]:
    return len(packed), packed


def merge_results(results: Sequence[ScanResult]) -> ScanResult:
    """One ScanResult from the shards of one scan (``ScanOptions.shard``): hosts merged
    port by port, counts summed, elapsed time the slowest shard's."""
    if len(results) == 1:
        return results[0]
    parts: dict[str, list[HostPorts]] = {}
    for host in (host for result in results for host in result.hosts):
        parts.setdefault(host.address, []).append(host)
    order = sorted(parts, key=lambda a: _address_order(ipaddress.ip_address(a).packed))
    hosts = [merge_hosts(parts[address]) for address in order]
    totals = collections.Counter[str]()
    for result in results:
        totals.update(dict(result.state_totals))
    first, timings = results[0], [r.timing for r in results]
    summed = ("peak_rate_pps", "last_rate_pps", "backoffs", "delay_backoffs", "outages")
    timing = dataclasses.replace(
        first.timing, outage_s=max(t.outage_s for t in timings),
        **{name: sum(getattr(t, name) for t in timings) for name in summed},
    )  # fmt: skip
    total = {name: sum(getattr(r, name) for r in results)
             for name in ("decided", "probes_sent", "retransmissions")}  # fmt: skip
    return dataclasses.replace(
        first, hosts=tuple(hosts), elapsed_s=max(r.elapsed_s for r in results), timing=timing,
        state_totals=tuple(sorted(totals.items())), **total,
        incomplete_reason=next((r.incomplete_reason for r in results if r.incomplete_reason), None),
    )  # fmt: skip


def merge_hosts(parts: Sequence[HostPorts]) -> HostPorts:
    """One host from its parts in the shards of one scan: ports merged, counts summed."""
    if len(parts) == 1:
        return parts[0]
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for state, reason, count in (c for part in parts for c in part.counts):
        counts[state, reason] += count
    rtts = [p.min_rtt_s for p in parts if p.min_rtt_s is not None]
    ports = sorted((p for h in parts for p in h.ports), key=lambda p: p.port)
    merged = tuple((state, reason, n) for (state, reason), n in sorted(counts.items()))
    up = any(p.is_up for p in parts)
    return HostPorts(parts[0].address, tuple(ports), merged, up, min(rtts, default=None))


def new_machine(
    transport: Transport,
    space: TargetSpace,
    ports: Sequence[int],
    options: ScanOptions | None = None,
    *,
    source: str | None = None,
) -> ScanMachine:
    """A ScanMachine wired to ``transport``'s cookies and source-address lookup."""
    source_for = source_lookup(source, transport.source_for)
    return ScanMachine(
        space, ports, cookies=transport.cookies, source_for=source_for, options=options
    )


def check_scan(
    space: TargetSpace,
    ports: Sequence[int],
    options: ScanOptions,
    source_for: Callable[[str], str],
) -> None:
    """Raise now (UsageError, ResolutionError) what a scan would raise once started:
    no ports, a (host, port) space beyond the permutation's limit, a block without a
    source (no route, or -S of the other family). The CLI calls it before forking
    workers: one line, not one error per worker."""
    if not ports:
        raise UsageError("no ports to scan")
    total = space.size * len(ports)
    if options.randomize and total > 1:
        hosts = f"probes ({space.size:,} hosts x {len(ports):,} ports)"
        check_space(total, "scan", hosts)
    for block in space.blocks:
        source_for(space.first_address(block))


async def syn_scan_with(
    transport: Transport,
    space: TargetSpace,
    ports: Sequence[int],
    options: ScanOptions | None = None,
    *,
    source: str | None = None,
    on_event: EventCallback | None = None,
) -> ScanResult:
    """Scan over an open transport (it needs TCP and ICMP sockets: ``scan_protocols``).

    Network outcomes are port states; exceptions are for bad arguments and a failing
    transport. Events (PortResult, ScanProgress) go to ``on_event`` as they happen.
    """
    machine = new_machine(transport, space, ports, options, source=source)
    return await run_one(transport, machine, on_event=on_event, inbox_size=SCAN_INBOX)


class ScanStream:
    """PortResults as the scan decides them (``async for``); ``result`` once it ended."""

    def __init__(
        self, machine: ScanMachine | None, receive: MemoryObjectReceiveStream[PortResult]
    ) -> None:
        self.machine = machine
        self._receive = receive
        self.result: ScanResult | None = None

    def __aiter__(self) -> ScanStream:
        return self

    async def __anext__(self) -> PortResult:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


@asynccontextmanager
async def open_scan(
    transport: Transport,
    space: TargetSpace,
    ports: Sequence[int],
    options: ScanOptions | None = None,
    *,
    source: str | None = None,
) -> AsyncIterator[ScanStream]:
    """Run a scan in the background for the block; iterate the stream for PortResults
    as they are decided. Leaving the block early cancels the scan. Undelivered
    results are buffered (iterate, or the buffer grows with the scan)."""
    machine = new_machine(transport, space, ports, options, source=source)
    send, receive = anyio.create_memory_object_stream[PortResult](math.inf)
    stream = ScanStream(machine, receive)

    def on_event(event: object) -> None:
        if isinstance(event, PortResult):
            send.send_nowait(event)

    async def run() -> None:
        with send:
            await drive(machine, transport, on_event=on_event, inbox_size=SCAN_INBOX)
        stream.result = machine.result()

    with receive:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run)
            yield stream
            task_group.cancel_scope.cancel()
