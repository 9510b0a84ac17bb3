"""nmap's output files of real scans and sweeps in the lab: valid against nmap's DTD,
read by python-libnmap as the JSON of the same run says, and shaped and filled like
nmap's own files of the same target (nmap 7.93 runs beside rawprobe in the client
namespace; every packet stays in the lab)."""

from __future__ import annotations

import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import output_check
import pytest
from libnmap.parser import NmapParser
from nmap_files import dtd_errors, json_view, libnmap_view

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

#: Element (parent tag, tag) -> attribute names, over a whole file.
Shape = dict[tuple[str, str], set[str]]


def rawprobe_cli(lab: Lab, *args: str) -> str:
    done = lab.run("client", sys.executable, "-I", "-m", "rawprobe", *args, timeout=300)
    return str(done.stdout)


def nmap(lab: Lab, xml: Path, *args: str) -> str:
    lab.run("client", "nmap", "-n", "-oX", str(xml), *args, timeout=300)
    return xml.read_text()


def shape(xml: str) -> Shape:
    found: Shape = {}
    root = ET.fromstring(xml)
    for parent in root.iter():
        for child in parent:
            found.setdefault((parent.tag, child.tag), set()).update(child.attrib)
    found.setdefault(("", root.tag), set()).update(root.attrib)
    return found


def port_states(xml: str) -> dict[str, tuple[str, dict[tuple[str, int], str], int]]:
    """Per host: status, the state of every port that is not closed (listed ports and
    the ``ports`` ranges of extraports), and how many are closed; from either file."""
    hosts = {}
    for host in ET.fromstring(xml).iter("host"):
        status = host.find("status")
        address = host.find("address")
        assert status is not None and address is not None
        states: dict[tuple[str, int], str] = {}
        closed = 0
        for port in host.iter("port"):
            state = port.find("state")
            assert state is not None
            if state.get("state") == "closed":
                closed += 1
            else:
                key = port.get("protocol", ""), int(port.get("portid", "0"))
                states[key] = state.get("state", "")
        for extra in host.iter("extraports"):
            if extra.get("state") == "closed":
                closed += int(extra.get("count", "0"))
                continue
            for reasons in extra.iter("extrareasons"):
                for span in reasons.get("ports", "").split(","):
                    first, _, last = span.partition("-")
                    for number in range(int(first), int(last or first) + 1):
                        states[reasons.get("proto", ""), number] = extra.get("state", "")
        hosts[address.get("addr", "")] = (status.get("state", ""), states, closed)
    return hosts


def assert_shaped_like(ours: str, theirs: str) -> None:
    """Every element of ours sits where nmap puts it, with attributes nmap writes."""
    mine, nmaps = shape(ours), shape(theirs)
    assert mine.keys() <= nmaps.keys(), mine.keys() - nmaps.keys()
    for where, attributes in mine.items():
        assert attributes <= nmaps[where], (where, attributes - nmaps[where])


def test_a_scan_of_10000_ports_reads_in_libnmap_as_its_json_and_validates(
    lab: Lab, tmp_path: Path
) -> None:
    """The acceptance: ports 1-10000 of the target, -oX and --json from one run."""
    xml_path = tmp_path / "scan.xml"
    out = rawprobe_cli(lab, "scan", "-p", "1-10000", "--rate", "0", "--json", "-oX", str(xml_path),
                       lab.target_v4)  # fmt: skip
    document = output_check.document(out, "scan")
    xml = xml_path.read_text()
    assert dtd_errors(xml_path) == ""
    (host,) = NmapParser.parse_fromstring(xml).hosts
    (data,) = document["hosts"]
    json_open = sorted((p["port"], p["protocol"]) for p in data["ports"] if p["state"] == "open")
    assert sorted(host.get_open_ports()) == json_open == [(p, "tcp") for p in lab.open_ports[:-1]]
    assert libnmap_view(xml) == json_view(document["hosts"])  # and filtered, closed, up


def test_tcp_files_match_nmaps_of_the_same_target(lab: Lab, tmp_path: Path) -> None:
    ports = "1-3000,65535"
    theirs = nmap(lab, tmp_path / "nmap.xml", "-Pn", "-sS", "-p", ports, lab.target_v4)
    rawprobe_cli(lab, "scan", "-p", ports, "--rate", "0", "-oA", str(tmp_path / "rp"),
                 lab.target_v4)  # fmt: skip
    ours = (tmp_path / "rp.xml").read_text()
    assert dtd_errors(tmp_path / "rp.xml") == ""
    assert_shaped_like(ours, theirs)
    assert port_states(ours) == port_states(theirs)  # the same states, port by port
    normal = (tmp_path / "rp.nmap").read_text()
    assert "997 closed tcp ports (reset)" in normal and "22/tcp    open       ssh" in normal
    assert "Host: 198.19.0.5 ()\tPorts: 22/open/tcp//ssh///" in (tmp_path / "rp.gnmap").read_text()


def test_udp_and_both_protocols_match_nmaps(lab: Lab, tmp_path: Path) -> None:
    spec = "T:22,80,1000-1002,2000,U:7,9,53,1100-1102,1200-1202"
    theirs = nmap(lab, tmp_path / "nmap.xml", "-Pn", "-sS", "-sU", "-p", spec, lab.target_v4)
    # (--all: nmap lists a few closed ports one by one; rawprobe lists them with --all)
    ours = rawprobe_cli(lab, "scan", "-sS", "-sU", "-p", spec, "--rate", "0", "--all",
                        "-oX", "-", lab.target_v4)  # fmt: skip
    (tmp_path / "rp.xml").write_text(ours)
    assert dtd_errors(tmp_path / "rp.xml") == ""
    assert_shaped_like(ours, theirs)
    assert port_states(ours) == port_states(theirs)
    (host,) = NmapParser.parse_fromstring(ours).hosts
    states = {(s.protocol, s.port): s.state for s in host.services}
    assert states["udp", 1100] == "open|filtered" and states["udp", 53] == "open"


def test_an_ipv6_scan_is_valid_and_says_ipv6(lab: Lab, tmp_path: Path) -> None:
    ours = rawprobe_cli(lab, "scan", "-p", "20-25,2000-2010", "--rate", "0", "-oX", "-",
                        lab.target_v6)  # fmt: skip
    (tmp_path / "rp.xml").write_text(ours)
    assert dtd_errors(tmp_path / "rp.xml") == ""
    (host,) = NmapParser.parse_fromstring(ours).hosts
    assert (host.address, host.ipv6, host.get_open_ports()) == (lab.target_v6, lab.target_v6,
                                                                  [(22, "tcp")])  # fmt: skip


def test_a_sweeps_files_match_nmap_sn(lab: Lab, tmp_path: Path) -> None:
    targets = ["198.19.0.0/29", "198.18.200.1"]  # the target's AnyIP block and a silent host
    theirs = nmap(lab, tmp_path / "nmap.xml", "-sn", *targets)
    rawprobe_cli(lab, "sweep", "-q", "--rate", "0", "-oX", str(tmp_path / "rp.xml"), "-oG",
                 str(tmp_path / "rp.gnmap"), *targets)  # fmt: skip
    ours = (tmp_path / "rp.xml").read_text()
    assert dtd_errors(tmp_path / "rp.xml") == ""
    assert_shaped_like(ours, theirs)
    mine, nmaps = NmapParser.parse_fromstring(ours), NmapParser.parse_fromstring(theirs)
    # nmap probes the network and broadcast addresses of the /29 too; rawprobe skips
    # them, as fping does.
    up = sorted(h.address for h in nmaps.hosts if h.is_up())
    assert up[0] == "198.19.0.0" and up[-1] == "198.19.0.7"
    assert sorted(h.address for h in mine.hosts) == up[1:-1]
    assert {h.status for h in mine.hosts} == {"up"}  # as nmap -sn lists them
    assert (mine.hosts_up, mine.hosts_total) == (6, 7)
    lines = (tmp_path / "rp.gnmap").read_text().splitlines()
    assert sorted(lines[1:-1]) == sorted(f"Host: {a} ()\tStatus: Up" for a in up[1:-1])


def test_sigint_ndjson_has_the_hosts_decided_then_an_interrupted_summary(
    lab: Lab, tmp_path: Path
) -> None:
    """Ports in order (-r): hosts are decided one after the other and printed as they
    are; after SIGINT the summary says interrupted, and so does the XML."""
    xml_path = tmp_path / "cut.xml"
    argv = ["scan", "-q", "-w", "1", "-r", "--rate", "300", "-p", "1-200", "--ndjson",
            "-oX", str(xml_path), "198.19.7.0/28"]  # fmt: skip
    proc = lab.popen("client", sys.executable, "-I", "-m", "rawprobe", *argv,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed while the scan goes on
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    *hosts, summary = output_check.events([first, *rest.splitlines()], "scan")
    assert all(h["event"] == "host" and sum(h["state_counts"].values()) == 200 for h in hosts)
    assert [h["address"] for h in hosts] == [f"198.19.7.{i}" for i in range(1, len(hosts) + 1)]
    assert summary["interrupted"] and not summary["complete"]
    assert len(hosts) < 14 and summary["host_count"] == 14
    assert dtd_errors(xml_path) == "" and 'exit="error"' in xml_path.read_text()
