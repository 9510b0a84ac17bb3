"""bench/udpscan_vs_nmap.py reads both tools' output port by port: a rawprobe/2 scan
document (validated against the shipped schema) and nmap's XML."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import output_check
import pytest

from rawprobe.cli.render_scan import scan_document
from rawprobe.probes.portspec import parse_ports
from rawprobe.probes.scan_models import HostPorts, PortResult, ScanResult, ScanTiming

BENCH = Path(__file__).resolve().parents[1] / "bench" / "udpscan_vs_nmap.py"
ADDRESS = "198.19.0.5"

NMAP_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -sU -n -Pn -p 1-2000 -oX - 198.19.0.5" version="7.93">
<scaninfo type="udp" protocol="udp" numservices="2000" services="1-2000"/>
<host><status state="up" reason="user-set" reason_ttl="0"/>
<address addr="198.19.0.5" addrtype="ipv4"/>
<ports><extraports state="closed" count="1795">
<extrareasons reason="port-unreach" count="1795" proto="udp"
 ports="1-6,8-52,54-122,124-160,162-1099,1300-1899,1901-2000"/>
</extraports>
<extraports state="filtered" count="100">
<extrareasons reason="admin-prohibited" count="100" proto="udp" ports="1200-1299"/>
</extraports>
<extraports state="open|filtered" count="100">
<extrareasons reason="no-response" count="100" proto="udp" ports="1100-1199"/>
</extraports>
<port protocol="udp" portid="7"><state state="open" reason="udp-response" reason_ttl="61"/></port>
<port protocol="udp" portid="53"><state state="open" reason="udp-response" reason_ttl="61"/></port>
<port protocol="udp" portid="123"><state state="open" reason="udp-response" reason_ttl="61"/></port>
<port protocol="udp" portid="161"><state state="open" reason="udp-response" reason_ttl="61"/></port>
<port protocol="udp" portid="1900"><state state="open" reason="udp-response" reason_ttl="61"/>
</port>
</ports></host>
<runstats><finished elapsed="1.74" exit="success"/></runstats>
</nmaprun>
"""


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("udpscan_vs_nmap", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def document(states: dict[int, str], closed: int) -> dict[str, object]:
    """A scan document as render_scan writes it: listed ports, closed ones counted."""
    reasons = {"open": "udp-response", "filtered": "admin-prohibited"}
    ports = tuple(
        PortResult(ADDRESS, port, state, reasons.get(state, "no-response"))
        for port, state in sorted(states.items())
    )
    counts = [("closed", "port-unreach", closed)] + [
        (s, reasons.get(s, "no-response"), sum(p.state == s for p in ports))
        for s in sorted({p.state for p in ports})
    ]
    timing = ScanTiming(0.001, 0.0005, 0.25, 10.0, 10.0, 0, 0, 1000.0, 1000.0, 1)
    result = ScanResult(
        "udp", (HostPorts(ADDRESS, ports, tuple(counts), True),), 2000, 1, 2000, 2100, 100,
        1.5, timing,
    )  # fmt: skip
    document: dict[str, object] = output_check.document(json.dumps(scan_document(result)), "scan")
    return document


def test_both_tools_outputs_give_every_ports_state(bench: ModuleType) -> None:
    ports = parse_ports("1-2000")
    truth = bench.truth(ports)
    listed = {port: state for port, state in truth.items() if state != "closed"}
    closed = len(ports) - len(listed)
    assert (closed, len(listed)) == (1795, 205)
    ours = bench.rawprobe_states(document(listed, closed), ports)
    assert ours == truth and bench.mismatches(truth, ours) == []
    theirs = bench.nmap_states(NMAP_XML)
    assert theirs == truth


def test_wrong_states_and_unaccounted_ports_are_mismatches(bench: ModuleType) -> None:
    ports = parse_ports("1-40")
    truth = bench.truth(ports)
    assert [p for p, s in truth.items() if s != "closed"] == [7]
    wrong = {7: "open|filtered", 9: "filtered"}
    assert bench.mismatches(truth, bench.rawprobe_states(document(wrong, 38), ports)) == [
        "7/udp open|filtered (expected open)", "9/udp filtered (expected closed)",
    ]  # fmt: skip
    # A closed count that does not cover the unlisted ports: they are not assumed closed.
    found = bench.rawprobe_states(document({7: "open"}, 30), ports)
    assert set(found.values()) == {"open", "missing"}
    assert len(bench.mismatches(truth, found)) == 39


def test_the_rate_limited_floor(bench: ModuleType) -> None:
    assert bench.floor_s(39, 0.5) == pytest.approx(34.0)  # (39 - 6) s + two timeouts
    assert bench.floor_s(3, 1.0) == pytest.approx(2.0)
