"""Pure rendering of multipath (MDA) traces: plain lines (interfaces per TTL, each with
its next hops), a rich table, JSON data and Graphviz.

Nothing here prints, resolves names or reads a clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from rawprobe.cli.render import family, header
from rawprobe.cli.render_trace import _host, _response_data, run_data, trace_summary
from rawprobe.probes.trace_models import MultipathResult, TraceResponse

Names = Mapping[str, str]

__all__ = ["mda_banner", "mda_data", "mda_document", "mda_dot", "mda_lines", "mda_table"]


class _Row:
    """One interface at one TTL: its first answer, its flows, its next hops."""

    __slots__ = ("address", "first", "flows", "nexts", "ttl")

    def __init__(self, ttl: int, address: str | None) -> None:
        self.ttl = ttl
        self.address = address
        self.first: TraceResponse | None = None
        self.flows = 0
        self.nexts: dict[str | None, int] = {}  # next hop -> flows on the link


def _rows(result: MultipathResult) -> list[_Row]:
    """Interfaces by TTL, in numeric order (silent flows last), each with its next hops
    in numeric order."""
    rows: dict[tuple[int, str | None], _Row] = {}
    for hop in result.hops:
        for index, probe in enumerate(hop.probes):
            if index in hop.pending:
                continue  # (cut short: not decided)
            address = probe.address if probe is not None else None
            row = rows.setdefault((hop.ttl, address), _Row(hop.ttl, address))
            row.flows += 1
            if row.first is None:
                row.first = probe
    for link in sorted(result.links, key=lambda link: _order(link.to)):
        source = rows.get((link.ttl, link.source))
        if source is not None:
            source.nexts[link.to] = source.nexts.get(link.to, 0) + len(link.flows)
    return sorted(rows.values(), key=lambda r: (r.ttl, _order(r.address)))


def _order(address: str | None) -> tuple[int, int, int]:
    """Addresses in numeric order, IPv4 first; silence (``*``) last."""
    if address is None:
        return (2, 0, 0)
    parsed = ipaddress.ip_address(address)
    return (0, parsed.version, int(parsed))


def _name(address: str | None, names: Names | None) -> str:
    return "*" if address is None else _host(address, names)


def _note(row: _Row) -> str:
    first = row.first
    if first is None:
        return ""
    if first.reached:
        return "(destination)" + (f" {first.annotation}" if first.annotation else "")
    return first.annotation or ""


def mda_banner(result: MultipathResult) -> str:
    """The first line of a trace's block."""
    return (
        f"multipath trace to {result.target} ({result.address}), {result.max_ttl} hops max, "
        f"{result.method}, {result.confidence}% confidence"
    )


def _summary(result: MultipathResult) -> str:
    interfaces = len(result.nodes)
    text = (
        f"{interfaces} interfaces, {len(result.links)} links, {result.probes_sent} probes, "
        f"{result.elapsed_s:.2f} s"
    )
    if not result.finished:
        return f"{text} (interrupted)"
    if result.complete:
        return f"{text}: every interface found with {result.confidence}% confidence"
    reasons = []
    if not result.reached:
        reasons.append("the destination did not answer")
    if not result.rule_met:
        reasons.append("the rule was not met everywhere (probe budget, max TTL or a silent tail)")
    return f"{text}: incomplete: {'; '.join(reasons)}"


def mda_lines(result: MultipathResult, names: Names | None = None) -> list[str]:
    """``mda_banner``, a line per interface (TTL, address, first RTT, next hops), and a
    summary line."""
    lines = [mda_banner(result)]
    rows = _rows(result)
    width = max((len(_name(r.address, names)) for r in rows), default=1)
    previous = None
    for row in rows:
        ttl = f"{row.ttl:2d}" if row.ttl != previous else "  "
        previous = row.ttl
        host = _name(row.address, names)
        rtt = f"{row.first.rtt_s * 1000:.3f} ms" if row.first is not None else "*"
        parts = [f"{ttl}  {host:<{width}}  {rtt:>10}"]
        if row.nexts:
            parts.append(" -> " + ", ".join(_name(a, names) for a in row.nexts))
        note = _note(row)
        if note:
            parts.append(f"  {note}")
        lines.append("".join(parts).rstrip())
    lines.append(_summary(result))
    return lines


def mda_table(result: MultipathResult, names: Names | None = None) -> Table:
    """A rich table for one trace (TTY output)."""
    state = "[green]reached[/]" if result.reached else "[red]not reached[/]"
    if not result.finished:
        state += " · [yellow]interrupted[/]"
    table = Table(
        title=f"{result.target} ({result.address}) · {result.method} · MDA "
        f"{result.confidence}% · {state}",
        caption=_summary(result),
        title_justify="left",
        caption_justify="left",
    )
    for column, justify in (("hop", "right"), ("interface", "left"), ("rtt ms", "right"),
                            ("flows", "right"), ("next hops (flows)", "left"),
                            ("note", "left")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    previous = None
    for row in _rows(result):
        ttl = str(row.ttl) if row.ttl != previous else ""
        previous = row.ttl
        host = _name(row.address, names) if row.address else "[dim]*[/]"
        rtt = f"{row.first.rtt_s * 1000:.3f}" if row.first is not None else "*"
        nexts = "\n".join(f"{_name(a, names)} ({n})" for a, n in row.nexts.items())
        table.add_row(ttl, host, rtt, str(row.flows), nexts, _note(row))
    return table


def mda_data(result: MultipathResult, names: Names | None = None) -> dict[str, Any]:
    """One trace of the JSON document (``mda_trace`` in cli/output_schema.py): the
    trace's fields, a hop per TTL whose ``responses`` hold one answer per interface
    seen there, and the links with their flow ids."""
    hops = []
    for hop in result.hops:
        first: dict[str, TraceResponse] = {}
        for probe in hop.responses:
            first.setdefault(probe.address, probe)
        answered = len(hop.responses)
        hops.append(
            {
                "ttl": hop.ttl,
                "sent": hop.sent,
                "flows": len(hop.probes),
                "lost": len(hop.probes) - answered - len(hop.pending),
                "pending": len(hop.pending),
                "rtt_source": hop.rtt_source,
                "responses": [_response_data(p, names) for p in first.values()],
            }
        )
    return {
        "target": result.target,
        "address": result.address,
        "family": family(result.address),
        "method": result.method,
        "source": result.source,
        "confidence": result.confidence,
        "reached": result.reached,
        "complete": result.complete,
        "rule_met": result.rule_met,
        **run_data(result),
        "hops": hops,
        "links": [
            {"ttl": link.ttl, "from": link.source, "to": link.to, "flows": list(link.flows)}
            for link in result.links
        ],
    }


def mda_document(
    results: Sequence[MultipathResult],
    names: Names | None = None,
    *,
    interrupted: bool = False,
    sockets: str = "raw",
    counters: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """``{"schema": "rawprobe/2", "command": "trace", "mode": "mda", "traces": [...],
    "summary": {...}}`` (the summary is a Paris trace document's; ``counters``: the
    transport's)."""
    summary = trace_summary(results, interrupted=interrupted, sockets=sockets, counters=counters)
    return {
        **header("trace"),
        "mode": "mda",
        "traces": [mda_data(r, names) for r in results],
        "summary": summary,
    }


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mda_dot(results: Sequence[MultipathResult], names: Names | None = None) -> str:
    """Graphviz: one cluster per trace, an interface per node (one node however many
    TTLs it answered at), an edge per link labelled with its number of flows."""
    lines = ["digraph multipath {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for index, result in enumerate(results):

        def node(ttl: int, address: str | None, index: int = index) -> str:
            return _quoted(f"{index}:{address}" if address is not None else f"{index}:*{ttl}")

        title = f"{result.target} ({result.address}) {result.method} {result.confidence}%"
        lines += [f"  subgraph cluster_{index} {{", f"    label={_quoted(title)};"]
        source = _quoted(f"{index}:source")
        lines.append(f"    {source} [label={_quoted(result.source)}, shape=ellipse];")
        declared: set[str] = set()
        for row in _rows(result):
            ident = node(row.ttl, row.address)
            if ident in declared:
                continue
            declared.add(ident)
            label = _name(row.address, names)
            shape = ", shape=doubleoctagon" if row.first is not None and row.first.reached else ""
            lines.append(f"    {ident} [label={_quoted(label)}{shape}];")
            if row.ttl == result.first_ttl:
                lines.append(f"    {source} -> {ident};")
        edges: dict[tuple[str, str], int] = {}
        for link in result.links:
            edge = (node(link.ttl, link.source), node(link.ttl + 1, link.to))
            edges[edge] = edges.get(edge, 0) + len(link.flows)
        for (tail, head), flows in edges.items():
            lines.append(f'    {tail} -> {head} [label="{flows}"];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
