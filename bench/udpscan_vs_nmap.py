"""UDP scan: rawprobe against nmap on the lab target, port by port, in one run.

Builds a lab and runs three scenarios in its client namespace, in interleaved rounds
(the tool that goes first alternates):

    rawprobe scan -sU -n -Pn -p PORTS --json TARGET
    nmap -sU -n -Pn -p PORTS -oX - TARGET

- ``v4``: ports 1-2000 of the IPv4 target, the target's ICMP rate limits off;
- ``v6``: the same over IPv6;
- ``limited``: ports 1-40 of the IPv4 target under Linux's default ICMP rate limit
  (``Lab.set_icmp_ratelimit(True, roles=["target"])``): about six port unreachables in
  a burst, then one a second. Each run starts after ``--quiet`` seconds (7) without
  errors, so that the per-peer bucket has refilled and both tools meet the same burst.

Every port's state is compared with the lab's truth (open: ``UDP_OPEN_PORTS``, filtered:
``UDP_REJECT_PORTS``, open|filtered: ``UDP_DROP_PORTS``, closed: the rest) and each
mismatch is printed. Then the wall-time medians (whole processes, start-up included)
and the ratio rawprobe/nmap; for ``limited`` the floor ``(closed ports - 6) s + two
timeouts`` (rawprobe's final timeout from its JSON) and the acceptance checks: rawprobe
at most the floor and at most 1.1 times nmap; also rawprobe's scan time alone (its JSON
``elapsed_ms``: the wall time less the process's start-up and exit) against the floor,
which counts no start-up. ``--nmap-only`` runs nmap alone (until
``scan -sU`` exists). Root only; every packet stays inside the lab.

    sudo .venv/bin/python bench/udpscan_vs_nmap.py [--rounds 7] [--scenario v4 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rawprobe.lab import UDP_DROP_PORTS, UDP_OPEN_PORTS, UDP_REJECT_PORTS, Lab, lab
from rawprobe.probes.portspec import parse_ports

#: The target's burst of port unreachables under the default limit (XRLIM_BURST_FACTOR).
BURST = 6
TIMEOUT_FALLBACK_S = 1.0  # nmap's initial UDP timeout, when rawprobe's is unknown


@dataclass(frozen=True)
class Scenario:
    name: str
    ports: str
    v6: bool = False
    limited: bool = False


SCENARIOS = {
    "v4": Scenario("v4", "1-2000"),
    "v6": Scenario("v6", "1-2000", v6=True),
    "limited": Scenario("limited", "1-40", limited=True),
}


@dataclass
class Tally:
    seconds: list[float] = field(default_factory=list)
    exact: int = 0
    timeouts_s: list[float] = field(default_factory=list)
    scan_s: list[float] = field(default_factory=list)  # rawprobe's own (JSON elapsed_ms)


def truth(ports: tuple[int, ...]) -> dict[int, str]:
    """The state every port of the lab target should have over UDP."""
    states = {}
    for port in ports:
        if port in UDP_OPEN_PORTS:
            states[port] = "open"
        elif port in UDP_REJECT_PORTS:
            states[port] = "filtered"
        elif port in UDP_DROP_PORTS:
            states[port] = "open|filtered"
        else:
            states[port] = "closed"
    return states


def rawprobe_states(document: Mapping[str, Any], ports: tuple[int, ...]) -> dict[int, str]:
    """Port -> state from a ``rawprobe/2`` scan document (one host): listed ports as
    listed; the unlisted ones are closed when the host's ``closed`` count says exactly
    that many, else ``missing``."""
    (host,) = document["hosts"]
    states = {int(p["port"]): str(p["state"]) for p in host["ports"]}
    rest = [port for port in ports if port not in states]
    listed_closed = sum(1 for state in states.values() if state == "closed")
    unlisted = "closed" if host["closed"] - listed_closed == len(rest) else "missing"
    states.update(dict.fromkeys(rest, unlisted))
    return states


def nmap_states(xml_text: str) -> dict[int, str]:
    """Port -> state from ``nmap -oX`` (one host): the ``<port>`` elements and the
    collapsed ``<extraports>``, whose ``<extrareasons ports=...>`` list their ports."""
    root = ET.fromstring(xml_text)
    states: dict[int, str] = {}
    for port in root.iter("port"):
        state = port.find("state")
        assert state is not None
        states[int(port.get("portid", "0"))] = state.get("state", "?")
    for extra in root.iter("extraports"):
        for reasons in extra.iter("extrareasons"):
            for number in parse_ports(reasons.get("ports", "")):
                states[number] = extra.get("state", "?")
    return states


def mismatches(expected: Mapping[int, str], found: Mapping[int, str]) -> list[str]:
    return [
        f"{port}/udp {found.get(port, 'missing')} (expected {state})"
        for port, state in sorted(expected.items())
        if found.get(port) != state
    ]


def timed(the_lab: Lab, *argv: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = the_lab.run("client", *argv, timeout=900)
    return time.perf_counter() - start, str(done.stdout)


def run_rawprobe(
    the_lab: Lab, target: str, spec: str
) -> tuple[float, dict[int, str], float, float]:
    seconds, out = timed(
        the_lab, sys.executable, "-I", "-m", "rawprobe", "scan", "-sU", "-n", "-Pn",
        "-p", spec, "--json", target,
    )  # fmt: skip
    document = json.loads(out)
    summary = document["summary"]  # (rawprobe/2)
    timeout_s = float(summary["timing"]["timeout_ms"]) / 1000
    scan_s = float(summary["elapsed_ms"]) / 1000
    return seconds, rawprobe_states(document, parse_ports(spec)), timeout_s, scan_s


def run_nmap(the_lab: Lab, target: str, spec: str) -> tuple[float, dict[int, str]]:
    argv = ["nmap", "-sU", "-n", "-Pn", "-p", spec, "-oX", "-", target]
    if ":" in target:
        argv.insert(1, "-6")
    seconds, out = timed(the_lab, *argv)
    return seconds, nmap_states(out)


def floor_s(closed: int, timeout_s: float) -> float:
    """The rate-limited floor: one error a second after the burst, plus two timeouts."""
    return max(closed - BURST, 0) + 2 * timeout_s


def run_scenario(the_lab: Lab, scenario: Scenario, rounds: int, quiet_s: float, ours: bool):
    target = the_lab.target_v6 if scenario.v6 else the_lab.target_v4
    expected = truth(parse_ports(scenario.ports))
    closed = sum(1 for state in expected.values() if state == "closed")
    print(f"\n== {scenario.name}: ports {scenario.ports} of {target}, {closed} closed,"
          f" ICMP limit {'on' if scenario.limited else 'off'}, {rounds} rounds")  # fmt: skip
    tallies = {"rawprobe": Tally(), "nmap": Tally()}
    the_lab.set_icmp_ratelimit(scenario.limited, roles=["target"])
    try:
        for number in range(1, rounds + 1):
            order = ["rawprobe", "nmap"] if number % 2 else ["nmap", "rawprobe"]
            for tool in order:
                if tool == "rawprobe" and not ours:
                    continue
                if scenario.limited:
                    time.sleep(quiet_s)
                tally = tallies[tool]
                if tool == "rawprobe":
                    seconds, found, timeout_s, scan_s = run_rawprobe(
                        the_lab, target, scenario.ports
                    )
                    tally.timeouts_s.append(timeout_s)
                    tally.scan_s.append(scan_s)
                else:
                    seconds, found = run_nmap(the_lab, target, scenario.ports)
                wrong = mismatches(expected, found)
                tally.seconds.append(seconds)
                tally.exact += not wrong
                shown = "; ".join(wrong[:10]) + (" ..." if len(wrong) > 10 else "")
                print(f"round {number} {tool:8} {seconds:7.2f} s  "
                      + (f"{len(wrong)} mismatches: {shown}" if wrong else "every port right"),
                      flush=True)  # fmt: skip
    finally:
        the_lab.set_icmp_ratelimit(False, roles=["target"])
    report(scenario, tallies, closed, rounds)


def report(scenario: Scenario, tallies: dict[str, Tally], closed: int, rounds: int) -> None:
    medians = {tool: statistics.median(t.seconds) for tool, t in tallies.items() if t.seconds}
    for tool, median in medians.items():
        print(f"{tool:8} median {median:7.2f} s   every port right {tallies[tool].exact}/{rounds}")
    if "rawprobe" in medians:
        print(f"ratio rawprobe/nmap {medians['rawprobe'] / medians['nmap']:.2f}")
    if not scenario.limited:
        return
    timeouts = tallies["rawprobe"].timeouts_s
    timeout_s = statistics.median(timeouts) if timeouts else TIMEOUT_FALLBACK_S
    floor = floor_s(closed, timeout_s)
    print(f"floor ({closed} closed - {BURST}) s + 2 x {timeout_s:.2f} s = {floor:.2f} s")
    if "rawprobe" in medians:
        ours, theirs = medians["rawprobe"], medians["nmap"]
        print(f"rawprobe <= floor: {ours <= floor}   <= 1.1 x nmap: {ours <= 1.1 * theirs}")
        scan = statistics.median(tallies["rawprobe"].scan_s)
        print(f"rawprobe's scan alone (JSON elapsed, no process start-up) median {scan:.2f} s,"
              f" <= floor: {scan <= floor}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="(all)")
    parser.add_argument("--quiet", type=float, default=7.0, help="pause before limited runs")
    parser.add_argument("--nmap-only", action="store_true", help="leave rawprobe out")
    args = parser.parse_args()
    with lab() as the_lab:
        for name in args.scenario or list(SCENARIOS):
            run_scenario(the_lab, SCENARIOS[name], args.rounds, args.quiet, not args.nmap_only)


if __name__ == "__main__":
    main()
