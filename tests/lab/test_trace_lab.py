"""Traceroute against the real kernel: every method and family through the three lab
routers, rate-limited routers, a silent hop, ECMP (the ecmp2 topology), CLI and live mode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import anyio
import output_check
import pytest

from rawprobe.lab import TARGET_LINK_V4, TARGET_LINK_V6, Lab
from rawprobe.probes.trace_models import TraceResult
from rawprobe.probes.traceroute import TraceOptions, trace_protocols, traceroute_with
from rawprobe.transport.raw import open_transport

pytestmark = pytest.mark.lab


def trace(lab_or_ns: Lab, role: str, address: str, options: TraceOptions) -> TraceResult:
    async def main() -> TraceResult:
        with lab_or_ns.entered(role):
            async with open_transport(trace_protocols([address], options.method)) as transport:
                return await traceroute_with(transport, address, options)

    return anyio.run(main)


def cli(lab: Lab, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = (sys.executable, "-I", "-m", "rawprobe", "trace", "-n", *args)
    return lab.run("client", *argv, check=False, timeout=timeout)


@pytest.mark.parametrize("method", ["icmp", "udp", "tcp"])
@pytest.mark.parametrize("family", ["v4", "v6"])
def test_each_method_and_family_reaches_the_target_through_the_routers(
    lab: Lab, method: str, family: str
) -> None:
    target = lab.target_v4 if family == "v4" else lab.target_v6
    routers = lab.router_v4 if family == "v4" else lab.router_v6
    start = time.monotonic()
    result = trace(lab, "client", target, TraceOptions(method=method))
    assert time.monotonic() - start < 2.0
    assert result.reached and result.complete, result
    assert [hop.addresses for hop in result.hops] == [(r,) for r in routers] + [(target,)]
    assert all(len(hop.responses) == 3 for hop in result.hops)
    assert {p.quoted_ttl for hop in result.hops[:3] for p in hop.responses} == {1}


def test_rate_limited_routers_still_give_complete_traces(lab: Lab) -> None:
    lab.set_icmp_ratelimit(True)
    try:
        results = [
            trace(lab, "client", target, TraceOptions(method="udp"))
            for target in (lab.target_v4, lab.target_v4, lab.target_v4, lab.target_v6)
        ]  # back to back: the routers' token buckets run dry after the first ones
    finally:
        lab.set_icmp_ratelimit(False)
    for result in results:
        assert result.complete, [hop.addresses for hop in result.hops]
    retried = [p for r in results for hop in r.hops for p in hop.responses if p.attempt > 0]
    assert retried, "the limit never bit: the test proves nothing"


def test_silent_hop_is_a_star_and_does_not_stall_the_trace(lab: Lab) -> None:
    rule = ("OUTPUT", "-p", "icmp", "--icmp-type", "time-exceeded", "-j", "DROP")
    lab.run("r2", "iptables", "-A", *rule)
    try:
        start = time.monotonic()
        result = trace(lab, "client", lab.target_v4, TraceOptions(wait_s=0.5, retries=1))
        elapsed = time.monotonic() - start
    finally:
        lab.run("r2", "iptables", "-D", *rule)
    assert result.reached and not result.complete
    assert result.path == (lab.router_v4[0], None, lab.router_v4[2], lab.target_v4)
    assert result.hops[1].probes == (None, None, None)
    assert elapsed < 2 * 0.5 + 0.5  # (1 + retries) waits, hops probed in parallel


def test_cli_plain_layout_json_and_file(lab: Lab, tmp_path: os.PathLike[str]) -> None:
    done = cli(lab, "-U", lab.target_v4)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"traceroute to {lab.target_v4} ({lab.target_v4}), 30 hops max")
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["1", lab.router_v4[0]], ["2", lab.router_v4[1]], ["3", lab.router_v4[2]],
        ["4", lab.target_v4],
    ]  # fmt: skip
    assert all(line.count(" ms") == 3 for line in lines)
    targets = os.path.join(os.fspath(tmp_path), "targets.txt")
    with open(targets, "w", encoding="utf-8") as f:
        f.write(f"# lab targets\n{lab.target_v6}\n198.19.0.9\n")
    done = cli(lab, "--json", "-T", "-F", targets, lab.silent_v4, "-w", "0.3", "-m", "6")
    assert done.returncode == 1  # the silent target was not reached
    document = output_check.document(done.stdout, "trace")
    assert document["schema"] == "rawprobe/2" and document["summary"]["traces_reached"] == 2
    traces = {t["target"]: t for t in document["traces"]}
    assert list(traces) == [lab.silent_v4, lab.target_v6, "198.19.0.9"]
    assert traces["198.19.0.9"]["reached"] and len(traces["198.19.0.9"]["hops"]) == 4
    hop = traces[lab.target_v6]["hops"][0]
    assert hop["ttl"] == 1 and hop["responses"][0]["address"] == lab.router_v6[0]
    assert "rtt_ms" in hop["responses"][0]
    assert not traces[lab.silent_v4]["reached"] and len(traces[lab.silent_v4]["hops"]) == 6


def test_cli_report_has_mtr_columns(lab: Lab) -> None:
    done = cli(lab, "--report", "-c", "3", "-i", "0.1", lab.target_v4, lab.target_v6)
    assert done.returncode == 0, done.stderr
    headers = [line for line in done.stdout.splitlines() if line.startswith("HOST:")]
    assert len(headers) == 2
    for name in ("Loss%", "Snt", "Last", "Avg", "Best", "Wrst", "StDev"):
        assert name in headers[0]
    assert f"  1.|-- {lab.router_v4[0]}" in done.stdout
    assert f"  4.|-- {lab.target_v6}" in done.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_mode_under_tmux_shows_a_row_per_hop(lab: Lab) -> None:
    session = f"rptrace{os.getpid()}"
    # "; sleep 30" keeps the pane, and any error, on screen until the capture.
    command = " ".join(
        ("ip netns exec", lab.ns("client"), sys.executable, "-I -m rawprobe trace -n --live",
         "-c 30 -i 0.2", lab.target_v4, lab.target_v6, "2>&1; sleep 30")
    )  # fmt: skip
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", command],
        check=True,
    )
    try:
        time.sleep(3.0)
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    for name in ("Loss%", "Snt", "Last", "Avg", "Best", "Wrst", "StDev"):
        assert name in screen, screen
    for address in (*lab.router_v4, lab.target_v4, *lab.router_v6, lab.target_v6):
        assert address in screen, screen


# -- ECMP: the lab's 2-branch topology (rawprobe/topologies/ecmp2.toml) --------------


@pytest.fixture
def ecmp(topology_lab: Callable[[str], Lab]) -> Lab:
    """client - r1 =(a1 | b1)= r2 - target: r1 splits flows over a1 and b1 by L4 hash."""
    return topology_lab("ecmp2")


@pytest.mark.parametrize("method", ["udp", "tcp"])
def test_ecmp_paris_traces_keep_one_path_and_flows_find_both(ecmp: Lab, method: str) -> None:
    branches = {path[1] for path in ecmp.paths_v4}  # a1's and b1's client-facing addresses
    seen: set[str] = set()
    port = 33434 if method == "udp" else 80
    for _ in range(12):
        result = trace(ecmp, "client", ecmp.target_v4, TraceOptions(method=method, port=port))
        assert result.reached, result
        assert len(result.hops) == 4
        middle = result.hops[1].addresses
        assert len(middle) == 1 and middle[0] in branches, middle  # one path per trace
        seen.add(middle[0])
    assert seen == branches  # other flow identifiers took the other path


def test_a_last_router_whose_arp_fails_is_shown_with_its_late_host_unreachable(lab: Lab) -> None:
    """An on-link address of r3's target link with no host: r3 answers !H only once
    ARP (neighbour discovery) gave up, ~3 s later. traceroute's 5 s wait shows it; a
    1 s wait showed ``* * *`` up to the last hop."""
    absent_v4 = TARGET_LINK_V4.rsplit(".", 1)[0] + ".77"  # on r3's link to the target
    absent_v6 = TARGET_LINK_V6.rsplit(":", 1)[0] + ":77"
    start = time.monotonic()
    done = cli(lab, "-m", "6", absent_v4, absent_v6)
    elapsed = time.monotonic() - start
    assert done.returncode == 1, done.stderr  # not reached
    blocks = done.stdout.strip().split("\n\n")
    assert len(blocks) == 2
    for block in blocks:
        last = block.splitlines()[-1].split()
        assert last[0] == "4" and last.count("!H") == 3, block
        assert last[1] in (lab.router_v4[2], lab.router_v6[2])
    assert elapsed < 10, elapsed  # ~3.1 s of ARP; 6 s with a margin for the machine
