"""Pure rendering: results -> plain lines (iputils-compatible), JSON data, rich tables.

Nothing here prints or reads a clock; the app decides where text goes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rawprobe.probes.ping_models import PingError, PingReply, PingResult

if TYPE_CHECKING:
    from rich.table import Table

#: The version of every JSON document and NDJSON line (cli/output_schema.py: its
#: JSON Schemas, printed by ``rawprobe schema``).
SCHEMA = "rawprobe/2"


def header(command: str, event: str | None = None) -> dict[str, Any]:
    """The fields every document (``event`` None) and every NDJSON line starts with."""
    if event is None:
        return {"schema": SCHEMA, "command": command}
    return {"schema": SCHEMA, "command": command, "event": event}


def family(address: str) -> str:
    """``ipv6`` or ``ipv4``, as every document says an address's family."""
    return "ipv6" if ":" in address else "ipv4"


def liveness(up: bool) -> str:
    """Liveness as every document says it."""
    return "up" if up else "down"


def ms(seconds: float) -> float:
    """Seconds to milliseconds, rounded to the microsecond (for JSON)."""
    return round(seconds * 1000.0, 3)


def format_rtt(seconds: float) -> str:
    """An RTT the way iputils prints ``time=``: more decimals for smaller values."""
    value = seconds * 1000.0
    if value >= 100.0:
        return f"{value:.0f}"
    if value >= 10.0:
        return f"{value:.1f}"
    if value >= 1.0:
        return f"{value:.2f}"
    return f"{value:.3f}"


_RTT_SOURCES = {
    "kernel": "the kernel stamped both ends, where tcpdump sees the packets",
    "user": "send stamped in user space, before sendto",
}


def rtt_source_line(target: str, sources: Iterable[str | None]) -> str:
    """``-v``'s line on which send stamp a target's RTTs used (``rtt_source``): user if
    any RTT used the user-space one, kernel if all used the kernel's."""
    seen = {source for source in sources if source is not None}
    if not seen:
        return f"rawprobe: {target}: no RTT measured"
    source = "user" if "user" in seen else "kernel"
    return f"rawprobe: {target}: rtt_source {source} ({_RTT_SOURCES[source]})"


# -- ping: plain ------------------------------------------------------------------


def ping_banner(host: str, address: str, payload_size: int) -> str:
    """iputils' first line, e.g. ``PING h (198.19.0.5) 56(84) bytes of data.``"""
    if ":" in address:
        return f"PING {host} ({address}) {payload_size} data bytes"
    return f"PING {host} ({address}) {payload_size}({payload_size + 28}) bytes of data."


def ping_event_line(event: object, target: str | None = None) -> str | None:
    """The line iputils prints for a reply or an error; None for other events.

    ``target``: the probed address, named on error lines when several hosts are pinged
    (a reply line names its host already: the reply comes from it; an error comes
    from a router). One host: exactly iputils' lines."""
    if isinstance(event, PingReply):
        ttl = f" ttl={event.ttl}" if event.ttl is not None else ""
        dup = " (DUP!)" if event.duplicate else ""
        return (
            f"{event.size} bytes from {event.source}: icmp_seq={event.seq}{ttl} "
            f"time={format_rtt(event.rtt_s)} ms{dup}"
        )
    if isinstance(event, PingError):
        if event.icmp_type is None:
            to = "" if target is None else f" to {target}"
            return f"ping: {event.reason} (icmp_seq={event.seq}{to})"
        to = "" if target is None else f" (to {target})"
        return f"From {event.source} icmp_seq={event.seq} {event.reason}{to}"
    return None


def ping_summary(result: PingResult, host: str | None = None) -> list[str]:
    """iputils' closing block: statistics line and the rtt line when there were replies."""
    loss = result.packet_loss * 100.0
    parts = [f"{result.transmitted} packets transmitted", f"{result.received} received"]
    if result.duplicates:
        parts.append(f"+{result.duplicates} duplicates")
    if result.error_count:
        parts.append(f"+{result.error_count} errors")
    parts.append(f"{loss:.4g}% packet loss")
    parts.append(f"time {round(result.elapsed_s * 1000)}ms")
    lines = [f"--- {host or result.address} ping statistics ---", ", ".join(parts)]
    if result.received:
        values = (result.min_rtt_s, result.avg_rtt_s, result.max_rtt_s, result.mdev_s)
        text = "/".join(f"{(v or 0.0) * 1000:.3f}" for v in values)
        lines.append(f"rtt min/avg/max/mdev = {text} ms")
    return lines


def ping_table_plain(results: Sequence[PingResult]) -> list[str]:
    """One line per host, fixed columns, for scripts and non-TTY output."""
    header = f"{'HOST':<40} {'SENT':>5} {'RECV':>5} {'LOSS%':>6} {'MIN':>9} {'AVG':>9} {'MAX':>9}"
    lines = [header]
    for result in results:
        lines.append(
            f"{result.address:<40} {result.transmitted:>5} {result.received:>5} "
            f"{result.packet_loss * 100:>6.1f} {_ms_cell(result.min_rtt_s):>9} "
            f"{_ms_cell(result.avg_rtt_s):>9} {_ms_cell(result.max_rtt_s):>9}"
        )
    return lines


def _ms_cell(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


# -- ping: rich -------------------------------------------------------------------


def ping_table(results: Sequence[PingResult]) -> Table:
    """A rich table of per-host statistics (TTY output)."""
    from rich.table import Table  # rich loads only when drawing

    table = Table(title="ping statistics", title_justify="left")
    for name in ("host", "sent", "recv", "loss", "min ms", "avg ms", "max ms", "mdev ms"):
        table.add_column(name, justify="left" if name == "host" else "right")
    for result in results:
        loss_style = (
            "green" if result.packet_loss == 0 else "red" if not result.is_alive else "yellow"
        )
        table.add_row(
            result.address,
            str(result.transmitted),
            str(result.received),
            f"[{loss_style}]{result.packet_loss * 100:.1f}%[/]",
            _ms_cell(result.min_rtt_s),
            _ms_cell(result.avg_rtt_s),
            _ms_cell(result.max_rtt_s),
            _ms_cell(result.mdev_s),
        )
    return table


# -- ping: JSON -------------------------------------------------------------------


def _ms_or_none(seconds: float | None) -> float | None:
    return None if seconds is None or math.isnan(seconds) else ms(seconds)


def ping_host_data(result: PingResult, host: str | None = None) -> dict[str, Any]:
    """One host of the ping JSON document."""
    return {
        "host": host or result.address,
        "address": result.address,
        "family": family(result.address),
        "state": liveness(result.is_alive),
        "transmitted": result.transmitted,
        "received": result.received,
        "duplicates": result.duplicates,
        "packet_loss": round(result.packet_loss, 6),
        "elapsed_ms": ms(result.elapsed_s),
        "rtts_ms": [ms(rtt) for rtt in result.rtts],
        "min_ms": _ms_or_none(result.min_rtt_s),
        "avg_ms": _ms_or_none(result.avg_rtt_s),
        "max_ms": _ms_or_none(result.max_rtt_s),
        "mdev_ms": _ms_or_none(result.mdev_s),
        "jitter_ms": _ms_or_none(result.jitter_s),
        "rtt_source": result.rtt_source,
        "replies": [
            {
                "seq": r.seq,
                "source": r.source,
                "rtt_ms": ms(r.rtt_s),
                "ttl": r.ttl,
                "size": r.size,
                "duplicate": r.duplicate,
            }
            for r in result.replies
        ],
        "errors": [
            {
                "seq": e.seq,
                "source": e.source,
                "reason": e.reason,
                "icmp_type": e.icmp_type,
                "icmp_code": e.icmp_code,
            }
            for e in result.errors
        ],
        # Records not kept (an endless --json run keeps the most recent only).
        "replies_omitted": result.replies_omitted,
        "errors_omitted": result.errors_omitted,
    }


def ping_document(
    results: Sequence[PingResult],
    hosts: Sequence[str] | None = None,
    *,
    interrupted: bool = False,
    sockets: str = "raw",
) -> dict[str, Any]:
    """The ping document: ``{"schema": "rawprobe/2", "command": "ping", "hosts": [...],
    "summary": {...}}``."""
    names = list(hosts) if hosts is not None else [r.address for r in results]
    up = sum(result.is_alive for result in results)
    return {
        **header("ping"),
        "hosts": [ping_host_data(r, h) for r, h in zip(results, names, strict=True)],
        "summary": {
            "interrupted": interrupted,
            "sockets": sockets,
            "hosts_up": up,
            "hosts_down": len(results) - up,
        },
    }
