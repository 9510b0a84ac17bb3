"""``trace --mtu`` against tracepath in the lab: in the ``mtu`` topology both report
pmtu 1400 at hop 3 (the same lines, RTTs aside), on IPv4 and IPv6, over raw sockets and
unprivileged UDP sockets, and rawprobe measures again while the kernel still holds the
path MTU tracepath taught it; in ``blackhole`` rawprobe finds the hop that drops packets
over 1400 bytes silently, where tracepath sees only silence."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from output_check import document

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

FAMILIES = ("v4", "v6")


def target(net: Lab, family: str) -> str:
    return net.target_v4 if family == "v4" else net.target_v6


def forget_path_mtus(net: Lab) -> None:
    """A clean start: the client forgets the path MTUs it learned (IPv4's route cache,
    IPv6's exceptions)."""
    net.run("client", "ip", "route", "flush", "cache")
    net.run("client", "ip", "-6", "route", "flush", "cache")


@pytest.fixture
def mtu_lab(topology_lab: Callable[[str], Lab]) -> Iterator[Callable[[str], Lab]]:
    """``topology_lab``, each lab used starting clean and left as found: the client
    forgets the path MTUs it learned (others' tests expect the router's error)."""
    used: list[Lab] = []

    def get(name: str) -> Lab:
        net = topology_lab(name)
        forget_path_mtus(net)
        used.append(net)
        return net

    yield get
    for net in used:
        forget_path_mtus(net)


def learned_mtu(net: Lab, address: str) -> bool:
    """Whether the client's kernel holds a path MTU for ``address``."""
    family = "-6" if ":" in address else "-4"
    shown = net.run("client", "ip", family, "route", "get", address).stdout
    return " mtu " in str(shown)


def tracepath(net: Lab, address: str, max_hops: int = 8) -> str:
    done = net.run("client", "tracepath", "-n", "-m", str(max_hops), address, check=False)
    return str(done.stdout)


def rawprobe(net: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = (sys.executable, "-I", "-m", "rawprobe", "trace", "--mtu", "-n", *args)
    return net.run("client", *argv, check=False, timeout=60)


def rawprobe_json(net: Lab, *args: str) -> dict[str, Any]:
    done = rawprobe(net, "--json", *args)
    assert done.returncode == 0, done.stderr
    trace: dict[str, Any] = document(done.stdout, "trace")["traces"][0]
    return trace


def comparable(text: str) -> list[str]:
    """Lines without RTTs and runs of blanks; a line repeated at once (tracepath's
    first hop) counted once."""
    lines: list[str] = []
    for line in text.splitlines():
        line = " ".join(re.sub(r"\s+\d+\.\d+ms", "", line).split())
        if line and (not lines or lines[-1] != line):
            lines.append(line)
    return lines


RUNGS = {"raw": (), "udp-sockets": ("--unprivileged",)}


@pytest.mark.parametrize("rung", sorted(RUNGS))
@pytest.mark.parametrize("family", FAMILIES)
def test_pmtu_1400_at_the_hop_where_tracepath_says_it(
    mtu_lab: Callable[[str], Lab], family: str, rung: str
) -> None:
    net = mtu_lab("mtu")
    address = target(net, family)
    theirs = tracepath(net, address)
    assert learned_mtu(net, address)  # tracepath taught the kernel: we must measure anyway
    ours = rawprobe(net, *RUNGS[rung], address)
    assert ours.returncode == 0, ours.stderr
    assert comparable(ours.stdout) == comparable(theirs), (ours.stdout, theirs)
    r2 = (net.paths_v4 if family == "v4" else net.paths_v6)[0][1]
    assert f"3: {r2} pmtu 1400" in comparable(ours.stdout)
    assert comparable(ours.stdout)[-1] == "Resume: pmtu 1400 hops 4 back 4"
    data = rawprobe_json(net, *RUNGS[rung], address)
    assert (data["interface_mtu"], data["path_mtu"], data["black_hole"]) == (1500, 1400, None)
    assert [hop.get("mtu") for hop in data["hops"]] == [None, None, 1400, None]
    assert data["reached"] and data["method"] == "udp"


@pytest.mark.parametrize("family", FAMILIES)
def test_icmp_probes_find_it_too(mtu_lab: Callable[[str], Lab], family: str) -> None:
    net = mtu_lab("mtu")
    data = rawprobe_json(net, "-I", target(net, family))
    assert data["method"] == "icmp" and data["path_mtu"] == 1400
    assert [hop.get("mtu") for hop in data["hops"]] == [None, None, 1400, None]


@pytest.mark.parametrize("rung", sorted(RUNGS))
@pytest.mark.parametrize("family", FAMILIES)
def test_the_black_hole_tracepath_cannot_see(
    mtu_lab: Callable[[str], Lab], family: str, rung: str
) -> None:
    net = mtu_lab("blackhole")
    address = target(net, family)
    theirs = comparable(tracepath(net, address, max_hops=3))
    assert theirs[-3:] == ["3: no reply", "Too many hops: pmtu 1500", "Resume: pmtu 1500"]
    ours = rawprobe(net, *RUNGS[rung], address)
    assert ours.returncode == 0, ours.stderr
    lines = comparable(ours.stdout)
    assert lines[-2:] == [
        "Resume: pmtu 1400 hops 4 back 4",
        "Black hole at hop 3: 1401 bytes vanish (no ICMP error), 1400 pass",
    ]
    r3 = (net.paths_v4 if family == "v4" else net.paths_v6)[0][2]
    assert f"3: {r3} pmtu 1400" in lines
    data = rawprobe_json(net, *RUNGS[rung], address)
    assert data["black_hole"] == {"ttl": 3, "passes": 1400, "drops": 1401}
    assert data["path_mtu"] == 1400 and data["reached"]
    assert [hop.get("mtu") for hop in data["hops"]] == [None, None, 1400, None]


def test_no_mtu_or_black_hole_where_there_is_none(lab: Lab) -> None:
    """The default line: the interface's 1500 all the way, nothing claimed."""
    for family in FAMILIES:
        data = rawprobe_json(lab, target(lab, family))
        assert (data["path_mtu"], data["black_hole"]) == (1500, None)
        assert all(hop["mtu"] is None for hop in data["hops"]) and data["reached"]


def test_options_that_do_not_apply_are_refused_in_one_line(lab: Lab) -> None:
    for option in (("-M", "tcp"), ("--live",), ("-q", "2"), ("--classic",), ("-N", "2")):
        done = rawprobe(lab, *option, lab.target_v4)
        assert done.returncode == 2 and done.stdout == "", option
        assert len(done.stderr.splitlines()) == 1 and "--mtu" in done.stderr, done.stderr
