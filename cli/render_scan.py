"""Pure rendering of port scans: nmap-like text, the JSON document, grepable lines.

Nothing here prints or reads a clock; ``cli/scan_cmd.py`` decides where text goes.
A result's protocol is its technique's (``udp``, else ``tcp``). ``-sS -sU`` gives one
result per protocol: every function here also takes the list, and reports each host
once with both protocols' ports (as nmap does), counted per protocol.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from rawprobe.cli.render import family, header, liveness, ms
from rawprobe.probes.scan_models import HostPorts, PortResult, ScanResult

#: A (state, reason) group with more ports than this is summarised in "Not shown"
#: (nmap's rule of thumb), unless every port is asked for.
LIST_LIMIT = 25


@functools.lru_cache(maxsize=4096)
def service_name(port: int, protocol: str = "tcp") -> str:
    """The /etc/services name of a port (no network involved), or ``unknown``."""
    try:
        return socket.getservbyport(port, protocol)
    except OSError:
        return "unknown"


def protocol_of(result: ScanResult) -> str:
    """``udp`` for a UDP scan's result, else ``tcp``."""
    return technique_protocol(result.technique)


def technique_protocol(technique: str) -> str:
    """The protocol a scan technique probes: ``udp`` for the UDP scan, else ``tcp``."""
    return "udp" if technique == "udp" else "tcp"


Results = ScanResult | Sequence[ScanResult]
#: One host's part of each protocol's result.
_Parts = list[tuple[str, HostPorts]]


def _listed(results: Results) -> list[ScanResult]:
    return [results] if isinstance(results, ScanResult) else list(results)


def _by_host(results: Sequence[ScanResult]) -> list[tuple[str, _Parts]]:
    """Each host's parts, in the first result's (address) order."""
    hosts: dict[str, _Parts] = {}
    for result in results:
        for host in result.hosts:
            hosts.setdefault(host.address, []).append((protocol_of(result), host))
    return list(hosts.items())


def hosts_up(results: Results) -> int:
    """Hosts up in any protocol's result (a host counts once)."""
    return sum(any(host.is_up for _p, host in parts) for _a, parts in _by_host(_listed(results)))


def combined(results: Results) -> ScanResult:
    """One protocol's result as it is; several summed into one for the totals lines
    (ports, probes and time add up: the protocols are scanned one after the other)."""
    parts = _listed(results)
    if len(parts) == 1:
        return parts[0]
    first, totals = parts[0], collections.Counter[str]()
    for part in parts:
        totals.update(dict(part.state_totals))
    return dataclasses.replace(
        first,
        technique="+".join(r.technique for r in parts),
        ports_per_host=sum(r.ports_per_host for r in parts),
        decided=sum(r.decided for r in parts),
        probes_sent=sum(r.probes_sent for r in parts),
        retransmissions=sum(r.retransmissions for r in parts),
        elapsed_s=sum(r.elapsed_s for r in parts),
        state_totals=tuple(sorted(totals.items())),
        incomplete_reason=next((r.incomplete_reason for r in parts if r.incomplete_reason), None),
        timing=dataclasses.replace(
            first.timing, peak_rate_pps=max(r.timing.peak_rate_pps for r in parts)
        ),
    )


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


def not_shown(host: HostPorts, shown: Sequence[PortResult]) -> list[tuple[str, str, int]]:
    """(state, reason, count) of the ports of ``host`` not in ``shown``, most first
    (nmap's ``Not shown`` line, its XML ``extraports``)."""
    listed: dict[tuple[str, str], int] = {}
    for port in shown:
        listed[port.state, port.reason] = listed.get((port.state, port.reason), 0) + 1
    hidden = []
    for state, reason, count in sorted(host.counts, key=lambda c: -c[2]):
        left = count - listed.get((state, reason), 0)
        if left > 0:
            hidden.append((state, reason, left))
    return hidden


def _not_shown(host: HostPorts, shown: Sequence[PortResult], protocol: str) -> list[str]:
    """The parts of nmap's ``Not shown: 63527 closed tcp ports (reset), ...`` line."""
    return [
        f"{n} {state} {protocol} {'port' if n == 1 else 'ports'} ({reason})"
        for state, reason, n in not_shown(host, shown)
    ]


def initiated_comment(command: str, started: str, command_line: str) -> str:
    """The first line of nmap's normal and grepable files."""
    return f"# rawprobe {command} initiated {started} as: {command_line}"


def done_comment(finished: str, host_count: int, up: int, elapsed_s: float) -> str:
    """The last line of nmap's normal and grepable files."""
    return f"# rawprobe done at {finished} -- {hosts_scanned(host_count, up, elapsed_s)}"


def hosts_scanned(host_count: int, up: int, elapsed_s: float) -> str:
    """nmap's ``1 IP address (1 host up) scanned in 3.33 seconds``."""
    addresses = "IP address" if host_count == 1 else "IP addresses"
    hosts = "host" if up == 1 else "hosts"
    return f"{host_count} {addresses} ({up} {hosts} up) scanned in {elapsed_s:.2f} seconds"


def _port_line(port: PortResult, reason: bool, protocol: str) -> str:
    service = service_name(port.port, protocol)
    text = f"{f'{port.port}/{protocol}':<9} {port.state:<10} {service:<15}"
    if reason:
        ttl = f" ttl {port.ttl}" if port.ttl is not None else ""
        source = f" from {port.source}" if port.source and port.source != port.address else ""
        text += f" {port.reason}{ttl}{source}"
    return text.rstrip()


def scan_report(
    results: Results,
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
    listed = _listed(results)
    result = combined(listed)
    lines: list[str] = []
    up = 0
    for address, parts in _by_host(listed):
        is_up = any(host.is_up for _protocol, host in parts)
        up += is_up
        shown: list[tuple[str, PortResult]] = []
        uniform: list[str] = []
        hidden: list[str] = []
        for protocol, host in parts:
            ports = _shown(host, only_open=only_open, show_all=show_all)
            shown += [(protocol, port) for port in ports]
            states = {state for state, _reason, _count in host.counts}
            if len(states) == 1 and not ports:
                what = "ports" if len(parts) == 1 else f"{protocol} ports"
                uniform.append(f"All {host.scanned} scanned {what} on {address} are {states.pop()}")
            else:
                hidden += _not_shown(host, ports, protocol)
        if (only_open or not is_up) and not shown and not (uniform and not only_open):
            continue
        lines.append(f"rawprobe scan report for {address}")
        if is_up:
            rtts = [h.min_rtt_s for _p, h in parts if h.min_rtt_s is not None]
            latency = f" ({min(rtts):.5f}s latency)" if rtts else ""
            lines.append(f"Host is up{latency}.")
        else:
            lines.append("No answer from the host itself.")
        lines.extend(uniform)
        if hidden:
            lines.append("Not shown: " + ", ".join(hidden))
        if shown:
            header = f"{'PORT':<9} {'STATE':<10} {'SERVICE':<15}"
            lines.append((header + " REASON") if reason else header.rstrip())
            lines.extend(_port_line(port, reason, protocol) for protocol, port in shown)
        lines.append("")
    if interrupted:
        lines.append(interrupted_line(result))
    elif result.incomplete_reason:
        lines.append(f"Warning: scan incomplete: {result.incomplete_reason}")
    lines.append(
        f"rawprobe done: {hosts_scanned(result.host_count, up, result.elapsed_s)}"
        f" ({result.probes_sent} probes, {result.retransmissions} retransmitted,"
        f" peak {result.timing.peak_rate_pps:,.0f} probes/s)"
    )
    return lines


def interrupted_line(result: ScanResult) -> str:
    """How far an interrupted scan got (undecided ports are reported nowhere)."""
    total = result.ports_per_host * result.host_count
    return (
        f"rawprobe interrupted: {result.decided:,} of {total:,} ports decided"
        f" ({total - result.decided:,} undecided, not reported)"
    )


def _port_data(port: PortResult, protocol: str) -> dict[str, Any]:
    return {
        "port": port.port,
        "protocol": protocol,
        "state": port.state,
        "reason": port.reason,
        "ttl": port.ttl,
        "rtt_ms": None if port.rtt_s is None else ms(port.rtt_s),
        "source": port.source,
        "tries": port.tries,
    }


def scan_document(
    results: Results,
    *,
    interrupted: bool = False,
    counters: dict[str, int] | None = None,
    workers: int = 1,
    sockets: str = "raw",
    shard: tuple[int, int] = (0, 1),
    seed: int | None = None,
    with_hosts: bool = True,
) -> dict[str, Any]:
    """The JSON document: ``hosts`` (``host_data`` of each: open and filtered ports
    listed, closed ones counted, and listed too when the scan kept them), then the
    ``summary``. ``with_hosts=False`` leaves ``hosts`` empty (for writing them one at a
    time with ``write_document``)."""
    summary = scan_summary(
        results, interrupted=interrupted, counters=counters, workers=workers, sockets=sockets,
        shard=shard, seed=seed,
    )  # fmt: skip
    return {
        **header("scan"),
        "hosts": list(hosts_data(results)) if with_hosts else [],
        "summary": summary,
    }


def scan_summary(
    results: Results,
    *,
    interrupted: bool = False,
    counters: dict[str, int] | None = None,
    workers: int = 1,
    sockets: str = "raw",
    shard: tuple[int, int] = (0, 1),
    seed: int | None = None,
) -> dict[str, Any]:
    """The document's ``summary`` (and the fields of the NDJSON ``summary`` event).
    Several protocols: the totals summed, each protocol's under ``protocols``;
    ``counters`` None: a connect() scan, which has no transport to count. ``shard``
    (I, N): the results are this machine's share of the (host, port) order, and
    ``complete`` says whether every port of that share was decided."""
    listed = _listed(results)
    result = combined(listed)
    timing = result.timing
    up = hosts_up(listed)
    complete = result.complete
    if shard[1] > 1:  # (the results count the whole space's ports)
        complete = not interrupted and not result.incomplete_reason
    return {
        "technique": result.technique,
        "sockets": sockets,
        "interrupted": interrupted,
        "complete": complete,
        "incomplete_reason": result.incomplete_reason,
        "host_count": result.host_count,
        "hosts_up": up,
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
        "counters": counters,
        "workers": workers,
        "shard": f"{shard[0]}/{shard[1]}",
        "seed": seed,
        "protocols": {
            protocol_of(r): {
                "technique": r.technique,
                "ports_per_host": r.ports_per_host,
                "state_totals": dict(r.state_totals),
                "probes_sent": r.probes_sent,
                "retransmissions": r.retransmissions,
                "elapsed_ms": ms(r.elapsed_s),
            }
            for r in listed
        },
    }


def hosts_data(results: Results) -> Iterator[dict[str, Any]]:
    """The document's ``hosts``: ``host_data`` of each host, its protocols merged
    (ports listed with their protocol; counts summed; reason counts per protocol)."""
    listed = _listed(results)
    if len(listed) == 1:
        protocol = protocol_of(listed[0])
        yield from (host_data(host, protocol) for host in listed[0].hosts)
        return
    for _address, parts in _by_host(listed):
        yield protocols_data(parts)


def protocols_data(parts: Sequence[tuple[str, HostPorts]]) -> dict[str, Any]:
    """One entry of the ``hosts`` of a scan of several protocols, from a host's
    (protocol, HostPorts) parts: their ``host_data`` merged."""
    data = [(protocol, host_data(host, protocol)) for protocol, host in parts]
    merged = data[0][1]
    states: collections.Counter[str] = collections.Counter()
    for _protocol, one in data:
        states.update(one["state_counts"])
    merged.update(
        state=liveness(any(one["state"] == "up" for _p, one in data)),
        min_rtt_ms=min((o["min_rtt_ms"] for _p, o in data if o["min_rtt_ms"] is not None),
                       default=None),
        closed=sum(one["closed"] for _p, one in data),
        state_counts=dict(sorted(states.items())),
        reason_counts=[c for _p, one in data for c in one["reason_counts"]],
        ports=[port for _p, one in data for port in one["ports"]],
    )  # fmt: skip
    return merged


def host_data(host: HostPorts, protocol: str = "tcp") -> dict[str, Any]:
    """One entry of the document's ``hosts`` (one protocol's ports)."""
    return {
        "address": host.address,
        "family": family(host.address),
        "state": liveness(host.is_up),
        "min_rtt_ms": None if host.min_rtt_s is None else ms(host.min_rtt_s),
        "closed": host.closed,
        "state_counts": {
            state: host.count(state) for state in sorted({s for s, _r, _n in host.counts})
        },
        "reason_counts": [
            {"protocol": protocol, "state": s, "reason": r, "count": n} for s, r, n in host.counts
        ],
        "ports": [_port_data(port, protocol) for port in host.ports],
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
    results: Results,
    command_line: str,
    started: str,
    finished: str,
    *,
    interrupted: bool = False,
) -> list[str]:
    """nmap's ``-oG`` format: a Status and a Ports line per host; closed ports are the
    ignored state. An interrupted scan has a ``# rawprobe interrupted`` comment."""
    listed = _listed(results)
    result = combined(listed)
    lines = [initiated_comment("scan", started, command_line)]
    up = 0
    for address, parts in _by_host(listed):
        is_up = any(host.is_up for _protocol, host in parts)
        up += is_up
        lines.append(f"Host: {address} ()\tStatus: {'Up' if is_up else 'Unknown'}")
        ports = ", ".join(
            f"{p.port}/{p.state}/{protocol}//{service_name(p.port, protocol)}///"
            for protocol, host in parts
            for p in host.ports
            if p.state != "closed"
        )
        line = f"Host: {address} ()\tPorts: {ports}"
        closed = sum(host.closed for _protocol, host in parts)
        if closed:
            line += f"\tIgnored State: closed ({closed})"
        lines.append(line)
    if interrupted:
        lines.append("# " + interrupted_line(result))
    lines.append(done_comment(finished, result.host_count, up, result.elapsed_s))
    return lines
