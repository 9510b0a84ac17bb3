"""Pure rendering of nmap's output files from results: XML (``-oX``), normal (``-oN``)
and the sweep's grepable lines (``-oG``; the scan's are ``render_scan.grepable``).

Nothing here prints, reads a clock or imports rich; the commands pass the times and
write the text. The shapes follow nmap 7.93's own files (captured in the lab) and its
DTD (``xmllint --dtdvalid /usr/share/nmap/nmap.dtd`` accepts what is written here):

- ``scanner="nmap"`` is the only value the DTD allows; ``version`` is rawprobe's and
  the leading comment and ``args`` name rawprobe.
- A scan's XML lists as ``<port>`` every port the JSON document lists (open, filtered,
  unfiltered, open|filtered; closed too when the scan kept them), where nmap folds a
  big group into ``<extraports>``: parsers that keep one ``extraports`` per host
  (python-libnmap) then still see every port state the JSON holds. The ports only
  counted (closed) are ``<extraports>``. ``--open`` lists open ports only (the others
  summarised, with their ``ports`` ranges when known) and only the hosts with one.
- Hosts: ``up`` when the host itself answered a probe, with that answer's reason
  (``syn-ack``, ``reset``, ``udp-response``...), else ``down`` (``no-response``); a
  sweep lists the hosts up, as ``nmap -sn`` does.
- Reason words are nmap's (``host-unreach`` where rawprobe says ``host-unreachable``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rawprobe.cli.render_scan import (
    Results,
    _by_host,
    _listed,
    combined,
    done_comment,
    hosts_scanned,
    hosts_up,
    initiated_comment,
    interrupted_line,
    not_shown,
    scan_report,
    service_name,
    technique_protocol,
)
from rawprobe.probes.scan_models import HostPorts, PortResult

#: nmap's XML output version (nmap 7.93 writes 1.05).
XML_OUTPUT_VERSION = "1.05"
#: Where Debian's nmap keeps its stylesheet (``xsltproc`` and browsers follow it).
STYLESHEET = "file:///usr/share/nmap/nmap.xsl"

#: rawprobe's reason words that nmap spells differently.
_NMAP_REASONS = {
    "net-unreachable": "net-unreach",
    "host-unreachable": "host-unreach",
    "proto-unreachable": "proto-unreach",
    "port-unreachable": "port-unreach",
    "parameter-problem": "param-problem",
    "ttl-exceeded": "time-exceeded",
}
#: Answers that come from the probed host itself, best evidence first (its status).
_HOST_REASONS = ("syn-ack", "reset", "udp-response", "port-unreach", "conn-refused")
_SCAN_TYPES = {"syn": "syn", "ack": "ack", "udp": "udp", "connect": "connect"}


@dataclass(frozen=True, slots=True)
class Run:
    """What nmap's files say about a run besides its results: the command line, when
    it started (seconds since the epoch) and rawprobe's version."""

    command_line: str
    started_s: float
    version: str


def nmap_time(epoch_s: float) -> str:
    """nmap's way of writing a time: ``Sat Dec  5 17:01:16 2026`` (local, ctime)."""
    return time.ctime(epoch_s)


def nmap_reason(word: str) -> str:
    """nmap's word for a reason of rawprobe's."""
    return _NMAP_REASONS.get(word, word)


def port_ranges(ports: Sequence[int]) -> str:
    """``1-10,20,22-25``: sorted ports, runs folded (nmap's ``services``)."""
    spans: list[list[int]] = []
    for port in sorted(set(ports)):
        if spans and port == spans[-1][1] + 1:
            spans[-1][1] = port
        else:
            spans.append([port, port])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


#: What a double-quoted attribute cannot hold as itself (xml.sax.saxutils would cost
#: 20 ms of imports: urllib, http, ssl).
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def _attr(text: object) -> str:
    """Text for a double-quoted attribute (characters XML 1.0 forbids dropped)."""
    clean = "".join(c for c in str(text) if c >= " " or c in "\t\n\r")
    return clean.translate(_ESCAPES)


def _head(run: Run, scaninfo: Sequence[str]) -> str:
    started = nmap_time(run.started_s)
    comment = f"rawprobe {run.version} scan initiated {started} as: {run.command_line}"
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!DOCTYPE nmaprun>",
        f'<?xml-stylesheet href="{STYLESHEET}" type="text/xsl"?>',
        # nmap's own escape: a comment may not hold "--".
        "<!-- " + _attr(comment).replace("--", "-&#45;") + " -->",
        f'<nmaprun scanner="nmap" args="{_attr(run.command_line)}" start="{int(run.started_s)}"'
        f' startstr="{started}" version="{_attr(run.version)}"'
        f' xmloutputversion="{XML_OUTPUT_VERSION}">',
        *scaninfo,
        '<verbose level="0"/>',
        '<debugging level="0"/>',
    ]
    return "\n".join(lines) + "\n"


def _tail(finished_s: float, elapsed_s: float, counts: tuple[int, int], error: str | None) -> str:
    """``runstats``: ``counts`` is (hosts up, hosts in all); ``error`` why the run
    stopped short (interrupted, an outage), None when it did not."""
    up, total = counts
    finished = nmap_time(finished_s)
    summary = f"rawprobe done at {finished}; {hosts_scanned(total, up, elapsed_s)}"
    outcome = 'exit="success"' if error is None else f'exit="error" errormsg="{_attr(error)}"'
    return (
        f'<runstats><finished time="{int(finished_s)}" timestr="{finished}"'
        f' summary="{_attr(summary)}" elapsed="{elapsed_s:.2f}" {outcome}/>'
        f'<hosts up="{up}" down="{total - up}" total="{total}"/>\n'
        "</runstats>\n</nmaprun>\n"
    )


def _host_head(address: str, state: str, reason: str, ttl: int | None) -> str:
    family = "ipv6" if ":" in address else "ipv4"
    return (
        f'<host><status state="{state}" reason="{nmap_reason(reason)}"'
        f' reason_ttl="{ttl or 0}"/>\n'
        f'<address addr="{address}" addrtype="{family}"/>\n'
        "<hostnames>\n</hostnames>\n"
    )


# -- port scans --------------------------------------------------------------------


def scan_xml(
    results: Results,
    port_lists: Sequence[Sequence[int]],
    run: Run,
    finished_s: float,
    *,
    only_open: bool = False,
    interrupted: bool = False,
) -> Iterator[str]:
    """nmap's XML of a scan, a host at a time (a network's file is never one string).
    ``port_lists``: each result's ports, in order (``scaninfo``)."""
    listed = _listed(results)
    scaninfo = [
        f'<scaninfo type="{_SCAN_TYPES[r.technique]}" protocol="{technique_protocol(r.technique)}"'
        f' numservices="{len(ports)}" services="{port_ranges(ports)}"/>'
        for r, ports in zip(listed, port_lists, strict=True)
    ]
    yield _head(run, scaninfo)
    up = 0
    for address, parts in _by_host(listed):
        is_up = any(host.is_up for _protocol, host in parts)
        up += is_up
        shown = [
            [p for p in host.ports if p.state == "open" or not only_open] for _p, host in parts
        ]
        if only_open and not any(shown):
            continue
        yield _scan_host(address, parts, shown, is_up)
    result = combined(listed)
    if interrupted:
        error: str | None = interrupted_line(result)
    elif result.incomplete_reason:
        error = f"scan incomplete: {result.incomplete_reason}"
    else:
        error = None
    yield _tail(finished_s, result.elapsed_s, (up, result.host_count), error)


def _scan_host(
    address: str,
    parts: Sequence[tuple[str, HostPorts]],
    shown: Sequence[list[PortResult]],
    is_up: bool,
) -> str:
    if is_up:
        words = [nmap_reason(reason) for _p, host in parts for _s, reason, _n in host.counts]
        word = next((w for w in _HOST_REASONS if w in words), words[0])
        ports = (p for _protocol, host in parts for p in host.ports)
        ttl = next((p.ttl for p in ports if nmap_reason(p.reason) == word), None)
        text = _host_head(address, "up", word, ttl)
    else:
        text = _host_head(address, "down", "no-response", None)
    # Each state's ports not listed, by reason and protocol; their ranges when known
    # (closed ports are counted only, unless the scan kept them).
    hidden: dict[str, list[str]] = {}
    totals: dict[str, int] = {}
    for (protocol, host), listed in zip(parts, shown, strict=True):
        for state, reason, count in not_shown(host, listed):
            known = [p.port for p in host.ports if (p.state, p.reason) == (state, reason)]
            ranges = "" if len(known) != count else f' ports="{port_ranges(known)}"'
            hidden.setdefault(state, []).append(
                f'<extrareasons reason="{_attr(nmap_reason(reason))}" count="{count}"'
                f' proto="{protocol}"{ranges}/>\n'
            )
            totals[state] = totals.get(state, 0) + count
    text += "<ports>"
    for state in sorted(hidden, key=lambda s: -totals[s]):
        text += f'<extraports state="{_attr(state)}" count="{totals[state]}">\n'
        text += "".join(hidden[state]) + "</extraports>\n"
    for (protocol, _host), listed in zip(parts, shown, strict=True):
        text += "".join(_port(port, protocol) for port in listed)
    return text + "</ports>\n</host>\n"


def _port(port: PortResult, protocol: str) -> str:
    name = service_name(port.port, protocol)  # (nmap: no element for a port not in its table)
    service = (
        "" if name == "unknown" else f'<service name="{_attr(name)}" method="table" conf="3"/>'
    )
    source = f' reason_ip="{port.source}"' if port.source and port.source != port.address else ""
    return (
        f'<port protocol="{protocol}" portid="{port.port}"><state state="{_attr(port.state)}"'
        f' reason="{_attr(nmap_reason(port.reason))}" reason_ttl="{port.ttl or 0}"{source}/>'
        f"{service}</port>\n"
    )


def normal_output(
    results: Results,
    run: Run,
    finished_s: float,
    *,
    only_open: bool = False,
    show_all: bool = False,
    reason: bool = False,
    interrupted: bool = False,
) -> list[str]:
    """nmap's normal output (``-oN``): the report printed on a terminal, between
    nmap's first and last comment lines."""
    report = scan_report(
        results, only_open=only_open, show_all=show_all, reason=reason, interrupted=interrupted
    )
    result = combined(results)
    up = hosts_up(results)
    return [
        initiated_comment("scan", nmap_time(run.started_s), run.command_line),
        *report[:-1],  # the report's closing line becomes nmap's closing comment
        done_comment(nmap_time(finished_s), result.host_count, up, result.elapsed_s),
    ]


# -- sweeps (nmap -sn) ---------------------------------------------------------------


def sweep_xml_head(run: Run) -> str:
    """The start of ``nmap -sn -oX``: no scaninfo (no ports are scanned)."""
    return _head(run, [])


def sweep_xml_host(address: str, reason: str, ttl: int | None) -> str:
    """One host up, as ``nmap -sn`` lists it."""
    return _host_head(address, "up", reason, ttl) + "</host>\n"


def sweep_xml_tail(
    finished_s: float, elapsed_s: float, counts: tuple[int, int], error: str | None = None
) -> str:
    """The end: ``counts`` is (hosts up, addresses swept); ``error`` why the sweep
    stopped short."""
    return _tail(finished_s, elapsed_s, counts, error)


def sweep_grepable_host(address: str) -> str:
    """``nmap -sn -oG``'s line of a host up."""
    return f"Host: {address} ()\tStatus: Up\n"
