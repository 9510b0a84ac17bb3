"""Pure rendering of packet dissections: indented plain text, rich trees, JSON data.

Nothing here prints or reads a clock; ``send`` and ``sniff`` decide where text goes.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from rawprobe.cli.render import header, ms
from rawprobe.transport.wire.dissect import MALFORMED, Dissection, Layer

_NAME_WIDTH = 16


def layer_lines(layer: Layer, indent: str = "") -> list[str]:
    """A layer as indented lines: its name, then ``name  text`` per field, then the
    nested layers one step further in."""
    lines = [f"{indent}{layer.name}"]
    inner = indent + "  "
    lines.extend(f"{inner}{field.name:<{_NAME_WIDTH}} {field.text}" for field in layer.fields)
    for child in layer.children:
        lines.extend(layer_lines(child, inner))
    return lines


def dissection_lines(dissection: Dissection, indent: str = "  ") -> list[str]:
    """Every layer of a dissection as indented plain lines (outermost first)."""
    lines: list[str] = []
    for layer in dissection.layers:
        lines.extend(layer_lines(layer, indent))
    return lines


def _layer_label(layer: Layer) -> str:
    style = "bold red" if layer.name == MALFORMED else "bold cyan"
    return f"[{style}]{escape(layer.name)}[/]"


def _add_layer(tree: Tree, layer: Layer) -> None:
    branch = tree.add(_layer_label(layer))
    for field in layer.fields:
        text = escape(field.text)
        if "incorrect" in field.text:
            text = f"[red]{text}[/]"
        branch.add(f"[dim]{escape(field.name)}[/] {text}")
    for child in layer.children:
        _add_layer(branch, child)


def dissection_tree(dissection: Dissection, title: str) -> Tree:
    """A rich tree: the title (markup allowed), then one branch per layer."""
    tree = Tree(title)
    for layer in dissection.layers:
        _add_layer(tree, layer)
    return tree


def timestamp_text(timestamp_ns: int) -> str:
    """``tcpdump -tt``'s timestamp: seconds and microseconds since the epoch."""
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    return f"{seconds}.{nanos // 1000:06d}"


def direction_text(outgoing: bool | None) -> str:
    return "?" if outgoing is None else ("Out" if outgoing else "In")


def capture_line(
    timestamp_ns: int, outgoing: bool | None, interface: str | None, dissection: Dissection
) -> str:
    """One sniffed packet on one line: ``<tcpdump -tt stamp> <iface> In|Out <summary>``."""
    where = f"{interface} " if interface else ""
    direction = "" if outgoing is None else f"{direction_text(outgoing)} "
    return f"{timestamp_text(timestamp_ns)} {where}{direction}{dissection.summary}"


def capture_data(
    timestamp_ns: int,
    outgoing: bool | None,
    interface: str | None,
    dissection: Dissection,
) -> dict[str, Any]:
    """One sniffed packet as a JSON object (one NDJSON line of ``sniff --json``)."""
    return {
        **header("sniff", "packet"),
        "timestamp_ns": timestamp_ns,
        "interface": interface,
        "direction": None if outgoing is None else ("out" if outgoing else "in"),
        "packet": dissection.to_data(),
    }


def sniff_summary(seen: int, kept: int, kernel_drops: int | None) -> str:
    """The closing line of ``sniff`` (tcpdump's spirit: captured, seen, dropped)."""
    dropped = "" if kernel_drops is None else f", {kernel_drops} dropped by kernel"
    return f"{kept} packets captured, {seen} seen{dropped}"


def sniff_table(rows: list[tuple[str, str, str]], counters: str) -> Table:
    """The live sniff view: the latest packets and the counters in the caption."""
    table = Table(caption=counters, expand=True, show_edge=False)
    table.add_column("time", no_wrap=True, style="dim")
    table.add_column("dir", no_wrap=True)
    table.add_column("packet", overflow="fold")
    for stamp, direction, summary in rows:
        style = "green" if direction == "Out" else "cyan"
        table.add_row(stamp, Text(direction, style=style), Text(summary))
    return table


def exchange_data(
    sent: Dissection, reply: Dissection | None, rtt_s: float | None, source: str | None
) -> dict[str, Any]:
    """One probe of ``send --json``: what went out and what came back."""
    return {
        "sent": sent.to_data(),
        "reply": None if reply is None else reply.to_data(),
        "reply_from": source,
        "rtt_ms": None if rtt_s is None else ms(rtt_s),
    }
