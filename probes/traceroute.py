"""Traceroute over ICMP, UDP and TCP (SYN), IPv4 and IPv6: a pure machine plus async
functions for one target and for many targets at once.

**Paris mode** (the default) keeps every field that per-flow load balancers hash
constant for the whole trace — addresses, protocol, ports, and for ICMP the identifier
*and the checksum*; over IPv6 the flow label — so all probes of one trace follow one
path; each probe's identity travels where balancers do not look. The packets are made
by ``probes/flowprobes.py`` (the probe for a TTL, a flow id and a probe number; the
table of what goes where is there); a trace uses one flow id. ``paris=False``
(``--classic``) varies what the original traceroute varies: the UDP destination port,
the TCP source port, the ICMP sequence without compensation. Replies are matched by the
transport's demultiplexer through the header an ICMP error quotes (8 transport bytes
suffice), and read by ``probes/trace_replies.py``.

One machine runs many traces (``TraceBatch``: ``trace_many_with``; ``TraceMachine`` is
a batch of one): one table of the probes in flight, one heap of their deadlines, one
queue of the traces with something to send, so a probe costs the same whether one trace
runs or a thousand (issue 14, 1000 lab traces: 53 us a probe, sent, answered and
decided, with a machine per trace in a Multiplex; 33 us as one batch).
``probes/trace_stats.py`` keeps mtr's statistics over rounds (``LiveTrace``) and
``probes/trace_live.py`` runs the rounds.

Scheduling: the machine keeps up to ``in_flight`` TTLs (default: all) probing at once,
sends one TTL's probes per ``poll`` so replies are read between sends, stops sending beyond
the destination's hop once it answered, and re-probes a query that got no answer within
its wait up to ``retries`` times (routers that rate-limit ICMP drop errors; a second
try a moment later usually gets one). An answer to an earlier try still counts until the
last try's wait is over (a router that answers only after ARP gave up, ~3 s, is heard).
The wait of a try is ``wait_s``, or less with traceroute's ``-w MAX,HERE,NEAR`` factors:
``here`` times the RTT of the first answer from the same hop, else ``near`` times the RTT
of the first answer from the nearest later hop (each RTT plus 1 ms, as traceroute does),
recomputed as answers arrive. A hop that never answers costs ``(1 + retries)`` waits, in
parallel with every other hop.
"""

from __future__ import annotations

import heapq
import math
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import NamedTuple

from rawprobe.errors import UsageError
from rawprobe.probes.flowprobes import FlowProbes, source_port
from rawprobe.probes.machine import MachineOutbox, Outgoing, Route
from rawprobe.probes.multiplex import (
    Emitted,
    Finished,
    ManyResults,
    by_name,
    run_one,
    run_results,
)
from rawprobe.probes.trace_models import TraceHop, TraceResponse, TraceResult
from rawprobe.probes.trace_replies import parse_reply
from rawprobe.probes.trace_stats import LiveTrace
from rawprobe.transport.base import Reply, Sent, Transport, measured_rtt
from rawprobe.transport.keys import KIND_ECHO, KIND_TCP, Cookies, MatchKey
from rawprobe.transport.sockets import ICMP_SOCKETS, TCP_SOCKETS
from rawprobe.transport.wire.icmp_table import annotation

__all__ = [
    "DEFAULT_TCP_PORT",
    "DEFAULT_UDP_PORT",
    "METHODS",
    "LiveTrace",
    "TraceBatch",
    "TraceMachine",
    "TraceOptions",
    "TraceResults",
    "TraceSpec",
    "annotation",
    "check_packet",
    "check_ttls",
    "destination_port",
    "new_batch",
    "new_machine",
    "trace_many_with",
    "trace_protocols",
    "traceroute_with",
]

METHODS = ("icmp", "udp", "tcp")
DEFAULT_UDP_PORT = 33434  # traceroute's base port
DEFAULT_TCP_PORT = 80


def check_ttls(first_ttl: int, max_ttl: int) -> None:
    """UsageError unless ``first_ttl`` .. ``max_ttl`` is a range of TTLs (TraceOptions,
    MultipathOptions)."""
    if not 1 <= max_ttl <= 255:
        raise UsageError(f"bad max ttl {max_ttl}: must be 1..255")
    if not 1 <= first_ttl <= max_ttl:
        raise UsageError(f"bad first ttl {first_ttl}: must be 1..{max_ttl}")


def check_packet(port: int | None, tos: int, packet_size: int | None) -> None:
    """UsageError for a destination port, TOS or packet size a trace probe cannot carry."""
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"bad port {port}: must be 1..65535")
    if not 0 <= tos <= 255:
        raise UsageError(f"bad tos {tos}: must be 0..255")
    if packet_size is not None and not 0 <= packet_size <= 65000:
        raise UsageError(f"bad packet size {packet_size}: must be 0..65000")


def destination_port(method: str, port: int | None) -> int:
    """The destination port of a trace's probes: ``port``, else the method's default."""
    if port is not None:
        return port
    return DEFAULT_TCP_PORT if method == "tcp" else DEFAULT_UDP_PORT


@dataclass(frozen=True, slots=True)
class TraceOptions:
    """What one trace does; validated on construction (UsageError on nonsense).

    ``wait_s`` bounds the wait for each probe; ``here`` and ``near`` (0: unused) shorten
    it to that many times the RTT of an answer from the same hop, or from a later hop
    (traceroute's ``-w MAX,HERE,NEAR``). ``retries`` re-probes an unanswered query
    that many more times; an answer to an earlier try counts until the last one's wait
    is over. ``in_flight`` is how many TTLs are probed at once (None: all).
    ``port`` is the destination port (UDP: 33434, TCP: 80; classic UDP adds the probe
    number). ``packet_size`` is the whole IP packet for ICMP and UDP (None: 60 bytes
    over IPv4, 80 over IPv6, like traceroute); TCP probes are bare SYNs.
    """

    method: str = "icmp"
    port: int | None = None
    paris: bool = True
    packet_size: int | None = None
    tos: int = 0
    first_ttl: int = 1
    max_ttl: int = 30
    queries: int = 3
    in_flight: int | None = None
    wait_s: float = 1.0
    here: float = 0.0
    near: float = 0.0
    retries: int = 2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"bad method {self.method!r}: choose icmp, udp or tcp")
        check_ttls(self.first_ttl, self.max_ttl)
        if not 1 <= self.queries <= 10:
            raise UsageError(f"bad number of queries {self.queries}: must be 1..10")
        if not (self.wait_s > 0 and self.wait_s < 1e6):
            raise UsageError(f"bad wait {self.wait_s}: must be > 0 seconds")
        for name, factor in (("here", self.here), ("near", self.near)):
            if not 0 <= factor < 1e6:
                raise UsageError(f"bad {name} factor {factor}: must be a number >= 0")
        if not 0 <= self.retries <= 10:
            raise UsageError(f"bad retries {self.retries}: must be 0..10")
        if self.in_flight is not None and self.in_flight < 1:
            raise UsageError(f"bad in-flight {self.in_flight}: must be at least 1")
        check_packet(self.port, self.tos, self.packet_size)

    @property
    def destination_port(self) -> int:
        return destination_port(self.method, self.port)


class _Probe:
    """One packet in flight (``expired``: its wait is over, but an answer to it still
    counts while its query's later tries are waiting)."""

    __slots__ = (
        "attempt", "due", "expired", "key", "packet", "query", "sent", "sent_at", "trace", "ttl",
    )  # fmt: skip

    def __init__(self, trace: _Trace, ttl: int, query: int, attempt: int, out: Outgoing) -> None:
        self.trace = trace
        self.ttl = ttl
        self.query = query
        self.attempt = attempt
        self.key = out.key
        self.packet = out.packet  # (an ICMP error's quote is compared with it: NAT)
        self.sent: Sent | None = None
        self.sent_at = 0.0
        self.due = math.inf
        self.expired = False


#: Added to an RTT before multiplying it into a wait (traceroute's DEF_WAIT_PREC).
_WAIT_PRECISION_S = 0.001


class TraceSpec(NamedTuple):
    """One trace of a TraceBatch: the literal ``address`` (``target``: as the user
    typed it), the ``source``, the flow (``flow_id``), the offset of its probe numbers
    (``probe_base``) and its ICMP identifier (``ident``; None: the flow id)."""

    address: str
    source: str
    flow_id: int
    target: str | None = None
    probe_base: int = 0
    ident: int | None = None


class _Trace:
    """One trace's state inside a TraceBatch (its probes live in the batch's table)."""

    __slots__ = (
        "address",
        "answers",
        "dest_ttl",
        "finished",
        "first_rtt",
        "flow_id",
        "index",
        "limit",
        "next_emit",
        "next_index",
        "next_ttl",
        "open_ttls",
        "pending",
        "probe_base",
        "probes",
        "probes_sent",
        "ready",
        "send_error",
        "sent_per_ttl",
        "source",
        "started",
        "target",
        "tries",
        "unresolved",
        "unresolved_total",
        "wait",
    )  # fmt: skip

    def __init__(
        self, index: int, spec: TraceSpec, options: TraceOptions, probes: FlowProbes
    ) -> None:
        self.index = index
        self.address = spec.address
        self.target = spec.target or spec.address
        self.source = spec.source
        self.flow_id = spec.flow_id & 0xFFFF
        self.probe_base = spec.probe_base
        self.probes = probes
        self.started: float | None = None
        self.finished: float | None = None
        self.ready = False  # in the batch's queue of traces with something to send
        self.next_index = 0
        self.pending: list[tuple[int, int, int]] = []  # heap of (ttl, query, attempt)
        self.next_ttl = options.first_ttl  # next TTL to activate
        self.limit = options.max_ttl  # the last TTL to probe (the destination's, once known)
        self.dest_ttl: int | None = None
        self.open_ttls: set[int] = set()  # activated, not final
        self.unresolved: dict[int, int] = {}  # ttl -> queries not final
        self.unresolved_total = 0  # of the activated TTLs up to ``limit``
        self.tries: dict[tuple[int, int], list[_Probe]] = {}  # (ttl, query) -> its tries
        self.first_rtt: dict[int, float] = {}  # ttl -> RTT of its first answer
        self.wait: dict[int, float] = {}  # ttl -> a try's wait, when shorter than wait_s
        self.answers: dict[tuple[int, int], TraceResponse | None] = {}
        self.sent_per_ttl: dict[int, int] = {}
        self.probes_sent = 0
        self.send_error: str | None = None
        self.next_emit = options.first_ttl


class TraceBatch(MachineOutbox[Emitted[TraceHop] | Finished]):
    """Many traces in one machine: one table of the probes in flight, one heap of
    their deadlines and one queue of the traces with something to send, so a probe
    costs the same whether one trace runs or a thousand (no machine per trace for a
    multiplexer to visit). Pure: ``poll(now)`` gives packets, ``sent_batch`` and
    ``receive_batch`` take stamps and matched replies, ``result_of(index)`` gives each
    TraceResult.

    Each trace sends one TTL's probes per turn; ``poll`` gives every trace with
    something to send one turn (in the order they became ready: round-robin) until
    ``batch`` packets are due, so a trace's next TTL leaves after every other trace
    had its turn, by when the previous TTL's replies have usually been read.
    Events (the multiplexer's): ``Emitted(index, TraceHop)`` as each hop and the hops
    below it are final (only with ``events``) and ``Finished(index)``.

    ``routes``: declare the wide routes of Paris ICMP and TCP probes (ICMP: the
    identifiers; TCP: each flow's ports) instead of registering each probe's key;
    for a batch that owns its identifiers and flows on the transport. UDP probes are
    always registered key by key (the demultiplexer's NAT match looks keys up).
    """

    def __init__(
        self,
        traces: Sequence[TraceSpec],
        *,
        cookies: Cookies,
        options: TraceOptions,
        events: bool = True,
        routes: bool = False,
        batch: int = 256,
    ) -> None:
        super().__init__()
        self.options = options
        self._events_on = events
        self._batch = batch
        self._traces: list[_Trace] = []
        for index, spec in enumerate(traces):
            flow_id = spec.flow_id & 0xFFFF
            probes = FlowProbes(
                source=spec.source,
                address=spec.address,
                method=options.method,
                cookies=cookies,
                port=options.destination_port,
                # ICMP: the transport's identifier (its socket filter admits no other), the
                # flow id unless given (flows of one ident differ by checksum, flow label).
                ident=flow_id if spec.ident is None else spec.ident,
                paris=options.paris,
                packet_size=options.packet_size,
                tos=options.tos,
            )
            self._traces.append(_Trace(index, spec, options, probes))
        self._ready: deque[_Trace] = deque(self._traces)  # traces with something to send
        for trace in self._traces:
            trace.ready = True
        self._unfinished = dict.fromkeys(range(len(self._traces)))
        self._outstanding: dict[MatchKey, _Probe] = {}
        self._deadlines: list[tuple[float, int, MatchKey]] = []  # heap: (due, entry, key)
        self._entries = 0
        self._last_poll = 0.0
        self._keyed = True  # retire keys (registered one by one)
        if routes and options.paris and options.method != "udp":
            self._keyed = False
            kind = KIND_ECHO if options.method == "icmp" else KIND_TCP
            found = {(kind, self._route_value(t)) for t in self._traces}
            self.routes = tuple(sorted(found))

    def _route_value(self, trace: _Trace) -> int:
        """key[2] of every probe of a Paris trace: the ICMP identifier, the TCP ports."""
        if self.options.method == "icmp":
            return trace.probes.ident
        return source_port(trace.flow_id) << 16 | self.options.destination_port

    # -- machine interface ---------------------------------------------------------

    @property
    def done(self) -> bool:
        return not self._unfinished

    @property
    def unfinished(self) -> tuple[int, ...]:
        """Indices of the traces not finished yet (the partial ones, once cancelled)."""
        return tuple(self._unfinished)

    def poll(self, now: float) -> list[Outgoing]:
        self._last_poll = now
        self._expire(now)
        outgoing: list[Outgoing] = []
        ready = self._ready
        for _ in range(len(ready)):  # each trace once per call at most
            if len(outgoing) >= self._batch:
                break
            trace = ready.popleft()
            if trace.started is None:
                trace.started = now
            self._turn(trace, outgoing)
            if self._sendable(trace):
                ready.append(trace)
            else:
                trace.ready = False
                self._check_finished(trace, now)
        return outgoing

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        outstanding, wait_s, deadlines = self._outstanding, self.options.wait_s, self._deadlines
        for key, sent in zip(keys, stamps, strict=True):
            probe = outstanding.get(key)
            if probe is None:
                continue
            trace = probe.trace
            probe.sent = sent
            trace.probes_sent += 1  # counted once it left: an interrupted batch is not
            trace.sent_per_ttl[probe.ttl] = trace.sent_per_ttl.get(probe.ttl, 0) + 1
            if sent.error is not None:
                # The local stack refused (no route): no answer will come; not retried.
                trace.send_error = sent.error
                self._close_query(trace, probe.ttl, probe.query)
                self._resolve(trace, probe.ttl, probe.query, None, now)
            else:
                probe.sent_at = now
                probe.due = now + trace.wait.get(probe.ttl, wait_s)
                self._entries += 1
                heapq.heappush(deadlines, (probe.due, self._entries, key))

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        outstanding = self._outstanding
        for reply in replies:
            probe = outstanding.get(reply.key)
            if probe is None or probe.sent is None:
                continue  # late (given up), duplicate, beyond the destination, or not ours
            trace = probe.trace
            rtt, source = measured_rtt(probe.sent, reply)
            family = trace.probes.family
            response = parse_reply(reply, family, rtt, probe.attempt, probe.packet, source)
            if response is None:
                continue  # a TCP segment that is neither SYN-ACK nor RST
            ttl = probe.ttl
            self._close_query(trace, ttl, probe.query)
            self._learn_rtt(trace, ttl, rtt)
            if response.terminal and (trace.dest_ttl is None or ttl < trace.dest_ttl):
                self._drop_beyond(trace, ttl)
            self._resolve(trace, ttl, probe.query, response, now)

    def next_deadline(self) -> float:
        if self._ready:
            return self._last_poll
        deadlines, outstanding = self._deadlines, self._outstanding
        while deadlines and deadlines[0][2] not in outstanding:
            heapq.heappop(deadlines)
        if deadlines:
            return deadlines[0][0]
        return self._last_poll if self._unfinished else math.inf

    # -- results -------------------------------------------------------------------

    def result_of(self, index: int, now: float | None = None) -> TraceResult:
        """Trace ``index`` so far (complete once it finished); ``now`` dates an
        unfinished one, whose hops end at the highest TTL probed so far (an
        interrupted trace)."""
        trace = self._traces[index]
        options = self.options
        start = trace.started if trace.started is not None else 0.0
        end = trace.finished if trace.finished is not None else (now or start)
        last = trace.limit
        if trace.finished is None:
            last = min(last, max(trace.sent_per_ttl, default=options.first_ttl - 1))
        hops = tuple(self._hop(trace, ttl) for ttl in range(options.first_ttl, last + 1))
        return TraceResult(
            target=trace.target,
            address=trace.address,
            method=options.method,
            source=trace.source,
            paris=options.paris,
            flow=trace.probes.flow(trace.flow_id),
            first_ttl=options.first_ttl,
            max_ttl=options.max_ttl,
            hops=hops,
            reached=any(p is not None and p.reached for p in trace.answers.values()),
            elapsed_s=max(0.0, end - start),
            probes_sent=trace.probes_sent,
            packet_size=trace.probes.packet_size,
            send_error=trace.send_error,
            finished=trace.finished is not None,
        )

    def flow(self, index: int) -> tuple[int, int]:
        """What trace ``index``'s probes hold constant (``FlowProbes.flow``)."""
        trace = self._traces[index]
        return trace.probes.flow(trace.flow_id)

    # -- scheduling ------------------------------------------------------------------

    def _sendable(self, trace: _Trace) -> bool:
        limit = trace.limit
        if trace.pending and trace.pending[0][0] <= limit:
            return True
        window = self.options.in_flight
        return trace.next_ttl <= limit and (window is None or len(trace.open_ttls) < window)

    def _make_ready(self, trace: _Trace) -> None:
        if not trace.ready:
            trace.ready = True
            self._ready.append(trace)

    def _turn(self, trace: _Trace, outgoing: list[Outgoing]) -> None:
        """The trace's probes of one TTL: its retries due, else its next TTL's queries
        (opened only when nothing waits to be sent: a TTL per turn)."""
        options = self.options
        limit = trace.limit
        pending = trace.pending
        if not (pending and pending[0][0] <= limit):
            window = options.in_flight
            if trace.next_ttl > limit or (window is not None and len(trace.open_ttls) >= window):
                return
            ttl = trace.next_ttl
            trace.next_ttl += 1
            trace.open_ttls.add(ttl)
            trace.unresolved[ttl] = options.queries
            trace.unresolved_total += options.queries
            for query in range(options.queries):
                heapq.heappush(pending, (ttl, query, 0))
        first = pending[0][0]
        while pending and pending[0][0] == first:
            ttl, query, attempt = heapq.heappop(pending)
            number = (trace.probe_base + trace.next_index) & 0xFFFFFFFF
            trace.next_index += 1
            out = trace.probes.packet(ttl, trace.flow_id, number)
            probe = _Probe(trace, ttl, query, attempt, out)
            self._outstanding[out.key] = probe
            tries = trace.tries.get((ttl, query))
            if tries is None:
                trace.tries[ttl, query] = [probe]
            else:
                tries.append(probe)
            outgoing.append(out)

    def _expire(self, now: float) -> None:
        deadlines, outstanding = self._deadlines, self._outstanding
        retries = self.options.retries
        while deadlines and deadlines[0][0] <= now:
            due, _, key = heapq.heappop(deadlines)
            probe = outstanding.get(key)
            if probe is None or probe.expired or due != probe.due:
                continue  # answered, already expired, or rescheduled
            probe.expired = True
            trace = probe.trace
            if trace.dest_ttl is not None and probe.ttl > trace.dest_ttl:
                self._close_query(trace, probe.ttl, probe.query)  # beyond the destination
            elif probe.attempt < retries:
                heapq.heappush(trace.pending, (probe.ttl, probe.query, probe.attempt + 1))
                self._make_ready(trace)
            else:
                self._close_query(trace, probe.ttl, probe.query)
                self._resolve(trace, probe.ttl, probe.query, None, now)

    def _close_query(self, trace: _Trace, ttl: int, query: int) -> None:
        """Stop listening for every try of a query (answered, or the last try's wait is
        over), and forget a retry not sent yet."""
        outstanding = self._outstanding
        for probe in trace.tries.pop((ttl, query), ()):
            if outstanding.pop(probe.key, None) is not None and self._keyed:
                self._retired.append(probe.key)
        if trace.pending:
            pending = [item for item in trace.pending if item[0] != ttl or item[1] != query]
            if len(pending) != len(trace.pending):
                heapq.heapify(pending)
                trace.pending = pending

    def _learn_rtt(self, trace: _Trace, ttl: int, rtt: float) -> None:
        """Shorten the waits that the first answer at ``ttl`` bounds (HERE for its own hop,
        NEAR for the hops below it that have no nearer answer) and reschedule those hops'
        tries in flight."""
        options = self.options
        first_rtt = trace.first_rtt
        if ttl in first_rtt:
            return
        first_rtt[ttl] = rtt
        if not (options.here or options.near):
            return
        changed: list[int] = []
        if options.here:
            trace.wait[ttl] = min(options.wait_s, options.here * (rtt + _WAIT_PRECISION_S))
            changed.append(ttl)
        if options.near:
            near = min(options.wait_s, options.near * (rtt + _WAIT_PRECISION_S))
            for lower in range(ttl - 1, options.first_ttl - 1, -1):
                answered = lower in first_rtt
                if answered and options.here:
                    break  # its own answer rules it; the hops below have a nearer one
                trace.wait[lower] = near
                changed.append(lower)
                if answered:
                    break
        for hop in changed:
            wait = trace.wait[hop]
            for query in range(options.queries):
                for probe in trace.tries.get((hop, query), ()):
                    if probe.expired or probe.sent is None:
                        continue
                    due = probe.sent_at + wait
                    if due != probe.due:
                        probe.due = due
                        self._entries += 1
                        heapq.heappush(self._deadlines, (due, self._entries, probe.key))

    def _drop_beyond(self, trace: _Trace, ttl: int) -> None:
        """The destination answered at ``ttl``: stop probing beyond it."""
        old = trace.limit
        trace.dest_ttl = trace.limit = ttl
        for beyond in range(ttl + 1, min(old, trace.next_ttl - 1) + 1):
            trace.unresolved_total -= max(0, trace.unresolved.get(beyond, 0))
            trace.open_ttls.discard(beyond)
        outstanding = self._outstanding
        for (hop, _query), tries in trace.tries.items():
            if hop > ttl:
                for probe in tries:
                    if outstanding.pop(probe.key, None) is not None and self._keyed:
                        self._retired.append(probe.key)
        trace.pending = [item for item in trace.pending if item[0] <= ttl]
        heapq.heapify(trace.pending)

    def _resolve(
        self, trace: _Trace, ttl: int, query: int, response: TraceResponse | None, now: float
    ) -> None:
        slot = (ttl, query)
        if slot in trace.answers:
            return
        trace.answers[slot] = response
        left = trace.unresolved.get(ttl, 0) - 1
        trace.unresolved[ttl] = left
        if ttl <= trace.limit:
            trace.unresolved_total -= 1
        if left <= 0:
            trace.open_ttls.discard(ttl)
            if not trace.ready and self._sendable(trace):
                self._make_ready(trace)  # (a window of TTLs in flight had no room)
        if self._events_on and trace.next_emit <= trace.limit:
            self._emit_ready(trace)
        self._check_finished(trace, now)

    def _emit_ready(self, trace: _Trace) -> None:
        while trace.next_emit <= trace.limit and trace.unresolved.get(trace.next_emit) == 0:
            hop = self._hop(trace, trace.next_emit)
            self._events.append(Emitted(trace.index, hop))
            trace.next_emit += 1
            if hop.terminal:
                trace.next_emit = self.options.max_ttl + 1
                break

    def _check_finished(self, trace: _Trace, now: float) -> None:
        if trace.finished is not None or trace.started is None:
            return
        if trace.next_ttl <= trace.limit or trace.unresolved_total > 0:
            return
        trace.finished = now
        if self._events_on:
            self._emit_ready(trace)
        del self._unfinished[trace.index]
        self._events.append(Finished(trace.index))

    def _hop(self, trace: _Trace, ttl: int) -> TraceHop:
        queries = range(self.options.queries)
        answers = trace.answers
        probes = tuple(answers.get((ttl, q)) for q in queries)
        pending = (
            ()
            if trace.finished is not None
            else tuple(q for q in queries if (ttl, q) not in answers)
        )
        return TraceHop(ttl, probes, trace.sent_per_ttl.get(ttl, 0), pending)


class TraceMachine:
    """One trace to one literal address: a TraceBatch of one, with its events as plain
    TraceHops and its ``result()``. Pure: ``poll(now)`` gives packets (one TTL's per
    call), ``receive_batch`` takes matched replies, ``result()`` gives the TraceResult.

    ``flow_id`` (16 bits) picks the flow: the ICMP identifier, or the source port of
    UDP/TCP probes (32768 + flow_id % 28232). ``probe_base`` offsets probe identities
    (live mode runs rounds with fresh identities; flows sharing an ICMP ``ident`` need
    disjoint ones).
    Events: each TraceHop as soon as it and every hop below it are final, in order
    (none with ``events=False``).
    """

    routes: tuple[Route, ...] = ()

    def __init__(
        self,
        address: str,
        *,
        source: str,
        flow_id: int,
        cookies: Cookies,
        options: TraceOptions,
        target: str | None = None,
        probe_base: int = 0,
        ident: int | None = None,
        events: bool = True,
    ) -> None:
        self.address = address
        self.target = target or address
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.source = source
        self.options = options
        spec = TraceSpec(address, source, flow_id, target, probe_base, ident)
        self._batch = TraceBatch([spec], cookies=cookies, options=options, events=events)

    @property
    def done(self) -> bool:
        return self._batch.done

    def poll(self, now: float) -> list[Outgoing]:
        return self._batch.poll(now)

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        self._batch.sent_batch(keys, stamps, now)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        self._batch.receive_batch(replies, now)

    def next_deadline(self) -> float:
        return self._batch.next_deadline()

    def take_events(self) -> list[TraceHop]:
        return [e.event for e in self._batch.take_events() if isinstance(e, Emitted)]

    def take_retired(self) -> list[MatchKey]:
        return self._batch.take_retired()

    def result(self, now: float | None = None) -> TraceResult:
        """The trace so far (complete once ``done``); ``now`` dates an unfinished one,
        whose hops end at the highest TTL probed so far (an interrupted trace)."""
        return self._batch.result_of(0, now)

    @property
    def flow(self) -> tuple[int, int]:
        return self._batch.flow(0)


# -- async functions ---------------------------------------------------------------


def new_machine(
    transport: Transport,
    address: str,
    options: TraceOptions,
    *,
    source: str | None = None,
    target: str | None = None,
    flow_id: int | None = None,
    probe_base: int = 0,
    ident: int | None = None,
    events: bool = True,
) -> TraceMachine:
    """A TraceMachine wired to ``transport``'s cookies, with a fresh flow unless given."""
    return TraceMachine(
        address,
        source=source or transport.source_for(address),
        flow_id=transport.cookies.new_ident() if flow_id is None else flow_id,
        cookies=transport.cookies,
        options=options,
        target=target,
        probe_base=probe_base,
        ident=ident,
        events=events,
    )


async def traceroute_with(
    transport: Transport,
    address: str,
    options: TraceOptions | None = None,
    *,
    source: str | None = None,
    target: str | None = None,
    flow_id: int | None = None,
    on_event: Callable[[TraceHop], None] | None = None,
) -> TraceResult:
    """Trace the route to one literal address over an open transport.

    Silence, unreachables and rate-limited routers are results, never exceptions.
    ``on_event`` receives each TraceHop once it and the hops below it are final.
    """
    machine = new_machine(
        transport, address, options or TraceOptions(), source=source, target=target,
        flow_id=flow_id,
    )  # fmt: skip
    return await run_one(transport, machine, on_event=on_event)


#: What ``trace_many_with`` yields: finished traces in completion order; ``remaining()``
#: gives, once the block was left early (Ctrl-C, a timeout), the traces not yet taken:
#: finished ones, then the unfinished ones as they stood (``TraceBatch.result_of(i, now)``:
#: the hops probed so far).
TraceResults = ManyResults[TraceResult]


@asynccontextmanager
async def trace_many_with(
    transport: Transport,
    addresses: Sequence[str],
    options: TraceOptions | None = None,
    *,
    targets: Sequence[str] | None = None,
    source: str | None = None,
    on_event: Callable[[str, TraceHop], None] | None = None,
) -> AsyncIterator[TraceResults]:
    """Trace every address concurrently over one transport (one TraceBatch); yields an
    async iterator of results in completion order::

        async with trace_many_with(transport, addresses) as results:
            async for result in results:
                ...

    Leaving the block early cancels the traces still running; after the block,
    ``results.remaining()`` gives what they had found (see TraceResults). ``targets`` names the
    addresses as the user typed them (``TraceResult.target``); ``on_event`` gets
    ``(target, TraceHop)`` as each hop of each trace becomes final.
    """
    options = options or TraceOptions()
    names = list(targets) if targets is not None else list(addresses)
    # Hop events only for a caller that takes them (each is a TraceHop made).
    batch = new_batch(
        transport, addresses, options, targets=names, source=source,
        events=on_event is not None,
    )  # fmt: skip
    async with run_results(transport, batch, on_event=by_name(names, on_event)) as results:
        yield results


def new_batch(
    transport: Transport,
    addresses: Sequence[str],
    options: TraceOptions,
    *,
    targets: Sequence[str] | None = None,
    source: str | None = None,
    events: bool = True,
) -> TraceBatch:
    """A TraceBatch of traces to ``addresses`` over ``transport``, each a fresh flow.
    ICMP probes share an identifier, which the batch declares as its route (no key
    registered per probe); traces to one address get disjoint probe numbers: as many
    as 16 bits of sequence hold share one identifier, the next ones take another."""
    per_trace = (options.max_ttl - options.first_ttl + 1) * options.queries
    per_trace *= 1 + options.retries
    numbering = probe_numbering(addresses, per_trace)
    idents: list[int] = []
    specs = []
    for address, name, (band, base) in zip(addresses, targets or addresses, numbering, strict=True):
        ident = None
        if options.method == "icmp":
            while len(idents) <= band:
                idents.append(transport.cookies.new_ident())
            ident = idents[band]
        flow_id = transport.cookies.new_ident()
        from_ = source or transport.source_for(address)
        specs.append(TraceSpec(address, from_, flow_id, name, base, ident))
    return TraceBatch(specs, cookies=transport.cookies, options=options, events=events, routes=True)


def probe_numbering(addresses: Sequence[str], per_trace: int) -> list[tuple[int, int]]:
    """(band, base) of each trace: traces to one address number their probes from
    ``base`` on, in disjoint ranges of ``per_trace`` 16-bit numbers; as many as fit in
    16 bits share band 0 (one ICMP identifier), the next ones band 1, and so on."""
    per_band = max(1, 0x10000 // per_trace)
    seen: dict[str, int] = {}
    numbering = []
    for address in addresses:
        repeat = seen[address] = seen.get(address, -1) + 1
        band, place = divmod(repeat, per_band)
        numbering.append((band, (place * per_trace) & 0xFFFF))
    return numbering


def trace_protocols(addresses: Sequence[str], method: str) -> list[tuple[int, int]]:
    """The raw sockets tracing ``addresses`` with ``method`` needs (ICMP errors arrive
    on the ICMP sockets; TCP answers on the TCP ones)."""
    sockets = TCP_SOCKETS if method == "tcp" else ICMP_SOCKETS
    families = {socket.AF_INET6 if ":" in a else socket.AF_INET for a in addresses}
    return [(family, protocol) for family, protocol in sockets if family in families]
