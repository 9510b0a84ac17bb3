"""Multipath traceroute: the MDA (Augustin et al., "Measuring load-balanced paths in
the Internet", IMC 2007; scamper's ``tracelb``) as a pure machine, with MDA-Lite
(Vermeulen et al., "Multilevel MDA-Lite Paris Traceroute", IMC 2018) as an option,
plus async functions for one target and many.

A per-flow load balancer sends each flow one way; other flows may go other ways. The
MDA varies the **flow id** (``probes/flowprobes.py``: the source port, and over IPv6 the
flow label) to find every next hop of every interface, one level (TTL) at a time:

* **Stopping rule.** An interface ``v`` at TTL ``h`` whose flows have shown ``k`` next
  hops is tested until ``n(k + 1)`` flows count against a next hop more:
  ``n(K)`` (:func:`probes_needed`) is the smallest number of probes that all miss one
  of ``K`` equally likely next hops with probability at most ``eps``. At ``eps`` 5%
  and 1% it is the classic table (6, 11, 16, 21, 27, ... and 8, 15, 21, 28, 36, ...:
  :data:`CLASSIC_TABLE`), computed exactly.
* **What counts.** A flow known to pass ``v`` (seen there, or inferred down a chain of
  interfaces that each have one next hop; from the source down, any new flow), sent
  to ``h + 1``, counts one ("node control"). A *new* flow sent to ``h + 1`` counts
  for every interface at ``h`` at once, less: under the MDA's model (each interface
  splits new flows evenly among its next hops) a hidden next hop more of ``v`` would
  take it with probability ``p / (k + 1)``, ``p`` the share of new flows that reach
  ``v``, so meeting no new interface weighs ``log(1 - p / (k + 1)) / log(k / (k + 1))``
  flows (1 where every flow passes ``v``; 0.19 for one of four branches). When an
  interface runs out of flows known to pass it, the machine sends whichever tells its
  test more per probe: new flows one TTL on, or new flows at ``h`` ("brought
  forward") of which those that land on it go on. A new flow that meets a new
  interface at ``h + 1`` is sent again at ``h``: whose next hop it is (the link).
* **Per-trace confidence.** The classic rule bounds the chance of missing a next hop
  at *each* interface; a trace through two load balancers in a row misses something
  more often than the confidence says. So ``confidence`` bounds the whole trace: a
  level may fail with at most half of ``1 - confidence`` until a level branches (an
  interface there shows several next hops), then a quarter, an eighth, ..., shared
  evenly by the level's interfaces. A trace misses an interface only where a test
  stopped early at an interface that had more next hops; at the first such level,
  every level before it saw the truth, so it is charged its true place in that
  series, and the series sums to ``1 - confidence`` (under the MDA's model).
  ``per_trace=False`` is the classic per-interface rule.
* **Meshing.** New flows only count against a hidden *new* interface, at the share the
  links seen so far give: where a level shows meshing (an interface with several next
  hops while one at the next TTL is reached from several), links between interfaces
  already seen may be missing, so only flows known to pass an interface count there.
* **MDA-Lite** (``lite=True``): where nothing is meshed, an interface whose one next
  hop others lead to as well (convergence) can have no other; so such interfaces are
  tested with ``LITE_FLOWS`` flows each, or together with the level's other probes
  enough for the hop's own rule (``n(K + 1)`` probes one TTL on, ``K`` interfaces
  seen there); each level starts with ``LITE_FLOWS`` flows per interface to see the
  links first. Where meshing shows, the level runs the full rule. The bound then holds
  where nothing is meshed; meshing that the first flows do not show (one interface
  among convergent ones with a second next hop) is missed more often.
* **Silence.** An unanswered probe is sent again (a new identity, the same flow)
  ``retries`` times; a flow still silent at a TTL meets an anonymous interface
  (None, ``*``), which is tested like any other. The trace stops at the destination
  (every flow's path ended), at ``max_ttl``, after ``gap_limit`` TTLs where every flow
  was silent, or at ``max_probes``.

ICMPv4 probes cannot be spread by a Linux router hashing L3 or L4 (no field of theirs
is read), so over IPv4 ICMP sees one path there; ICMPv6 flows differ in the flow label.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

from rawprobe.errors import UsageError
from rawprobe.probes.flowprobes import FlowProbes
from rawprobe.probes.machine import Outgoing, TargetMachine
from rawprobe.probes.multiplex import ManyResults, run_one, run_targets
from rawprobe.probes.trace_models import MultipathLink, MultipathResult, TraceHop, TraceResponse
from rawprobe.probes.trace_replies import parse_reply
from rawprobe.probes.traceroute import METHODS, check_packet, check_ttls, destination_port
from rawprobe.transport.base import Reply, Sent, Transport, measured_rtt
from rawprobe.transport.keys import Cookies, MatchKey

__all__ = [
    "CLASSIC_TABLE",
    "CONFIDENCES",
    "MultipathMachine",
    "MultipathOptions",
    "MultipathResults",
    "multipath_many_with",
    "multipath_with",
    "new_multipath_machine",
    "path_flows",
    "probes_needed",
]

CONFIDENCES = (95, 99)

#: The classic table (Augustin et al. 2007; Veitch et al. 2009; scamper's tracelb):
#: ``CLASSIC_TABLE[c][K]`` probes rule out ``K`` next hops at confidence ``c`` (K >= 2),
#: for K up to 16. :func:`probes_needed` computes it for any K and failure bound.
CLASSIC_TABLE: dict[int, tuple[int, ...]] = {
    95: (0, 0, 6, 11, 16, 21, 27, 33, 38, 44, 51, 57, 63, 70, 76, 83, 90),
    99: (0, 0, 8, 15, 21, 28, 36, 43, 51, 58, 66, 74, 82, 90, 98, 106, 115),
}


@cache
def probes_needed(hops: int, failure: Fraction) -> int:
    """The fewest probes ``n`` such that ``n`` flows spread uniformly over ``hops``
    next hops miss at least one of them with probability at most ``failure``.

    Exact, by inclusion-exclusion in integers: P(miss) = sum over j of
    (-1)^(j+1) C(hops, j) ((hops - j) / hops)^n. ``hops`` <= 1 needs no probe.
    """
    if hops <= 1:
        return 0
    if not 0 < failure < 1:
        raise ValueError(f"failure bound {failure} must be in (0, 1)")
    num, den = failure.numerator, failure.denominator

    def bounded(n: int) -> bool:
        missed = sum((-1) ** (j + 1) * math.comb(hops, j) * (hops - j) ** n for j in range(1, hops))
        return bool(den * missed <= num * hops**n)

    # The union bound hops * ((hops - 1) / hops)^n <= failure is enough: start there.
    n = max(1, math.ceil(math.log(failure / hops) / math.log((hops - 1) / hops)))
    while not bounded(n):  # (float rounding in the logarithms)
        n += 1
    while n > 1 and bounded(n - 1):
        n -= 1
    return n


@dataclass(frozen=True, slots=True)
class MultipathOptions:
    """What one MDA trace does; validated on construction (UsageError on nonsense).

    ``confidence`` (95 or 99) bounds the chance that the trace misses an interface
    (``per_trace=False``: that an interface misses one of its next hops, the classic
    rule; ``lite``: MDA-Lite, the bound where nothing is meshed). ``wait_s`` is the
    wait for one try; an unanswered probe is re-sent ``retries`` times with the same
    flow. ``port``: the destination port (UDP 33434, TCP 80). ``max_probes`` caps the
    probes of one trace (scamper's default, 3000); ``gap_limit`` ends a trace after
    that many TTLs where every flow was silent. ``flow_base`` is the first flow id
    (None: one per machine from the transport, so that up to six traces to one address
    at once never share a flow).
    """

    method: str = "udp"
    port: int | None = None
    confidence: int = 95
    per_trace: bool = True
    lite: bool = False
    first_ttl: int = 1
    max_ttl: int = 30
    wait_s: float = 1.0
    retries: int = 2
    max_probes: int = 3000
    gap_limit: int = 3
    packet_size: int | None = None
    tos: int = 0
    flow_base: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"bad method {self.method!r}: choose icmp, udp or tcp")
        if self.confidence not in CONFIDENCES:
            raise UsageError(f"bad confidence {self.confidence}: choose 95 or 99")
        check_ttls(self.first_ttl, self.max_ttl)
        if not (self.wait_s > 0 and self.wait_s < 1e6):
            raise UsageError(f"bad wait {self.wait_s}: must be > 0 seconds")
        if not 0 <= self.retries <= 10:
            raise UsageError(f"bad retries {self.retries}: must be 0..10")
        if not 1 <= self.max_probes <= _FLOW_SPAN:
            raise UsageError(f"bad max probes {self.max_probes}: must be 1..{_FLOW_SPAN}")
        if not 1 <= self.gap_limit <= 255:
            raise UsageError(f"bad gap limit {self.gap_limit}: must be 1..255")
        check_packet(self.port, self.tos, self.packet_size)

    @property
    def destination_port(self) -> int:
        return destination_port(self.method, self.port)

    @property
    def failure(self) -> Fraction:
        """The failure bound: 1 - confidence."""
        return Fraction(100 - self.confidence, 100)


#: Why each probe was sent (``MultipathMachine.spent`` adds "retry").
_PURPOSES = ("test", "forward", "next", "back")
#: (lite) Flows a convergent interface is tested with (MDA-Lite's phi).
LITE_FLOWS = 2
_SLACK = 1e-9  # (float evidence against whole flows)

#: Flow ids of one machine lie in [base, base + _FLOW_SPAN): machines to one address
#: get bases _FLOW_SPAN apart, six of them before the source ports (28232) wrap.
_FLOW_SPAN = 4096
_FLOW_SLOTS = 28232 // _FLOW_SPAN

#: An interface: (TTL, address); address None is a TTL where the flow was silent. The
#: source is (first_ttl - 1, source address).
Node = tuple[int, str | None]


class _Try:
    """One packet in flight for (flow, TTL)."""

    __slots__ = ("attempt", "flow", "packet", "sent", "ttl")

    def __init__(self, flow: int, ttl: int, attempt: int, packet: bytes) -> None:
        self.flow = flow
        self.ttl = ttl
        self.attempt = attempt
        self.packet = packet  # (its quotes are compared with it: a NAT)
        self.sent: Sent | None = None


class MultipathMachine(TargetMachine[object]):
    """One MDA trace to one literal address. Pure: ``poll(now)`` gives the packets the
    stopping rule asks for, ``receive_batch`` takes matched replies, ``result()`` the
    MultipathResult. Emits no events. See the module docstring for the algorithm."""

    def __init__(
        self,
        address: str,
        *,
        source: str,
        cookies: Cookies,
        options: MultipathOptions,
        flow_base: int = 0,
        ident: int = 0,
        target: str | None = None,
    ) -> None:
        super().__init__(address, source, target)
        self.options = options
        self._flow_base = flow_base & 0xFFFF
        self._probes = FlowProbes(
            source=source, address=address, method=options.method, cookies=cookies,
            port=options.destination_port, ident=ident, packet_size=options.packet_size,
            tos=options.tos,
        )  # fmt: skip
        self._started: float | None = None
        self._finished: float | None = None
        self._last_poll = 0.0
        self._dirty = True  # something changed since the last plan
        # Probes.
        self._number = 0  # next probe number (identity)
        self._fresh = 0  # next new flow (offset from the base)
        self._queue: list[tuple[int, int, int]] = []  # (flow, ttl, attempt) to send
        self._tries: dict[MatchKey, _Try] = {}
        self._deadlines: list[tuple[float, MatchKey]] = []  # heap: (due, key)
        self._keys: dict[tuple[int, int], list[MatchKey]] = {}  # (flow, ttl) -> tries
        self._answers: dict[tuple[int, int], TraceResponse | None] = {}
        self._order: dict[int, list[int]] = {}  # ttl -> flows in the order first probed
        self._sent_per_ttl: dict[int, int] = {}
        self._probes_sent = 0
        self._send_error: str | None = None
        # The graph.
        root: Node = (options.first_ttl - 1, source)
        self._root = root
        self._levels: dict[int, list[Node]] = {root[0]: [root]}
        self._level = root[0]  # interfaces at this TTL are being tested
        self._flow_node: dict[tuple[int, int], Node] = {}  # (flow, ttl) -> interface
        self._through: dict[Node, list[int]] = {root: []}  # flows that went on from it
        self._cursor: dict[Node, int] = {}  # how many of _through[v] were sent on
        self._succ: dict[Node, dict[Node, list[int]]] = {}  # links, with their flows
        self._pred: dict[Node, set[Node]] = {}  # the links' other ends
        self._testing: dict[Node, int] = {}  # probes in flight for the node's test
        self._serves: dict[tuple[int, int], tuple[str, Node | None]] = {}  # (purpose, test)
        self._in_flight: dict[str, int] = dict.fromkeys(_PURPOSES, 0)  # per purpose
        self._extra_sent = 0  # new flows for the level's tests (forward, next)
        self._next_seen = 0  # new flows answered at level + 1, their interface there
        self._done: set[Node] = set()
        self._chain: dict[int, Node] = {root[0]: root}  # every flow passes it
        self._ends: set[Node] = set()  # where paths ended (the destination, !H, ...)
        self._share: dict[Node, float] = {root: 1.0}  # of new flows, in the MDA's model
        self._branching = 0  # levels where an interface showed several next hops
        self._level_eps = options.failure / 2  # each test's failure bound at the level
        self._level_width = 1  # interfaces to test at the level, when it began
        self._meshed = False  # the level shows meshing: flows known to pass count alone
        self._warming = 0  # (lite) 2: the level's first round, LITE_FLOWS each; 1: sent
        #: Probes by (TTL, purpose): "test" (flows known at the interface tested),
        #: "forward" (new flows at the level), "next" (new flows one TTL on),
        #: "back" (a new flow's interface at the level), "retry". For benches.
        self.spent: Counter[tuple[int, str]] = Counter()
        #: Levels where meshing was found (there, the full rule without shortcuts).
        self.meshed_levels: list[int] = []
        self._short = False  # a rule left unmet (max probes, max TTL, gap)
        self._over = False  # the plan is over: finished once nothing is in flight

    # -- machine interface ---------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._finished is not None

    def poll(self, now: float) -> list[Outgoing]:
        if self._started is None:
            self._started = now
        self._last_poll = now
        if self._finished is not None:
            return []
        self._expire(now)
        if self._dirty:
            self._dirty = False
            self._plan()
        self._check_finished(now)
        outgoing = [self._packet(*item) for item in self._queue]
        self._queue.clear()
        return outgoing

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        for key, sent in zip(keys, stamps, strict=True):
            probe = self._tries.get(key)
            if probe is None:
                continue
            probe.sent = sent
            self._probes_sent += 1
            self._sent_per_ttl[probe.ttl] = self._sent_per_ttl.get(probe.ttl, 0) + 1
            if sent.error is not None:
                self._send_error = sent.error  # no route: no answer will come
                self._resolve(probe.flow, probe.ttl, None)
            else:
                heapq.heappush(self._deadlines, (now + self.options.wait_s, key))
        self._check_finished(now)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        for reply in replies:
            probe = self._tries.get(reply.key)
            if probe is None or probe.sent is None:
                continue
            rtt, rtt_source = measured_rtt(probe.sent, reply)
            response = parse_reply(reply, self.family, rtt, probe.attempt, probe.packet, rtt_source)
            if response is not None:
                self._resolve(probe.flow, probe.ttl, response)
        self._check_finished(now)

    def next_deadline(self) -> float:
        if self._finished is not None:
            return math.inf
        if self._dirty or self._queue:
            return self._last_poll
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in self._tries:
            heapq.heappop(deadlines)  # (answered)
        return deadlines[0][0] if deadlines else self._last_poll

    # -- results -------------------------------------------------------------------

    def result(self, now: float | None = None) -> MultipathResult:
        """The trace so far (complete once ``done``)."""
        start = self._started if self._started is not None else 0.0
        end = self._finished if self._finished is not None else (now or start)
        finished = self._finished is not None
        hops: list[TraceHop] = []
        flows: list[tuple[int, ...]] = []
        last = max(self._order, default=self.options.first_ttl - 1)
        for ttl in range(self.options.first_ttl, last + 1):
            order = self._order.get(ttl, [])
            probes = tuple(self._answers.get((flow, ttl)) for flow in order)
            pending = tuple(i for i, flow in enumerate(order) if (flow, ttl) not in self._answers)
            hops.append(TraceHop(ttl, probes, self._sent_per_ttl.get(ttl, 0), pending))
            flows.append(tuple((self._flow_base + f) & 0xFFFF for f in order))
        links = [
            MultipathLink(
                source[0], source[1], to[1], tuple((self._flow_base + f) & 0xFFFF for f in ids)
            )
            for source, nexts in self._succ.items()
            if source != self._root
            for to, ids in nexts.items()
        ]
        links.sort(key=lambda link: link.ttl)
        reached = any(p.reached for hop in hops for p in hop.responses)
        return MultipathResult(
            target=self.target,
            address=self.address,
            method=self.options.method,
            source=self.source,
            confidence=self.options.confidence,
            first_ttl=self.options.first_ttl,
            max_ttl=self.options.max_ttl,
            hops=tuple(hops),
            flows=tuple(flows),
            links=tuple(links),
            reached=reached,
            rule_met=finished and not self._short,
            elapsed_s=max(0.0, end - start),
            probes_sent=self._probes_sent,
            packet_size=self._probes.packet_size,
            send_error=self._send_error,
            finished=finished,
        )

    # -- answers -------------------------------------------------------------------

    def _resolve(self, flow: int, ttl: int, response: TraceResponse | None) -> None:
        """The answer of ``flow`` at ``ttl`` (None: silent after every try)."""
        slot = (flow, ttl)
        if slot in self._answers:
            return
        self._answers[slot] = response
        self._dirty = True
        for key in self._keys.pop(slot, ()):
            if self._tries.pop(key, None) is not None:
                self._retired.append(key)
        node: Node = (ttl, response.address if response is not None else None)
        self._flow_node[slot] = node
        if self._chain.get(ttl, node) != node:  # (a test above stopped early)
            for later in [t for t in self._chain if t >= ttl]:
                del self._chain[later]  # not every flow passes it: infer no more
        if node not in self._levels.setdefault(ttl, []):
            self._levels[ttl].append(node)  # (found by a test below, or a new flow)
        before = self._known(flow, ttl - 1)
        purpose, test = self._serves.pop(slot, ("", None))
        if response is not None and response.terminal:
            self._ends.add(node)
        elif response is not None or before is not None or purpose != "next":
            # (A new flow lost one TTL on, whose way there is unknown, shows nothing
            # to test: only where the flows known to pass some interface are lost.)
            self._through.setdefault(node, []).append(flow)
        if before is not None:
            self._link(before, node, flow)
        after = self._flow_node.get((flow, ttl + 1))
        if after is not None and (flow, ttl + 1) in self._answers:
            self._link(node, after, flow)  # (a new flow traced back: its link)
        if purpose:
            self._in_flight[purpose] -= 1
        if test is not None:
            self._testing[test] -= 1
        if purpose == "next" and before is None and response is not None:
            # (A silent one tells nothing: a hidden next hop may be a silent router.)
            if self._pred.get(node):
                self._next_seen += 1  # evidence for every test at the level
            elif (flow, ttl - 1) not in self._keys and (flow, ttl - 1) not in self._answers:
                self._send(flow, ttl - 1, "back")  # a new interface: whose next hop?

    def _link(self, before: Node, after: Node, flow: int) -> None:
        flows = self._succ.setdefault(before, {}).setdefault(after, [])
        if flow not in flows:
            flows.append(flow)
            self._pred.setdefault(after, set()).add(before)

    def _known(self, flow: int, ttl: int) -> Node | None:
        """The interface ``flow`` met at ``ttl``, answered or inferred."""
        node = self._flow_node.get((flow, ttl))
        return node if node is not None else self._chain.get(ttl)

    def _expire(self, now: float) -> None:
        """Re-send the same flow when a try's wait is over; silence after the last one.
        (An answer to an earlier try still counts until then.)"""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            probe = self._tries.get(heapq.heappop(deadlines)[1])
            if probe is None:
                continue  # (answered)
            if probe.attempt < self.options.retries:
                self._queue.append((probe.flow, probe.ttl, probe.attempt + 1))
            else:
                self._resolve(probe.flow, probe.ttl, None)

    # -- the algorithm ---------------------------------------------------------------

    def _testable(self, node: Node) -> bool:
        if self._through.get(node):
            return True
        return self._chain.get(node[0]) == node and node not in self._ends

    def _plan(self) -> None:
        """Queue what the stopping rule asks for at the current level; advance the level
        once every test there has met it."""
        while self._finished is None:
            ttl = self._level
            self._check_meshing(ttl)
            if self._warming == 1:  # (lite: the first round's links, before any rule)
                if self._in_flight["test"]:
                    return
                self._warming = 0
            needy: dict[Node, float] = {}
            open_tests = False
            done = len(self._done)
            for node in list(self._levels.get(ttl, [])):
                if node in self._done or not self._testable(node):
                    continue
                want = self._test(node)
                if want is None:
                    continue
                open_tests = True
                if want > 0:
                    needy[node] = want
            if self._warming == 2:
                self._warming = 1 if self._in_flight["test"] else 0
                if self._warming:
                    return
            if needy:
                self._more_flows(ttl, needy)
            if self._queue or any(self._in_flight.values()):
                return
            if open_tests:
                if len(self._done) == done:
                    return
                continue  # (a test was over: the lite ones waiting for it may go on)
            if not self._advance():
                return

    def _weight(self, node: Node) -> float:
        """What one new flow probed one TTL past ``node``'s level tells its test, in
        flows known to pass it: with ``k`` next hops seen, a hidden one more would take
        a new flow with probability ``p / (k + 1)`` (``p``: the MDA's share of new flows
        that reach ``node``), so a flow that met no new interface weighs
        ``log(1 - p / (k + 1)) / log(k / (k + 1))`` (1 when every flow passes it)."""
        k = len(self._succ.get(node, {}))
        share = self._share.get(node, 0.0)
        if not k or share <= 0.0 or self._meshed or self._convergent(node):
            return 0.0
        return math.log1p(-min(share, 1.0) / (k + 1)) / math.log(k / (k + 1))

    def _convergent(self, node: Node) -> bool:
        """(lite) ``node`` shows one next hop, which others lead to as well: under
        MDA-Lite's assumptions (no meshing) it has no other."""
        if not self.options.lite or self._meshed:
            return False
        nexts = self._succ.get(node, {})
        return len(nexts) == 1 and len(self._pred.get(next(iter(nexts)), ())) > 1

    def _lite_need(self, ttl: int) -> int | None:
        """(lite) A convergent interface's flows: MDA-Lite's phi, and, once the other
        tests at the level are over, together enough for the hop's own stopping rule
        (``n(K + 1)`` probes one TTL on, ``K`` the interfaces seen there, at the level's
        whole bound) with the probes those sent. None: wait for those tests."""
        nodes = [n for n in self._levels.get(ttl, []) if self._testable(n)]
        convergent = [n for n in nodes if self._convergent(n)]
        if any(n not in self._done for n in nodes if n not in convergent):
            return None
        sent = sum(len(flows) for n in nodes for flows in self._succ.get(n, {}).values())
        sent += self._next_seen
        failure = self.options.failure
        hop = failure if not self.options.per_trace else self._level_eps * self._level_width
        verified = sum(len(f) for n in convergent for f in self._succ.get(n, {}).values())
        short = probes_needed(len(self._levels.get(ttl + 1, [])) + 1, hop) - sent + verified
        return max(LITE_FLOWS, math.ceil(short / len(convergent)))

    def _check_meshing(self, ttl: int) -> None:
        """Meshing: an interface at the level shows several next hops while an interface
        one TTL on is reached from several. Links between interfaces already seen may
        then be missing, which new flows cannot show (``_weight``), and MDA-Lite's
        assumption does not hold: every test at the level counts flows known to pass
        its interface alone."""
        if self._meshed:
            return
        nodes = self._levels.get(ttl, [])
        if any(len(self._succ.get(n, {})) > 1 for n in nodes) and any(
            len(self._pred.get(n, ())) > 1 for n in self._levels.get(ttl + 1, [])
        ):
            self._meshed = True
            self.meshed_levels.append(ttl)

    def _test(self, node: Node) -> float | None:
        """Queue probes for ``node``'s test; None once it met the rule (now concluded),
        else how many flows through it are still missing (0: enough in flight)."""
        ttl = node[0]
        nexts = self._succ.get(node, {})
        verified = sum(len(flows) for flows in nexts.values())
        in_flight = self._testing.get(node, 0)
        if self._convergent(node):
            lite = self._lite_need(ttl)
            if lite is None:
                return 0.0
            need: float = lite
            have, pending = float(verified), float(in_flight)
        else:
            # (Every probe shows a next hop, if only a silent one: at least n(2) at once.)
            eps = self.options.failure if not self.options.per_trace else self._level_eps
            need = probes_needed(max(len(nexts), 1) + 1, eps)
            weight = self._weight(node)
            have = verified + weight * self._next_seen
            pending = in_flight + weight * self._in_flight["next"]
        warming = self._warming == 2
        if warming:  # (lite: LITE_FLOWS each first, to see which next hops are shared)
            need = min(need, verified + in_flight + LITE_FLOWS)
        settled = not (in_flight or self._in_flight["next"] or self._in_flight["back"])
        if have >= need - _SLACK and settled and not warming:
            self._conclude(node)
            return None
        missing = need - have - pending
        if missing <= _SLACK:
            return 0.0  # (enough in flight)
        budget = self.options.max_probes - self._probes_sent - self._in_flight_count()
        if budget <= 0:
            if not settled:
                return 0.0
            self._give_up(node)
            return None
        want = min(math.ceil(missing - _SLACK), budget)
        flows = self._through.setdefault(node, [])
        cursor = self._cursor.get(node, 0)
        while want and (cursor < len(flows) or self._chain.get(ttl) == node):
            if cursor == len(flows):  # on the chain from the source: any new flow
                flow = self._new_flow()
                self._flow_node[flow, ttl] = node
                flows.append(flow)
            flow = flows[cursor]
            cursor += 1
            if (flow, ttl + 1) in self._answers or (flow, ttl + 1) in self._keys:
                continue
            self._send(flow, ttl + 1, "test", node)
            want -= 1
            missing -= 1
        self._cursor[node] = cursor
        return max(missing, 0.0) if want else 0.0

    def _give_up(self, node: Node) -> None:
        """The probe budget is spent: conclude with what was seen."""
        self._short = True
        self._conclude(node)

    def _more_flows(self, ttl: int, needy: dict[Node, float]) -> None:
        """New flows for tests that ran out of flows known to pass their interface, in
        rounds. Either one TTL past the level ("next"): each weighs
        ``_weight(node)`` for every test at once; or at the level ("forward", the
        MDA's node control): a flow that lands on a needy interface is then sent on,
        one flow for its test at two probes. Whichever tells the needy tests more per
        probe; a round of "next" flows is what the neediest test lacks (their weight is
        known in advance), a round brought forward is the flows missing over the needy
        interfaces' share of new flows (the MDA's model: each interface splits its flows
        evenly among its next hops; one estimated from the flows seen so far is too
        noisy: an interface met once in 24 flows asked for ten times too many)."""
        if self._in_flight["forward"] or self._in_flight["next"] or self._in_flight["back"]:
            return
        if any(self._testing.get(node) for node in needy):
            return  # (their flows' answers first: they tell how many next hops)
        level = self._levels.get(ttl, [])
        known = [self._share[n] for n in level if n in self._share]
        floor = min(known) if known else 1 / len(level)  # (for interfaces found late)
        share = min(1.0, sum(self._share.get(n, 0.0) or floor for n in needy))
        weights = {node: self._weight(node) for node in needy}
        ahead = sum(weights.values())
        limit = max(256, 64 * len(level))  # then the interface is given up on
        room = self.options.max_probes - self._probes_sent - self._in_flight_count()
        room = min(256, room, limit - self._extra_sent)
        if room <= 0:
            for node in needy:
                self._give_up(node)
            self._dirty = True
            return
        # (Flows land on an anonymous interface when they are lost: seldom, whatever
        # the model says; new flows one TTL on do not need to land on it.)
        anonymous = any(address is None for _, address in needy)
        if (ahead > share / (1 + share) or anonymous) and all(weights.values()):
            batch = max(math.ceil(want / weights[node] - _SLACK) for node, want in needy.items())
            purpose, at = "next", ttl + 1
        else:
            batch = math.ceil(sum(needy.values()) / share - _SLACK)
            purpose, at = "forward", ttl
        batch = max(1, min(batch, room))
        for _ in range(batch):
            self._send(self._new_flow(), at, purpose)
        self._extra_sent += batch

    def _conclude(self, node: Node) -> None:
        """``node``'s test met the rule: with one next hop, every flow known to pass it
        is known to pass that one too (and on the chain from the source, every flow)."""
        self._done.add(node)
        nexts = self._succ.get(node, {})
        if len(nexts) != 1:
            return
        (only,) = nexts
        ttl = node[0]
        if self._chain.get(ttl) == node and only not in self._ends:
            self._chain[ttl + 1] = only
        if not self._through.get(only) and self._chain.get(ttl + 1) != only:
            return  # (the end of the path: no flow goes on from it)
        for flow in self._through.get(node, ()):
            slot = (flow, ttl + 1)
            if slot not in self._answers and slot not in self._flow_node:
                self._flow_node[slot] = only
                self._through[only].append(flow)

    def _advance(self) -> bool:
        """Every interface at the level met its rule: move to the next TTL, with its
        share of the failure bound; False when the trace is over."""
        ttl = self._level
        level = self._levels.get(ttl, [])
        nexts = list(self._levels.get(ttl + 1, []))
        if any(len(self._succ.get(node, {})) > 1 for node in level):
            self._branching += 1
        shares: dict[Node, float] = {}
        for node in level:
            succ = self._succ.get(node, {})
            for after in succ:
                shares[after] = shares.get(after, 0.0) + self._share.get(node, 0.0) / len(succ)
        self._share.update((node, share) for node, share in shares.items() if share > 0)
        self._level = ttl + 1
        self._extra_sent = self._next_seen = 0
        self._meshed = False
        testable = [n for n in nexts if self._testable(n)]
        self._warming = 2 if self.options.lite and len(testable) > 1 else 0
        if not testable:
            self._finish_plan(short=False)
            return False
        # The levels that branched before this one may have taken 1/2, 1/4, ... of the
        # bound: this one may take half of what is left, shared by its interfaces.
        self._level_width = len(testable)
        self._level_eps = self.options.failure / (2 ** (self._branching + 1) * len(testable))
        if self._level >= self.options.max_ttl:
            self._finish_plan(short=True)
            return False
        gap = 0
        for level_ttl in range(self._level, self._root[0], -1):
            if any(address is not None for _, address in self._levels.get(level_ttl, [])):
                break
            gap += 1
        if gap >= self.options.gap_limit:
            self._finish_plan(short=True)
            return False
        return True

    def _finish_plan(self, *, short: bool) -> None:
        self._short = self._short or short
        self._dirty = False
        self._over = True

    def _check_finished(self, now: float) -> None:
        if self._finished is not None or self._started is None:
            return
        if self._tries or self._queue or self._dirty:
            return
        if not self._over:  # (nothing in flight, nothing to plan: cannot go on)
            self._short = True
        self._finished = now

    # -- packets -------------------------------------------------------------------

    def _in_flight_count(self) -> int:
        return len(self._keys) + len(self._queue)

    def _new_flow(self) -> int:
        flow = self._fresh
        self._fresh += 1
        return flow

    def _send(self, flow: int, ttl: int, purpose: str, test: Node | None = None) -> None:
        """Queue the first try of ``flow`` at ``ttl`` for ``purpose`` (``_PURPOSES``;
        a "test" probe is for ``test``'s stopping rule)."""
        self._serves[flow, ttl] = (purpose, test)
        self._in_flight[purpose] += 1
        if test is not None:
            self._testing[test] = self._testing.get(test, 0) + 1
        self.spent[ttl, purpose] += 1
        self._order.setdefault(ttl, []).append(flow)
        self._keys[flow, ttl] = []
        self._queue.append((flow, ttl, 0))

    def _packet(self, flow: int, ttl: int, attempt: int) -> Outgoing:
        number = self._number
        self._number += 1
        if attempt:
            self.spent[ttl, "retry"] += 1
        out = self._probes.packet(ttl, (self._flow_base + flow) & 0xFFFF, number)
        self._tries[out.key] = _Try(flow, ttl, attempt, out.packet)
        self._keys.setdefault((flow, ttl), []).append(out.key)
        return out


def path_flows(result: MultipathResult, per_interface: int = 1) -> list[int]:
    """Flow ids that pass every interface ``result`` found: at least ``per_interface``
    through each (all it saw there, when fewer), flows seen at more interfaces first, so
    that few flows cover the graph. What live rounds probe (``trace --live --mda``): a
    flow keeps its path, so each (TTL, interface) gets probes every round."""
    seen: dict[tuple[int, str], list[int]] = {}
    reach: dict[int, int] = {}  # flow -> interfaces it was seen at
    for hop, flows in zip(result.hops, result.flows, strict=True):
        for probe, flow in zip(hop.probes, flows, strict=True):
            if probe is not None:
                seen.setdefault((hop.ttl, probe.address), []).append(flow)
                reach[flow] = reach.get(flow, 0) + 1
    chosen: dict[int, None] = {}
    for _node, there in sorted(seen.items()):
        have = sum(flow in chosen for flow in there)
        for flow in sorted(there, key=lambda flow: -reach[flow]):
            if have >= per_interface:
                break
            if flow not in chosen:
                chosen[flow] = None
                have += 1
    return list(chosen)


# -- async functions -------------------------------------------------------------------


def new_multipath_machine(
    transport: Transport,
    address: str,
    options: MultipathOptions,
    *,
    source: str | None = None,
    target: str | None = None,
) -> MultipathMachine:
    """A MultipathMachine wired to ``transport``'s cookies, with flows of its own."""
    ident = transport.cookies.new_ident()
    base = options.flow_base
    if base is None:
        base = (ident & 0xFF) % _FLOW_SLOTS * _FLOW_SPAN  # the next slot for each machine
    return MultipathMachine(
        address,
        source=source or transport.source_for(address),
        cookies=transport.cookies,
        options=options,
        flow_base=base,
        ident=ident,
        target=target,
    )


async def multipath_with(
    transport: Transport,
    address: str,
    options: MultipathOptions | None = None,
    *,
    source: str | None = None,
    target: str | None = None,
) -> MultipathResult:
    """Trace every load-balanced path to one literal address over an open transport."""
    machine = new_multipath_machine(
        transport, address, options or MultipathOptions(), source=source, target=target
    )
    return await run_one(transport, machine)


#: What ``multipath_many_with`` yields: results in completion order (see ManyResults).
MultipathResults = ManyResults[MultipathResult]


def multipath_many_with(
    transport: Transport,
    addresses: Sequence[str],
    options: MultipathOptions | None = None,
    *,
    targets: Sequence[str] | None = None,
    source: str | None = None,
) -> AbstractAsyncContextManager[MultipathResults]:
    """MDA traces to every address at once over one transport (one driver loop, the
    transport's rate shared); yields their results as they complete::

        async with multipath_many_with(transport, addresses) as results:
            async for result in results:
                ...

    Leaving the block early cancels the traces still running; ``results.remaining()``
    then gives what they had found.
    """
    options = options or MultipathOptions()
    return run_targets(
        transport, new_multipath_machine, addresses, options, targets=targets, source=source
    )
