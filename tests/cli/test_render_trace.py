"""Trace rendering: traceroute's hop lines, the mtr table and report, the JSON shape."""

from __future__ import annotations

from rich.console import Console

from rawprobe.cli import render_trace
from rawprobe.probes.models import HopStats, TraceHop, TraceResponse, TraceResult
from rawprobe.transport.wire.icmpext import MplsLabel


def response(address: str, rtt_s: float, **kw: object) -> TraceResponse:
    return TraceResponse(address, rtt_s, "time-exceeded", 11, 0, 64, 1, **kw)  # type: ignore[arg-type]


def test_hop_line_is_traceroutes() -> None:
    hop = TraceHop(2, (response("10.0.0.1", 0.0004), None, response("10.0.0.2", 0.0012)), 3)
    assert render_trace.hop_line(hop) == " 2  10.0.0.1  0.400 ms * 10.0.0.2  1.200 ms"
    assert render_trace.hop_line(TraceHop(13, (None, None, None), 9)) == "13  * * *"
    marked = response("10.0.0.9", 0.001, annotation="!X", mpls=(MplsLabel(16005, 0, True, 1),))
    line = render_trace.hop_line(TraceHop(3, (marked,), 1), {"10.0.0.9": "r9.lab"})
    assert line == " 3  r9.lab (10.0.0.9)  1.000 ms <MPLS:L=16005,E=0,S=1,T=1> !X"


def test_json_hops_end_at_the_destination() -> None:
    done = TraceResponse("198.19.0.5", 0.001, "echo-reply", 0, 0, 61, terminal=True, reached=True)
    result = TraceResult(
        "t", "198.19.0.5", "icmp", "198.18.1.2", True, (1, 2), 1, 30,
        (TraceHop(1, (response("198.18.1.1", 0.001),), 1), TraceHop(2, (done,), 1)),
        True, 0.01, 2, 60,
    )  # fmt: skip
    data = render_trace.trace_document([result])["traces"][0]
    assert data["reached"] and data["destination_ttl"] == 2
    assert [h["ttl"] for h in data["hops"]] == [1, 2]
    assert data["hops"][0]["responses"][0] | {"rtt_ms": 1.0} == data["hops"][0]["responses"][0]


def test_live_table_and_report_have_mtr_columns() -> None:
    rows = [HopStats(1, ("198.18.1.1",), 10, 9, 0.0001, 0.0002, 0.0001, 0.0004, 0.00005),
            HopStats(2, (), 10, 0, None, None, None, None, None)]  # fmt: skip
    console = Console(width=120, record=True)
    console.print(render_trace.live_table("t", "198.19.0.5", 10, rows))
    text = console.export_text()
    for column in ("Hop", "Host", "Loss%", "Snt", "Last", "Avg", "Best", "Wrst", "StDev"):
        assert column in text
    assert "10.0%" in text and "100.0%" in text and "???" in text
    lines = render_trace.report_lines("198.19.0.5", rows)
    assert lines[0].startswith("HOST: 198.19.0.5") and lines[0].endswith("StDev")
    assert lines[1].split() == ["1.|--", "198.18.1.1", "10.0%", "10", "0.1", "0.2", "0.1", "0.4",
                                "0.1"]  # fmt: skip
