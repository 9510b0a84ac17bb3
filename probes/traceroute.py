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

The pieces around the machine: ``probes/multiplex.py`` runs many traces in one driver
loop (``trace_many_with``), ``probes/trace_stats.py`` keeps mtr's statistics over
rounds (``LiveTrace``) and ``probes/trace_live.py`` runs the rounds.

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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rawprobe.errors import UsageError
from rawprobe.probes.drive import drive
from rawprobe.probes.flowprobes import FlowProbes
from rawprobe.probes.machine import MachineOutbox, Outgoing
from rawprobe.probes.models import TraceHop, TraceResponse, TraceResult
from rawprobe.probes.multiplex import ManyResults, ResultMachine, run_many
from rawprobe.probes.trace_replies import parse_reply
from rawprobe.probes.trace_stats import LiveTrace
from rawprobe.transport.base import Reply, Sent, Transport, measured_rtt
from rawprobe.transport.keys import Cookies, MatchKey
from rawprobe.transport.sockets import ICMP_SOCKETS, TCP_SOCKETS
from rawprobe.transport.wire.icmp_table import annotation

__all__ = [
    "DEFAULT_TCP_PORT",
    "DEFAULT_UDP_PORT",
    "METHODS",
    "LiveTrace",
    "TraceMachine",
    "TraceOptions",
    "TraceResults",
    "annotation",
    "new_machine",
    "trace_many_with",
    "trace_protocols",
    "traceroute_with",
]

METHODS = ("icmp", "udp", "tcp")
DEFAULT_UDP_PORT = 33434  # traceroute's base port
DEFAULT_TCP_PORT = 80


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
        if not 1 <= self.max_ttl <= 255:
            raise UsageError(f"bad max ttl {self.max_ttl}: must be 1..255")
        if not 1 <= self.first_ttl <= self.max_ttl:
            raise UsageError(f"bad first ttl {self.first_ttl}: must be 1..{self.max_ttl}")
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
        if self.port is not None and not 1 <= self.port <= 65535:
            raise UsageError(f"bad port {self.port}: must be 1..65535")
        if not 0 <= self.tos <= 255:
            raise UsageError(f"bad tos {self.tos}: must be 0..255")
        if self.packet_size is not None and not 0 <= self.packet_size <= 65000:
            raise UsageError(f"bad packet size {self.packet_size}: must be 0..65000")

    @property
    def destination_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_TCP_PORT if self.method == "tcp" else DEFAULT_UDP_PORT


class _Probe:
    """One packet in flight (``expired``: its wait is over, but an answer to it still
    counts while its query's later tries are waiting)."""

    __slots__ = ("attempt", "due", "expired", "key", "packet", "query", "sent", "sent_at", "ttl")

    def __init__(self, ttl: int, query: int, attempt: int, out: Outgoing) -> None:
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


class TraceMachine(MachineOutbox[TraceHop]):
    """One trace to one literal address. Pure: ``poll(now)`` gives packets (one TTL's
    per call), ``receive_batch`` takes matched replies, ``result()`` gives the TraceResult.

    ``flow_id`` (16 bits) picks the flow: the ICMP identifier, or the source port of
    UDP/TCP probes (32768 + flow_id % 28232). ``probe_base`` offsets probe identities
    (live mode runs rounds with fresh identities; flows sharing an ICMP ``ident`` need
    disjoint ones).
    Events: each TraceHop as soon as it and every hop below it are final, in order.
    """

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
    ) -> None:
        self.address = address
        self.target = target or address
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.source = source
        self.options = options
        self._flow_id = flow_id & 0xFFFF
        self._probe_base = probe_base
        self._probes = FlowProbes(
            source=source,
            address=address,
            method=options.method,
            cookies=cookies,
            port=options.destination_port,
            # ICMP: the transport's identifier (its socket filter admits no other), the
            # flow id unless given (flows of one ident differ by checksum, flow label).
            ident=self._flow_id if ident is None else ident,
            paris=options.paris,
            packet_size=options.packet_size,
            tos=options.tos,
        )
        # Scheduling state.
        self._started: float | None = None
        self._finished: float | None = None
        self._last_poll = 0.0
        self._next_index = 0
        self._pending: list[tuple[int, int, int]] = []  # heap of (ttl, query, attempt)
        self._next_ttl = options.first_ttl  # next TTL to activate
        self._open_ttls: set[int] = set()  # activated, not final
        self._unresolved: dict[int, int] = {}  # ttl -> queries not final
        self._outstanding: dict[MatchKey, _Probe] = {}
        self._tries: dict[tuple[int, int], list[MatchKey]] = {}  # (ttl, query) -> keys
        self._deadlines: list[tuple[float, int, MatchKey]] = []
        self._first_rtt: dict[int, float] = {}  # ttl -> RTT of its first answer
        self._wait: dict[int, float] = {}  # ttl -> a try's wait, when shorter than wait_s
        self._answers: dict[tuple[int, int], TraceResponse | None] = {}
        self._sent_per_ttl: dict[int, int] = {}
        self._dest_ttl: int | None = None
        self._next_emit = options.first_ttl
        self._probes_sent = 0
        self._send_error: str | None = None
        super().__init__()

    # -- machine interface ---------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._started is not None and self._finished is not None

    def poll(self, now: float) -> list[Outgoing]:
        if self._started is None:
            self._started = now
        self._last_poll = now
        self._expire(now)
        self._activate()
        outgoing: list[Outgoing] = []
        limit = self._limit()
        while self._pending and self._pending[0][0] <= limit:
            if outgoing and self._pending[0][0] != self._outstanding[outgoing[0].key].ttl:
                break
            ttl, query, attempt = heapq.heappop(self._pending)
            outgoing.append(self._packet(ttl, query, attempt))
        self._check_finished(now)
        return outgoing

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        for key, sent in zip(keys, stamps, strict=True):
            probe = self._outstanding.get(key)
            if probe is None:
                continue
            probe.sent = sent
            self._probes_sent += 1  # counted once it left: an interrupted batch is not
            self._sent_per_ttl[probe.ttl] = self._sent_per_ttl.get(probe.ttl, 0) + 1
            if sent.error is not None:
                # The local stack refused (no route): no answer will come; not retried.
                self._send_error = sent.error
                self._close_query(probe.ttl, probe.query)
                self._resolve(probe.ttl, probe.query, None)
            else:
                probe.sent_at = now
                probe.due = now + self._wait.get(probe.ttl, self.options.wait_s)
                heapq.heappush(self._deadlines, (probe.due, self._next_index, key))
        self._check_finished(now)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        for reply in replies:
            probe = self._outstanding.get(reply.key)
            if probe is None or probe.sent is None:
                continue  # late (given up), duplicate, or beyond the destination
            response = self._response(reply, probe)
            if response is None:
                continue
            self._close_query(probe.ttl, probe.query)
            self._learn_rtt(probe.ttl, response.rtt_s)
            if response.terminal and (self._dest_ttl is None or probe.ttl < self._dest_ttl):
                self._dest_ttl = probe.ttl
                self._drop_beyond_destination()
            self._resolve(probe.ttl, probe.query, response)
        self._check_finished(now)

    def next_deadline(self) -> float:
        if self._finished is not None:
            return math.inf
        if self._sendable():
            return self._last_poll
        while self._deadlines and self._deadlines[0][2] not in self._outstanding:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else self._last_poll

    # -- results -------------------------------------------------------------------

    def result(self, now: float | None = None) -> TraceResult:
        """The trace so far (complete once ``done``); ``now`` dates an unfinished one,
        whose hops end at the highest TTL probed so far (an interrupted trace)."""
        start = self._started if self._started is not None else 0.0
        end = self._finished if self._finished is not None else (now or start)
        last = self._dest_ttl if self._dest_ttl is not None else self.options.max_ttl
        if self._finished is None:
            last = min(last, max(self._sent_per_ttl, default=self.options.first_ttl - 1))
        hops = tuple(self._hop(ttl) for ttl in range(self.options.first_ttl, last + 1))
        return TraceResult(
            target=self.target,
            address=self.address,
            method=self.options.method,
            source=self.source,
            paris=self.options.paris,
            flow=self.flow,
            first_ttl=self.options.first_ttl,
            max_ttl=self.options.max_ttl,
            hops=hops,
            reached=any(p.reached for hop in hops for p in hop.responses),
            elapsed_s=max(0.0, end - start),
            probes_sent=self._probes_sent,
            packet_size=self._probes.packet_size,
            send_error=self._send_error,
            finished=self._finished is not None,
        )

    @property
    def flow(self) -> tuple[int, int]:
        return self._probes.flow(self._flow_id)

    # -- scheduling ------------------------------------------------------------------

    def _limit(self) -> int:
        return self._dest_ttl if self._dest_ttl is not None else self.options.max_ttl

    def _activate(self) -> None:
        """Open the next TTL when nothing is waiting to be sent: ``poll`` sends one TTL's
        probes per call, so TTLs are opened one per call too, not all at once."""
        window = self.options.in_flight
        limit = self._limit()
        if self._pending and self._pending[0][0] <= limit:
            return
        if self._next_ttl <= limit and (window is None or len(self._open_ttls) < window):
            ttl = self._next_ttl
            self._next_ttl += 1
            self._open_ttls.add(ttl)
            self._unresolved[ttl] = self.options.queries
            for query in range(self.options.queries):
                heapq.heappush(self._pending, (ttl, query, 0))

    def _sendable(self) -> bool:
        limit = self._limit()
        if self._pending and self._pending[0][0] <= limit:
            return True
        window = self.options.in_flight
        return self._next_ttl <= limit and (window is None or len(self._open_ttls) < window)

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            due, _, key = heapq.heappop(self._deadlines)
            probe = self._outstanding.get(key)
            if probe is None or probe.expired or due != probe.due:
                continue  # answered, already expired, or rescheduled
            probe.expired = True
            beyond = self._dest_ttl is not None and probe.ttl > self._dest_ttl
            if beyond:
                self._close_query(probe.ttl, probe.query)
            elif probe.attempt < self.options.retries:
                heapq.heappush(self._pending, (probe.ttl, probe.query, probe.attempt + 1))
            else:
                self._close_query(probe.ttl, probe.query)
                self._resolve(probe.ttl, probe.query, None)

    def _close_query(self, ttl: int, query: int) -> None:
        """Stop listening for every try of a query (answered, or the last try's wait is
        over), and forget a retry not sent yet."""
        for key in self._tries.pop((ttl, query), ()):
            if self._outstanding.pop(key, None) is not None:
                self._retired.append(key)
        if self._pending:
            pending = [item for item in self._pending if item[:2] != (ttl, query)]
            if len(pending) != len(self._pending):
                heapq.heapify(pending)
                self._pending = pending

    def _learn_rtt(self, ttl: int, rtt: float) -> None:
        """Shorten the waits that the first answer at ``ttl`` bounds (HERE for its own hop,
        NEAR for the hops below it that have no nearer answer) and reschedule those hops'
        tries in flight."""
        options = self.options
        if ttl in self._first_rtt or not (options.here or options.near):
            self._first_rtt.setdefault(ttl, rtt)
            return
        self._first_rtt[ttl] = rtt
        changed: list[int] = []
        if options.here:
            self._wait[ttl] = min(options.wait_s, options.here * (rtt + _WAIT_PRECISION_S))
            changed.append(ttl)
        if options.near:
            near = min(options.wait_s, options.near * (rtt + _WAIT_PRECISION_S))
            for lower in range(ttl - 1, options.first_ttl - 1, -1):
                answered = lower in self._first_rtt
                if answered and options.here:
                    break  # its own answer rules it; the hops below have a nearer one
                self._wait[lower] = near
                changed.append(lower)
                if answered:
                    break
        for hop in changed:
            wait = self._wait[hop]
            for query in range(options.queries):
                for key in self._tries.get((hop, query), ()):
                    probe = self._outstanding.get(key)
                    if probe is None or probe.expired or probe.sent is None:
                        continue
                    due = probe.sent_at + wait
                    if due != probe.due:
                        probe.due = due
                        heapq.heappush(self._deadlines, (due, self._next_index, key))

    def _drop_beyond_destination(self) -> None:
        limit = self._limit()
        for key, probe in list(self._outstanding.items()):
            if probe.ttl > limit:
                del self._outstanding[key]
                self._retired.append(key)
        for ttl in [t for t in self._open_ttls if t > limit]:
            self._open_ttls.discard(ttl)
        self._pending = [item for item in self._pending if item[0] <= limit]
        heapq.heapify(self._pending)

    def _resolve(self, ttl: int, query: int, response: TraceResponse | None) -> None:
        slot = (ttl, query)
        if slot in self._answers:
            return
        self._answers[slot] = response
        left = self._unresolved.get(ttl, 0) - 1
        self._unresolved[ttl] = left
        if left <= 0:
            self._open_ttls.discard(ttl)
        self._emit_ready()

    def _emit_ready(self) -> None:
        while self._next_emit <= self._limit() and self._unresolved.get(self._next_emit) == 0:
            hop = self._hop(self._next_emit)
            self._events.append(hop)
            self._next_emit += 1
            if hop.terminal:
                self._next_emit = self.options.max_ttl + 1
                break

    def _check_finished(self, now: float) -> None:
        if self._finished is not None or self._started is None:
            return
        limit = self._limit()
        if self._next_ttl <= limit:
            return
        if any(probe.ttl <= limit for probe in self._outstanding.values()):
            return
        if any(item[0] <= limit for item in self._pending):
            return
        if any(self._unresolved.get(t, 0) > 0 for t in range(self.options.first_ttl, limit + 1)):
            return
        self._finished = now
        self._retired.extend(self._outstanding)
        self._outstanding.clear()
        self._emit_ready()

    def _hop(self, ttl: int) -> TraceHop:
        queries = range(self.options.queries)
        probes = tuple(self._answers.get((ttl, q)) for q in queries)
        pending = (
            ()
            if self._finished is not None
            else tuple(q for q in queries if (ttl, q) not in self._answers)
        )
        return TraceHop(ttl, probes, self._sent_per_ttl.get(ttl, 0), pending)

    # -- packets and replies -------------------------------------------------------

    def _packet(self, ttl: int, query: int, attempt: int) -> Outgoing:
        index = self._next_index
        self._next_index += 1
        out = self._probes.packet(ttl, self._flow_id, self._probe_base + index)
        self._outstanding[out.key] = _Probe(ttl, query, attempt, out)
        self._tries.setdefault((ttl, query), []).append(out.key)
        return out

    def _response(self, reply: Reply, probe: _Probe) -> TraceResponse | None:
        """What a typed answer says (None: a TCP segment that is neither SYN-ACK nor RST)."""
        assert probe.sent is not None
        rtt, source = measured_rtt(probe.sent, reply)
        return parse_reply(reply, self.family, rtt, probe.attempt, probe.packet, source)


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
    await drive(machine, transport, on_event=on_event)
    return machine.result()


#: What ``trace_many_with`` yields: finished traces in completion order; ``remaining()``
#: gives, once the block was left early (Ctrl-C, a timeout), the traces not yet taken:
#: finished ones, then the unfinished ones as they stood (``TraceMachine.result(now)``:
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
    factory: Callable[..., ResultMachine[TraceHop, TraceResult]] | None = None,
) -> AsyncIterator[TraceResults]:
    """Trace every address concurrently over one transport; yields an async iterator of
    results in completion order::

        async with trace_many_with(transport, addresses) as results:
            async for result in results:
                ...

    Leaving the block early cancels the traces still running; after the block,
    ``results.remaining()`` gives what they had found (see TraceResults). ``targets`` names the
    addresses as the user typed them (``TraceResult.target``); ``on_event`` gets
    ``(target, TraceHop)`` as each hop of each trace becomes final. ``factory`` makes
    each trace's machine (``new_machine``'s arguments: path MTU traces give theirs).
    """
    options = options or TraceOptions()
    make = factory or new_machine
    names = list(targets) if targets is not None else list(addresses)
    machines = [
        make(transport, address, options, source=source, target=name)
        for address, name in zip(addresses, names, strict=True)
    ]

    def on_hop(index: int, hop: TraceHop) -> None:
        if on_event is not None:
            on_event(names[index], hop)

    async with run_many(transport, machines, on_event=on_hop) as results:
        yield results


def trace_protocols(addresses: Sequence[str], method: str) -> list[tuple[int, int]]:
    """The raw sockets tracing ``addresses`` with ``method`` needs (ICMP errors arrive
    on the ICMP sockets; TCP answers on the TCP ones)."""
    sockets = TCP_SOCKETS if method == "tcp" else ICMP_SOCKETS
    families = {socket.AF_INET6 if ":" in a else socket.AF_INET for a in addresses}
    return [(family, protocol) for family, protocol in sockets if family in families]
