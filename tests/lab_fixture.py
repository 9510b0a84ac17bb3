"""The session-wide network-namespace lab (see rawprobe/lab.py and DESIGN.md section 5).

``lab`` builds one lab (the default line) for the whole session and tears it down at
the end, whatever happens in between; ``topology_lab("ecmp4")`` does the same for any
other topology of rawprobe/topologies/, built on first use; ``lossy_branch`` is ecmp2
with one branch dropping a fifth of the probes. ``lab_required`` applies
the skip policy alone, for tests that build labs of their own: when no lab can be built
the test is skipped, unless ``RAWPROBE_LAB=required`` (CI), where it fails.

Tests that use these fixtures are marked ``@pytest.mark.lab``. Tests must leave the
shared lab as they found it (e.g. restore ICMP rate limits, ping_group_range).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from rawprobe.lab import Lab, check_lab_possible, lab_up
from rawprobe.lab import lab as build_lab


@pytest.fixture(scope="session")
def lab_required() -> None:
    """Skip (or, with RAWPROBE_LAB=required, fail) when a lab cannot be built here."""
    reason = check_lab_possible()
    if reason is None:
        return
    if os.environ.get("RAWPROBE_LAB") == "required":
        pytest.fail(f"RAWPROBE_LAB=required but no lab can be built: {reason}")
    pytest.skip(f"lab unavailable: {reason}")


@pytest.fixture(scope="session")
def lab(lab_required: None) -> Iterator[Lab]:
    """One lab shared by the session; torn down at session end even on failure."""
    with build_lab() as built:
        yield built


@pytest.fixture(scope="session")
def topology_lab(lab_required: None) -> Iterator[Callable[[str], Lab]]:
    """``topology_lab(name)``: the session's lab of that topology, built on first use and
    torn down at session end. Tests that change one (a seed, a rule) put it back."""
    built: dict[str, Lab] = {}

    def get(name: str) -> Lab:
        if name not in built:
            built[name] = lab_up(topology=name)
        return built[name]

    try:
        yield get
    finally:
        for net in built.values():
            net.down()


@pytest.fixture
def lossy_branch(topology_lab: Callable[[str], Lab]) -> Iterator[Lab]:
    """ecmp2 with a1 dropping 20% of the client's probes it forwards (iptables
    statistic); answers coming back through a1 are spared."""
    net = topology_lab("ecmp2")
    rules = [
        ("iptables", "-s", net.client_v4),
        ("ip6tables", "-s", net.client_v6),
    ]
    rule = ("FORWARD", "-m", "statistic", "--mode", "random", "--probability", "0.2", "-j", "DROP")
    for tool, *match in rules:
        net.run("a1", tool, "-I", rule[0], *match, *rule[1:])
    try:
        yield net
    finally:
        for tool, *match in rules:
            net.run("a1", tool, "-D", rule[0], *match, *rule[1:], check=False)
