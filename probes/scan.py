"""TCP SYN (and ACK) port scan: a pure state machine plus thin async functions.

What is probed: every (host, port) of a TargetSpace times a port list, visited in a
lazily generated random order (``Permutation``: zmap's cyclic group; one integer of
state), so no list of probes exists. State is kept only for probes in flight (a dict
from match key to a small record and a deque of send times for expiry); decided ports
go into per-host counters, plus one PortResult for each port worth listing.

Authentication: each probe's initial sequence number is a keyed cookie of (address,
ports) under the transport's secret. The demultiplexer matches a SYN-ACK or RST+ACK
by (ports, ack - 1) and an ICMP error by the sequence number it quotes, so an answer
reaches the machine only when it proves it saw our probe; forged SYN-ACKs with a
wrong ack are counted as unmatched by the transport and never become open ports.

Timing (nmap's scan_engine, simplified): one smoothed RTT and variance (RFC 6298,
measured on the event-loop clock, so our own receive backlog counts: a timeout never
fires for a reply that is merely waiting to be read) give the timeout; unanswered
probes are sent again up to ``retries`` times, and up to ``max_retries`` once
retransmissions are seen to be answered (evidence of loss). A congestion window
bounds the probes in flight: it grows by one per answer or timeout (slow start), then
by about 1/8 per window; an answer to a retransmitted probe is loss, and halves it
(at most once per window of probes). ``max_rate_pps`` caps the send rate (0: none,
congestion control alone), ``min_rate_pps`` floors it whatever the window says.

Outages (probes/outage.py): a port is filtered (no-response) only once the network is
shown up around its last try; an outage holds the silent ports, gives them a fresh
budget of retries when it ends, and ends the scan incomplete past ``outage_budget_s``.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import math
import secrets
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from rawprobe.errors import UsageError
from rawprobe.probes.drive import EventCallback, drive
from rawprobe.probes.machine import MachineOutbox, Outgoing
from rawprobe.probes.models import HostPorts, PortResult, ScanResult, ScanTiming
from rawprobe.probes.outage import DEFAULT_BUDGET_S, CanarySends, OutageGuard
from rawprobe.probes.permute import Permutation, check_space
from rawprobe.probes.portspec import DEFAULT_TOP_PORTS, parse_ports, top_ports
from rawprobe.probes.rtt import RttEstimator
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.base import Reply, Sent, Transport, new_tuple, rtt_s
from rawprobe.transport.keys import KIND_TCP, Cookies, MatchKey
from rawprobe.transport.sockets import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP
from rawprobe.transport.wire.checksum import ones_complement_sum

__all__ = [
    "TECHNIQUES",
    "ScanMachine",
    "ScanOptions",
    "ScanProgress",
    "ScanStream",
    "new_machine",
    "open_scan",
    "scan_ports",
    "scan_protocols",
    "syn_scan_with",
]

TECHNIQUES = ("syn", "ack")
OPEN, CLOSED, FILTERED, UNFILTERED = "open", "closed", "filtered", "unfiltered"

_V4 = socket.AF_INET
_V6 = socket.AF_INET6
_SYN, _RST, _ACK = 0x02, 0x04, 0x10
_SYN_ACK, _RST_ACK = _SYN | _ACK, _RST | _ACK
_WINDOW = 1024  # nmap's SYN probe window
_MSS_OPTION = (2 << 8 | 4, 1460)  # kind 2, length 4, MSS 1460 (as nmap sends)
_TCP_LENGTH = 24
_IP4 = struct.Struct("!BBHHHBBH")  # then source and destination
_IP6 = struct.Struct("!IHBB")  # then source and destination
_TCP_MSS = struct.Struct("!HHIIBBHHHHH")  # the TCP header and the MSS option
_U32 = struct.Struct("!I")

#: ICMP (type, code) -> reason, per family, for errors quoting a probe.
_ICMP4_REASONS = {
    (3, 0): "net-unreachable",
    (3, 1): "host-unreachable",
    (3, 2): "proto-unreachable",
    (3, 3): "port-unreachable",
    (3, 9): "net-prohibited",
    (3, 10): "host-prohibited",
    (3, 13): "admin-prohibited",
    (11, 0): "time-exceeded",
    (11, 1): "time-exceeded",
}
_ICMP6_REASONS = {
    (1, 0): "net-unreachable",
    (1, 1): "admin-prohibited",
    (1, 2): "beyond-scope",
    (1, 3): "host-unreachable",
    (1, 4): "port-unreachable",
    (1, 5): "policy-prohibited",
    (1, 6): "reject-route",
    (3, 0): "time-exceeded",
    (3, 1): "time-exceeded",
}
_SEND_REASONS = {"ENETUNREACH": "net-unreachable", "EHOSTUNREACH": "host-unreachable"}
#: Events: a ScanProgress at most this often (event-loop seconds).
_PROGRESS_INTERVAL_S = 0.2
#: A host answers a repeated SYN for a half-open connection (its SYN-ACK was lost) at
#: most once per 500 ms (Linux: tcp_invalid_ratelimit). Tries after the second are
#: spaced by more than that, or a lost SYN-ACK would make an open port look filtered
#: (found in the lab under 10% loss: one open port in ~10 scans was missed).
_SYN_RETRY_GAP_S = 0.55
#: Tries of one port at most, outages' fresh budgets of retries included.
_MAX_TRIES = 60
#: Per-host packet templates kept; a huge space recomputes them (a few microseconds).
_TEMPLATE_CACHE = 4096


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
    (stream the PortResults instead).
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

    @property
    def allowed_max_retries(self) -> int:
        return max(self.retries, self.max_retries)


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


class _Template:
    """One host's packets: the IP header bytes, and the TCP checksum's constant part
    (pseudo-header and every word but the destination port, sequence and ack)."""

    __slots__ = ("address", "base_s", "head", "partial")

    def __init__(
        self, family: int, remote: bytes, source: bytes, sport: int, ack: bool, ttl: int
    ) -> None:
        self.address = socket.inet_ntop(family, remote)
        self.base_s = math.inf  # least RTT seen (event-loop clock)
        if family == _V4:  # ID and checksum 0: the kernel fills them (IP_HDRINCL)
            self.head = _IP4.pack(0x45, 0, 20 + _TCP_LENGTH, 0, 0, ttl, PROTO_TCP, 0)
        else:
            self.head = _IP6.pack(6 << 28, _TCP_LENGTH, PROTO_TCP, ttl)
        self.head += source + remote
        flags = _ACK if ack else _SYN
        # Pseudo-header (addresses, protocol, length) + every TCP word but dport/seq/ack.
        self.partial = (
            ones_complement_sum(source + remote)
            + PROTO_TCP
            + _TCP_LENGTH
            + sport
            + (6 << 12 | flags)
            + _WINDOW
            + _MSS_OPTION[0]
            + _MSS_OPTION[1]
        )


class _Flight:
    """A probe in flight (or waiting to be sent again)."""

    __slots__ = ("base", "first_s", "flying", "sent_s", "stamp", "tries")

    def __init__(self) -> None:
        self.tries = 0  # sends so far
        self.base = 0  # sends before the current budget of retries (an outage's)
        self.sent_s = 0.0  # last send, event-loop time
        self.first_s = math.inf  # first send
        self.stamp: Sent | None = None
        self.flying = False


def _mono(flight: _Flight) -> float:
    """The last try's send stamp on the transport's clock (the outage guard's)."""
    return flight.stamp.monotonic_s if flight.stamp is not None else -math.inf


class _HostTally:
    """Decided ports of one host (when the scan collects results)."""

    __slots__ = ("address", "counts", "listed", "min_rtt_s", "up")

    def __init__(self, address: str) -> None:
        self.address = address
        self.counts: dict[tuple[str, str], int] = {}
        self.listed: list[PortResult] = []
        self.up = False
        self.min_rtt_s: float | None = None


class ScanMachine(MachineOutbox[object]):
    """Scan every (host, port) of ``space`` x ``ports``; pure, time injected.

    ``source_for(address)`` gives our source address towards a target (the
    transport's ``source_for``, or a constant). Events: a PortResult per decided port,
    a ScanProgress every ~0.2 s and when done.
    """

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
        self.space = space
        self.ports = tuple(ports)
        self.total = space.size * len(self.ports)
        self._cookie = cookies.cookie
        self._source_for = source_for
        self._sport = options.source_port or 32768 + secrets.randbelow(28232)
        self._port_words = tuple(self._sport << 16 | port for port in self.ports)
        self._ack_scan = options.technique == "ack"
        self._flags = _ACK if self._ack_scan else _SYN
        shard, shards = options.shard, options.shards
        self._order: Iterator[int] = (
            iter(Permutation(self.total, options.seed, shard, shards))
            if options.randomize and self.total > 1
            else iter(range(shard, self.total, shards))
        )
        self._exhausted = False
        self._templates: dict[bytes, _Template] = {}
        self._sources: dict[int, bytes] = {}  # block position -> our source address
        self._flights: dict[MatchKey, _Flight] = {}
        self._expiry: deque[tuple[float, MatchKey, int]] = deque()
        self._resend: deque[MatchKey] = deque()
        # Third and later tries wait out the target's limit on answering repeated SYNs
        # (see _SYN_RETRY_GAP_S): (when the gap is over, key), in that order.
        self._gapped: deque[tuple[float, MatchKey]] = deque()
        self._in_flight = 0
        # Silence verdicts wait for proof of life (probes/outage.py); None: off.
        self._guard = (
            OutageGuard[MatchKey, MatchKey](options.outage_budget_s)
            if options.outage_budget_s
            else None
        )
        self._canary_keys = CanarySends[MatchKey]()  # canaries in flight -> their sends
        self._gave_up = False
        super().__init__()
        self._hosts: dict[bytes, _HostTally] = {}
        self._totals: dict[str, int] = {}
        # Timing and congestion state.
        self._rtt = RttEstimator(
            options.initial_rtt_timeout_s, options.min_rtt_timeout_s, options.max_rtt_timeout_s
        )
        self._timeout = self._rtt.timeout_s
        self._cwnd = float(options.initial_cwnd)
        self._ssthresh = math.inf
        self._peak_cwnd = self._cwnd
        self._backoff_s = -math.inf  # probes first sent before this cannot back off again
        self._backoffs = 0
        self._delay_backoffs = 0
        self._queue_delay = 0.0  # smoothed RTT above each host's least RTT
        self._delay_target = options.min_rtt_timeout_s / 4
        self._allowed_retries = options.retries
        self._max_answered_try = 0
        self._rate_tokens = 0.0
        self._min_tokens = 0.0
        self._token_s = 0.0
        # Counters.
        self.sent_count = 0
        self.retransmissions = 0
        self.decided = 0
        self._started: float | None = None
        self._finished: float | None = None
        self._progress_s = 0.0
        self._progress_sent = 0
        self._rate = 0.0
        self._peak_rate = 0.0

    # -- machine interface ---------------------------------------------------------

    @property
    def done(self) -> bool:
        return (self._exhausted and not self._flights) or self._gave_up

    @property
    def timeout_s(self) -> float:
        return self._timeout

    @property
    def cwnd(self) -> float:
        return self._cwnd

    def poll(self, now: float) -> list[Outgoing]:
        if self._started is None:
            self._started = self._progress_s = self._token_s = now
            self._rate_tokens = self._burst(self.options.max_rate_pps)
        self._expire(now)
        out: list[Outgoing] = []
        guard = self._guard
        if guard is not None and (guard.pending or guard.ended):
            self._guard_step(guard, now, out)
            if guard.outage_s is not None or self._gave_up:
                self._spend(len(out))  # nothing new into an outage
                if now >= self._progress_s + _PROGRESS_INTERVAL_S:  # as next_deadline
                    self._progress(now)
                self._note_finish(now)
                return out
        budget = self._budget(now)
        while budget > 0 and self._resend:
            key = self._resend.popleft()
            flight = self._flights.get(key)
            if flight is None or flight.flying:
                continue
            out.append(Outgoing(key, self._packet(key)))
            budget -= 1
        if budget > 0 and not self._exhausted:
            self._new_probes(budget, out)
        if out and guard is not None:
            guard.sending(now)
        if out and guard is not None and guard.quiet(now, self._timeout):
            self._canaries(guard, now, out)
        self._spend(len(out))
        if now >= self._progress_s + _PROGRESS_INTERVAL_S:  # as next_deadline
            self._progress(now)
        self._note_finish(now)
        return out

    def sent(self, key: MatchKey, sent: Sent, now: float) -> None:
        flight = self._flights.get(key)
        if flight is None:
            if self._canary_keys.left(key, sent.monotonic_s):  # (the proof clock)
                self.sent_count += 1
                assert self._guard is not None
                self._guard.round_left(now)  # a round is timed from when it left
            return
        self.sent_count += 1
        if flight.tries:
            self.retransmissions += 1
        flight.tries += 1
        if sent.error is not None:
            self._decide(key, flight, FILTERED, _SEND_REASONS.get(sent.error, sent.error.lower()))
            self._note_finish(now)
            return
        flight.sent_s = now
        flight.stamp = sent
        if flight.first_s == math.inf:
            flight.first_s = now
        if not flight.flying:
            flight.flying = True
            self._in_flight += 1
        self._expiry.append((now, key, flight.tries))

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        for key, stamp in zip(keys, stamps, strict=True):  # (until the bulk engine)
            self.sent(key, stamp, now)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        for reply in replies:
            self.receive(reply, now)

    def receive(self, reply: Reply, now: float) -> None:
        key = reply.key
        flight = self._flights.get(key)
        if flight is None or flight.stamp is None:
            canaries = self._canary_keys
            if key in canaries and self._guard is not None and self._classify(reply) is not None:
                canary_s = canaries.answer(key)
                if canary_s is not None:
                    self._guard.answered(canary_s, now, None)
            return  # a duplicate, or an answer to a port already decided
        if reply.protocol == PROTO_TCP and not self._ack_scan:  # the common case, inline
            data = reply.data  # the demux has read the flags already: long enough
            flags = data[(data[0] & 0x0F) * 4 + 13] if reply.family == _V4 else data[13]
            if flags & _SYN_ACK == _SYN_ACK:
                state, reason, from_host = OPEN, "syn-ack", True
            elif flags & _RST_ACK == _RST_ACK:
                state, reason, from_host = CLOSED, "reset", True
            else:
                return  # e.g. a bare RST whose seq happens to match: not an answer
        else:
            verdict = self._classify(reply)
            if verdict is None:
                return  # matched our key but says nothing about the port
            state, reason, from_host = verdict
        guard = self._guard
        if guard is not None:  # proof of life: a probe sent then was delivered
            first_try = flight.tries - flight.base <= 1
            proof_s = flight.stamp.monotonic_s if first_try else -math.inf
            guard.answered(proof_s, now, key if reply.protocol == PROTO_TCP else None)
        if flight.tries - flight.base > 1:
            self._max_answered_try = max(self._max_answered_try, flight.tries - 1)
            self._allowed_retries = min(
                self.options.allowed_max_retries,
                max(self._allowed_retries, self._max_answered_try + 1),
            )
            self._on_loss(flight)
        else:
            sample = now - flight.sent_s
            self._rtt.sample(sample)
            self._timeout = self._rtt.timeout_s
            template = self._templates.get(key[1])
            if template is not None:  # queueing delay: this RTT above the host's least
                template.base_s = min(template.base_s, sample)
                self._queue_delay += 0.125 * (sample - template.base_s - self._queue_delay)
            self._open_window(flight)
        rtt = rtt_s(flight.stamp, reply)
        self._decide(key, flight, state, reason, reply.ttl, rtt, reply.source_packed, from_host)
        if self._exhausted and not self._flights:
            self._note_finish(now)

    def next_deadline(self) -> float:
        if self.done:
            return math.inf
        candidates = [self._progress_s + _PROGRESS_INTERVAL_S]
        if self._expiry:
            candidates.append(self._expiry[0][0] + self._timeout)
        guard = self._guard
        if guard is not None:
            candidates.append(guard.next_deadline(self._timeout))
            if guard.outage_s is not None:
                return min(candidates)  # nothing is sent but canaries
        if self._gapped:
            candidates.append(self._gapped[0][0])
        if self._resend or not self._exhausted:
            candidates.append(self._send_time())
        return min(candidates)

    # -- results -------------------------------------------------------------------

    @property
    def source_port(self) -> int:
        """The TCP source port of every probe (answers come back to it)."""
        return self._sport

    def result(self, now: float | None = None) -> ScanResult:
        """The result so far (complete once ``done``); ``now`` dates an unfinished one."""
        start = self._started if self._started is not None else 0.0
        end = self._finished if self._finished is not None else (now or start)
        guard = self._guard
        hosts = []
        for remote in sorted(self._hosts, key=_address_order):
            tally = self._hosts[remote]
            counts = tuple(
                (state, reason, count) for (state, reason), count in sorted(tally.counts.items())
            )
            ports = tuple(sorted(tally.listed, key=lambda p: p.port))
            hosts.append(HostPorts(tally.address, ports, counts, tally.up, tally.min_rtt_s))
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
                outages=guard.outages if guard is not None else 0,
                outage_s=guard.outage_total_s if guard is not None else 0.0,
            ),
            state_totals=tuple(sorted(self._totals.items())),
            incomplete_reason=self.incomplete_reason,
        )

    @property
    def incomplete_reason(self) -> str | None:
        """Why the scan stopped before deciding every port (None: it did not)."""
        guard = self._guard
        if guard is None or guard.gave_up is None:
            return None
        left = self.total - self.decided
        return f"{guard.gave_up}; {left} of {self.total} ports undecided"

    def progress(self, now: float) -> ScanProgress:
        start = self._started if self._started is not None else now
        end = self._finished if self._finished is not None else now
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

    # -- probes --------------------------------------------------------------------

    def _template(self, remote: bytes, family: int, block: int | None = None) -> _Template:
        """The packets for ``remote``; the source address is routing's pick for the
        target block (index ``block``: one lookup per block, as the sweep does, not one
        per host) or, for a block not given, for the host itself."""
        template = self._templates.get(remote)
        if template is None:
            if len(self._templates) >= _TEMPLATE_CACHE:
                self._templates.clear()
            source = self._sources.get(block) if block is not None else None
            if source is None:
                if block is not None:
                    address = self.space.first_address(self.space.blocks[block])
                else:
                    address = socket.inet_ntop(family, remote)
                source = socket.inet_pton(family, self._source_for(address))
                if block is not None:
                    self._sources[block] = source
            template = _Template(
                family, remote, source, self._sport, self._ack_scan, self.options.ttl
            )
            self._templates[remote] = template
        return template

    def _new_probes(self, count: int, out: list[Outgoing]) -> None:
        """Up to ``count`` probes of the next indices of the permutation (the hot loop:
        a cookie, a checksum and one struct.pack per probe)."""
        order, flights, templates = self._order, self._flights, self._templates
        cookie = self._cookie
        ports, nports, words = self.ports, len(self.ports), self._port_words
        single = self.space.blocks[0] if len(self.space.blocks) == 1 else None
        for _ in range(count):
            index = next(order, None)
            if index is None:
                self._exhausted = True
                return
            host, port_index = divmod(index, nports)
            if single is not None:
                position, family = 0, single.family
                remote = (single.first + host).to_bytes(single.width, "big")
            else:
                position, offset = self.space.locate(host)
                block = self.space.blocks[position]
                family, remote = block.family, (block.first + offset).to_bytes(block.width, "big")
            word = words[port_index]
            isn = _U32.unpack_from(cookie((KIND_TCP, remote, word, 0)))[0]
            key: MatchKey = (KIND_TCP, remote, word, isn)
            template = templates.get(remote) or self._template(remote, family, position)
            flights[key] = _Flight()
            packet = self._build(template, ports[port_index], isn)
            out.append(new_tuple(Outgoing, (key, packet, (), True)))

    def _packet(self, key: MatchKey) -> bytes:
        _kind, remote, ports, isn = key
        template = self._template(remote, _V4 if len(remote) == 4 else _V6)
        return self._build(template, ports & 0xFFFF, isn)

    def _build(self, template: _Template, dport: int, isn: int) -> bytes:
        ack = isn if self._ack_scan else 0
        total = template.partial + dport + (isn >> 16) + (isn & 0xFFFF)
        if ack:
            total += (ack >> 16) + (ack & 0xFFFF)
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        return template.head + _TCP_MSS.pack(
            self._sport, dport, isn, ack, 6 << 4, self._flags, _WINDOW, ~total & 0xFFFF, 0,
            _MSS_OPTION[0], _MSS_OPTION[1],
        )  # fmt: skip

    # -- answers -------------------------------------------------------------------

    def _classify(self, reply: Reply) -> tuple[str, str, bool] | None:
        """(state, reason, sent by the host itself) for an answer, None if it is none."""
        data = reply.data
        try:
            if reply.family == _V4:
                ihl = (data[0] & 0x0F) * 4
                protocol = data[9]
                offset = ihl
            else:
                protocol, offset = reply.protocol, 0
            if protocol == PROTO_TCP:
                flags = data[offset + 13]
                if self._ack_scan:
                    return (UNFILTERED, "reset", True) if flags & _RST else None
                if flags & _ACK and flags & _SYN:
                    return OPEN, "syn-ack", True
                if flags & _ACK and flags & _RST:
                    return CLOSED, "reset", True
                return None
            icmp_type, icmp_code = data[offset], data[offset + 1]
        except IndexError:
            return None
        if protocol == PROTO_ICMP:
            reason, unreachable = _ICMP4_REASONS.get((icmp_type, icmp_code)), 3
        elif protocol == PROTO_ICMPV6:
            reason, unreachable = _ICMP6_REASONS.get((icmp_type, icmp_code)), 1
        else:
            return None
        if reason is None:
            if icmp_type != unreachable:
                return None  # e.g. packet too big: says nothing about the port
            reason = f"unreachable-code-{icmp_code}"
        return FILTERED, reason, reply.source_packed == reply.key[1]

    def _decide(
        self,
        key: MatchKey,
        flight: _Flight,
        state: str,
        reason: str,
        ttl: int | None = None,
        rtt: float | None = None,
        source: bytes | None = None,
        from_host: bool = False,
    ) -> None:
        """Record the port's state; ``source`` (packed) is who answered."""
        del self._flights[key]
        if flight.flying:
            self._in_flight -= 1
        self._retired.append(key)
        self.decided += 1
        self._totals[state] = self._totals.get(state, 0) + 1
        remote = key[1]
        template = self._templates.get(remote)
        if template is not None:
            address = template.address
        else:
            address = socket.inet_ntop(_V4 if len(remote) == 4 else _V6, remote)
        options = self.options
        listed = state != CLOSED or options.keep_closed
        if listed or options.closed_events:
            family = _V4 if source is not None and len(source) == 4 else _V6
            text = socket.inet_ntop(family, source) if source else None
            port = PortResult(address, key[2] & 0xFFFF, state, reason, ttl, rtt, text, flight.tries)
            self._events.append(port)
        if not options.collect:
            return
        tally = self._hosts.get(remote)
        if tally is None:
            tally = self._hosts[remote] = _HostTally(address)
        counts = tally.counts
        counts[state, reason] = counts.get((state, reason), 0) + 1
        if listed:
            tally.listed.append(port)
        if from_host:
            tally.up = True
            if rtt is not None and (tally.min_rtt_s is None or rtt < tally.min_rtt_s):
                tally.min_rtt_s = rtt

    # -- timing and congestion -----------------------------------------------------

    def _expire(self, now: float) -> None:
        gapped = self._gapped
        while gapped and gapped[0][0] <= now:
            self._resend.append(gapped.popleft()[1])
        timeout = self._timeout
        expiry, flights = self._expiry, self._flights
        while expiry and expiry[0][0] + timeout <= now:
            _sent_s, key, tries = expiry.popleft()
            flight = flights.get(key)
            if flight is None or flight.tries != tries or not flight.flying:
                continue  # answered, or sent again since
            flight.flying = False
            self._in_flight -= 1
            guard = self._guard
            if guard is not None and guard.outage_s is not None:
                guard.hold(_mono(flight), now, key)  # probed again once the outage ends
                continue
            self._open_window()  # a probe left the network without a sign of congestion
            if tries - flight.base <= self._allowed_retries:
                if tries >= 2 and now - flight.sent_s < _SYN_RETRY_GAP_S:
                    gapped.append((flight.sent_s + _SYN_RETRY_GAP_S, key))
                else:
                    self._resend.append(key)
            elif guard is not None and guard.recent:
                guard.hold(_mono(flight), now, key)  # filtered once the network is proven up
            else:
                self._decide(key, flight, FILTERED, "no-response")

    def _guard_step(
        self, guard: OutageGuard[MatchKey, MatchKey], now: float, out: list[Outgoing]
    ) -> None:
        """Give the silence verdicts proven, probe again what an outage held, send a
        round of canaries (the ports that answered last) when proof is overdue."""
        given, again, canaries = guard.poll(now, self._timeout)
        flights = self._flights
        for key in given:
            flight = flights.get(key)
            if flight is not None and not flight.flying:
                self._decide(key, flight, FILTERED, "no-response")
        for key in again:
            flight = flights.get(key)
            if flight is None or flight.flying:
                continue
            if flight.tries >= _MAX_TRIES:
                self._decide(key, flight, FILTERED, "no-response")
                continue
            flight.base = flight.tries  # a whole new budget of retries
            self._resend.append(key)
        if guard.gave_up is not None:
            self._gave_up = True
            return
        if canaries:
            self._canaries(guard, now, out)

    def _canaries(
        self, guard: OutageGuard[MatchKey, MatchKey], now: float, out: list[Outgoing]
    ) -> None:
        """A round of canaries: the ports that answered last, probed again."""
        sent = self._canary_keys
        for key in [k for k in sent if k not in guard.recent]:
            sent.drop(key)
            self._retired.append(key)
        for key in guard.recent:
            out.append(Outgoing(key, self._packet(key)))
            sent.expect(key)  # (an earlier round's send stays awaited)
        guard.sent_round(now)

    def _open_window(self, flight: _Flight | None = None) -> None:
        """One probe completed: grow the window, unless answers queue up (ours or the
        network's): hold it above the delay target, shrink it by a quarter (once per
        window) above twice the target, so replies never wait long enough to time out."""
        if self._queue_delay > self._delay_target:
            if (
                flight is not None
                and self._queue_delay > 2 * self._delay_target
                and flight.first_s > self._backoff_s
            ):
                self._delay_backoffs += 1
                self._cwnd = max(float(self.options.initial_cwnd) / 4, self._cwnd * 0.75)
                self._ssthresh = self._cwnd
                self._backoff_s = flight.sent_s
            return
        cwnd = self._cwnd
        if cwnd < self._ssthresh:
            cwnd += 1.0
        else:
            cwnd += 0.125  # about an eighth more per window of completions
        self._cwnd = min(cwnd, float(self.options.max_cwnd))
        if self._cwnd > self._peak_cwnd:
            self._peak_cwnd = self._cwnd

    def _on_loss(self, flight: _Flight) -> None:
        """An answer to a retransmission: the first try or its answer was lost. Halve
        the window, once per window of probes (those sent before the last backoff do
        not count again)."""
        if flight.first_s <= self._backoff_s:
            return
        self._backoffs += 1
        self._ssthresh = max(float(self.options.initial_cwnd) / 4, self._cwnd / 2)
        self._cwnd = self._ssthresh
        self._backoff_s = flight.sent_s

    # -- pacing --------------------------------------------------------------------

    @staticmethod
    def _burst(rate_pps: float) -> float:
        """Tokens a rate may save up: 10 ms worth, at least one."""
        return max(1.0, rate_pps / 100)

    def _refill(self, now: float) -> None:
        elapsed = now - self._token_s
        if elapsed <= 0:
            return
        self._token_s = now
        options = self.options
        if options.max_rate_pps:
            self._rate_tokens = min(
                self._burst(options.max_rate_pps),
                self._rate_tokens + elapsed * options.max_rate_pps,
            )
        if options.min_rate_pps:
            self._min_tokens = min(
                self._burst(options.min_rate_pps),
                self._min_tokens + elapsed * options.min_rate_pps,
            )

    def _budget(self, now: float) -> int:
        """Probes that may go now: the window's free slots, or the min-rate floor's
        tokens if more, never more than the rate cap's tokens."""
        self._refill(now)
        # (1e-9: the token due at _send_time counts despite rounding; a virtual clock
        # that never moves while the loop spins would otherwise stall here.)
        budget = max(int(self._cwnd) - self._in_flight, int(self._min_tokens + 1e-9))
        if self.options.max_rate_pps:
            budget = min(budget, int(self._rate_tokens + 1e-9))
        return max(0, budget)

    def _spend(self, count: int) -> None:
        if not count:
            return
        if self.options.max_rate_pps:
            self._rate_tokens -= count
        if self.options.min_rate_pps:
            self._min_tokens = max(0.0, self._min_tokens - count)

    def _send_time(self) -> float:
        """When the next probe may go, given the window, the floor and the cap."""
        options = self.options
        window_open = int(self._cwnd) > self._in_flight
        if window_open:
            ready = self._token_s
        elif options.min_rate_pps:
            ready = self._token_s + max(0.0, 1.0 - self._min_tokens) / options.min_rate_pps
        else:
            return math.inf  # an answer or a timeout opens the window
        if options.max_rate_pps and self._rate_tokens < 1.0:
            ready = max(ready, self._token_s + (1.0 - self._rate_tokens) / options.max_rate_pps)
        return ready

    # -- bookkeeping ---------------------------------------------------------------

    def _progress(self, now: float) -> None:
        elapsed = now - self._progress_s
        if elapsed > 0:
            self._rate = (self.sent_count - self._progress_sent) / elapsed
            self._peak_rate = max(self._peak_rate, self._rate)
        self._progress_s, self._progress_sent = now, self.sent_count
        self._events.append(self.progress(now))

    def _note_finish(self, now: float) -> None:
        if self._finished is None and self.done:
            self._finished = now
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


def scan_protocols(space: TargetSpace) -> list[tuple[int, int]]:
    """The raw sockets a scan of ``space`` needs: TCP for answers, ICMP for errors."""
    protocols: list[tuple[int, int]] = []
    if _V4 in space.families:
        protocols += [(_V4, PROTO_ICMP), (_V4, PROTO_TCP)]
    if _V6 in space.families:
        protocols += [(_V6, PROTO_ICMPV6), (_V6, PROTO_TCP)]
    return protocols


# -- async ---------------------------------------------------------------------------

#: Inbox for a scan's replies: a burst of answers must not overflow it.
_INBOX = 1 << 16


def _address_order(packed: bytes) -> tuple[int, bytes]:
    return len(packed), packed


def merge_results(results: Sequence[ScanResult]) -> ScanResult:
    """One ScanResult from the shards of one scan (``ScanOptions.shard``): hosts merged
    port by port, counts summed, elapsed time the slowest shard's."""
    if len(results) == 1:
        return results[0]
    parts: dict[str, list[HostPorts]] = {}
    for result in results:
        for host in result.hosts:
            parts.setdefault(host.address, []).append(host)
    hosts = []
    for address in sorted(parts, key=lambda a: _address_order(ipaddress.ip_address(a).packed)):
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        for part in parts[address]:
            for state, reason, count in part.counts:
                counts[(state, reason)] += count
        rtts = [p.min_rtt_s for p in parts[address] if p.min_rtt_s is not None]
        hosts.append(
            HostPorts(
                address,
                tuple(sorted((p for h in parts[address] for p in h.ports), key=lambda p: p.port)),
                tuple((state, reason, n) for (state, reason), n in sorted(counts.items())),
                any(p.is_up for p in parts[address]),
                min(rtts) if rtts else None,
            )
        )
    totals: collections.Counter[str] = collections.Counter()
    for result in results:
        totals.update(dict(result.state_totals))
    first = results[0]
    timing = dataclasses.replace(
        first.timing,
        peak_rate_pps=sum(r.timing.peak_rate_pps for r in results),
        last_rate_pps=sum(r.timing.last_rate_pps for r in results),
        backoffs=sum(r.timing.backoffs for r in results),
        delay_backoffs=sum(r.timing.delay_backoffs for r in results),
        outages=sum(r.timing.outages for r in results),
        outage_s=max(r.timing.outage_s for r in results),
    )
    return ScanResult(
        technique=first.technique,
        hosts=tuple(hosts),
        ports_per_host=first.ports_per_host,
        host_count=first.host_count,
        decided=sum(r.decided for r in results),
        probes_sent=sum(r.probes_sent for r in results),
        retransmissions=sum(r.retransmissions for r in results),
        elapsed_s=max(r.elapsed_s for r in results),
        timing=timing,
        state_totals=tuple(sorted(totals.items())),
        incomplete_reason=next((r.incomplete_reason for r in results if r.incomplete_reason), None),
    )


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


def source_lookup(source: str | None, route: Callable[[str], str]) -> Callable[[str], str]:
    """The scan's source towards an address: ``source`` (-S) when given, which must be
    of the address's family, else routing's pick (``route``)."""

    def source_for(address: str) -> str:
        if source is not None:
            if (":" in source) != (":" in address):
                raise UsageError(f"source address {source} is not of {address}'s family")
            return source
        return route(address)

    return source_for


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
    await drive(machine, transport, on_event=on_event, inbox_size=_INBOX)
    return machine.result()


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
            await drive(machine, transport, on_event=on_event, inbox_size=_INBOX)
        stream.result = machine.result()

    with receive:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run)
            yield stream
            task_group.cancel_scope.cancel()
