"""Scan rendering: nmap-like text, the JSON document, grepable lines."""

from __future__ import annotations

import dataclasses
import json

import output_check
import pytest

from rawprobe.cli.render_scan import grepable, scan_document, scan_report, write_document
from rawprobe.probes.scan_models import HostPorts, PortResult, ScanResult, ScanTiming

A = "198.19.0.5"
FILTERED = tuple(PortResult(A, p, "filtered", "no-response") for p in range(1000, 1030))
PORTS = (PortResult(A, 22, "open", "syn-ack", 61, 0.0001, A), *FILTERED)
HOST = HostPorts(A, PORTS, (("closed", "reset", 69), ("filtered", "no-response", 30),
                            ("open", "syn-ack", 1)), True, 0.0001)  # fmt: skip
TIMING = ScanTiming(0.0001, 0.00005, 0.1, 100.0, 200.0, 0, 1, 9000.0, 10.0, 1)
RESULT = ScanResult("syn", (HOST,), 100, 1, 100, 130, 30, 0.5, TIMING,
                    (("closed", 69), ("filtered", 30), ("open", 1)))  # fmt: skip


def test_report_lists_open_ports_and_summarises_the_rest() -> None:
    lines = scan_report(RESULT)
    assert "Not shown: 69 closed tcp ports (reset), 30 filtered tcp ports (no-response)" in lines
    assert any(line.startswith("22/tcp") and "open" in line and "ssh" in line for line in lines)
    assert lines[-1].startswith("rawprobe done: 1 IP address (1 host up) scanned in 0.50")
    assert sum(line.startswith("1000/tcp") for line in scan_report(RESULT, show_all=True)) == 1
    reason = scan_report(RESULT, reason=True)
    assert any("syn-ack ttl 61" in line for line in reason)


def test_json_lists_open_and_filtered_ports_and_counts_closed() -> None:
    document = output_check.document(json.dumps(scan_document(RESULT)))
    assert document["schema"] == "rawprobe/2" and document["command"] == "scan"
    (host,) = document["hosts"]
    assert host["state"] == "up" and document["summary"]["hosts_up"] == 1
    assert host["closed"] == 69 and len(host["ports"]) == 31
    assert host["ports"][0] == {"port": 22, "protocol": "tcp", "state": "open",
                                "reason": "syn-ack", "ttl": 61, "rtt_ms": 0.1,
                                "source": A, "tries": 1}  # fmt: skip


def test_grepable_has_nmap_shape() -> None:
    lines = grepable(RESULT, "rawprobe scan x", "then", "now")
    assert lines[1] == f"Host: {A} ()\tStatus: Up"
    assert lines[2].startswith(f"Host: {A} ()\tPorts: 22/open/tcp//ssh///, 1000/filtered/tcp//")
    assert lines[2].endswith("\tIgnored State: closed (69)")


@pytest.mark.parametrize("indent", [2, 4, None])
@pytest.mark.parametrize("hosts", [(), (HOST,), (HOST, HOST, HOST)])
def test_the_streamed_document_is_the_document(
    hosts: tuple[HostPorts, ...], indent: int | None
) -> None:
    """The CLI writes big documents host by host; the text must be json.dumps's."""
    result = dataclasses.replace(RESULT, hosts=hosts)
    document = scan_document(result)
    pieces: list[str] = []
    head = scan_document(result, with_hosts=False)
    write_document(head, "hosts", document["hosts"], pieces.append, indent=indent)
    assert "".join(pieces) == json.dumps(document, indent=indent) + "\n"
