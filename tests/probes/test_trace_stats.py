"""Live statistics per flow (probes/trace_stats.py), pure: rows per (TTL, interface),
loss attributed to the interface a flow reaches, per-path rows, rate limiting, NAT."""

from __future__ import annotations

import math
import random

import pytest

from rawprobe.probes.path_truth import path_nat
from rawprobe.probes.trace_models import QuoteRewrite, TraceHop, TraceResponse, TraceResult
from rawprobe.probes.trace_stats import LiveTrace

TARGET = "198.19.0.5"
R1, A1, B1, R2 = "198.18.1.1", "198.18.2.2", "198.18.3.2", "198.18.4.2"


def trace(path: list[str | None], rtt_s: float = 0.001, **kw: object) -> TraceResult:
    """One round of one flow: ``path[i]`` answers TTL i + 1 (None: no answer); the last
    entry is the target (terminal). ``rewrites`` (a tuple) goes on TTL >= ``nat_ttl``."""
    hops = []
    for ttl, address in enumerate(path, start=1):
        probe = None
        if address is not None:
            last = ttl == len(path)
            rewrites = kw.get("rewrites", ()) if ttl >= kw.get("nat_ttl", 99) else ()  # type: ignore[operator]
            probe = TraceResponse(address, rtt_s * ttl, "unreachable" if last else "time-exceeded",
                                  3 if last else 11, 3 if last else 0, 64, 1, terminal=last,
                                  reached=last, rewrites=rewrites)  # type: ignore[arg-type]  # fmt: skip
        hops.append(TraceHop(ttl, (probe,), 1))
    reached = path[-1] is not None
    return TraceResult(TARGET, TARGET, "udp", "198.18.1.2", True, (1, 2), 1, 30, tuple(hops),
                       reached, 0.01, len(hops), 60)  # fmt: skip


def row(stats: LiveTrace, ttl: int, address: str | None) -> tuple[int, int]:
    """(sent, received) of the row (TTL, address); address None: the ``???`` row."""
    (found,) = [
        r for r in stats.rows() if r.ttl == ttl and r.addresses == ((address,) if address else ())
    ]
    return found.sent, found.received


def test_two_branches_rows_per_interface_and_loss_on_one_path_only() -> None:
    """Flows 1 and 3 take a1, 2 and 4 take b1; a1 drops 20% of what it forwards."""
    rng = random.Random(5)
    stats = LiveTrace(TARGET, TARGET)
    for _ in range(50):
        results = {}
        for flow in (1, 2, 3, 4):
            branch = A1 if flow % 2 else B1
            lost = branch == A1 and rng.random() < 0.2
            results[flow] = trace([R1, branch, None if lost else R2, None if lost else TARGET])
        stats.add_round(results)
    assert [(r.ttl, r.addresses, r.flows) for r in stats.rows()] == [
        (1, (R1,), (1, 2, 3, 4)),
        (2, (A1,), (1, 3)),
        (2, (B1,), (2, 4)),
        (3, (R2,), (1, 2, 3, 4)),
        (4, (TARGET,), (1, 2, 3, 4)),
    ]
    a, b = stats.paths()
    assert a.flows == (1, 3) and b.flows == (2, 4) and a.addresses == (R1, A1, R2, TARGET)
    assert [h.loss for h in b.hops] == [0, 0, 0, 0]
    assert a.hops[0].loss == a.hops[1].loss == 0 and 0.1 < a.hops[2].loss < 0.3
    assert a.hops[2].loss == a.hops[3].loss  # (the same probes lost)
    assert not any(r.rate_limited for r in stats.rows() + list(a.hops + b.hops))  # real loss
    assert stats.rounds == 50 and row(stats, 2, A1) == (100, 100)


def test_a_lost_probe_counts_on_the_interface_its_flow_reaches() -> None:
    stats = LiveTrace(TARGET, TARGET)
    stats.add_round({1: trace([R1, None, TARGET]), 2: trace([R1, None, TARGET])})  # held
    stats.add_round({1: trace([R1, A1, TARGET]), 2: trace([R1, B1, TARGET])})
    stats.add_round({1: trace([R1, None, TARGET]), 2: trace([R1, B1, TARGET])})
    assert row(stats, 2, A1) == (3, 1)  # flow 1's first loss held until a1 answered it
    assert row(stats, 2, B1) == (3, 2)
    assert not [r for r in stats.rows() if not r.addresses]


def test_a_flow_never_answered_at_a_ttl_goes_where_the_flows_like_it_go() -> None:
    """Flow 3 is never answered at TTL 2 (a rate-limiting router, bad luck): the flows
    that agree with it elsewhere all reach a1 there, so its losses count on a1."""
    stats = LiveTrace(TARGET, TARGET)
    for _ in range(3):
        stats.add_round({1: trace([R1, A1, TARGET]), 3: trace([R1, None, TARGET])})
    assert row(stats, 2, A1) == (6, 3) and not [r for r in stats.rows() if not r.addresses]
    (path,) = stats.paths()
    assert path.flows == (1, 3) and path.hops[1].sent == 6


def test_a_flow_never_answered_where_flows_split_keeps_its_losses_unnamed() -> None:
    stats = LiveTrace(TARGET, TARGET)
    for _ in range(3):
        stats.add_round(
            {1: trace([R1, A1, TARGET]), 2: trace([R1, B1, TARGET]), 3: trace([R1, None, TARGET])}
        )
    assert row(stats, 2, A1) == (3, 3) and row(stats, 2, None) == (3, 0)
    (unnamed,) = [r for r in stats.rows() if not r.addresses]
    assert unnamed.flows == (3,) and unnamed.loss == 1.0
    assert [p.addresses for p in stats.paths()] == [
        (R1, A1, TARGET),
        (R1, B1, TARGET),
        (R1, None, TARGET),
    ]


def test_each_flow_ends_at_its_own_destination() -> None:
    """Unequal branches: flow 1 reaches the target at TTL 3, flow 2 at TTL 4; probes
    beyond a flow's destination (answered by the target, or lost) count nowhere."""
    stats = LiveTrace(TARGET, TARGET)
    stats.add_round({1: trace([R1, A1, TARGET]), 2: trace([R1, B1, R2, TARGET])})
    stats.add_round({1: trace([R1, A1, None, TARGET]), 2: trace([R1, B1, R2, TARGET])})
    assert row(stats, 3, TARGET) == (2, 1)  # its destination probe was lost once
    assert row(stats, 4, TARGET) == (2, 2)  # flow 2's only: flow 1's TTL 4 is beyond
    assert [len(p.hops) for p in stats.paths()] == [3, 4]


def test_statistics_merge_across_flows_as_over_all_samples() -> None:
    stats = LiveTrace(TARGET, TARGET)
    samples = {1: [0.001, 0.004], 2: [0.002, 0.009]}
    for index in range(2):
        stats.add_round(
            {flow: trace([R1, TARGET], rtt_s=rtts[index]) for flow, rtts in samples.items()}
        )
    first = stats.rows()[0]
    everything = [r for rtts in samples.values() for r in rtts]
    mean = sum(everything) / 4
    assert first.avg_s == pytest.approx(mean)
    assert first.stdev_s == pytest.approx(math.sqrt(sum((r - mean) ** 2 for r in everything) / 4))
    assert (first.best_s, first.worst_s, first.last_s) == (0.001, 0.009, 0.009)


def test_a_router_limiting_its_errors_is_marked_not_the_hops_after_it() -> None:
    stats = LiveTrace(TARGET, TARGET)
    for index in range(10):
        stats.add_round(
            {
                flow: trace([R1, A1 if (index + flow) % 4 == 0 else None, R2, TARGET])
                for flow in range(4)
            }
        )
    marked = [(r.ttl, r.addresses) for r in stats.rows() if r.rate_limited]
    assert marked == [(2, (A1,))]
    assert stats.rows()[1].loss == 0.75


def test_the_nat_shows_on_the_path_that_crosses_it() -> None:
    rewritten = (QuoteRewrite("source", "198.18.1.2", "198.18.3.1"),)
    stats = LiveTrace(TARGET, TARGET)
    stats.add_round({
        1: trace([R1, A1, R2, TARGET], rewrites=rewritten, nat_ttl=3),
        2: trace([R1, B1, R2, TARGET]),
    })  # fmt: skip
    a, b = stats.paths()
    nat = path_nat(a)
    assert nat is not None and (nat.ttl, nat.address) == (3, R2) and path_nat(b) is None
