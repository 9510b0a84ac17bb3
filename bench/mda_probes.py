"""Bench: where an MDA trace's probes go, in simulation or in the lab.

    .venv/bin/python bench/mda_probes.py [--traces 200] [--graphs ecmp4 nested ...]
    sudo .venv/bin/python bench/mda_probes.py --lab [--traces 40]

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
``--lab``: the ``ecmp4`` and ``nested`` labs instead, ``--traces`` targets (half IPv4,
half IPv6, a new multipath hash seed every 10), UDP; traffic stays in the lab.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from multipath_graphs import GRAPHS, answered_from, lab_targets, lab_truth, run_pure, truth

from rawprobe.lab import Lab, lab
from rawprobe.probes.multipath import (
    MultipathMachine,
    MultipathOptions,
    new_multipath_machine,
    probes_needed,
)
from rawprobe.probes.multiplex import run_many
from rawprobe.probes.traceroute import trace_protocols
from rawprobe.transport.raw import open_transport

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


def simulated(name: str, options: MultipathOptions, traces: int) -> Iterator[Trace]:
    routes = GRAPHS[name]
    for index in range(traces):
        target = f"198.19.{index // 250}.{index % 250 + 1}"
        machine, _ = run_pure(routes, options, seed=index, target=target)
        yield machine, truth(routes, target) <= machine.result().nodes


async def run_lab_round(
    net: Lab, addresses: list[str], options: MultipathOptions, machines: list[MultipathMachine]
) -> None:
    with net.entered("client"):  # (the only task: nothing else runs in the namespace)
        async with open_transport(trace_protocols(addresses, "udp")) as transport:
            machines.extend(new_multipath_machine(transport, a, options) for a in addresses)
            async with run_many(transport, machines) as results:
                async for _ in results:
                    pass


def in_lab(net: Lab, options: MultipathOptions, traces: int, seed: int) -> Iterator[Trace]:
    """``traces`` MDA traces in the lab, 10 at once (5 IPv4, 5 IPv6), a new hash seed
    for each 10."""
    rng = random.Random(seed)
    for run in range(max(1, traces // 10)):
        net.set_multipath_seed(rng.randrange(1, 2**32))
        machines: list[MultipathMachine] = []
        anyio.run(run_lab_round, net, lab_targets(run, 5), options, machines)
        for machine in machines:
            result = machine.result()
            paths = net.paths_v6 if ":" in result.address else net.paths_v4
            yield machine, lab_truth(paths, answered_from(result))[0] <= result.nodes


Trace = tuple[MultipathMachine, bool]  # (the machine, it found every interface)


def tally(label: str, traces: Iterator[Trace], extra: str = "") -> None:
    spent: Counter[tuple[int, str]] = Counter()
    probes: list[int] = []
    missed = meshed = 0
    for machine, found in traces:
        spent.update(machine.spent)
        probes.append(machine.result().probes_sent)
        missed += not found
        meshed += bool(machine.meshed_levels)
    n = len(probes)
    lite = f", meshing found in {meshed / n:.0%}" if machine.options.lite else ""
    mean = statistics.fmean(probes)
    print(f"{label}: missed {missed / n:6.2%}, {mean:6.1f} probes a trace{extra}{lite}")
    for ttl in sorted({ttl for ttl, _ in spent}):
        parts = [f"{kind} {spent[ttl, kind] / n:5.1f}" for kind in KINDS if spent[ttl, kind]]
        print(f"    TTL {ttl:2d}: " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=200)
    parser.add_argument("--graphs", nargs="+", default=list(GRAPHS))
    parser.add_argument("--rules", nargs="+", default=list(RULES))
    parser.add_argument("--confidence", type=int, choices=(95, 99), default=95)
    parser.add_argument("--floor", action="store_true", help="and the stopping table's least")
    parser.add_argument("--lab", action="store_true", help="the ecmp4 and nested labs")
    parser.add_argument("--seed", type=int, default=1, help="--lab: seeds the hash seeds")
    args = parser.parse_args()
    for name in ("ecmp4", "nested") if args.lab else args.graphs:
        for rule in args.rules:
            options = MultipathOptions(confidence=args.confidence, **RULES[rule])  # type: ignore[arg-type]
            label = f"{name:<9} {args.confidence}% {rule:<19}"
            if args.lab:
                with lab(topology=name) as net:
                    tally(label + " (lab)", in_lab(net, options, args.traces, args.seed))
                continue
            extra = ""
            if args.floor and not options.lite:
                extra = f", floor {floor(GRAPHS[name], args.confidence, options.per_trace)}"
            tally(label, simulated(name, options, args.traces), extra)


if __name__ == "__main__":
    main()
