"""Bench: is the MDA's stopping rule honest in the lab? (issue 13's acceptance)

    sudo .venv/bin/python bench/mda_honesty.py [--runs 20] [--targets 10]

For each of the ``ecmp4`` and ``nested`` topologies, ``--runs`` times: a new random
multipath hash seed for every router (``Lab.set_multipath_seed``), then MDA traces
from the client to ``--targets`` addresses of the target's ranges over IPv4 and IPv6
at once (UDP), at 95% and 99% confidence, with the per-trace rule (rawprobe's default),
MDA-Lite (``--lite``: its bound holds where nothing is meshed, as in these labs) and
the classic per-interface rule (``--per-interface``, scamper's). A trace *misses*
when some (TTL, interface) of the topology's truth is not in it; it may also show an
interface the truth does not have (counted apart: that would be a bug). Prints the
share of traces that missed, with the issue's bounds (7% at 95%, 2% at 99%, over
10 x 20 x 2 = 400 traces a topology pair), probes per trace and the time.
``--simulate`` runs the same over the memory network's per-flow paths instead
(tests/multipath_graphs.py: no lab, any number of traces; ``--graphs`` adds the
meshed ones). Traffic stays in the lab.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from multipath_graphs import GRAPHS, answered_from, lab_targets, lab_truth, result_of
from multipath_graphs import truth as graph_truth

from rawprobe.lab import Lab, lab
from rawprobe.probes.multipath import MultipathOptions, multipath_many_with
from rawprobe.probes.traceroute import trace_protocols
from rawprobe.transport.raw import open_transport

#: (confidence, rule) -> MultipathOptions' rule fields; the issue's bounds hold for the
#: first two (lite: where nothing is meshed).
RULES: dict[tuple[int, str], dict[str, bool]] = {
    (95, "per trace"): {},
    (99, "per trace"): {},
    (95, "lite"): {"lite": True},
    (99, "lite"): {"lite": True},
    (95, "per interface"): {"per_trace": False},
    (99, "per interface"): {"per_trace": False},
}
BOUND = {95: 0.07, 99: 0.02}  # the lab bounds (simulated: 1 - confidence)


class Tally:
    def __init__(self) -> None:
        self.traces = self.missed = self.extra = self.probes = 0
        self.seconds = 0.0

    def line(self, name: str, confidence: int, rule: str, limit: float) -> str:
        rate = self.missed / max(1, self.traces)
        bound = f" (bound {limit:.0%})" if rule != "per interface" else ""
        return (
            f"{name:<8} {confidence}% {rule:<13}: {self.missed:3d}/{self.traces} traces missed "
            f"an interface = {rate:6.2%}{bound}; false interfaces {self.extra}; "
            f"{self.probes / max(1, self.traces):6.1f} probes/trace; {self.seconds:6.1f} s"
        )


async def lab_round(
    net: Lab, addresses: list[str], options: MultipathOptions, tally: Tally
) -> None:
    began = time.monotonic()
    with net.entered("client"):  # (the only task: nothing else runs in the namespace)
        async with (
            open_transport(trace_protocols(addresses, "udp"), rate_pps=0) as transport,
            multipath_many_with(transport, addresses, options) as results,
        ):
            async for result in results:
                paths = net.paths_v6 if ":" in result.address else net.paths_v4
                want = lab_truth(paths, answered_from(result))[0]
                tally.traces += 1
                tally.missed += not want <= result.nodes
                tally.extra += bool(result.nodes - want)
                tally.probes += result.probes_sent
    tally.seconds += time.monotonic() - began


def run_lab(args: argparse.Namespace) -> dict[tuple[str, int, str], Tally]:
    tallies: dict[tuple[str, int, str], Tally] = {}
    rng = random.Random(args.seed)
    for name in ("ecmp4", "nested"):
        with lab(topology=name) as net:
            for run in range(args.runs):
                net.set_multipath_seed(rng.randrange(1, 2**32))
                addresses = lab_targets(run, args.targets)
                for (confidence, rule), fields in RULES.items():
                    tally = tallies.setdefault((name, confidence, rule), Tally())
                    options = MultipathOptions(confidence=confidence, wait_s=0.5, **fields)  # type: ignore[arg-type]
                    anyio.run(lab_round, net, addresses, options, tally)
                print(f"  {name} run {run + 1}/{args.runs} (seed {net.seed})", file=sys.stderr)
    return tallies


def run_simulated(args: argparse.Namespace) -> dict[tuple[str, int, str], Tally]:
    tallies: dict[tuple[str, int, str], Tally] = {}
    for name in args.graphs:
        graph = GRAPHS[name]
        for (confidence, rule), fields in RULES.items():
            tally = tallies.setdefault((name, confidence, rule), Tally())
            options = MultipathOptions(confidence=confidence, **fields)  # type: ignore[arg-type]
            began = time.monotonic()
            for run in range(args.runs):
                for index in range(2 * args.targets):
                    target = f"198.19.{run % 250}.{index + 1}"
                    result = result_of(graph, options=options, seed=run, target=target)
                    want = graph_truth(graph, target)
                    tally.traces += 1
                    tally.missed += not want <= result.nodes
                    tally.extra += bool(result.nodes - want)
                    tally.probes += result.probes_sent
            tally.seconds += time.monotonic() - began
    return tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="new hash seeds per topology")
    parser.add_argument("--targets", type=int, default=10, help="targets per family per run")
    parser.add_argument("--seed", type=int, default=None, help="seeds the run's seeds")
    parser.add_argument("--simulate", action="store_true", help="the memory network, no lab")
    parser.add_argument(
        "--graphs",
        nargs="+",
        default=["ecmp4", "nested"],
        help="--simulate: graphs (also mesh, meshlink, hidden: meshed)",
    )
    args = parser.parse_args()
    tallies = run_simulated(args) if args.simulate else run_lab(args)
    where = "simulated" if args.simulate else "lab"
    print(f"MDA honesty ({where}): {args.runs} seeds x {args.targets} targets x 2 families")

    def bound(confidence: int) -> float:
        return (100 - confidence) / 100 if args.simulate else BOUND[confidence]

    for (name, confidence, rule), tally in tallies.items():
        print(tally.line(name, confidence, rule, bound(confidence)))
    for confidence, rule in RULES:
        both = [t for (n, c, r), t in tallies.items() if (c, r) == (confidence, rule)]
        missed = sum(t.missed for t in both)
        traces = sum(t.traces for t in both)
        probes = statistics.fmean(t.probes / max(1, t.traces) for t in both)
        verdict = ""
        if rule != "per interface":
            verdict = " ok" if missed / traces <= bound(confidence) else " OVER THE BOUND"
        print(
            f"all      {confidence}% {rule:<13}: {missed:3d}/{traces} = {missed / traces:6.2%}"
            f"{verdict}; {probes:.1f} probes/trace"
        )


if __name__ == "__main__":
    main()
