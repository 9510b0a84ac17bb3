"""MDA traces (``trace --mda``) through the real kernel's ECMP routers: every topology
with load balancing gives exactly its truth (interfaces and links), over UDP, TCP and
ICMPv6, both families; the CLI's plain, JSON and Graphviz outputs; ICMPv4's one path.

The tests of the truth run each topology with one fixed seed, so a run is
reproducible; the honesty test at the end draws a new seed for each of its runs (the
issue's 400 traces a topology; bench/mda_honesty.py also measures the classic rule)."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import output_check
import pytest
from multipath_graphs import answered_from, lab_targets, lab_truth

from rawprobe.lab import Lab
from rawprobe.probes.multipath import MultipathOptions, multipath_many_with
from rawprobe.probes.trace_models import MultipathResult
from rawprobe.probes.traceroute import trace_protocols
from rawprobe.transport.raw import open_transport

pytestmark = pytest.mark.lab

MULTIPATH = ("ecmp2", "ecmp4", "nested")
SEED = 1  # (set for the test, then the session's seed is put back)


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


@pytest.mark.parametrize("lite", [False, True], ids=["mda", "lite"])
@pytest.mark.parametrize("name", MULTIPATH)
def test_every_interface_and_link_of_each_ecmp_topology(
    topology_lab: Callable[[str], Lab], name: str, lite: bool
) -> None:
    """The MDA and MDA-Lite (nothing is meshed in these labs) find each topology's
    interfaces and links, over IPv4 and IPv6."""
    net = topology_lab(name)
    restore = seeded(net)
    try:
        v4, v6 = mda(net, [net.target_v4, net.target_v6], confidence=99, lite=lite)
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
    document = output_check.document(done.stdout, "trace")
    assert document["mode"] == "mda" and len(document["traces"]) == 2
    counters = document["summary"]["counters"]  # the transport's, as a Paris trace's
    probes = sum(trace["probes_sent"] for trace in document["traces"])
    assert counters["sent"] == probes and counters["forged"] == counters["kernel_drops"] == 0
    for trace, paths in zip(document["traces"], (net.paths_v4, net.paths_v6), strict=True):
        nodes, _links = lab_truth(paths, trace["address"])
        assert trace["confidence"] == 95 and trace["probes_sent"] > 0
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


# -- --live/--report --mda: statistics for every path --------------------------------------


def test_report_mda_gives_every_interface_of_both_branches_a_row(
    topology_lab: Callable[[str], Lab],
) -> None:
    net = topology_lab("ecmp2")
    restore = seeded(net)  # (the CLI's flows are the same each run: so are their paths)
    try:
        done = rawprobe(net, "--report", "--mda", "-n", "--json", "-c", "3", "-i", "0.05",
                        "-w", "0.5", net.target_v4, net.target_v6)  # fmt: skip
    finally:
        restore()
    assert done.returncode == 0, done.stderr
    document = output_check.document(done.stdout, "trace")
    assert document["mode"] == "report"
    for trace, paths in zip(document["traces"], (net.paths_v4, net.paths_v6), strict=True):
        rows = {(hop["ttl"], hop["addresses"][0]): hop for hop in trace["hops"]}
        assert set(rows) == lab_truth(paths, trace["address"])[0]
        assert all(hop["sent"] >= 3 and hop["loss"] == 0 for hop in trace["hops"])
        branches = [path["hops"][1]["addresses"] for path in trace["paths"]]
        assert sorted(branches) == sorted([path[1]] for path in paths)


def test_live_mda_shows_the_loss_of_one_branch_on_its_rows_only(
    lossy_branch: Lab,
) -> None:
    """a1 drops 20% of the client's probes it forwards: the rows after a1 on its branch
    lose about that, the rows of b1's branch none; before a1, none either."""
    net = lossy_branch
    restore = seeded(net)
    try:
        done = rawprobe(net, "--live", "--mda", "-n", "--json", "--flows", "4", "-c", "15",
                        "-i", "0.05", "-w", "0.5", net.target_v4, net.target_v6)  # fmt: skip
    finally:
        restore()
    assert done.returncode == 0, done.stderr
    events = output_check.events(done.stdout.splitlines(), "trace")
    last = {event["target"]: event for event in events if event["event"] == "round"}
    for target, paths in ((net.target_v4, net.paths_v4), (net.target_v6, net.paths_v6)):
        report = last[target]
        a1_path, b1_path = ([*path, target] for path in paths)
        rows = {(hop["ttl"], hop["addresses"][0]): hop for hop in report["hops"]}
        assert set(rows) == lab_truth(paths, target)[0] and report["rounds"] == 15
        for ttl, address in enumerate(b1_path, 1):
            if address not in a1_path:  # (b1's own rows: b1, and r2's side over IPv6)
                assert rows[ttl, address]["loss"] == 0, (ttl, address)
            elif ttl <= 2:
                assert rows[ttl, address]["loss"] == 0, (ttl, address)  # before a1
        for ttl, address in enumerate(a1_path[2:], 3):
            if address not in b1_path:  # (a1's own rows after a1: r2's side over IPv6)
                assert rows[ttl, address]["loss"] > 0, (ttl, address)
        by_branch = {path["hops"][1]["addresses"][0]: path for path in report["paths"]}
        assert len(report["paths"]) == 2 and set(by_branch) == {a1_path[1], b1_path[1]}
        assert all(hop["loss"] == 0 for hop in by_branch[b1_path[1]]["hops"])
        after = by_branch[a1_path[1]]["hops"][2:]
        lost = sum(hop["sent"] - hop["received"] for hop in after)
        assert 0.05 < lost / sum(hop["sent"] for hop in after) < 0.4, after  # about 20%
        assert not any(hop["rate_limited"] for hop in report["hops"])  # real loss


# -- honesty ---------------------------------------------------------------------------

RUNS, TARGETS = 20, 10
BOUNDS = {95: 0.07, 99: 0.02}  # issue 13: over 400 traces a topology


@pytest.mark.parametrize("confidence", [95, 99])
def test_the_stopping_rule_is_honest_in_the_lab(
    topology_lab: Callable[[str], Lab], confidence: int
) -> None:
    """10 targets x 20 runs x 2 families on ecmp4 and on nested, every router's hash
    seed set anew (at random) for each run: at most 7% of the traces miss an interface
    at 95%, 2% at 99% (measured: 0.9% and 0%; bench/mda_honesty.py). A trace
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
                for result in mda(net, lab_targets(run, TARGETS), confidence=confidence):
                    paths = net.paths_v6 if ":" in result.address else net.paths_v4
                    nodes = lab_truth(paths, answered_from(result))[0]
                    assert result.nodes <= nodes, (name, seed, result.address)
                    traces += 1
                    if result.nodes != nodes:
                        missed.append((name, seed, result.address))
        finally:
            if before is not None:
                net.set_multipath_seed(before)
    assert traces == 2 * RUNS * 2 * TARGETS
    assert len(missed) / traces <= BOUNDS[confidence], missed
