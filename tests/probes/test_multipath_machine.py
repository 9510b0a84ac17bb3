"""The MDA machine driven with plain numbers through simulated load balancers
(tests/multipath_graphs.py): the stopping table, node control, the per-trace budget,
retries, silence, the gap limit, the probe budget and partial results."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from multipath_graphs import (
    ECMP4,
    FORK,
    LINE,
    NESTED,
    TARGET,
    Routes,
    result_of,
    run_pure,
    truth,
)

from rawprobe.errors import UsageError
from rawprobe.probes.flowprobes import source_port
from rawprobe.probes.multipath import (
    CLASSIC_TABLE,
    MultipathMachine,
    MultipathOptions,
    path_flows,
    probes_needed,
)
from rawprobe.probes.trace_models import MultipathResult
from rawprobe.transport.keys import Cookies
from rawprobe.transport.memory import flow_path

FIVE, ONE = Fraction(5, 100), Fraction(1, 100)


def missed(hops: int, probes: int) -> Fraction:
    """P(``probes`` uniform flows over ``hops`` next hops miss one), exactly."""
    return sum(
        (Fraction((-1) ** (j + 1) * math.comb(hops, j)) * Fraction(hops - j, hops) ** probes
         for j in range(1, hops)),
        Fraction(0),
    )  # fmt: skip


@pytest.mark.parametrize("confidence", [95, 99])
def test_probes_needed_is_the_classic_table(confidence: int) -> None:
    failure = Fraction(100 - confidence, 100)
    computed = [probes_needed(k, failure) for k in range(2, len(CLASSIC_TABLE[confidence]))]
    assert computed == list(CLASSIC_TABLE[confidence][2:])
    # scamper's tracelb extends the table with exact (gmp) arithmetic: so do we.
    assert probes_needed(50, failure) == {95: 341, 99: 422}[confidence]
    assert probes_needed(99, failure) == {95: 746, 99: 906}[confidence]


@pytest.mark.parametrize("hops", [2, 3, 4, 7, 16])
@pytest.mark.parametrize("failure", [FIVE, ONE, FIVE / 16, Fraction(3, 1024)])
def test_probes_needed_is_the_fewest_that_bound_the_miss(hops: int, failure: Fraction) -> None:
    n = probes_needed(hops, failure)
    assert missed(hops, n) <= failure < missed(hops, n - 1)


def test_options_are_checked() -> None:
    for bad in ({"confidence": 90}, {"method": "sctp"}, {"max_probes": 0}, {"gap_limit": 0},
                {"first_ttl": 5, "max_ttl": 4}, {"wait_s": 0}, {"retries": 11}):  # fmt: skip
        with pytest.raises(UsageError):
            MultipathOptions(**bad)  # type: ignore[arg-type]


def test_a_line_costs_the_rule_and_no_more() -> None:
    """One path: each hop is tested once, at half the trace's budget (7 probes at 95%),
    6 with the classic per-interface rule; every flow passes every router."""
    result = result_of(LINE)
    n = probes_needed(2, FIVE / 2)
    assert n == 7
    assert [hop.sent for hop in result.hops] == [n] * 4
    assert result.probes_sent == 4 * n and result.complete and result.reached
    assert result.nodes == truth(LINE, TARGET)
    assert [(link.ttl, len(link.flows)) for link in result.links] == [(1, n), (2, n), (3, n)]
    classic = result_of(LINE, options=MultipathOptions(per_trace=False))
    assert [hop.sent for hop in classic.hops] == [6] * 4


def shares(result: MultipathResult) -> dict[tuple[int, str | None], float]:
    """The MDA's model over the links ``result`` found: the share of new flows that
    reach each interface (each interface splits its flows evenly among its next hops)."""
    share: dict[tuple[int, str | None], float] = {}
    for address in result.interfaces(result.first_ttl):
        share[result.first_ttl, address] = 1.0
    nexts: dict[tuple[int, str | None], list[str | None]] = {}
    for link in result.links:
        nexts.setdefault((link.ttl, link.source), []).append(link.to)
    for (ttl, source), tos in sorted(nexts.items(), key=lambda item: item[0][0]):
        for to in tos:
            share[ttl + 1, to] = share.get((ttl + 1, to), 0.0) + share[ttl, source] / len(tos)
    return share


def counted_flows(result: MultipathResult) -> dict[tuple[int, str | None], tuple[int, float]]:
    """Each interface that paths go on from: (its next hops, the flows its test counted):
    flows known to pass it sent one TTL on, and new flows sent one TTL on (none met a
    new interface here) at their weight: a hidden next hop more would take one with
    probability p / (k + 1), p the interface's share of new flows."""
    share = shares(result)
    known: dict[int, set[int]] = {}
    outgoing: dict[tuple[int, str | None], list[int]] = {}
    for link in result.links:
        known.setdefault(link.ttl, set()).update(link.flows)
        outgoing.setdefault((link.ttl, link.source), []).extend(link.flows)
    fresh = {
        hop.ttl - 1: sum(flow not in known.get(hop.ttl - 1, ()) for flow in flows)
        for hop, flows in zip(result.hops, result.flows, strict=True)
    }
    counted = {}
    for (ttl, address), flows in outgoing.items():
        k = len(set(link.to for link in result.links if (link.ttl, link.source) == (ttl, address)))
        weight = math.log1p(-share[ttl, address] / (k + 1)) / math.log(k / (k + 1))
        counted[ttl, address] = (k, len(flows) + weight * fresh.get(ttl, 0))
    return counted


def test_a_fork_splits_the_budget_between_its_branches() -> None:
    """r1 shows two next hops: the next level may take a quarter of the budget (the
    levels before it that branched took a half), an eighth for each branch: each
    branch's test counts 9 flows at 95% (flows known to pass it, and new flows sent
    past it at their weight); the classic per-interface rule, 6."""
    for options in (MultipathOptions(), MultipathOptions(per_trace=False)):
        result = result_of(FORK, options=options)
        assert result.nodes == truth(FORK, TARGET)
        need = probes_needed(2, FIVE / 8 if options.per_trace else FIVE)
        assert need == (9 if options.per_trace else 6)
        counted = counted_flows(result)
        for branch in ("198.18.2.2", "198.18.3.2"):
            k, flows = counted[2, branch]
            assert k == 1 and need <= flows < need + 3, (branch, flows)


@pytest.mark.parametrize("routes", [ECMP4, NESTED], ids=["ecmp4", "nested"])
@pytest.mark.parametrize("confidence", [95, 99])
def test_node_control_every_interface_tested_with_its_own_flows(
    routes: Routes, confidence: int
) -> None:
    """Every flow of a link really crosses it (its true path, from the simulated
    routers' hash), and every interface that is not the end of a path was tested with at
    least the classic number of flows: flows known to cross it sent on to the next TTL,
    and new flows sent there at their weight (``counted_flows``)."""
    options = MultipathOptions(confidence=confidence)
    machine, sent = run_pure(routes, options, seed=7)
    result = machine.result()
    assert result.nodes == truth(routes, TARGET) and result.complete
    paths = {packet[20:22]: [*flow_path(routes, 7, packet), TARGET] for packet in sent}
    outgoing: dict[tuple[int, str | None], list[int]] = {}
    for link in result.links:
        for flow in link.flows:
            path = paths[source_port(flow).to_bytes(2, "big")]
            assert (path[link.ttl - 1], path[link.ttl]) == (link.source, link.to)
        assert set(link.flows) <= set(result.interfaces(link.ttl + 1)[link.to])  # seen there
        outgoing.setdefault((link.ttl, link.source), []).extend(link.flows)
    failure = Fraction(100 - confidence, 100)
    counted = counted_flows(result)
    for ttl, address in result.nodes:
        if address == TARGET:
            assert (ttl, address) not in outgoing  # paths end there
            continue
        k, flows = counted[ttl, address]
        assert flows >= probes_needed(k + 1, failure) - 1e-9, (ttl, address)


@pytest.mark.parametrize("per_interface", [1, 3])
@pytest.mark.parametrize("routes", [ECMP4, NESTED], ids=["ecmp4", "nested"])
def test_path_flows_cross_every_interface_found(routes: Routes, per_interface: int) -> None:
    """The flows ``trace --live --mda`` measures: their true paths cross every interface
    the trace found, each through at least ``per_interface`` of them (or all the flows
    seen there)."""
    machine, sent = run_pure(routes, seed=7)
    result = machine.result()
    flows = path_flows(result, per_interface)
    paths = {packet[20:22]: [*flow_path(routes, 7, packet), TARGET] for packet in sent}
    crossed: dict[tuple[int, str], int] = {}
    for flow in flows:
        for ttl, address in enumerate(paths[source_port(flow).to_bytes(2, "big")], 1):
            crossed[ttl, address] = crossed.get((ttl, address), 0) + 1
    assert set(crossed) == result.nodes == truth(routes, TARGET)
    for ttl, address in result.nodes:
        seen = len(result.interfaces(ttl)[address])
        assert crossed[ttl, address] >= min(per_interface, seen), (ttl, address)
    assert len(set(flows)) == len(flows) <= per_interface * len(result.nodes)
    if per_interface == 1:  # (a flow crosses an interface at every TTL of its path)
        assert len(flows) < len(result.nodes) // 2


def test_the_destination_is_reached_at_several_ttls() -> None:
    result = result_of(ECMP4)
    assert result.destination_ttl == 4
    assert [ttl for ttl, address in sorted(result.nodes) if address == TARGET] == [4, 5, 6]
    assert len(result.hops) == 6  # nothing probed beyond the longest path


def test_silence_is_retried_on_the_same_flow() -> None:
    """Every first try is lost: each flow is answered on its second try, which keeps
    the flow's ports, after one wait."""
    options = MultipathOptions(wait_s=0.5, retries=2)
    machine, sent = run_pure(LINE, options, answering=lambda _packet, before: before >= 1)
    result = machine.result()
    assert result.nodes == truth(LINE, TARGET) and result.complete
    assert all(p is not None and p.attempt == 1 for hop in result.hops for p in hop.probes)
    assert [hop.sent for hop in result.hops] == [2 * len(hop.probes) for hop in result.hops]
    firsts: dict[tuple[bytes, int], int] = {}
    for packet in sent:
        firsts[packet[20:24], packet[8]] = firsts.get((packet[20:24], packet[8]), 0) + 1
    assert set(firsts.values()) == {2}  # each (ports, TTL) twice: a flow, retried
    assert result.elapsed_s >= 4 * 0.5  # a wait per hop, the hops one after another


@pytest.mark.parametrize("lite", [False, True], ids=["mda", "lite"])
def test_lost_probes_cost_retries_not_the_trace(lite: bool) -> None:
    """Every probe lost with chance 1 in 5 (each flow tried 3 times): traces still end,
    nearly all with every interface; the new flows lost one TTL past a level, whose
    way there is unknown, are not tested as interfaces of their own."""
    rng = random.Random(5)
    options = MultipathOptions(wait_s=0.2, lite=lite)
    found = 0
    for seed in range(20):
        machine, _ = run_pure(
            NESTED, options, seed=seed, answering=lambda _packet, _before: rng.random() > 0.2
        )
        result = machine.result()
        assert result.finished and result.probes_sent < 1000
        found += truth(NESTED, TARGET) <= result.nodes
    assert found >= 18


def test_a_silent_router_is_an_anonymous_interface_and_the_trace_goes_on() -> None:
    options = MultipathOptions(wait_s=0.2, retries=1)
    result = run_pure(LINE, options, silent=["198.18.2.2"])[0].result()
    assert set(result.interfaces(2)) == {None}
    assert (1, "198.18.1.1", None) in {(link.ttl, link.source, link.to) for link in result.links}
    assert (2, None, "198.18.3.2") in {(link.ttl, link.source, link.to) for link in result.links}
    assert result.reached and result.complete
    assert result.nodes == truth(LINE, TARGET) - {(2, "198.18.2.2")}


def test_the_gap_limit_ends_a_trace_into_silence() -> None:
    options = MultipathOptions(wait_s=0.2, retries=0, gap_limit=3)
    silent = ["198.18.2.2", "198.18.3.2", TARGET]
    result = run_pure(LINE, options, silent=silent)[0].result()
    assert [hop.ttl for hop in result.hops] == [1, 2, 3, 4]  # then 3 silent TTLs: over
    assert not result.reached and not result.complete and result.finished


def test_max_ttl_and_max_probes_cut_a_trace_short_and_say_so() -> None:
    short = result_of(ECMP4, options=MultipathOptions(max_ttl=3))
    assert [hop.ttl for hop in short.hops] == [1, 2, 3] and not short.complete
    capped = result_of(ECMP4, options=MultipathOptions(max_probes=40))
    assert capped.probes_sent <= 40 and capped.finished and not capped.complete


def test_a_partial_result_shows_what_is_in_flight() -> None:
    fresh = MultipathMachine(
        TARGET, source="198.18.1.2", cookies=Cookies(b"k" * 32), options=MultipathOptions()
    )
    batch = fresh.poll(0.0)
    assert len(batch) == probes_needed(2, FIVE / 2)
    partial = fresh.result(now=0.5)
    assert not partial.finished and not partial.complete
    assert partial.hops[0].pending == tuple(range(len(batch)))
    assert partial.elapsed_s == 0.5
