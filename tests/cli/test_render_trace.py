"""Trace rendering: traceroute's hop lines, the mtr table and report, the JSON shape."""

from __future__ import annotations

from dataclasses import replace

import output_check
from rich.console import Console

from rawprobe.cli import render_trace
from rawprobe.probes.trace_models import (
    BlackHole,
    HopStats,
    PathStats,
    QuoteRewrite,
    TraceHop,
    TraceResponse,
    TraceResult,
)
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


def truth_trace() -> TraceResult:
    """r2 limits its errors (7 of 10 lost), the hops after it answer all; a NAT before
    hop 3 left the quotes rewritten."""
    nat = (
        QuoteRewrite("source", "198.18.1.2", "198.18.3.1"),
        QuoteRewrite("checksum", 0x3667, 0x3468),
    )
    end = TraceResponse("198.19.0.5", 0.001, "unreachable", 3, 3, 61, 1, "", True, True,
                        rewrites=nat)  # fmt: skip
    hops = (
        TraceHop(1, (response("198.18.1.1", 0.001),) * 10, 10),
        TraceHop(2, (response("198.18.2.2", 0.001),) * 3 + (None,) * 7, 10),
        TraceHop(3, (response("198.18.3.2", 0.001, rewrites=nat),) * 10, 10),
        TraceHop(4, (end,) * 10, 10),
    )
    return TraceResult("t", "198.19.0.5", "udp", "198.18.1.2", True, (1, 2), 1, 30, hops,
                       True, 0.01, 40, 60)  # fmt: skip


def test_a_trace_says_which_loss_is_rate_limiting_and_where_the_nat_is() -> None:
    result = truth_trace()
    lines = render_trace.trace_lines(result)
    assert lines[4] == (
        "hop 2 (198.18.2.2) (rate-limited): 7 of 10 probes unanswered here, 0 of 20 after it: "
        "the router limits its ICMP errors, the traffic passes"
    )
    assert lines[5] == (
        "NAT before hop 3 (198.18.3.2): quoted source 198.18.1.2 -> 198.18.3.1, "
        "checksum 0x3667 -> 0x3468"
    )
    data = render_trace.trace_data(result)
    assert [h["rate_limited"] for h in data["hops"]] == [False, True, False, False]
    assert data["nat"] == {"ttl": 3, "address": "198.18.3.2", "hostname": None, "rewrites": [
        {"field": "source", "sent": "198.18.1.2", "quoted": "198.18.3.1"},
        {"field": "checksum", "sent": 0x3667, "quoted": 0x3468},
    ]}  # fmt: skip
    assert data["hops"][2]["responses"][0]["rewrites"] == data["nat"]["rewrites"]
    console = Console(width=200, record=True)
    console.print(render_trace.trace_table(result))
    text = console.export_text()
    assert "(rate-limited)" in text and "NAT before: source 198.18.1.2 -> 198.18.3.1" in text


def stats(ttl: int, address: str, sent: int, received: int, **kw: object) -> HopStats:
    return HopStats(ttl, (address,), sent, received, 0.001, 0.001, 0.001, 0.001, 0.0, **kw)  # type: ignore[arg-type]


def test_live_report_and_json_show_each_path_and_the_marks() -> None:
    rows = [stats(1, "198.18.1.1", 40, 40, flows=(1, 2, 3, 4)),
            stats(2, "198.18.2.2", 20, 20, flows=(1, 3)),
            stats(2, "198.18.3.2", 20, 20, flows=(2, 4)),
            stats(3, "198.18.4.2", 40, 36, flows=(1, 2, 3, 4))]  # fmt: skip
    lossy = PathStats((1, 3), (rows[0], rows[1], stats(3, "198.18.4.2", 20, 16, flows=(1, 3))))
    clean = PathStats((2, 4), (rows[0], rows[2], stats(3, "198.18.4.2", 20, 20, flows=(2, 4))))
    lines = render_trace.report_lines("198.19.0.5", rows, paths=[lossy, clean])
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == [
        "HOST:",
        "path",
        "path",
    ]
    assert "path 1/2: 2 flows" in lines[5] and lines[8].split()[1:3] == ["198.18.4.2", "20.0%"]
    assert lines[12].split()[1:3] == ["198.18.4.2", "0.0%"]
    data = render_trace.live_data("198.19.0.5", "198.19.0.5", 10, rows, paths=[lossy, clean])
    assert data["flows"] == [1, 3, 2, 4] and data["nat"] is None
    assert [p["flows"] for p in data["paths"]] == [[1, 3], [2, 4]]
    assert [h["loss"] for h in data["paths"][0]["hops"]] == [0, 0, 0.2]
    limited = [stats(1, "198.18.1.1", 10, 10), stats(2, "198.18.2.2", 10, 3, rate_limited=True),
               stats(3, "198.19.0.5", 10, 10)]  # fmt: skip
    lines = render_trace.report_lines("198.19.0.5", limited)
    assert "198.18.2.2 (rate-limited)" in lines[2] and lines[-1] == render_trace.RATE_LIMITED_NOTE
    assert render_trace.live_data("t", "198.19.0.5", 1, limited)["hops"][1]["rate_limited"]
    console = Console(width=160, record=True)
    console.print(render_trace.live_table("t", "198.19.0.5", 10, rows, paths=[lossy, clean]))
    text = console.export_text()
    assert "4 flows · 2 paths" in text and "path 1/2: 2 flows" in text and "20.0%" in text


# -- path MTU traces (trace --mtu) -------------------------------------------------------


def exceeded(address: str, rtt_s: float, hops_back: int) -> TraceResponse:
    """Time exceeded from a Linux router ``hops_back`` hops away (its TTL was 64)."""
    return TraceResponse(address, rtt_s, "time-exceeded", 11, 0, 65 - hops_back, 1)


def mtu_result(**kw: object) -> TraceResult:
    """The mtu topology's trace: router 2 says "too big, 1400" for TTL 3."""
    too_big = TraceResponse("198.18.2.2", 0.000016, "unreachable", 3, 4, 63, 1, "!F-1400", mtu=1400)
    done = TraceResponse(
        "198.19.0.5", 0.000057, "unreachable", 3, 3, 61, terminal=True, reached=True
    )
    hops = (
        TraceHop(1, (exceeded("198.18.1.1", 0.000067, 1),), 2),
        TraceHop(2, (exceeded("198.18.2.2", 0.00003, 2),), 2),
        TraceHop(3, (too_big, exceeded("198.18.3.2", 0.000025, 3)), 4, mtu=1400),
        TraceHop(4, (done,), 2),
    )
    fields: dict[str, object] = {"interface_mtu": 1500, "path_mtu": 1400, **kw}
    return TraceResult(
        "198.19.0.5", "198.19.0.5", "udp", "198.18.1.2", True, (40000, 33434), 1, 30, hops,
        True, 0.01, 10, 1500, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_mtu_lines_are_tracepaths() -> None:
    """tracepath -n's layout, seen in the lab: pmtu lines at the hop where it drops,
    and the Resume line (the trailing blanks tracepath leaves are not kept)."""
    result = mtu_result()
    assert render_trace.trace_banner(result) == " 1?: [LOCALHOST]                      pmtu 1500"
    assert render_trace.trace_lines(result) == [
        " 1:  198.18.1.1                                            0.067ms",
        " 2:  198.18.2.2                                            0.030ms",
        " 3:  198.18.2.2                                            0.016ms pmtu 1400",
        " 3:  198.18.3.2                                            0.025ms",
        " 4:  198.19.0.5                                            0.057ms reached",
        "     Resume: pmtu 1400 hops 4 back 4",
    ]


def test_a_black_hole_is_said_on_its_hop_and_after_the_resume() -> None:
    result = mtu_result(black_hole=BlackHole(3, 1400, 1401))
    hops = list(result.hops)
    hops[2] = TraceHop(3, (exceeded("198.18.3.2", 0.000021, 3),), 40, mtu=1400)
    lines = render_trace.trace_lines(replace(result, hops=tuple(hops)))
    assert lines[2] == " 3:  198.18.3.2" + " " * 44 + "0.021ms pmtu 1400"
    assert lines[-1] == "     Black hole at hop 3: 1401 bytes vanish (no ICMP error), 1400 pass"
    console = Console(width=160, record=True)
    console.print(render_trace.trace_table(replace(result, hops=tuple(hops))))
    text = console.export_text()
    assert "pmtu 1400" in text and "black hole at hop 3: 1401 bytes vanish" in text


def test_silence_asymmetry_and_too_many_hops_are_tracepaths_words() -> None:
    silent = TraceHop(5, (None,), 6)
    far = TraceHop(6, (exceeded("198.18.9.9", 0.001, 5),), 2)  # back 5, not 6
    result = replace(mtu_result(), hops=(silent, far), max_ttl=6, reached=False, path_mtu=1500)
    assert render_trace.trace_lines(result) == [
        " 5:  no reply",
        " 6:  198.18.9.9                                            1.000ms asymm  5",
        "     Too many hops: pmtu 1500",
        "     Resume: pmtu 1500",
    ]


def test_mtu_json_fields() -> None:
    data = part(render_trace.trace_data(mtu_result(black_hole=BlackHole(3, 1400, 1401))))
    assert (data["interface_mtu"], data["path_mtu"]) == (1500, 1400)
    assert data["black_hole"] == {"ttl": 3, "passes": 1400, "drops": 1401}
    assert [h["mtu"] for h in data["hops"]] == [None, None, 1400, None]  # where it drops
    assert part(render_trace.trace_data(mtu_result()))["black_hole"] is None
    plain = part(render_trace.trace_data(replace(mtu_result(), interface_mtu=None, path_mtu=None)))
    assert (plain["interface_mtu"], plain["path_mtu"], plain["black_hole"]) == (None, None, None)


def part(trace: dict[str, object]) -> dict[str, object]:
    """One trace, checked against the shipped schema's ``trace`` definition."""
    checked: dict[str, object] = output_check.part(trace, "trace", "trace")
    return checked
