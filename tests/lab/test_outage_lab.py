"""Outages against the real kernel (probes/outage.py): a 1.5 s DROP in the target
mid-scan and a 1 s outage on r1 mid-sweep change no result; an outage longer than
--max-outage ends the run incomplete, with its reason and exit status 3.

The outage starts once the run is well under way: a rule without a target counts
the probes passing (the first answers must have come, or nothing could tell an
outage from a silent space), then a DROP rule goes in for the outage's length.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import output_check
import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

EXIT_INCOMPLETE = 3


def _counted(lab: Lab, role: str, chain: str) -> int:
    """Packets counted by the first rule of ``chain`` (our counting rule)."""
    line = lab.run(role, "iptables", "-L", chain, "1", "-v", "-x", "-n").stdout
    return int(line.split()[0])


@contextmanager
def _counting(lab: Lab, role: str, chain: str, *match: str) -> Iterator[None]:
    lab.run(role, "iptables", "-I", chain, *match)  # no target: it only counts
    try:
        yield
    finally:
        lab.run(role, "iptables", "-D", chain, *match, check=False)


def _outage(
    lab: Lab, run: subprocess.Popen[str], role: str, chain: str, after: int, length_s: float
) -> float:
    """Once ``after`` probes passed, DROP everything in ``chain`` for ``length_s``
    (or until the run ends); returns when the outage began (monotonic)."""
    deadline = time.monotonic() + 30
    while _counted(lab, role, chain) < after:
        assert run.poll() is None, "the run ended before the outage"
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.02)
    drop = ("-I", chain, "1", "-j", "DROP")
    lab.run(role, "iptables", *drop)
    began = time.monotonic()
    try:
        while time.monotonic() < began + length_s and run.poll() is None:
            time.sleep(0.01)
    finally:
        lab.run(role, "iptables", "-D", chain, "-j", "DROP")
    return began


def _cli(lab: Lab, *args: str) -> subprocess.Popen[str]:
    return lab.popen(
        "client", sys.executable, "-I", "-m", "rawprobe", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _scan_expected(lab: Lab, ports: range) -> dict[int, tuple[str, str]]:
    expected = {p: ("open", "syn-ack") for p in lab.open_ports if p in ports}
    expected |= {p: ("filtered", "no-response") for p in lab.drop_ports if p in ports}
    expected |= {p: ("filtered", "admin-prohibited") for p in lab.reject_ports if p in ports}
    return expected


def test_a_1_5_s_drop_in_the_target_mid_scan_changes_no_port(lab: Lab) -> None:
    ports = range(1, 10000)
    with _counting(lab, "target", "INPUT", "-p", "tcp"):
        run = _cli(lab, "scan", "-p", "1-9999", "--rate", "2000", "--json", lab.target_v4)
        _outage(lab, run, "target", "INPUT", after=3000, length_s=1.5)
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    document = output_check.document(out, "scan")
    summary = document["summary"]
    assert summary["complete"] and summary["incomplete_reason"] is None
    assert summary["timing"]["outages"] >= 1  # it did see the outage
    (host,) = document["hosts"]
    states = {p["port"]: (p["state"], p["reason"]) for p in host["ports"]}
    assert states == _scan_expected(lab, ports)  # every open port open, nothing extra
    assert host["closed"] == len(ports) - len(states)


def test_a_1_s_outage_on_r1_mid_sweep_loses_no_host(lab: Lab) -> None:
    space = "198.19.32.0/19"  # 8,190 hosts, every one up (the target's AnyIP range)
    with _counting(lab, "r1", "FORWARD", "-d", space):
        run = _cli(lab, "sweep", "--rate", "2000", "--json", space)
        _outage(lab, run, "r1", "FORWARD", after=2500, length_s=1.0)
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    summary = output_check.document(out, "sweep")["summary"]
    assert summary["hosts_up"] == 8190 and summary["hosts_down"] == 0
    assert summary["complete"] and summary["incomplete_reason"] is None


def test_a_10_s_outage_mid_sweep_is_incomplete_with_a_reason(lab: Lab) -> None:
    space = "198.19.64.0/21"  # 2,046 hosts
    with _counting(lab, "r1", "FORWARD", "-d", space):
        run = _cli(lab, "sweep", "--rate", "1000", "-w", "1", "--json", space)
        began = _outage(lab, run, "r1", "FORWARD", after=800, length_s=10.0)
        out, err = run.communicate(timeout=60)
        gave_up_s = time.monotonic() - began
    assert run.returncode == EXIT_INCOMPLETE, err
    summary = output_check.document(out, "sweep")["summary"]
    assert not summary["complete"]
    assert summary["incomplete_reason"].startswith("outage: no answer for 5.")
    assert summary["hosts_down"] == 0  # nobody silenced by the outage was called down
    assert 0 < summary["hosts_up"] < 2046
    assert gave_up_s < 9, gave_up_s  # the default limit (5 s), well before the outage ends


def test_an_outage_longer_than_max_outage_ends_a_scan_saying_so(lab: Lab) -> None:
    with _counting(lab, "target", "INPUT", "-p", "tcp"):
        run = _cli(lab, "scan", "-p", "1-5000", "--rate", "2000", "--max-outage", "1.5",
                   lab.target_v4)  # fmt: skip
        _outage(lab, run, "target", "INPUT", after=1000, length_s=10.0)
        out, err = run.communicate(timeout=60)
    assert run.returncode == EXIT_INCOMPLETE, err
    (warning,) = [line for line in out.splitlines() if line.startswith("Warning:")]
    assert warning.startswith("Warning: scan incomplete: outage: no answer for 1.")
    assert warning.endswith(" of 5000 ports undecided")
