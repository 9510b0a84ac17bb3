"""mtr-style statistics over repeated traces of one target, per flow: Loss%, Snt, Last,
Avg, Best, Wrst, StDev for each (TTL, interface), and the same for each path. Pure: fed
each round's TraceResult per flow, gives HopStats rows and PathStats.

**Attribution of loss.** A flow (its Paris probes keep every field a load balancer
hashes) takes one path: at each TTL it reaches one interface. An answered probe counts on
the row of the interface that answered; an unanswered probe of flow *f* at TTL *t*
counts as lost on the interface *f* was last seen to reach at *t*. Until *f* has been
answered at *t* at all, its losses there are held, and go to the first interface that
answers it (flows are sticky, so the earlier probes went there too). A flow never
answered at *t* (a router that rate-limits, an unlucky flow) has them counted on the
interface that the flows agreeing with its route at every other TTL reach at *t*, when
that is one interface; otherwise they stay on a row without an address (``???``, as
mtr prints). A flow's rows end at its destination: the nearest TTL at which its trace
ended.

**Paths.** Flows that reached the same interface at every TTL (a silent TTL counts as
one more "interface") share a path; a path's rows count only its flows, so loss on one
branch of a load balancer shows on that branch's path and not on the others.

Each row is judged (probes/path_truth.py): ``rate_limited`` when its loss does not
carry on to the later hops of the same flows, ``rewrites`` when its quotes show a NAT.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from rawprobe.probes.path_truth import rate_limited
from rawprobe.probes.trace_models import (
    HopStats,
    PathStats,
    QuoteRewrite,
    TraceResponse,
    TraceResult,
)

__all__ = ["LiveTrace"]


class _Cell:
    """Probes of one flow at one TTL counted on one interface (None: not attributed)."""

    __slots__ = ("best", "last", "last_order", "m2", "mean", "received", "rewrites", "sent",
                 "worst")  # fmt: skip

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.mean = 0.0  # Welford's running mean and sum of squared deviations
        self.m2 = 0.0
        self.best = math.inf
        self.worst = -math.inf
        self.last = 0.0
        self.last_order = -1
        self.rewrites: tuple[QuoteRewrite, ...] = ()

    def answer(self, rtt_s: float, order: int) -> None:
        self.sent += 1
        self.received += 1
        delta = rtt_s - self.mean
        self.mean += delta / self.received
        self.m2 += delta * (rtt_s - self.mean)
        self.best = min(self.best, rtt_s)
        self.worst = max(self.worst, rtt_s)
        self.last, self.last_order = rtt_s, order


_Key = tuple[int, str | None, int]  # (ttl, interface or None, flow)


class LiveTrace:
    """Statistics over repeated traces of one target by one or more flows. Pure: feed
    it each round's TraceResults (``add_round``, or ``add`` for a single flow)."""

    def __init__(self, target: str, address: str) -> None:
        self.target = target
        self.address = address
        self.rounds = 0
        self._cells: dict[_Key, _Cell] = {}
        self._seen: dict[tuple[int, int], str] = {}  # (flow, ttl) -> interface last seen
        self._dest: dict[int, int] = {}  # flow -> nearest TTL where its trace ended
        self._probed: dict[int, int] = {}  # flow -> highest TTL probed
        self._first_ttl: int | None = None
        self._annotation: dict[tuple[int, str], str] = {}
        self._answers = 0  # answers counted so far: orders "Last"

    @property
    def flows(self) -> tuple[int, ...]:
        """The flows fed so far, in order of first appearance."""
        return tuple(self._probed)

    def add(self, result: TraceResult, flow: int = 0) -> None:
        """Count a round of one flow: each query of each hop up to its destination."""
        self.add_round({flow: result})

    def add_round(self, results: Mapping[int, TraceResult]) -> None:
        """Count one round: every flow's trace (``{flow id: result}``)."""
        self.rounds += 1
        for flow, result in results.items():
            self._add(flow, result)

    def _add(self, flow: int, result: TraceResult) -> None:
        if result.destination_ttl is not None:
            self._dest[flow] = min(self._dest.get(flow, result.destination_ttl),
                                   result.destination_ttl)  # fmt: skip
        probed = self._probed.get(flow, 0)
        for hop in result.hops:
            ttl = hop.ttl
            if self._first_ttl is None or ttl < self._first_ttl:
                self._first_ttl = ttl
            probed = max(probed, ttl)
            for query, probe in enumerate(hop.probes):
                if probe is not None:
                    self._answer(flow, ttl, probe)
                elif query not in hop.pending:
                    self._cell(ttl, self._seen.get((flow, ttl)), flow).sent += 1
        self._probed[flow] = probed

    def _cell(self, ttl: int, interface: str | None, flow: int) -> _Cell:
        key = (ttl, interface, flow)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell()
        return cell

    def _answer(self, flow: int, ttl: int, probe: TraceResponse) -> None:
        cell = self._cell(ttl, probe.address, flow)
        if (flow, ttl) not in self._seen:  # its first answer here: the held losses too
            held = self._cells.pop((ttl, None, flow), None)
            if held is not None:
                cell.sent += held.sent
        self._seen[flow, ttl] = probe.address
        cell.answer(probe.rtt_s, self._answers)
        self._answers += 1
        if probe.rewrites and not cell.rewrites:
            cell.rewrites = probe.rewrites
        if probe.annotation:
            self._annotation[ttl, probe.address] = probe.annotation

    # -- results -----------------------------------------------------------------------

    def _limit(self, flow: int) -> int:
        """The last TTL of a flow's rows: its destination, else the highest probed."""
        return self._dest.get(flow, self._probed.get(flow, 0))

    def _routes(self) -> dict[int, tuple[str | None, ...]]:
        """Each flow's route: the interface it reaches at each TTL from the first to its
        limit; a TTL where it was never answered is None, unless the flows that agree
        with it everywhere else reach one interface there (its losses go there too)."""
        first = self._first_ttl or 1
        routes = {
            flow: tuple(self._seen.get((flow, ttl)) for ttl in range(first, self._limit(flow) + 1))
            for flow in self._probed
        }
        known = set(routes.values())
        for flow, route in routes.items():
            if None not in route:
                continue
            fills = {
                other
                for other in known
                if len(other) == len(route)
                and all(
                    b is not None if a is None else a == b
                    for a, b in zip(route, other, strict=True)
                )
            }
            if len(fills) == 1:
                routes[flow] = fills.pop()
        return routes

    def _counted(self, routes: Mapping[int, tuple[str | None, ...]]) -> dict[_Key, _Cell]:
        """The cells within their flow's rows, held losses moved to the interface the
        flow's route fills in."""
        first = self._first_ttl or 1
        counted: dict[_Key, _Cell] = {}
        for key, cell in self._cells.items():
            ttl, interface, flow = key
            route = routes[flow]
            if ttl - first >= len(route):
                continue
            if interface is None and route[ttl - first] is not None:
                # (The flow has no cell of its own there: it was never answered at ttl.)
                key, moved = (ttl, route[ttl - first], flow), _Cell()
                moved.sent = cell.sent
                cell = moved
            counted[key] = cell
        return counted

    def rows(self) -> list[HopStats]:
        """One row per (TTL, interface), over every flow that reached it; a row without
        an address holds the losses of flows never answered at that TTL."""
        cells = self._counted(self._routes())
        groups: dict[tuple[int, str | None], list[tuple[int, _Cell]]] = {}
        for (ttl, interface, flow), cell in sorted(
            cells.items(), key=lambda item: (item[0][0], item[0][1] is None)
        ):
            groups.setdefault((ttl, interface), []).append((flow, cell))
        later = _Later(cells)
        return [
            self._stats(ttl, interface, members, later)
            for (ttl, interface), members in groups.items()
        ]

    def paths(self) -> list[PathStats]:
        """One PathStats per path: flows grouped by the interface they reach at each TTL,
        in order of their first flow."""
        routes = self._routes()
        cells = self._counted(routes)
        first = self._first_ttl or 1
        groups: dict[tuple[str | None, ...], list[int]] = {}
        for flow, route in routes.items():
            groups.setdefault(route, []).append(flow)
        later = _Later(cells)
        paths = []
        for route, flows in groups.items():
            members = set(flows)
            by_ttl: dict[int, list[tuple[int, _Cell]]] = {}
            for (ttl, _interface, flow), cell in cells.items():
                if flow in members:
                    by_ttl.setdefault(ttl, []).append((flow, cell))
            hops = tuple(
                self._stats(ttl, route[ttl - first], by_ttl.get(ttl, []), later)
                for ttl in range(first, first + len(route))
            )
            paths.append(PathStats(tuple(flows), hops))
        return paths

    def _stats(
        self,
        ttl: int,
        interface: str | None,
        members: Iterable[tuple[int, _Cell]],
        later: _Later,
    ) -> HopStats:
        members = list(members)
        flows = tuple(sorted({flow for flow, _ in members}))
        sent = sum(cell.sent for _, cell in members)
        answered = [cell for _, cell in members if cell.received]
        received = sum(cell.received for cell in answered)
        mean = m2 = 0.0
        count = 0
        for cell in answered:  # Chan et al.'s parallel merge of the running moments
            total = count + cell.received
            delta = cell.mean - mean
            mean += delta * cell.received / total
            m2 += cell.m2 + delta * delta * count * cell.received / total
            count = total
        latest = max(answered, key=lambda cell: cell.last_order, default=None)
        lost_later, sent_later = later.counts(ttl, flows)
        rewrites = next((cell.rewrites for _, cell in members if cell.rewrites), ())
        return HopStats(
            ttl=ttl,
            addresses=(interface,) if interface is not None else (),
            sent=sent,
            received=received,
            last_s=latest.last if latest is not None else None,
            avg_s=mean if count else None,
            best_s=min(cell.best for cell in answered) if answered else None,
            worst_s=max(cell.worst for cell in answered) if answered else None,
            stdev_s=math.sqrt(max(0.0, m2 / count)) if count else None,
            annotation=self._annotation.get((ttl, interface)) if interface else None,
            flows=flows,
            rate_limited=rate_limited(sent - received, sent, lost_later, sent_later),
            rewrites=rewrites,
        )


class _Later:
    """Lost and sent probes of flows at the TTLs after a given one (the cells given are
    those within their flows' rows)."""

    def __init__(self, cells: Mapping[_Key, _Cell]) -> None:
        self._per: dict[int, dict[int, list[int]]] = {}  # flow -> ttl -> [lost, sent]
        for (ttl, _interface, flow), cell in cells.items():
            counts = self._per.setdefault(flow, {}).setdefault(ttl, [0, 0])
            counts[0] += cell.sent - cell.received
            counts[1] += cell.sent

    def counts(self, ttl: int, flows: Iterable[int]) -> tuple[int, int]:
        lost = sent = 0
        for flow in flows:
            for later, (flow_lost, flow_sent) in self._per.get(flow, {}).items():
                if later > ttl:
                    lost += flow_lost
                    sent += flow_sent
        return lost, sent
