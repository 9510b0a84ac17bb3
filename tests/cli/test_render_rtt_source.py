"""``rtt_source`` in the output: a plain field per ping host and per trace hop in JSON,
and ``-v``'s line (which send stamp the RTTs used: transport/txstamps.py)."""

from __future__ import annotations

from rawprobe.cli import render, render_trace
from rawprobe.probes.ping_models import PingReply, PingResult
from rawprobe.probes.trace_models import TraceHop, TraceResponse, TraceResult


def ping_result(*sources: str) -> PingResult:
    replies = tuple(
        PingReply(i + 1, "198.19.0.5", 0.0001, 61, 64, rtt_source=s)  # type: ignore[arg-type]
        for i, s in enumerate(sources)
    )
    return PingResult("198.19.0.5", len(sources) or 1, replies, (), 0.1, 56)


def test_a_ping_hosts_rtt_source_is_a_top_level_field() -> None:
    hosts = render.ping_document(
        [ping_result("kernel", "kernel"), ping_result("kernel", "user"), ping_result()]
    )["hosts"]
    assert [h["rtt_source"] for h in hosts] == ["kernel", "user", None]


def test_a_trace_hops_rtt_source_is_a_top_level_field() -> None:
    def answer(source: str) -> TraceResponse:
        return TraceResponse("198.18.1.1", 0.0001, "time-exceeded", 11, 0, 64, rtt_source=source)  # type: ignore[arg-type]

    hops = (
        TraceHop(1, (answer("kernel"), answer("kernel")), 2),
        TraceHop(2, (answer("kernel"), answer("user")), 2),
        TraceHop(3, (None, None), 2),
    )
    result = TraceResult(
        "t", "198.19.0.5", "icmp", "198.18.1.2", True, (1, 2), 1, 3, hops, False, 0.1, 6, 60
    )
    data = render_trace.trace_document([result])["traces"][0]
    assert [h["rtt_source"] for h in data["hops"]] == ["kernel", "user", None]


def test_the_verbose_line_names_the_stamps_used() -> None:
    kernel = render.rtt_source_line("t", ["kernel", None, "kernel"])
    assert kernel.startswith("rawprobe: t: rtt_source kernel (the kernel stamped both ends")
    assert render.rtt_source_line("t", ["kernel", "user"]).startswith(
        "rawprobe: t: rtt_source user (send stamped in user space"
    )
    assert render.rtt_source_line("t", [None]) == "rawprobe: t: no RTT measured"
