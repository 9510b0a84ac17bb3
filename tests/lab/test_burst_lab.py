"""A burst into a slow link: the qdisc refuses packets (ENOBUFS); none may be lost."""

from __future__ import annotations

import sys

import output_check
import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab


def test_a_sweep_through_a_2_mbit_bottleneck_loses_no_probe(lab: Lab) -> None:
    """No retries and no rate cap: a probe the qdisc drops must be sent again. Found in
    the lab: without IP_RECVERR the kernel hides ENOBUFS from raw sockets and 85% of
    the probes vanished silently."""
    shaper = ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf"]
    lab.run("client", *shaper, "rate", "2mbit", "burst", "3000", "limit", "3000")
    try:
        argv = ["sweep", "-q", "-w", "1", "-r", "0", "--rate", "0", "--json", "198.19.32.0/22"]
        done = lab.run("client", sys.executable, "-I", "-m", "rawprobe", *argv, check=False)
        stats = lab.run("client", "tc", "-s", "qdisc", "show", "dev", "eth0").stdout
    finally:
        lab.run("client", "tc", "qdisc", "del", "dev", "eth0", "root")
    assert done.returncode == 0, done.stderr
    document = output_check.document(done.stdout, "sweep")
    assert "dropped 0" not in stats  # the bottleneck did refuse packets
    assert document["summary"]["hosts_up"] == len(document["hosts"]) == 1022
    assert document["summary"]["hosts_down"] == 0
