"""MDA traces (``trace --mda``) through the real kernel's ECMP routers: every topology
with load balancing gives exactly its truth (interfaces and links), over UDP, TCP and
ICMPv6, both families; the CLI's plain, JSON and Graphviz outputs; ICMPv4's one path.

The tests of the truth run each topology with one fixed seed, so a run is
reproducible; the honesty test at the end draws a new seed for each of its runs (the
issue's 400 traces a topology; bench/mda_honesty.py also measures the classic rule)."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import pytest

from rawprobe.lab import Lab
from rawprobe.probes.models import MultipathResult
from rawprobe.probes.multipath import MultipathOptions, multipath_many_with
from rawprobe.probes.traceroute import trace_protocols
from rawprobe.transport.raw import open_transport

pytestmark = pytest.mark.lab

MULTIPATH = ("ecmp2", "ecmp4", "nested")
SEED = 1  # (set for the test, then the session's seed is put back)


def lab_truth(
    paths: Sequence[Sequence[str]], target: str
) -> tuple[frozenset[tuple[int, str]], frozenset[tuple[int, str, str]]]:
    """The (TTL, interface) pairs and (TTL, from, to) links of a topology's paths."""
    nodes: set[tuple[int, str]] = set()
    links: set[tuple[int, str, str]] = set()
    for path in paths:
        hops = [*path, target]
        nodes.update((ttl, hop) for ttl, hop in enumerate(hops, 1))
        links.update((ttl, a, b) for ttl, (a, b) in enumerate(itertools.pairwise(hops), 1))
    return frozenset(nodes), frozenset(links)


def mda(
    net: Lab, addresses: Sequence[str], method: str = "udp", **options: object
) -> list[MultipathResult]:
    """MDA traces from the client to ``addresses`` at once (flows from 0: reproducible)."""
    settings = MultipathOptions(method=method, flow_base=0, wait_s=0.5, **options)  # type: ignore[arg-type]

    async def main() -> list[MultipathResult]:
        with net.entered("client"):  # (the run's only task: nothing else runs in there)
            async with (
                open_transport(trace_protocols(addresses, method)) as transport,
                multipath_many_with(transport, addresses, settings) as results,
            ):
                found = {result.address: result async for result in results}
        return [found[address] for address in addresses]

    return anyio.run(main)


def seeded(net: Lab) -> Callable[[], None]:
    """Set the test's seed; returns what puts the session's back."""
    before = net.seed
    net.set_multipath_seed(SEED)
    return lambda: net.set_multipath_seed(before) if before is not None else None


@pytest.mark.parametrize("name", MULTIPATH)
def test_every_interface_and_link_of_each_ecmp_topology(
    topology_lab: Callable[[str], Lab], name: str
) -> None:
    net = topology_lab(name)
    restore = seeded(net)
    try:
        v4, v6 = mda(net, [net.target_v4, net.target_v6], confidence=99)
    finally:
        restore()
    for result, paths in ((v4, net.paths_v4), (v6, net.paths_v6)):
        nodes, links = lab_truth(paths, result.address)
        assert result.nodes == nodes, (name, result.address)
        assert {(link.ttl, link.source, link.to) for link in result.links} == links
        assert result.complete and result.confidence == 99


def test_tcp_and_icmpv6_flows_find_every_path_icmpv4_one(
    topology_lab: Callable[[str], Lab],
) -> None:
    """TCP hashes its ports like UDP; ICMPv6 flows differ in the flow label; ICMPv4
    probes carry nothing a Linux router hashes: one path, the MDA says so by finding
    one interface a hop."""
    net = topology_lab("nested")
    restore = seeded(net)
    try:
        (tcp,) = mda(net, [net.target_v4], "tcp", port=80)
        (icmp6,) = mda(net, [net.target_v6], "icmp")
        (icmp4,) = mda(net, [net.target_v4], "icmp")
    finally:
        restore()
    assert tcp.nodes == lab_truth(net.paths_v4, net.target_v4)[0]
    assert icmp6.nodes == lab_truth(net.paths_v6, net.target_v6)[0]
    assert all(len(hop.addresses) == 1 for hop in icmp4.hops) and icmp4.reached
    assert icmp4.nodes < lab_truth(net.paths_v4, net.target_v4)[0]


def rawprobe(net: Lab, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-I", "-m", "rawprobe", "trace", *argv]
    return net.run("client", *command, check=False, timeout=120)


def test_the_cli_prints_the_graph_as_text_json_and_graphviz(
    topology_lab: Callable[[str], Lab], tmp_path: Path
) -> None:
    net = topology_lab("ecmp4")
    dot = tmp_path / "mda.dot"
    done = rawprobe(net, "--mda", "-n", "--json", "--dot", str(dot), net.target_v4, net.target_v6)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["mode"] == "mda" and len(document["traces"]) == 2
    for trace, paths in zip(document["traces"], (net.paths_v4, net.paths_v6), strict=True):
        nodes, _links = lab_truth(paths, trace["address"])
        assert trace["confidence"] == 95 and trace["mda"] and trace["probes_sent"] > 0
        seen = {(hop["ttl"], r["address"]) for hop in trace["hops"] for r in hop["responses"]}
        assert seen <= nodes  # (a miss is possible, at most 5%; a false interface never)
        for link in trace["links"]:
            assert (link["ttl"], link["from"]) in seen and (link["ttl"] + 1, link["to"]) in seen
            assert link["flows"] and all(isinstance(flow, int) for flow in link["flows"])
    graph = dot.read_text(encoding="utf-8")
    assert graph.startswith("digraph multipath {") and graph.count("subgraph cluster_") == 2
    assert all(f'"0:{address}"' in graph for path in net.paths_v4 for address in path)

    plain = rawprobe(net, "--mda", "-n", net.target_v4)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.rstrip().splitlines()
    assert lines[0].startswith(f"multipath trace to {net.target_v4}")
    assert "(destination)" in plain.stdout and "interfaces" in lines[-1]
    first = next(line for line in lines if line.startswith(" 1 "))
    assert first.split()[1] == net.paths_v4[0][0]
    assert set(first.split("->")[1].replace(",", " ").split()) == {p[1] for p in net.paths_v4}


def test_mda_over_icmpv4_says_in_one_line_that_it_sees_one_path(
    topology_lab: Callable[[str], Lab],
) -> None:
    net = topology_lab("ecmp2")
    done = rawprobe(net, "--mda", "-n", "-M", "icmp", net.target_v4)
    assert done.returncode == 0
    assert done.stderr.count("\n") == 1 and "ICMPv4" in done.stderr and "-M udp" in done.stderr
    assert "(destination)" in done.stdout


# -- honesty ---------------------------------------------------------------------------

RUNS, TARGETS = 20, 10
BOUNDS = {95: 0.07, 99: 0.02}  # issue 13: over 400 traces a topology


@pytest.mark.parametrize("confidence", [95, 99])
def test_the_stopping_rule_is_honest_in_the_lab(
    topology_lab: Callable[[str], Lab], confidence: int
) -> None:
    """10 targets x 20 runs x 2 families on ecmp4 and on nested, every router's hash
    seed set anew (at random) for each run: at most 7% of the traces miss an interface
    at 95%, 2% at 99% (measured: under 1% and 0.3%; bench/mda_honesty.py). A trace
    never shows an interface the topology does not have."""
    rng = random.Random()
    missed: list[tuple[str, int, str]] = []
    traces = 0
    for name in ("ecmp4", "nested"):
        net = topology_lab(name)
        before = net.seed
        try:
            for run in range(RUNS):
                seed = rng.randrange(1, 2**32)
                net.set_multipath_seed(seed)
                v4 = [f"198.19.{run + 1}.{i + 1}" for i in range(TARGETS)]
                v6 = [f"2001:db8:ff::{run + 1:x}:{i + 1:x}" for i in range(TARGETS)]
                for result in mda(net, v4 + v6, confidence=confidence):
                    paths = net.paths_v6 if ":" in result.address else net.paths_v4
                    # (IPv6: the target answers for its AnyIP range from its own address)
                    end = {p.address for hop in result.hops for p in hop.responses if p.reached}
                    nodes = lab_truth(paths, end.pop() if len(end) == 1 else result.address)[0]
                    assert result.nodes <= nodes, (name, seed, result.address)
                    traces += 1
                    if result.nodes != nodes:
                        missed.append((name, seed, result.address))
        finally:
            if before is not None:
                net.set_multipath_seed(before)
    assert traces == 2 * RUNS * 2 * TARGETS
    assert len(missed) / traces <= BOUNDS[confidence], missed
