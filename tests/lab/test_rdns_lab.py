"""Reverse DNS in the lab: a resolver that never answers costs a bounded wait (one
target, 40 targets, plain and JSON), and the lab's DNS server's names reach plain,
JSON, report and live output.

Subprocesses started with ``ip netns exec`` read the client's resolv.conf from
``/etc/netns/NS/`` (see Lab.set_resolver): no lookup leaves the lab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import output_check
import pytest

from rawprobe.lab import DNS_V4, LAB_NAMES, NXDOMAIN_DNS_V4, Lab

pytestmark = pytest.mark.lab

#: 40 AnyIP addresses of the target, each a distinct last hop to look up.
TARGETS = [f"198.19.1.{i}" for i in range(1, 41)]


def cli(lab: Lab, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``rawprobe trace ARGS`` in the client namespace, and its wall time to exit."""
    argv = (sys.executable, "-I", "-m", "rawprobe", "trace", *args)
    start = time.monotonic()
    done = lab.run("client", *argv, check=False, timeout=120)
    return done, time.monotonic() - start


@contextmanager
def resolver(lab: Lab, *nameservers: str) -> Iterator[None]:
    lab.set_resolver("client", nameservers)
    try:
        yield
    finally:
        lab.set_resolver("client")


def test_every_lab_namespace_resolves_inside_the_lab(lab: Lab) -> None:
    for role in lab.roles:
        conf = lab.run(role, "cat", "/etc/resolv.conf").stdout
        assert conf.split("\n", 1)[1] == f"nameserver {NXDOMAIN_DNS_V4}\n", conf
    done, _ = cli(lab, "-q", "1", lab.target_v4)  # no -n: asks the lab, gets no names
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == lab.router_v4[0]


def _bounded(lab: Lab, *args: str) -> tuple[str, str]:
    """Run ``trace ARGS`` with -n and then without against a silent resolver; the
    names cost at most the bound (2.5 s, asserted with room for a loaded machine)."""
    with resolver(lab, lab.silent_v4):
        numeric, numeric_s = cli(lab, "-n", *args)
        named, named_s = cli(lab, *args)
    print(f"\ntrace {' '.join(args[:3])}...: -n {numeric_s:.2f} s, silent DNS {named_s:.2f} s")
    assert numeric.returncode == named.returncode == 0, named.stderr
    assert named_s - numeric_s < 3.5, (numeric_s, named_s)  # was 40 s for one target
    return numeric.stdout, named.stdout


def test_a_silent_resolver_costs_one_trace_a_bounded_wait(lab: Lab) -> None:
    numeric, named = _bounded(lab, lab.target_v4)
    strip = [line.split()[:2] for line in numeric.splitlines()]
    assert [line.split()[:2] for line in named.splitlines()] == strip  # no names, same hops


@pytest.mark.parametrize("mode", ["--json", "plain"])
def test_a_silent_resolver_costs_40_targets_a_bounded_wait(lab: Lab, mode: str) -> None:
    args = ["--json"] if mode == "--json" else []
    _numeric, named = _bounded(lab, *args, "-q", "1", *TARGETS)
    if mode == "--json":
        traces = output_check.document(named, "trace")["traces"]
        assert [t["target"] for t in traces] == TARGETS
        assert all(r["hostname"] is None for t in traces for h in t["hops"] for r in h["responses"])
    else:
        assert named.count("traceroute to") == 40


def test_names_from_the_lab_dns_server(lab: Lab) -> None:
    with resolver(lab, DNS_V4):
        plain, plain_s = cli(lab, lab.target_v4)
        doc, _ = cli(lab, "--json", "-q", "1", lab.target_v6)
        report, _ = cli(lab, "--report", "-c", "2", "-i", "0.1", lab.target_v4)
    print(f"\ntrace with names from the lab DNS server: {plain_s:.2f} s")
    assert plain.returncode == 0, plain.stderr
    hosts = [line.split()[1:3] for line in plain.stdout.splitlines()]
    expected = [*lab.router_v4, lab.target_v4]
    assert hosts == [[LAB_NAMES[a], f"({a})"] for a in expected]
    assert hosts[0] == ["r1.lab.test", "(198.18.1.1)"]
    hops = output_check.document(doc.stdout, "trace")["traces"][0]["hops"]
    assert [h["responses"][0]["hostname"] for h in hops] == [
        "r1.lab.test", "r2.lab.test", "r3.lab.test", "target.lab.test"
    ]  # fmt: skip
    assert "  1.|-- r1.lab.test (198.18.1.1)" in report.stdout
    assert f"  4.|-- target.lab.test ({lab.target_v4})" in report.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_view_fills_in_names_as_they_arrive(lab: Lab) -> None:
    session = f"rpnames{os.getpid()}"
    command = " ".join(
        ("ip netns exec", lab.ns("client"), sys.executable, "-I -m rawprobe trace --live",
         "-c 30 -i 0.2", lab.target_v4, "2>&1; sleep 30")
    )  # fmt: skip
    with resolver(lab, DNS_V4):  # read by `ip netns exec` when the session starts
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", command],
            check=True,
        )
        time.sleep(0.5)
    try:
        time.sleep(2.5)
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert "round" in screen, screen  # still running: the names came during the run
    for address in (*lab.router_v4, lab.target_v4):  # (a narrow pane wraps the cell)
        assert LAB_NAMES[address] in screen and f"({address})" in screen, screen
