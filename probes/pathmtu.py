"""Path MTU discovery along a trace (``trace --mtu``), the way tracepath does it, and
MTU black holes, which tracepath cannot see. A pure machine plus async functions.

**Path MTU.** The trace goes hop by hop with one flow (Paris: every probe takes one
path), probing each TTL with a packet of the current size: IPv4 with DF, starting at the
MTU of the interface the probes leave by. A "fragmentation needed" (IPv4) or "packet
too big" (IPv6) answer lowers the size to the MTU it reports (``smaller_size``: at
least 68 / 1280 bytes; RFC 1191's plateaus when it reports none), and so does a send the
local stack refuses (EMSGSIZE); then the same TTL is probed again. A hop's ``mtu`` is
set where the size that reached it is less than the one that reached the hop before
(tracepath's ``pmtu`` lines). The transports send in ``IP_PMTUDISC_PROBE`` mode, so
the kernel's learned path MTU (kept 10 minutes) never refuses a probe: every run
measures the path again.

**Black holes.** A hop that silently drops big packets while it forwards small ones:
every big probe goes out with a *witness*, a small probe (traceroute's 60 / 80 bytes)
of the same TTL and flow sent right after it. A big probe counts as dropped only when
its witness was answered and it was not: so loss, a silent router, or a router that
rate-limits its ICMP errors (the witness or the big probe goes unanswered, or both) is
never taken for a black hole. A big try whose witness was answered waits ``here`` x
the witness's RTT (at least ``MIN_WAIT_S``), others the whole ``wait_s``; a size is
retried ``retries`` times. When the current size is dropped at a TTL (and not merely
unanswered), a binary search (``SizeSearch``) finds the largest size that passes and
the smallest that is dropped there, each size with its retries; the trace goes on at
the size that passes, and the result's ``black_hole`` says where and what.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from rawprobe.errors import UsageError
from rawprobe.probes.flowprobes import FlowProbes
from rawprobe.probes.machine import Outgoing, TargetMachine
from rawprobe.probes.multiplex import run_targets
from rawprobe.probes.trace_models import BlackHole, TraceHop, TraceResponse, TraceResult
from rawprobe.probes.trace_replies import parse_reply
from rawprobe.probes.traceroute import TraceOptions, TraceResults
from rawprobe.transport.base import Reply, Sent, Transport, rtt_s
from rawprobe.transport.keys import Cookies, MatchKey
from rawprobe.transport.sockets import MAX_PACKET

__all__ = [
    "DEFAULT_INTERFACE_MTU",
    "METHODS",
    "MIN_MTU",
    "MIN_WAIT_S",
    "PLATEAUS",
    "MtuMachine",
    "SizeSearch",
    "is_too_big",
    "new_mtu_machine",
    "path_mtu_many_with",
    "smaller_size",
]

#: Probe methods that can carry any size (TCP probes are bare SYNs).
METHODS = ("udp", "icmp")
#: The smallest MTU a link may have: no size goes below it (RFC 791, RFC 8200).
MIN_MTU: dict[int, int] = {socket.AF_INET: 68, socket.AF_INET6: 1280}
#: RFC 1191's table of common MTUs (with IPv6's 1280): the next size to try when a
#: size is refused without an MTU (the local stack's EMSGSIZE, an old router's error).
PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1280, 1006, 576, 508, 296, 68)
#: The first size when the interface's MTU cannot be read (Ethernet's).
DEFAULT_INTERFACE_MTU = 1500
#: The shortest wait for a big probe whose witness was answered.
MIN_WAIT_S = 0.05
#: Added to an RTT before multiplying it into a wait (traceroute's DEF_WAIT_PREC).
_WAIT_PRECISION_S = 0.001


def is_too_big(family: int, response: TraceResponse) -> bool:
    """Whether an answer says the probe was too big: IPv4 "fragmentation needed" (type
    3, code 4), IPv6 "packet too big" (type 2)."""
    if family == socket.AF_INET:
        return (response.icmp_type, response.icmp_code) == (3, 4)
    return response.icmp_type == 2 and response.kind == "packet-too-big"


def smaller_size(family: int, size: int, reported_mtu: int = 0) -> int | None:
    """The next size to probe after ``size`` was refused: the MTU the error reported
    when it is less than ``size``, else the next of ``PLATEAUS`` below it; never less
    than ``MIN_MTU``. None when ``size`` is already the smallest."""
    floor = MIN_MTU[family]
    if size <= floor:
        return None
    if 0 < reported_mtu < size:
        return max(reported_mtu, floor)
    return max(next((p for p in PLATEAUS if p < size), floor), floor)


@dataclass(slots=True)
class SizeSearch:
    """Binary search for the largest size that passes a black hole: ``passes`` was
    answered, ``drops`` silently dropped; ``limit`` is the largest size no error
    refused (sizes above it drew "fragmentation needed": not a silent drop)."""

    passes: int
    drops: int
    limit: int = MAX_PACKET

    def next_size(self) -> int | None:
        """The size to try next, or None once the bounds meet."""
        top = min(self.drops, self.limit + 1)
        if top - self.passes <= 1:
            return None
        return (self.passes + top) // 2

    def passed(self, size: int) -> None:
        self.passes = max(self.passes, size)

    def dropped(self, size: int) -> None:
        self.drops = min(self.drops, size)

    def refused(self, mtu: int) -> None:
        """An error refused a size and reported ``mtu``."""
        self.limit = max(self.passes, min(self.limit, mtu))

    @property
    def black_hole(self) -> bool:
        """Whether the bound found is a silent drop (not an error's MTU)."""
        return self.drops <= self.limit


_BIG, _WITNESS = 0, 1


class _Try:
    """One probe in flight: a big one (the size being tested) or its witness."""

    __slots__ = ("attempt", "due", "key", "kind", "pair", "sent", "sent_at", "size", "witnessed")

    def __init__(self, kind: int, size: int, attempt: int, key: MatchKey) -> None:
        self.kind = kind
        self.size = size
        self.attempt = attempt
        self.key = key
        self.sent: Sent | None = None
        self.sent_at = 0.0
        self.due = math.inf
        self.pair: _Try | None = None  # a witness's big probe
        self.witnessed = False  # a big probe's witness was answered


@dataclass(slots=True)
class _Hop:
    """What one TTL has seen so far."""

    ttl: int
    start_size: int  # the size when this TTL was opened
    sent: int = 0
    errors: list[TraceResponse] = dataclasses.field(default_factory=list)  # "too big"
    passed: TraceResponse | None = None  # the answer to the largest size that passed
    witness: TraceResponse | None = None  # the first witness answer
    rtt_s: float | None = None
    dropped_tries: int = 0  # tries of the current size dropped while their witness passed
    search: SizeSearch | None = None


class MtuMachine(TargetMachine[TraceHop]):
    """A path MTU trace to one literal address (see the module docstring). Pure:
    ``poll(now)``, ``sent_batch``, ``receive_batch``, ``result()``, like TraceMachine.

    ``start_size`` is the first size (the interface's MTU); ``options`` give the method
    (udp or icmp), port, TTLs, ``wait_s``, ``here`` and ``retries``; ``queries``,
    ``in_flight`` and ``paris`` do not apply (one probe per TTL, one flow).
    Events: each TraceHop once final, in order; its ``mtu`` where the size dropped.
    """

    def __init__(
        self,
        address: str,
        *,
        source: str,
        flow_id: int,
        cookies: Cookies,
        options: TraceOptions,
        start_size: int,
        target: str | None = None,
    ) -> None:
        if options.method not in METHODS:
            raise UsageError(f"path MTU probes are UDP or ICMP, not {options.method}")
        super().__init__(address, source, target)
        self.options = options
        self._flow_id = flow_id & 0xFFFF
        self._cookies = cookies
        self._probes: dict[int | None, FlowProbes] = {}
        self._small = self._flow_probes(None).packet_size
        self.interface_mtu = max(min(start_size, MAX_PACKET), self._small)
        self._size = self.interface_mtu
        self._ttl = options.first_ttl
        self._hop: _Hop | None = None
        self._hops: list[TraceHop] = []
        self._outstanding: dict[MatchKey, _Try] = {}
        self._queue: list[tuple[int, int]] = []  # (size, attempt) of pairs to send
        self._deadlines: list[tuple[float, int, MatchKey]] = []
        self._number = 0  # probe numbers: never repeated within the flow
        self._tick = 0  # orders equal deadlines
        self._started: float | None = None
        self._finished: float | None = None
        self._now = 0.0
        self._probes_sent = 0
        self._send_error: str | None = None
        self._black_hole: BlackHole | None = None

    # -- machine interface ---------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._finished is not None

    def poll(self, now: float) -> list[Outgoing]:
        self._now = now
        if self._started is None:
            self._started = now
            self._open_hop()
        self._expire(now)
        outgoing: list[Outgoing] = []
        queue, self._queue = self._queue, []
        if self._hop is None:
            return outgoing
        for size, attempt in queue:
            big = self._packet(_BIG, size, attempt)
            outgoing.append(big)
            if size > self._small:  # its witness, right behind it
                witness = self._packet(_WITNESS, self._small, attempt)
                self._outstanding[witness.key].pair = self._outstanding[big.key]
                outgoing.append(witness)
        return outgoing

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        self._now = now
        for key, sent in zip(keys, stamps, strict=True):
            self._probes_sent += 1  # (a batch is one TTL's: its pairs, maybe retries)
            if self._hop is not None:
                self._hop.sent += 1
            probe = self._outstanding.get(key)
            if probe is None or self._hop is None:
                continue  # (a witness behind a big probe the stack refused)
            probe.sent = sent
            if sent.error is None:
                probe.sent_at = now
                self._schedule(probe, now + self._wait(probe))
            elif sent.error == "EMSGSIZE" and probe.kind == _BIG:
                self._refused_locally(probe)
            elif probe.kind == _BIG:  # no route...: nothing will answer; the trace ends
                self._send_error = sent.error
                self._finish_hop()

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        self._now = now
        for reply in replies:
            probe = self._outstanding.get(reply.key)
            hop = self._hop
            if probe is None or probe.sent is None or hop is None:
                continue
            response = parse_reply(reply, self.family, rtt_s(probe.sent, reply), probe.attempt)
            if response is None:
                continue
            if is_too_big(self.family, response):
                response = dataclasses.replace(response, terminal=False, reached=False)
                if probe.kind == _BIG:
                    self._too_big(probe, response)
                continue  # (a witness too big for a link: no news of the hop)
            self._learn_rtt(hop, response.rtt_s)
            if probe.kind == _WITNESS:
                if hop.witness is None:
                    hop.witness = response
                big = probe.pair
                self._retire(probe.key)
                if big is not None and big.key in self._outstanding and big.due != math.inf:
                    big.witnessed = True
                    self._schedule(big, max(now, big.sent_at + self._wait(big)))
            else:
                self._passed(probe.size, response)

    def next_deadline(self) -> float:
        if self._finished is not None:
            return math.inf
        if self._queue or self._started is None:
            return self._now
        deadlines = self._deadlines
        while deadlines and self._stale(deadlines[0]):
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else self._now

    # -- results -------------------------------------------------------------------

    def result(self, now: float | None = None) -> TraceResult:
        """The trace so far (complete once ``done``); an unfinished one ends with the
        TTL being probed, its undecided answer pending."""
        start = self._started if self._started is not None else 0.0
        end = self._finished if self._finished is not None else (now or start)
        hops = list(self._hops)
        if self._hop is not None and self._finished is None:
            hop = self._hop
            answer = hop.passed or hop.witness
            probes = (*hop.errors, answer)
            pending = () if answer is not None else (len(hop.errors),)
            hops.append(TraceHop(hop.ttl, probes, hop.sent, pending))
        flow = self._flow_probes(self._size).flow(self._flow_id)
        return TraceResult(
            target=self.target,
            address=self.address,
            method=self.options.method,
            source=self.source,
            paris=True,
            flow=flow,
            first_ttl=self.options.first_ttl,
            max_ttl=self.options.max_ttl,
            hops=tuple(hops),
            reached=any(p.reached for hop in hops for p in hop.responses),
            elapsed_s=max(0.0, end - start),
            probes_sent=self._probes_sent,
            packet_size=self.interface_mtu,
            send_error=self._send_error,
            finished=self._finished is not None,
            interface_mtu=self.interface_mtu,
            path_mtu=self._size,
            black_hole=self._black_hole,
        )

    # -- the hop being probed --------------------------------------------------------

    def _open_hop(self) -> None:
        self._hop = _Hop(self._ttl, self._size)
        self._queue.append((self._size, 0))

    def _passed(self, size: int, response: TraceResponse) -> None:
        """A big probe of ``size`` was answered (not "too big")."""
        hop = self._hop
        assert hop is not None
        self._close_size()
        hop.passed = response  # (a search passes larger and larger sizes)
        if hop.search is None:
            self._finish_hop()
            return
        hop.search.passed(size)
        self._search_next()

    def _too_big(self, probe: _Try, response: TraceResponse) -> None:
        hop = self._hop
        assert hop is not None
        hop.errors.append(response)
        self._close_size()
        smaller = smaller_size(self.family, probe.size, response.mtu)
        if hop.search is not None:
            hop.search.refused(smaller or probe.size - 1)
            self._search_next()
        elif smaller is None:  # not even the smallest MTU passes: nothing more to learn
            self._finish_hop()
        else:
            self._size = smaller
            self._queue.append((smaller, 0))

    def _refused_locally(self, probe: _Try) -> None:
        """EMSGSIZE: the local stack refused the size (over the interface's MTU)."""
        hop = self._hop
        assert hop is not None
        self._close_size()
        smaller = smaller_size(self.family, probe.size)
        if hop.search is not None:
            hop.search.refused(probe.size - 1)
            self._search_next()
        elif smaller is None:
            self._finish_hop()
        else:
            self._size = smaller
            if not self._hops:  # before the first hop: the interface's own limit
                self.interface_mtu = hop.start_size = smaller
            self._queue.append((smaller, 0))

    def _expired(self, probe: _Try, now: float) -> None:
        """A big try's wait is over, unanswered. Its witness answered: a drop; else,
        silence (it waited the whole ``wait_s``)."""
        hop = self._hop
        assert hop is not None
        if probe.witnessed:
            hop.dropped_tries += 1
        if probe.attempt < self.options.retries:
            self._queue.append((probe.size, probe.attempt + 1))  # earlier tries still count
            return
        dropped = hop.dropped_tries > 0
        self._close_size()
        if hop.search is not None:
            if not dropped:  # the hop went silent: keep the bounds found so far
                self._end_search()
                return
            hop.search.dropped(probe.size)
            self._search_next()
        elif dropped:
            hop.search = SizeSearch(passes=self._small, drops=probe.size)
            self._search_next()
        else:
            self._finish_hop()  # a silent hop (or one that went silent)

    def _search_next(self) -> None:
        hop = self._hop
        assert hop is not None and hop.search is not None
        size = hop.search.next_size()
        if size is None:
            self._end_search()
        else:
            self._queue.append((size, 0))

    def _end_search(self) -> None:
        hop = self._hop
        assert hop is not None and hop.search is not None
        search = hop.search
        if search.black_hole and self._black_hole is None:
            self._black_hole = BlackHole(hop.ttl, search.passes, search.drops)
        self._size = search.passes
        if hop.passed is None:
            hop.passed = hop.witness  # (the witness passed at the smallest size)
        self._finish_hop()

    def _finish_hop(self) -> None:
        """The TTL is decided: emit its TraceHop, then open the next TTL or finish."""
        hop = self._hop
        assert hop is not None
        self._close_size()
        self._hop = None
        answer = hop.passed or hop.witness
        mtu = self._size if self._size < hop.start_size else None
        event = TraceHop(hop.ttl, (*hop.errors, answer), hop.sent, mtu=mtu)
        self._hops.append(event)
        self._events.append(event)
        if event.terminal or hop.ttl >= self.options.max_ttl or self._send_error is not None:
            self._finished = self._now
            return
        self._ttl = hop.ttl + 1
        self._open_hop()

    # -- probes, waits, deadlines ----------------------------------------------------

    def _flow_probes(self, size: int | None) -> FlowProbes:
        """The probe factory of one size (None: traceroute's default, the witnesses')."""
        probes = self._probes.get(size)
        if probes is None:
            options = self.options
            probes = self._probes[size] = FlowProbes(
                source=self.source, address=self.address, method=options.method,
                cookies=self._cookies, port=options.destination_port, ident=self._flow_id,
                packet_size=size, tos=options.tos, df=True,
            )  # fmt: skip
        return probes

    def _packet(self, kind: int, size: int, attempt: int) -> Outgoing:
        hop = self._hop
        assert hop is not None
        number = self._number
        self._number += 1
        out = self._flow_probes(size).packet(hop.ttl, self._flow_id, number)
        self._outstanding[out.key] = _Try(kind, size, attempt, out.key)
        return out

    def _wait(self, probe: _Try) -> float:
        """A try's wait: ``here`` x the hop's RTT (at least MIN_WAIT_S) for a big probe
        whose witness answered, else ``wait_s``."""
        options = self.options
        hop = self._hop
        if not probe.witnessed or hop is None or hop.rtt_s is None or not options.here:
            return options.wait_s
        short = options.here * (hop.rtt_s + _WAIT_PRECISION_S)
        return min(options.wait_s, max(MIN_WAIT_S, short))

    def _learn_rtt(self, hop: _Hop, rtt: float) -> None:
        if hop.rtt_s is None:
            hop.rtt_s = rtt

    def _schedule(self, probe: _Try, due: float) -> None:
        probe.due = due
        self._tick += 1
        heapq.heappush(self._deadlines, (due, self._tick, probe.key))

    def _stale(self, entry: tuple[float, int, MatchKey]) -> bool:
        probe = self._outstanding.get(entry[2])
        return probe is None or probe.due != entry[0]

    def _expire(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            entry = heapq.heappop(deadlines)
            if self._stale(entry) or self._hop is None:
                continue
            probe = self._outstanding[entry[2]]
            if probe.kind == _WITNESS:
                self._retire(probe.key)  # (its big try decides)
                continue
            probe.due = math.inf  # (expired: an answer still counts until the size closes)
            self._expired(probe, now)

    def _close_size(self) -> None:
        """Stop waiting for the tries of the current size, and forget the queued ones."""
        hop = self._hop
        assert hop is not None
        for key in list(self._outstanding):
            self._retire(key)
        self._queue.clear()
        hop.dropped_tries = 0

    def _retire(self, key: MatchKey) -> None:
        if self._outstanding.pop(key, None) is not None:
            self._retired.append(key)


# -- async functions ---------------------------------------------------------------


def new_mtu_machine(
    transport: Transport,
    address: str,
    options: TraceOptions,
    *,
    source: str | None = None,
    target: str | None = None,
) -> MtuMachine:
    """An MtuMachine over ``transport``: a fresh flow, and the interface's MTU towards
    ``address`` as the first size unless ``options.packet_size`` gives one."""
    start = options.packet_size or transport.interface_mtu(address) or DEFAULT_INTERFACE_MTU
    return MtuMachine(
        address,
        source=source or transport.source_for(address),
        flow_id=transport.cookies.new_ident(),
        cookies=transport.cookies,
        options=options,
        start_size=start,
        target=target,
    )


def path_mtu_many_with(
    transport: Transport,
    addresses: Sequence[str],
    options: TraceOptions | None = None,
    *,
    targets: Sequence[str] | None = None,
    source: str | None = None,
    on_event: Callable[[str, TraceHop], None] | None = None,
) -> AbstractAsyncContextManager[TraceResults]:
    """Path MTU traces to every address at once over one transport, as
    ``trace_many_with`` (results in completion order, ``remaining()`` after leaving
    early, ``on_event(target, hop)`` as each hop is final), an MtuMachine a target; UDP
    probes unless ``options`` say."""
    options = options or TraceOptions(method="udp")
    return run_targets(
        transport, new_mtu_machine, addresses, options, targets=targets, source=source,
        on_event=on_event,
    )  # fmt: skip
