"""Bench: multipath traces, rawprobe ``trace --mda`` vs scamper's ``tracelb``, same lab,
same targets, same run, same confidence.

    sudo .venv/bin/python bench/mda_vs_scamper.py [--topology ecmp4 nested] [--targets 5]
        [--confidence 95] [--seed N]

For each topology (a fresh lab, one multipath hash seed), ``--targets`` IPv4 and as
many IPv6 addresses of the target's ranges are traced, one family at a time, by:

* ``scamper -O json -p 1000 -c "tracelb -P udp-sport -c C" -f FILE`` (UDP flows that
  differ in the source port, as rawprobe's; its other methods are checked apart);
* ``rawprobe trace --mda -n --json --confidence C --file FILE`` (the per-trace rule,
  the default), the same with ``--lite`` (MDA-Lite), with ``--per-interface`` (the
  classic rule, scamper's) and with both;

and for each the bench prints the interfaces found (distinct addresses, and (TTL,
address) pairs) against the topology's truth, the traces that missed one, the probes
sent and the wall time (process start to exit). Then each scamper tracelb method
(udp-dport, udp-sport, tcp-sport, icmp-echo) on one target per family, capped at
``--cap`` seconds: how it ends. Traffic stays inside the lab.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from multipath_graphs import lab_truth

from rawprobe.lab import Lab, lab

Node = tuple[int, str]


def truth(paths: Sequence[Sequence[str]], target: str) -> frozenset[Node]:
    return lab_truth(paths, target)[0]


def targets(count: int, family: int) -> list[str]:
    if family == 4:
        return [f"198.19.7.{i + 1}" for i in range(count)]
    return [f"2001:db8:ff::7:{i + 1:x}" for i in range(count)]


class Trace:
    """What one tool found for one target."""

    def __init__(self, target: str, nodes: set[Node], probes: int, destination: str) -> None:
        self.target = target
        self.nodes = frozenset(nodes)
        self.probes = probes
        self.destination = destination  # the address the destination answered from


def run_rawprobe(
    net: Lab, path: str, confidence: int, extra: Sequence[str]
) -> tuple[float, list[Trace]]:
    argv = [sys.executable, "-I", "-m", "rawprobe", "trace", "--mda", "-n", "--json"]
    argv += ["--confidence", str(confidence), "--file", path, *extra]
    began = time.monotonic()
    done = net.run("client", *argv, check=False, timeout=600)
    wall = time.monotonic() - began
    if not done.stdout.startswith("{"):
        raise SystemExit(f"rawprobe failed (exit {done.returncode}): {done.stderr.strip()}")
    found = []
    for trace in json.loads(done.stdout)["traces"]:
        nodes = {(hop["ttl"], r["address"]) for hop in trace["hops"] for r in hop["responses"]}
        ends = {
            r["address"]
            for hop in trace["hops"]
            for r in hop["responses"]
            if r["kind"] == "unreachable"
        }
        end = ends.pop() if len(ends) == 1 else trace["address"]
        found.append(Trace(trace["address"], nodes, trace["probes_sent"], end))
    return wall, found


def scamper_traces(output: str) -> list[Trace]:
    """Every (probe TTL, address) a tracelb record shows, and its probe count."""
    found = []
    for line in output.splitlines():
        record = json.loads(line)
        if record.get("type") != "tracelb":
            continue
        nodes: set[Node] = set()
        ends: set[str] = set()
        unreachable = 1 if ":" in record["dst"] else 3  # (ICMPv6 type 3 is time exceeded)
        for node in record.get("nodes", []):
            if record.get("firsthop") and node is record["nodes"][0]:
                nodes.add((record["firsthop"], node["addr"]))
            for link in node.get("links", []):
                for hop in link:
                    for probe in hop.get("probes", []):
                        if probe.get("replies"):
                            nodes.add((probe["ttl"], hop["addr"]))
                            if any(r.get("icmp_type") == unreachable for r in probe["replies"]):
                                ends.add(hop["addr"])
        end = ends.pop() if len(ends) == 1 else record["dst"]
        found.append(Trace(record["dst"], nodes, record.get("probec", 0), end))
    return found


def run_scamper(
    net: Lab, path: str, confidence: int, method: str = "udp-sport", cap: float = 600
) -> tuple[float, list[Trace] | None]:
    """(wall seconds, traces); traces None when scamper did not finish within ``cap``."""
    command = f"tracelb -P {method} -c {confidence}"
    argv = ["timeout", str(int(cap)), "scamper", "-O", "json", "-p", "1000", "-c", command]
    began = time.monotonic()
    done = net.run("client", *argv, "-f", path, check=False, timeout=cap + 30)
    wall = time.monotonic() - began
    if done.returncode == 124:
        return wall, None
    return wall, scamper_traces(done.stdout)


def report(name: str, wall: float, traces: Sequence[Trace], paths: Sequence[Sequence[str]]) -> str:
    """One line: interfaces found of the truth (by address, and by (TTL, address), over
    every target), the traces that missed one, the probes and the wall time."""
    missed = 0
    found: set[tuple[str, int, str]] = set()
    wanted: set[tuple[str, int, str]] = set()
    for trace in traces:
        want = truth(paths, trace.destination)
        missed += not want <= trace.nodes
        found |= {(trace.target, ttl, a) for ttl, a in trace.nodes & want}
        wanted |= {(trace.target, ttl, a) for ttl, a in want}
    addresses = {(target, a) for target, _ttl, a in found}
    want_addresses = {(target, a) for target, _ttl, a in wanted}
    probes = sum(t.probes for t in traces)
    return (
        f"  {name:<40} {len(addresses):3d}/{len(want_addresses)} addresses, "
        f"{len(found):3d}/{len(wanted)} (TTL, address); {missed}/{len(traces)} traces missed "
        f"one; {probes:5d} probes; {wall:5.1f} s"
    )


def methods(net: Lab, tmp: Path, confidence: int, cap: float) -> None:
    """How each scamper tracelb method ends on one target per family."""
    print(f"  scamper tracelb methods, one target a family (capped at {cap:.0f} s):")
    for family, address, paths in (
        (4, net.target_v4, net.paths_v4),
        (6, net.target_v6, net.paths_v6),
    ):
        path = tmp / f"one{family}.txt"
        path.write_text(address + "\n", encoding="utf-8")
        for method in ("udp-dport", "udp-sport", "tcp-sport", "icmp-echo"):
            wall, traces = run_scamper(net, str(path), confidence, method, cap)
            if traces is None:
                outcome = f"did not finish in {cap:.0f} s"
            elif not traces or not traces[0].probes:
                outcome = "sent no probe (0 nodes)"
            else:
                trace = traces[0]
                want = truth(paths, trace.destination)
                outcome = (
                    f"{len(trace.nodes & want)}/{len(want)} (TTL, address), "
                    f"{trace.probes} probes, {wall:.1f} s"
                )
            print(f"    IPv{family} {method:<10} {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", nargs="+", default=["ecmp4", "nested"])
    parser.add_argument("--targets", type=int, default=5, help="targets per family")
    parser.add_argument("--confidence", type=int, choices=(95, 99), default=95)
    parser.add_argument("--seed", type=int, default=None, help="multipath hash seed")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per method check")
    args = parser.parse_args()
    for name in args.topology:
        with lab(topology=name, seed=args.seed) as net, tempfile.TemporaryDirectory() as tmp:
            print(f"{name} (seed {net.seed}), {args.confidence}% confidence:")
            for family, paths in ((4, net.paths_v4), (6, net.paths_v6)):
                path = Path(tmp) / f"targets{family}.txt"
                path.write_text("\n".join(targets(args.targets, family)) + "\n", encoding="utf-8")
                print(f" IPv{family}, {args.targets} targets at once:")
                wall, traces = run_scamper(net, str(path), args.confidence)
                print(report("scamper tracelb udp-sport", wall, traces or [], paths))
                wall, found = run_rawprobe(net, str(path), args.confidence, [])
                print(report("rawprobe --mda", wall, found, paths))
                for extra in (["--lite"], ["--per-interface"], ["--lite", "--per-interface"]):
                    wall, found = run_rawprobe(net, str(path), args.confidence, extra)
                    print(report(" ".join(["rawprobe --mda", *extra]), wall, found, paths))
            methods(net, Path(tmp), args.confidence, args.cap)


if __name__ == "__main__":
    main()
