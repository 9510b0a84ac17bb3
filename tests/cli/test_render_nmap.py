"""nmap's output files rendered from results: XML valid against nmap's DTD and read by
python-libnmap as the JSON says, nmap's reason words, normal output, a sweep's XML."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import output_check
import pytest
from libnmap.parser import NmapParser
from nmap_files import dtd_errors, json_view, libnmap_view

from rawprobe.cli.render_nmap import (
    Run,
    normal_output,
    port_ranges,
    scan_xml,
    sweep_xml_head,
    sweep_xml_host,
    sweep_xml_tail,
)
from rawprobe.cli.render_scan import scan_document, scan_report
from rawprobe.probes.scan_models import HostPorts, PortResult, ScanResult, ScanTiming

A, B = "198.19.0.5", "2001:db8:ff::9"
FILTERED = tuple(PortResult(A, p, "filtered", "no-response", tries=2) for p in range(1000, 1030))
UNREACH = PortResult(A, 1500, "filtered", "host-unreachable", 63, 0.0002, "198.18.3.2")
TCP_A = HostPorts(
    A,
    (PortResult(A, 22, "open", "syn-ack", 61, 0.0001, A), *FILTERED, UNREACH),
    (("closed", "reset", 68), ("filtered", "host-unreachable", 1),
     ("filtered", "no-response", 30), ("open", "syn-ack", 1)),
    True, 0.0001,
)  # fmt: skip
TCP_B = HostPorts(
    B, tuple(PortResult(B, p, "filtered", "no-response") for p in (22, 1500)),
    (("filtered", "no-response", 100),), False,
)  # fmt: skip
TIMING = ScanTiming(0.0001, 0.00005, 0.1, 100.0, 200.0, 0, 1, 9000.0, 10.0, 1)
TCP = ScanResult("syn", (TCP_A, TCP_B), 100, 2, 200, 260, 60, 0.5, TIMING,
                 (("closed", 68), ("filtered", 131), ("open", 1)))  # fmt: skip
UDP_A = HostPorts(
    A,
    (PortResult(A, 53, "open", "udp-response", 61, 0.0003, A),
     PortResult(A, 1100, "open|filtered", "no-response"),
     PortResult(A, 1200, "filtered", "admin-prohibited", 61, 0.0002, A)),
    (("closed", "port-unreach", 2), ("filtered", "admin-prohibited", 1),
     ("open", "udp-response", 1), ("open|filtered", "no-response", 1)),
    True, 0.0003,
)  # fmt: skip
UDP = ScanResult("udp", (UDP_A,), 5, 1, 5, 6, 1, 1.5, TIMING,
                 (("closed", 2), ("filtered", 1), ("open", 1), ("open|filtered", 1)))  # fmt: skip
TCP_PORTS, UDP_PORTS = list(range(1, 101)), [53, 1100, 1200, 1201, 1202]
RUN = Run("rawprobe scan -p 1-100 --rate 0 198.19.0.5 2001:db8:ff::9", 1796490076.0, "0.1.0")


def json_hosts(results: ScanResult | list[ScanResult]) -> list[dict[str, Any]]:
    """The ``hosts`` of the scan's JSON document (validated) for these results."""
    return output_check.document(json.dumps(scan_document(results)), "scan")["hosts"]


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scan.xml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("kept_closed", [False, True])
def test_a_tcp_scan_is_valid_nmap_xml_that_libnmap_reads_as_the_json_says(
    tmp_path: Path, kept_closed: bool
) -> None:
    result = TCP
    if kept_closed:  # --all: closed ports listed too
        closed = tuple(PortResult(A, p, "closed", "reset", 61) for p in range(23, 91))
        host = dataclasses.replace(TCP_A, ports=tuple(sorted((*TCP_A.ports, *closed),
                                                             key=lambda p: p.port)))  # fmt: skip
        result = dataclasses.replace(TCP, hosts=(host, TCP_B))
    xml = "".join(scan_xml(result, [TCP_PORTS], RUN, RUN.started_s + 0.5))
    assert dtd_errors(written(tmp_path, xml)) == ""
    view = libnmap_view(xml)
    assert view == json_view(json_hosts(result))
    assert view[A][0] is True and view[B][0] is False  # the host states
    report = NmapParser.parse_fromstring(xml)
    assert (report.hosts_total, report.hosts_up, report.scan_type) == (2, 1, "syn")
    assert report.hosts[0].get_open_ports() == [(22, "tcp")]
    assert '<scaninfo type="syn" protocol="tcp" numservices="100" services="1-100"/>' in xml
    assert '<status state="up" reason="syn-ack" reason_ttl="61"/>' in xml
    assert '<status state="down" reason="no-response" reason_ttl="0"/>' in xml
    assert '<address addr="2001:db8:ff::9" addrtype="ipv6"/>' in xml


def test_reasons_are_nmaps_words_and_a_router_that_answered_is_named(tmp_path: Path) -> None:
    xml = "".join(scan_xml(TCP, [TCP_PORTS], RUN, RUN.started_s + 0.5))
    assert (
        '<port protocol="tcp" portid="1500"><state state="filtered" reason="host-unreach"'
        ' reason_ttl="63" reason_ip="198.18.3.2"/>'
    ) in xml
    assert "host-unreachable" not in xml
    assert '<extraports state="closed" count="68">\n<extrareasons reason="reset" count="68"' in xml


def test_tcp_and_udp_in_one_file_with_a_scaninfo_each(tmp_path: Path) -> None:
    xml = "".join(scan_xml([TCP, UDP], [TCP_PORTS, UDP_PORTS], RUN, RUN.started_s + 2))
    assert dtd_errors(written(tmp_path, xml)) == ""
    assert (
        '<scaninfo type="udp" protocol="udp" numservices="5" services="53,1100,1200-1202"/>' in xml
    )
    assert libnmap_view(xml) == json_view(json_hosts([TCP, UDP]))
    # One extraports per state, its reasons by protocol (nmap's layout).
    assert re.search(
        r'<extraports state="closed" count="70">\n<extrareasons reason="reset" count="68"'
        r' proto="tcp"/>\n<extrareasons reason="port-unreach" count="2" proto="udp"/>',
        xml,
    )
    ports = [
        (s.protocol, s.port, s.state) for s in NmapParser.parse_fromstring(xml).hosts[0].services
    ]
    assert ("udp", 1100, "open|filtered") in ports and ports.index(("udp", 53, "open")) > 10


def test_open_only_leaves_out_hosts_without_one_and_names_the_summarised_ports(
    tmp_path: Path,
) -> None:
    xml = "".join(scan_xml(TCP, [TCP_PORTS], RUN, RUN.started_s + 0.5, only_open=True))
    assert dtd_errors(written(tmp_path, xml)) == ""
    assert [h.address for h in NmapParser.parse_fromstring(xml).hosts] == [A]
    assert '<hosts up="1" down="1" total="2"/>' in xml  # still counted
    assert (
        '<extraports state="filtered" count="31">\n'
        '<extrareasons reason="no-response" count="30" proto="tcp" ports="1000-1029"/>\n'
        '<extrareasons reason="host-unreach" count="1" proto="tcp" ports="1500"/>\n'
    ) in xml


@pytest.mark.parametrize("stopped", ["interrupted", "outage"])
def test_a_run_stopped_short_ends_with_exit_error(tmp_path: Path, stopped: str) -> None:
    if stopped == "interrupted":
        xml = "".join(scan_xml(TCP, [TCP_PORTS], RUN, RUN.started_s + 1, interrupted=True))
        reason = 'errormsg="rawprobe interrupted: 200 of 200 ports decided'
    else:
        cut = dataclasses.replace(TCP, incomplete_reason="outage: no answer for 5.0 s")
        xml = "".join(scan_xml(cut, [TCP_PORTS], RUN, RUN.started_s + 1))
        reason = 'errormsg="scan incomplete: outage: no answer for 5.0 s"'
    assert dtd_errors(written(tmp_path, xml)) == ""
    assert 'exit="error"' in xml and reason in xml


def test_any_command_line_makes_a_valid_file(tmp_path: Path) -> None:
    run = Run('rawprobe scan --exclude "a<b" -oX - x&y \x01 --', RUN.started_s, '0.1"<')
    xml = "".join(scan_xml(TCP, [TCP_PORTS], run, run.started_s))
    assert dtd_errors(written(tmp_path, xml)) == ""
    comment = xml.split("<!--", 1)[1].split("-->", 1)[0]
    assert "--" not in comment  # nmap's escape: -&#45;
    assert (
        NmapParser.parse_fromstring(xml).commandline
        == 'rawprobe scan --exclude "a<b" -oX - x&y  --'
    )


def test_port_ranges_fold_runs() -> None:
    assert port_ranges([5, 1, 2, 3, 9, 10, 22, 3]) == "1-3,5,9-10,22"
    assert port_ranges([65535]) == "65535" and port_ranges([]) == ""


def test_normal_output_is_the_report_between_nmaps_comment_lines() -> None:
    lines = normal_output(TCP, RUN, RUN.started_s + 0.5)
    started = time.ctime(RUN.started_s)  # (nmap's way: local time, ctime's layout)
    assert lines[0] == f"# rawprobe scan initiated {started} as: {RUN.command_line}"
    assert lines[1:-1] == scan_report(TCP)[:-1]
    assert re.fullmatch(
        r"# rawprobe done at \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"
        r" -- 2 IP addresses \(1 host up\)"
        r" scanned in 0\.50 seconds",
        lines[-1],
    )


def test_a_sweeps_xml_is_what_nmap_sn_writes(tmp_path: Path) -> None:
    run = Run("rawprobe sweep 198.19.0.0/29", RUN.started_s, "0.1.0")
    xml = sweep_xml_head(run)
    xml += sweep_xml_host("198.19.0.5", "echo-reply", 61)
    xml += sweep_xml_host("2001:db8:ff::5", "port-unreachable", None)
    xml += sweep_xml_tail(run.started_s + 1.2, 1.2, (2, 8))
    assert dtd_errors(written(tmp_path, xml)) == ""
    report = NmapParser.parse_fromstring(xml)
    assert [(h.address, h.status) for h in report.hosts] == [
        ("198.19.0.5", "up"), ("2001:db8:ff::5", "up"),
    ]  # fmt: skip
    assert (report.hosts_total, report.hosts_up, report.hosts_down) == (8, 2, 6)
    assert "<scaninfo" not in xml and 'reason="port-unreach" reason_ttl="0"' in xml
