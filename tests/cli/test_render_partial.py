"""Rendering of what an interrupted run decided, and of uniform scans (nmap's ``All N
scanned ports on X are filtered``); the sweep's summary line is never wrapped."""

from __future__ import annotations

import json

import output_check
import pytest
from rich.console import Console

from rawprobe.cli import render_scan, render_trace, sweep_cmd
from rawprobe.probes.scan_models import HostPorts, PortResult, ScanResult, ScanTiming
from rawprobe.probes.trace_models import TraceHop, TraceResponse, TraceResult

A = "198.19.0.5"
TIMING = ScanTiming(0.0001, 0.00005, 0.1, 100.0, 200.0, 0, 1, 9000.0, 10.0, 1)


def scan(counts: tuple[tuple[str, str, int], ...], ports: tuple[PortResult, ...] = (),
         up: bool = False, decided: int = 500) -> ScanResult:  # fmt: skip
    host = HostPorts(A, ports, counts, up, 0.0001 if up else None)
    return ScanResult("syn", (host,), 500, 1, decided, decided, 0, 1.0, TIMING)


def test_every_port_filtered_is_said_as_nmap_says_it() -> None:
    filtered = tuple(PortResult(A, p, "filtered", "no-response") for p in range(1000, 1500))
    lines = render_scan.scan_report(scan((("filtered", "no-response", 500),), filtered))
    assert lines[:3] == [
        f"rawprobe scan report for {A}",
        "No answer from the host itself.",
        f"All 500 scanned ports on {A} are filtered",
    ]
    assert not any(line.startswith("Not shown") for line in lines)
    assert lines[-1].startswith("rawprobe done: 1 IP address (0 hosts up)")


def test_every_port_closed_is_said_too_but_listed_ports_win() -> None:
    lines = render_scan.scan_report(scan((("closed", "reset", 500),), up=True))
    assert f"All 500 scanned ports on {A} are closed" in lines
    closed = tuple(PortResult(A, p, "closed", "reset") for p in range(1, 501))
    listed = render_scan.scan_report(scan((("closed", "reset", 500),), closed, True), show_all=True)
    assert not any(line.startswith("All ") for line in listed)  # --all lists them
    mixed = scan((("closed", "reset", 499), ("open", "syn-ack", 1)),
                 (PortResult(A, 22, "open", "syn-ack"),), True)  # fmt: skip
    assert not any(line.startswith("All ") for line in render_scan.scan_report(mixed))


def test_an_interrupted_scan_says_so_before_its_closing_line() -> None:
    partial = scan((("closed", "reset", 120),), up=True, decided=120)
    lines = render_scan.scan_report(partial, interrupted=True)
    assert (
        lines[-2] == "rawprobe interrupted: 120 of 500 ports decided (380 undecided, not reported)"
    )
    assert f"All 120 scanned ports on {A} are closed" in lines
    assert not any("interrupted" in line for line in render_scan.scan_report(partial))
    grepable = render_scan.grepable(partial, "rawprobe scan", "then", "now", interrupted=True)
    assert grepable[-2] == "# " + lines[-2] and grepable[-1].startswith("# rawprobe done at")


def _trace(hops: tuple[TraceHop, ...], finished: bool) -> TraceResult:
    return TraceResult("t", A, "icmp", "198.18.1.2", True, (1, 2), 1, 30, hops, False,
                       1.0, 6, 60, finished=finished)  # fmt: skip


def test_queries_still_awaited_show_as_question_marks_not_stars() -> None:
    answered = TraceResponse("198.18.1.1", 0.001, "time-exceeded", 11, 0, 64, 1)
    hops = (TraceHop(1, (answered, None), 2), TraceHop(2, (None, None), 2, pending=(1,)))
    assert render_trace.hop_line(hops[1]) == " 2  * ?"
    lines = render_trace.trace_lines(_trace(hops, finished=False))
    assert lines == [" 1  198.18.1.1  1.000 ms *", " 2  * ?",
                     "(interrupted after hop 2: 6 probes sent)"]  # fmt: skip
    assert render_trace.trace_lines(_trace(hops[:1], finished=True)) == [lines[0]]
    document = render_trace.trace_document([_trace(hops, False)], interrupted=True)
    data = output_check.document(json.dumps(document), "trace")
    assert data["summary"]["interrupted"] and not data["traces"][0]["finished"]
    assert [(h["lost"], h["pending"]) for h in data["traces"][0]["hops"]] == [(1, 0), (1, 1)]
    table = Console(width=120, record=True)
    table.print(render_trace.trace_table(_trace(hops, False)))
    assert "interrupted" in table.export_text()


def test_the_sweep_summary_says_what_an_interruption_left_undecided() -> None:
    line = sweep_cmd.sweep_summary((3, 2, 254), 6, 1.5, 1, 0, interrupted=True)
    assert line.startswith("3 of 254 hosts up, 6 probes in 1.50 s (4 probes/s, 1 workers)")
    assert line.endswith("; interrupted: 5 hosts decided (2 down), 249 undecided")
    assert "interrupted" not in sweep_cmd.sweep_summary((3, 2, 254), 6, 1.5, 1, 0, False)


def test_the_sweep_summary_is_one_line_in_a_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = "x" * 150 + " " + "y" * 150
    sweep_cmd._summary(line)
    assert capsys.readouterr().err == line + "\n"  # not wrapped at 80 columns


def test_json_and_grepable_on_stdout_together_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rawprobe.cli.app import main

    assert main(["scan", "--json", "-oG", "-", "127.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert "--json and -oG - both write to stdout" in err and "Traceback" not in err
