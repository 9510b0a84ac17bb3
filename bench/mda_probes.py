"""Bench: where an MDA trace's probes go, in simulation (no lab, no traffic).

    .venv/bin/python bench/mda_probes.py [--traces 200] [--graphs ecmp4 nested ...]

For each simulated graph (tests/multipath_graphs.py: the lab's ``ecmp4`` and
``nested``, and graphs that break MDA-Lite's assumptions) and each rule (the default
per-trace rule, ``--per-interface``, ``lite``), ``--traces`` traces to as many targets,
a new hash seed each: the share that missed an interface, probes a trace, and per TTL
what the probes were for (``MultipathMachine.spent``): "test" (a flow known to pass the
interface tested, sent one TTL on), "next" (a new flow one TTL past the level tested),
"back" (such a flow sent again at the level, when it met a new interface), "forward"
(a new flow at the level, for interfaces short of flows: the MDA's node control) and
"retry". With ``--floor``, also the least the stopping table asks for with the truth
known in advance: each interface's ``n(k + 1)`` at the bound the rule gives it, ``k``
its true next hops (no flows wasted on finding which flows pass an interface).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from multipath_graphs import GRAPHS, run_pure, truth

from rawprobe.probes.multipath import MultipathOptions, probes_needed

RULES = {
    "per trace": {},
    "per interface": {"per_trace": False},
    "lite": {"lite": True},
    "lite, per interface": {"lite": True, "per_trace": False},
}
KINDS = ("test", "next", "back", "forward", "retry")


def floor(routes: dict[str, tuple[str, ...]], confidence: int, per_trace: bool) -> int:
    """The stopping table's least: every interface tested with flows known to pass it,
    ``n(k + 1)`` of them for its true ``k`` next hops, at the bound the level-wise
    split gives it (levels that branched before take 1/2, 1/4, ...)."""
    failure = Fraction(100 - confidence, 100)
    level = [""]  # the source
    total = branching = 0
    while level:
        width = len(level)
        eps = failure / (2 ** (branching + 1) * width) if per_trace else failure
        nexts: list[str] = []
        for at in level:
            total += probes_needed(max(len(routes[at]), 1) + 1, eps)
            nexts += [n for n in routes[at] if n not in nexts]
        branching += any(len(routes[at]) > 1 for at in level)
        level = nexts
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=200)
    parser.add_argument("--graphs", nargs="+", default=list(GRAPHS))
    parser.add_argument("--rules", nargs="+", default=list(RULES))
    parser.add_argument("--confidence", type=int, choices=(95, 99), default=95)
    parser.add_argument("--floor", action="store_true", help="and the stopping table's least")
    args = parser.parse_args()
    for name in args.graphs:
        routes = GRAPHS[name]
        for rule in args.rules:
            options = MultipathOptions(confidence=args.confidence, **RULES[rule])  # type: ignore[arg-type]
            spent: Counter[tuple[int, str]] = Counter()
            probes: list[int] = []
            missed = meshed = 0
            for index in range(args.traces):
                target = f"198.19.{index // 250}.{index % 250 + 1}"
                machine, _ = run_pure(routes, options, seed=index, target=target)
                result = machine.result()
                spent.update(machine.spent)
                probes.append(result.probes_sent)
                missed += not truth(routes, target) <= result.nodes
                meshed += bool(machine.meshed_levels)
            n = args.traces
            extra = ""
            if args.floor and not options.lite:
                extra = f", floor {floor(routes, args.confidence, options.per_trace)}"
            lite = f", meshing found in {meshed / n:.0%}" if options.lite else ""
            print(
                f"{name:<9} {args.confidence}% {rule:<19}: missed {missed / n:6.2%}, "
                f"{statistics.fmean(probes):6.1f} probes a trace{extra}{lite}"
            )
            for ttl in sorted({ttl for ttl, _ in spent}):
                parts = [
                    f"{kind} {spent[ttl, kind] / n:5.1f}" for kind in KINDS if spent[ttl, kind]
                ]
                print(f"    TTL {ttl:2d}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
