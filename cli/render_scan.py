"""Pure rendering of port scans: nmap-like text, the JSON document, grepable lines.

Nothing here prints or reads a clock; ``cli/scan_cmd.py`` decides where text goes.
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rawprobe.cli.render import SCHEMA, ms
from rawprobe.probes.models import HostPorts, PortResult, ScanResult

#: A (state, reason) group with more ports than this is summarised in "Not shown"
#: (nmap's rule of thumb), unless every port is asked for.
LIST_LIMIT = 25


@functools.lru_cache(maxsize=4096)
def service_name(port: int) -> str:
    """The /etc/services name of a TCP port (no network involved), or ``unknown``."""
    try:
        return socket.getservbyport(port, "tcp")
    except OSError:
        return "unknown"


def _shown(host: HostPorts, *, only_open: bool, show_all: bool) -> list[PortResult]:
    """The ports listed line by line; the rest are summarised."""
    if only_open:
        return [p for p in host.ports if p.state == "open"]
    if show_all:
        return list(host.ports)
    sizes = {(s, r): n for s, r, n in host.counts}
    return [
        p
        for p in host.ports
        if p.state == "open" or (p.state != "closed" and sizes[p.state, p.reason] <= LIST_LIMIT)
    ]


def _not_shown(host: HostPorts, shown: Sequence[PortResult]) -> str | None:
    """nmap's ``Not shown: 63527 closed tcp ports (reset), ...`` line."""
    listed: dict[tuple[str, str], int] = {}
    for port in shown:
        listed[port.state, port.reason] = listed.get((port.state, port.reason), 0) + 1
    parts = []
    for state, reason, count in sorted(host.counts, key=lambda c: -c[2]):
        hidden = count - listed.get((state, reason), 0)
        if hidden > 0:
            noun = "port" if hidden == 1 else "ports"
            parts.append(f"{hidden} {state} tcp {noun} ({reason})")
    return "Not shown: " + ", ".join(parts) if parts else None


def _port_line(port: PortResult, reason: bool) -> str:
    text = f"{f'{port.port}/tcp':<9} {port.state:<10} {service_name(port.port):<15}"
    if reason:
        ttl = f" ttl {port.ttl}" if port.ttl is not None else ""
        source = f" from {port.source}" if port.source and port.source != port.address else ""
        text += f" {port.reason}{ttl}{source}"
    return text.rstrip()


def scan_report(
    result: ScanResult,
    *,
    only_open: bool = False,
    show_all: bool = False,
    reason: bool = False,
    interrupted: bool = False,
) -> list[str]:
    """nmap-like human output for every host worth reporting, then the closing line.

    Hosts are reported when they answered at all, have ports to list, or had every
    port end in one state (nmap -Pn's ``All 500 scanned ports on X are filtered``);
    with ``only_open``, only hosts with open ports. An ``interrupted`` scan says so
    before the closing line, and how much of it was decided (only decided ports are
    reported: a port never answered in time is not called filtered).
    """
    lines: list[str] = []
    up = 0
    for host in result.hosts:
        up += host.is_up
        shown = _shown(host, only_open=only_open, show_all=show_all)
        if only_open and not shown:
            continue
        states = {state for state, _reason, _count in host.counts}
        uniform = states.pop() if len(states) == 1 and not shown else None
        if not host.is_up and not shown and uniform is None:
            continue
        lines.append(f"rawprobe scan report for {host.address}")
        if host.is_up:
            latency = f" ({host.min_rtt_s:.5f}s latency)" if host.min_rtt_s is not None else ""
            lines.append(f"Host is up{latency}.")
        else:
            lines.append("No answer from the host itself.")
        not_shown = None if uniform else _not_shown(host, shown)
        if uniform:
            lines.append(f"All {host.scanned} scanned ports on {host.address} are {uniform}")
        if not_shown:
            lines.append(not_shown)
        if shown:
            header = f"{'PORT':<9} {'STATE':<10} {'SERVICE':<15}"
            lines.append((header + " REASON") if reason else header.rstrip())
            lines.extend(_port_line(port, reason) for port in shown)
        lines.append("")
    if interrupted:
        lines.append(interrupted_line(result))
    elif result.incomplete_reason:
        lines.append(f"Warning: scan incomplete: {result.incomplete_reason}")
    addresses = "IP address" if result.host_count == 1 else "IP addresses"
    lines.append(
        f"rawprobe done: {result.host_count} {addresses} ({up} host{'s' if up != 1 else ''}"
        f" up) scanned in {result.elapsed_s:.2f} seconds ({result.probes_sent} probes,"
        f" {result.retransmissions} retransmitted, peak {result.timing.peak_rate_pps:,.0f}"
        f" probes/s)"
    )
    return lines


def interrupted_line(result: ScanResult) -> str:
    """How far an interrupted scan got (undecided ports are reported nowhere)."""
    total = result.ports_per_host * result.host_count
    return (
        f"rawprobe interrupted: {result.decided:,} of {total:,} ports decided"
        f" ({total - result.decided:,} undecided, not reported)"
    )


def _port_data(port: PortResult) -> dict[str, Any]:
    return {
        "port": port.port,
        "protocol": "tcp",
        "state": port.state,
        "reason": port.reason,
        "ttl": port.ttl,
        "rtt_ms": None if port.rtt_s is None else ms(port.rtt_s),
        "source": port.source,
        "tries": port.tries,
    }


def scan_document(
    result: ScanResult,
    *,
    interrupted: bool = False,
    counters: dict[str, int] | None = None,
    with_hosts: bool = True,
) -> dict[str, Any]:
    """The ``rawprobe/1`` JSON document: open and filtered ports always listed, closed
    ones counted (listed too when the scan kept them). ``with_hosts=False`` leaves
    out ``hosts`` (``host_data`` of each, for writing them one at a time)."""
    timing = result.timing
    document = {
        "schema": SCHEMA,
        "command": "scan",
        "technique": result.technique,
        "interrupted": interrupted,
        "complete": result.complete,
        "incomplete_reason": result.incomplete_reason,
        "host_count": result.host_count,
        "ports_per_host": result.ports_per_host,
        "elapsed_ms": ms(result.elapsed_s),
        "probes_sent": result.probes_sent,
        "retransmissions": result.retransmissions,
        "rate_pps": round(result.rate_pps),
        "state_totals": dict(result.state_totals),
        "timing": {
            "srtt_ms": None if timing.srtt_s is None else ms(timing.srtt_s),
            "rttvar_ms": None if timing.rttvar_s is None else ms(timing.rttvar_s),
            "timeout_ms": ms(timing.timeout_s),
            "cwnd": round(timing.cwnd, 1),
            "peak_cwnd": round(timing.peak_cwnd, 1),
            "backoffs": timing.backoffs,
            "delay_backoffs": timing.delay_backoffs,
            "peak_rate_pps": round(timing.peak_rate_pps),
            "max_retries_used": timing.max_retries_used,
            "outages": timing.outages,
            "outage_ms": ms(timing.outage_s),
        },
        "counters": counters or {},
    }
    if with_hosts:
        document["hosts"] = [host_data(host) for host in result.hosts]
    return document


def host_data(host: HostPorts) -> dict[str, Any]:
    """One entry of the document's ``hosts``."""
    return {
        "address": host.address,
        "family": "ipv6" if ":" in host.address else "ipv4",
        "up": host.is_up,
        "min_rtt_ms": None if host.min_rtt_s is None else ms(host.min_rtt_s),
        "closed": host.closed,
        "state_counts": {
            state: host.count(state) for state in sorted({s for s, _r, _n in host.counts})
        },
        "reason_counts": [{"state": s, "reason": r, "count": n} for s, r, n in host.counts],
        "ports": [_port_data(port) for port in host.ports],
    }


def write_document(
    document: dict[str, Any],
    key: str,
    items: Iterable[Any],
    write: Callable[[str], object],
    *,
    indent: int | None = 2,
) -> None:
    """Write ``document`` as ``json.dumps(document, indent=indent)`` would, with
    ``items`` as the list under ``key``, serialised one item at a time: the whole text
    (a /16 scan's runs to hundreds of MB as one string) never exists at once.
    ``indent=None`` (compact) uses json's C encoder, about ten times faster."""
    marker = "@ITEMS-" + key + "@"
    head, tail = json.dumps({**document, key: marker}, indent=indent).split(json.dumps(marker))
    write(head + "[")
    count = 0
    if indent is None:
        for count, item in enumerate(items, 1):
            write((", " if count > 1 else "") + json.dumps(item))
        write("]" + tail + "\n")
        return
    inner = "\n" + " " * 2 * indent
    for count, item in enumerate(items, 1):
        text = json.dumps(item, indent=indent).replace("\n", inner)
        write(("," if count > 1 else "") + inner + text)
    write(("\n" + " " * indent + "]" if count else "]") + tail + "\n")


def grepable(
    result: ScanResult,
    command_line: str,
    started: str,
    finished: str,
    *,
    interrupted: bool = False,
) -> list[str]:
    """nmap's ``-oG`` format: a Status and a Ports line per host; closed ports are the
    ignored state. An interrupted scan has a ``# rawprobe interrupted`` comment."""
    lines = [f"# rawprobe scan initiated {started} as: {command_line}"]
    up = 0
    for host in result.hosts:
        up += host.is_up
        status = "Up" if host.is_up else "Unknown"
        lines.append(f"Host: {host.address} ()\tStatus: {status}")
        ports = ", ".join(
            f"{p.port}/{p.state}/tcp//{service_name(p.port)}///"
            for p in host.ports
            if p.state != "closed"
        )
        line = f"Host: {host.address} ()\tPorts: {ports}"
        if host.closed:
            line += f"\tIgnored State: closed ({host.closed})"
        lines.append(line)
    if interrupted:
        lines.append("# " + interrupted_line(result))
    lines.append(
        f"# rawprobe done at {finished} -- {result.host_count} IP address"
        f"{'' if result.host_count == 1 else 'es'} ({up} host{'' if up == 1 else 's'} up)"
        f" scanned in {result.elapsed_s:.2f} seconds"
    )
    return lines
