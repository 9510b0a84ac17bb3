"""Pure rendering of traceroute results: classic plain lines, rich tables, JSON data,
and the mtr-style statistics table (live and report modes).

Nothing here prints, resolves names or reads a clock. ``names`` maps addresses to
reverse-DNS names when the caller looked them up (never in tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from socket import AF_INET, AF_INET6
from typing import TYPE_CHECKING, Any

from rawprobe.cli.render import family, header, ms
from rawprobe.probes.path_truth import nat_hop, path_nat, rate_limited_ttls
from rawprobe.probes.pathmtu import is_too_big
from rawprobe.probes.trace_models import (
    BlackHole,
    HopStats,
    MultipathResult,
    NatHop,
    PathStats,
    QuoteRewrite,
    TraceHop,
    TraceResponse,
    TraceResult,
)
from rawprobe.transport.wire.icmpext import MplsLabel

if TYPE_CHECKING:  # (rich is imported where a table is drawn: not for --json)
    from rich.console import RenderableType
    from rich.table import Table

    from rawprobe.probes.traceroute import LiveTrace

Names = Mapping[str, str]

#: mtr's columns, in its order.
LIVE_COLUMNS = ("Loss%", "Snt", "Last", "Avg", "Best", "Wrst", "StDev")


def _host(address: str, names: Names | None) -> str:
    """``name (address)`` like traceroute when a name is known, else the address."""
    name = names.get(address) if names else None
    return f"{name} ({address})" if name else address


#: The mark of a hop whose loss does not carry on (probes/path_truth.py).
RATE_LIMITED = "(rate-limited)"
RATE_LIMITED_NOTE = (
    f"{RATE_LIMITED}: the hop's loss does not carry on to the later hops: its router "
    "limits (or filters) its ICMP errors; the traffic passes"
)


def nat_text(nat: NatHop, names: Names | None = None) -> str:
    """``NAT before hop 3 (198.18.3.2): quoted source 198.18.1.2 -> 198.18.3.1``."""
    rewrites = ", ".join(str(r) for r in nat.rewrites)
    return f"NAT before hop {nat.ttl} ({_host(nat.address, names)}): quoted {rewrites}"


def rate_limit_text(
    hop: TraceHop, evidence: tuple[int, int, int, int], names: Names | None = None
) -> str:
    """The note of a Paris trace's hop marked rate-limited, with the counts."""
    host = " ".join(_host(a, names) for a in hop.addresses) or "no answer"
    lost, sent, lost_later, sent_later = evidence
    return (
        f"hop {hop.ttl} ({host}) {RATE_LIMITED}: {lost} of {sent} probes unanswered here, "
        f"{lost_later} of {sent_later} after it: the router limits its ICMP errors, "
        "the traffic passes"
    )


def trace_notes(result: TraceResult, names: Names | None = None) -> list[str]:
    """What a trace's loss and quotes really say, one line each (usually none): hops
    that rate-limit their ICMP errors, and a NAT."""
    marked = rate_limited_ttls(result)
    notes = [rate_limit_text(hop, marked[hop.ttl], names) for hop in result.hops
             if hop.ttl in marked]  # fmt: skip
    nat = nat_hop(result)
    if nat is not None:
        notes.append(nat_text(nat, names))
    return notes


def mpls_text(labels: Sequence[MplsLabel]) -> str:
    """traceroute -e's form: ``<MPLS:L=100,E=0,S=1,T=1>`` (entries joined by ``/``)."""
    entries = "/".join(
        f"L={label.label},E={label.tc},S={int(label.bottom)},T={label.ttl}" for label in labels
    )
    return f"<MPLS:{entries}>"


# -- classic plain layout ------------------------------------------------------------


def trace_banner(result_or_target: TraceResult | str, address: str = "", **kw: int) -> str:
    """traceroute's first line: ``traceroute to T (A), 30 hops max, 60 byte packets``
    (a path MTU trace: tracepath's ``[LOCALHOST]`` line)."""
    if isinstance(result_or_target, TraceResult):
        r = result_or_target
        if r.interface_mtu is not None:
            return mtu_banner(r.first_ttl, r.interface_mtu)
        return trace_banner(r.target, r.address, max_ttl=r.max_ttl, packet_size=r.packet_size)
    return (
        f"traceroute to {result_or_target} ({address}), {kw['max_ttl']} hops max, "
        f"{kw['packet_size']} byte packets"
    )


def hop_line(hop: TraceHop, names: Names | None = None) -> str:
    """One hop the way traceroute prints it: `` 2  198.18.2.2  0.040 ms  0.031 ms  *``.

    The address is printed again whenever it changes within the hop (path change)."""
    parts = [f"{hop.ttl:2d} "]
    previous: str | None = None
    for query, probe in enumerate(hop.probes):
        if probe is None:
            parts.append(" ?" if query in hop.pending else " *")  # ?: cut short, undecided
            continue
        if probe.address != previous:
            parts.append(f" {_host(probe.address, names)}")
            previous = probe.address
        parts.append(f"  {probe.rtt_s * 1000:.3f} ms")
        if probe.mpls:
            parts.append(f" {mpls_text(probe.mpls)}")
        if probe.annotation:
            parts.append(f" {probe.annotation}")
    return "".join(parts)


def trace_lines(result: TraceResult, names: Names | None = None) -> list[str]:
    """Every hop line of a trace (no banner); a trace cut short ends with
    ``interrupted_line``; then ``trace_notes``. A path MTU trace has tracepath's lines,
    and its summary."""
    if result.interface_mtu is not None:
        lines = [line for hop in result.hops for line in mtu_hop_lines(hop, names)]
        if not result.finished:
            return [*lines, interrupted_line(result)]
        return lines + mtu_summary(result)
    lines = [hop_line(hop, names) for hop in result.hops]
    if not result.finished:
        lines.append(interrupted_line(result))
    return lines + trace_notes(result, names)


def interrupted_line(result: TraceResult) -> str:
    """The last line of a trace cut short: how far it got."""
    probed = f"after hop {result.hops[-1].ttl}" if result.hops else "before any hop"
    return f"(interrupted {probed}: {result.probes_sent} probes sent)"


# -- path MTU (trace --mtu): tracepath's layout ------------------------------------------

#: tracepath's HOST_COLUMN_SIZE: the host field is padded to this width.
_HOST_COLUMN = 52


def mtu_banner(first_ttl: int, interface_mtu: int) -> str:
    """tracepath's first line: `` 1?: [LOCALHOST]                      pmtu 1500``."""
    return f"{first_ttl:2d}?: {'[LOCALHOST]':<32} pmtu {interface_mtu}"


def _return_hops(reply_ttl: int | None) -> int | None:
    """tracepath's guess of the hops an answer came back over (initial TTL 64, 128, 255)."""
    if reply_ttl is None:
        return None
    for initial in (64, 128, 255):
        if reply_ttl <= initial:
            return initial + 1 - reply_ttl
    return None


def _mtu_line(ttl: int, probe: TraceResponse, names: Names | None, note: str) -> str:
    host = _host(probe.address, names)
    padding = " " * max(1, _HOST_COLUMN - len(host))
    micros = round(probe.rtt_s * 1e6)
    return f"{ttl:2d}:  {host}{padding}{micros // 1000:3d}.{micros % 1000:03d}ms {note}".rstrip()


def mtu_hop_lines(hop: TraceHop, names: Names | None = None) -> list[str]:
    """tracepath's lines for one hop of a path MTU trace: one per "too big" error
    (``pmtu N``), then the hop's answer (``reached``, ``asymm N``, a mark such as ``!H``,
    and ``pmtu N`` where the MTU dropped without an error) or ``no reply``."""
    lines: list[str] = []
    answer: TraceResponse | None = None
    for probe in hop.probes:
        if probe is None:
            continue
        family = AF_INET6 if ":" in probe.address else AF_INET
        if is_too_big(family, probe):
            lines.append(_mtu_line(hop.ttl, probe, names, f"pmtu {probe.mtu or hop.mtu}"))
        else:
            answer = probe
    if answer is None:
        return [*lines, f"{hop.ttl:2d}:  {'?' if hop.pending else 'no reply'}"]
    notes = []
    back = _return_hops(answer.reply_ttl)
    if answer.kind == "time-exceeded" and back is not None and back != hop.ttl:
        notes.append(f"asymm {back:2d}")
    if hop.mtu is not None and not lines:
        notes.append(f"pmtu {hop.mtu}")
    if answer.reached:
        notes.append("reached")
    elif answer.annotation:
        notes.append(answer.annotation)
    return [*lines, _mtu_line(hop.ttl, answer, names, " ".join(notes))]


def black_hole_text(hole: BlackHole) -> str:
    """``black hole at hop 3: 1401 bytes vanish (no ICMP error), 1400 pass``."""
    return (
        f"black hole at hop {hole.ttl}: {hole.drops} bytes vanish (no ICMP error), "
        f"{hole.passes} pass"
    )


def mtu_summary(result: TraceResult) -> list[str]:
    """tracepath's last lines (``Too many hops``, ``Resume: pmtu N hops N back N``), and
    the black hole, which tracepath cannot see."""
    lines = []
    destination = result.destination_ttl
    if destination is None and result.hops and result.hops[-1].ttl >= result.max_ttl:
        lines.append(f"     Too many hops: pmtu {result.path_mtu}")
    resume = f"     Resume: pmtu {result.path_mtu}"
    if result.reached and destination is not None:
        resume += f" hops {destination}"
        answers = result.hops[-1].responses
        back = _return_hops(answers[-1].reply_ttl) if answers else None
        if back is not None:
            resume += f" back {back}"
    lines.append(resume)
    if result.black_hole is not None:
        text = black_hole_text(result.black_hole)
        lines.append(f"     {text[0].upper()}{text[1:]}")
    return lines


# -- rich ------------------------------------------------------------------------------


def trace_table(result: TraceResult, names: Names | None = None) -> Table:
    """A rich table for one trace (TTY output)."""
    from rich.table import Table

    state = "[green]reached[/]" if result.reached else "[red]not reached[/]"
    if not result.finished:
        state += " · [yellow]interrupted[/]"
    if result.path_mtu is not None:
        state += f" · pmtu {result.path_mtu}"
    mode = "Paris" if result.paris else "classic"
    table = Table(
        title=f"{result.target} ({result.address}) · {result.method} · {mode} · {state}",
        title_justify="left",
    )
    for name, justify in (("hop", "right"), ("address", "left"), ("rtt ms", "left"),
                          ("note", "left")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    marked = rate_limited_ttls(result)
    nat = nat_hop(result)
    for hop in result.hops:
        truth = [f"[yellow]{RATE_LIMITED}[/]"] if hop.ttl in marked else []
        if nat is not None and nat.ttl == hop.ttl:
            truth.append("[magenta]NAT before: " + ", ".join(map(str, nat.rewrites)) + "[/]")
        if hop.is_silent:
            marks = " ".join("?" if q in hop.pending else "*" for q in range(len(hop.probes)))
            table.add_row(str(hop.ttl), "[dim]*[/]", marks, " ".join(truth))
            continue
        addresses = "\n".join(_host(a, names) for a in hop.addresses)
        rtts = " ".join(
            ("?" if q in hop.pending else "*") if p is None else f"{p.rtt_s * 1000:.3f}"
            for q, p in enumerate(hop.probes)
        )
        notes = sorted({p.annotation for p in hop.responses if p.annotation})
        notes += sorted({mpls_text(p.mpls) for p in hop.responses if p.mpls})
        if hop.mtu is not None:
            notes.append(f"[yellow]pmtu {hop.mtu}[/]")
        if result.black_hole is not None and result.black_hole.ttl == hop.ttl:
            notes.append(f"[red]{black_hole_text(result.black_hole)}[/]")
        table.add_row(str(hop.ttl), addresses, rtts, " ".join(notes + truth))
    if marked:
        table.caption = RATE_LIMITED_NOTE
    return table


# -- JSON --------------------------------------------------------------------------------


def _response_data(probe: TraceResponse, names: Names | None) -> dict[str, Any]:
    return {
        "address": probe.address,
        "hostname": names.get(probe.address) if names else None,
        "rtt_ms": ms(probe.rtt_s),
        "kind": probe.kind,
        "icmp_type": probe.icmp_type,
        "icmp_code": probe.icmp_code,
        "annotation": probe.annotation,
        "reply_ttl": probe.reply_ttl,
        "quoted_ttl": probe.quoted_ttl,
        "mpls": [
            {"label": m.label, "tc": m.tc, "bottom": m.bottom, "ttl": m.ttl} for m in probe.mpls
        ],
        "attempt": probe.attempt,
        "rewrites": _rewrites_data(probe.rewrites) if probe.rewrites else [],
    }


def _rewrites_data(rewrites: Sequence[QuoteRewrite]) -> list[dict[str, Any]]:
    return [{"field": r.field, "sent": r.sent, "quoted": r.quoted} for r in rewrites]


def nat_data(nat: NatHop | None, names: Names | None = None) -> dict[str, Any] | None:
    """``{"ttl", "address", "hostname", "rewrites": [{"field", "sent", "quoted"}]}``, or
    None."""
    if nat is None:
        return None
    return {
        "ttl": nat.ttl,
        "address": nat.address,
        "hostname": names.get(nat.address) if names else None,
        "rewrites": _rewrites_data(nat.rewrites),
    }


def _hop_data(hop: TraceHop, rate_limited: bool, names: Names | None) -> dict[str, Any]:
    responses = hop.responses
    return {
        "ttl": hop.ttl,
        "sent": hop.sent,
        "lost": len(hop.probes) - len(responses) - len(hop.pending),
        "pending": len(hop.pending),
        "rate_limited": rate_limited,
        "rtt_source": hop.rtt_source,
        "responses": [_response_data(p, names) for p in responses],
        "mtu": hop.mtu,
    }


def run_data(result: TraceResult | MultipathResult) -> dict[str, Any]:
    """What every trace's JSON says of its run (``RUN`` in cli/output_schema.py): the
    TTLs, the probes, the time, and whether it ran to its end."""
    return {
        "destination_ttl": result.destination_ttl,
        "first_ttl": result.first_ttl,
        "max_ttl": result.max_ttl,
        "probes_sent": result.probes_sent,
        "elapsed_ms": ms(result.elapsed_s),
        "send_error": result.send_error,
        "finished": result.finished,
    }


def trace_data(result: TraceResult, names: Names | None = None) -> dict[str, Any]:
    """One trace of the JSON document (``interface_mtu``, ``path_mtu``, ``black_hole``
    and each hop's ``mtu``: a path MTU trace's, null in others)."""
    marked = rate_limited_ttls(result)
    data: dict[str, Any] = {
        "target": result.target,
        "address": result.address,
        "family": family(result.address),
        "method": result.method,
        "paris": result.paris,
        "source": result.source,
        "flow": list(result.flow),
        "reached": result.reached,
        "complete": result.complete,
        **run_data(result),
        "nat": nat_data(nat_hop(result), names),
        "hops": [_hop_data(hop, hop.ttl in marked, names) for hop in result.hops],
    }
    hole = result.black_hole
    data["interface_mtu"] = result.interface_mtu
    data["path_mtu"] = result.path_mtu
    data["black_hole"] = None if hole is None else {
        "ttl": hole.ttl, "passes": hole.passes, "drops": hole.drops,
    }  # fmt: skip
    return data


def trace_document(
    results: Sequence[TraceResult],
    names: Names | None = None,
    *,
    interrupted: bool = False,
    sockets: str = "raw",
    counters: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """``{"schema": "rawprobe/2", "command": "trace", "mode": "trace", "traces": [...],
    "summary": {...}}`` (``trace_summary``)."""
    return {
        **header("trace"),
        "mode": "trace",
        "traces": [trace_data(r, names) for r in results],
        "summary": trace_summary(
            results, interrupted=interrupted, sockets=sockets, counters=counters
        ),
    }


def trace_summary(
    results: Sequence[TraceResult | MultipathResult],
    *,
    interrupted: bool,
    sockets: str,
    counters: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A trace document's ``summary`` (Paris, path MTU and MDA traces); ``counters``:
    the transport's (``Counters.as_dict()``)."""
    return {
        "interrupted": interrupted,
        "sockets": sockets,
        "traces_reached": sum(r.reached for r in results),
        # (each query, or MDA flow, is sent once, then once more per retry)
        "retries": sum(max(0, h.sent - len(h.probes)) for r in results for h in r.hops),
        "counters": None if counters is None else dict(counters),
    }


# -- mtr-style statistics ------------------------------------------------------------------


def _cell(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _row_cells(row: HopStats) -> list[str]:
    return [
        f"{row.loss * 100:.1f}%",
        str(row.sent),
        _cell(row.last_s),
        _cell(row.avg_s),
        _cell(row.best_s),
        _cell(row.worst_s),
        _cell(row.stdev_s),
    ]


def _row_host(row: HopStats, names: Names | None) -> str:
    if not row.addresses:
        return "???"
    text = " ".join(_host(a, names) for a in row.addresses)
    if row.annotation:
        text = f"{text} {row.annotation}"
    return f"{text} {RATE_LIMITED}" if row.rate_limited else text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"


def _path_title(index: int, paths: Sequence[PathStats]) -> str:
    """``path 1/2: 3 flows``."""
    return f"path {index + 1}/{len(paths)}: {_count(len(paths[index].flows), 'flow')}"


def live_notes(
    rows: Sequence[HopStats], paths: Sequence[PathStats] = (), names: Names | None = None
) -> list[str]:
    """Lines under a target's statistics: the rate-limit legend when a row is marked,
    and where a NAT shows (on each path when they differ)."""
    notes = []
    marked = any(r.rate_limited for r in rows) or any(h.rate_limited for p in paths for h in p.hops)
    if marked:
        notes.append(RATE_LIMITED_NOTE)
    found = [(index, nat) for index, nat in enumerate(map(path_nat, paths)) if nat]
    if len({nat for _, nat in found}) == 1:
        notes.append(nat_text(found[0][1], names))  # one NAT, whichever the path
    else:
        notes += [f"{nat_text(nat, names)} (on {_path_title(index, paths)})"
                  for index, nat in found]  # fmt: skip
    return notes


def _stats_table(title: str, rows: Sequence[HopStats], names: Names | None) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("Hop", justify="right")
    table.add_column("Host", justify="left")
    for name in LIVE_COLUMNS:
        table.add_column(name, justify="right")
    for row in rows:
        host = _row_host(row, names)
        if row.rate_limited:
            host = host.replace(RATE_LIMITED, f"[yellow]{RATE_LIMITED}[/]")
        table.add_row(f"{row.ttl}.", host, *_row_cells(row))
    return table


def live_table(
    target: str,
    address: str,
    rounds: int,
    rows: Sequence[HopStats],
    names: Names | None = None,
    paths: Sequence[PathStats] = (),
) -> RenderableType:
    """mtr's screen for one target: a row per (TTL, interface) with Loss%, Snt, Last,
    Avg, Best, Wrst, StDev (milliseconds); with several paths, then a table per path
    (its flows only), and the notes (rate limiting, NAT)."""
    name = address if target == address else f"{target} ({address})"
    title = f"{name} · round {rounds}"
    flows = sum(len(p.flows) for p in paths)
    if flows > 1:
        title += f" · {_count(flows, 'flow')} · {_count(len(paths), 'path')}"
    parts: list[RenderableType] = [_stats_table(title, rows, names)]
    if len(paths) > 1:
        for index, path in enumerate(paths):
            parts.append(_stats_table(f"{name} · {_path_title(index, paths)}", path.hops, names))
    parts += live_notes(rows, paths, names)
    from rich.console import Group

    return parts[0] if len(parts) == 1 else Group(*parts)


def report_lines(
    target: str,
    rows: Sequence[HopStats],
    names: Names | None = None,
    host_width: int = 40,
    paths: Sequence[PathStats] = (),
) -> list[str]:
    """``mtr -r`` layout: ``HOST: target  Loss% Snt Last Avg Best Wrst StDev`` then
    `` 1.|-- 198.18.1.1  0.0%  10  0.1 ...`` per (TTL, interface); with several paths a
    block per path (``path 1/2: 3 flows``, same layout), then the notes."""
    widths = (6, 5, 6, 6, 6, 6, 6)
    header = "".join(f"{name:>{w}}" for name, w in zip(LIVE_COLUMNS, widths, strict=True))

    def block(title: str, block_rows: Sequence[HopStats]) -> list[str]:
        lines = [f"{title:<{host_width + 4}}{header}"]
        for row in block_rows:
            host = f"{row.ttl:3d}.|-- {_row_host(row, names)}"
            cells = "".join(f"{c:>{w}}" for c, w in zip(_row_cells(row), widths, strict=True))
            lines.append(f"{host:<{host_width + 4}}{cells}")
        return lines

    lines = block(f"HOST: {target}", rows)
    if len(paths) > 1:
        for index, path in enumerate(paths):
            lines += block(_path_title(index, paths), path.hops)
    return lines + live_notes(rows, paths, names)


def _stats_data(row: HopStats, names: Names | None) -> dict[str, Any]:
    def ms_or_none(seconds: float | None) -> float | None:
        return None if seconds is None else ms(seconds)

    return {
        "ttl": row.ttl,
        "addresses": list(row.addresses),
        "hostnames": {a: names[a] for a in row.addresses if names and a in names},
        "loss": round(row.loss, 6),
        "sent": row.sent,
        "received": row.received,
        "last_ms": ms_or_none(row.last_s),
        "avg_ms": ms_or_none(row.avg_s),
        "best_ms": ms_or_none(row.best_s),
        "worst_ms": ms_or_none(row.worst_s),
        "stdev_ms": ms_or_none(row.stdev_s),
        "annotation": row.annotation,
        "flows": list(row.flows),
        "rate_limited": row.rate_limited,
        "rewrites": _rewrites_data(row.rewrites),
    }


def live_data(
    target: str,
    address: str,
    rounds: int,
    rows: Sequence[HopStats],
    names: Names | None = None,
    paths: Sequence[PathStats] = (),
) -> dict[str, Any]:
    """One target's statistics for JSON (report document or NDJSON live stream): the
    rows per (TTL, interface) in ``hops``, and per path in ``paths`` (each with its
    ``flows``, ``hops`` and ``nat``); ``nat`` is the nearest NAT any path shows."""
    nats = [nat for nat in map(path_nat, paths) if nat is not None]
    return {
        "target": target,
        "address": address,
        "family": family(address),
        "rounds": rounds,
        "flows": [flow for path in paths for flow in path.flows],
        "nat": nat_data(min(nats, key=lambda nat: nat.ttl, default=None), names),
        "hops": [_stats_data(row, names) for row in rows],
        "paths": [
            {
                "flows": list(path.flows),
                "nat": nat_data(path_nat(path), names),
                "hops": [_stats_data(hop, names) for hop in path.hops],
            }
            for path in paths
        ],
    }


def rounds_summary(
    stats: Sequence[LiveTrace], *, interrupted: bool, sockets: str
) -> dict[str, Any]:
    """The ``summary`` of ``--report --json`` and of the ``--live --json`` stream."""
    return {
        "interrupted": interrupted,
        "sockets": sockets,
        "rounds": [{"target": s.target, "address": s.address, "rounds": s.rounds} for s in stats],
    }


def report_document(
    stats: Sequence[LiveTrace], names: Names | None, *, interrupted: bool, sockets: str
) -> dict[str, Any]:
    """``--report --json``: each target's statistics over the rounds."""
    return {
        **header("trace"),
        "mode": "report",
        "traces": [
            live_data(s.target, s.address, s.rounds, s.rows(), names, s.paths()) for s in stats
        ],
        "summary": rounds_summary(stats, interrupted=interrupted, sockets=sockets),
    }
