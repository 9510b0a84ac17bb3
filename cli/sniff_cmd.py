"""``rawprobe sniff``: watch packets at the network layer, or read a pcap file.

Live capture uses the AF_PACKET sniffer (every IPv4/IPv6 packet, both directions,
kernel timestamps). Filters on protocol, host, port, direction and family apply to
live captures and to ``-r FILE`` alike. Output: a live rich view on a terminal,
one tcpdump-like line per packet when piped, NDJSON with ``--json``, a pcap file with
``-w`` (packets are then not printed, as with tcpdump).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import anyio
from rich.console import Console

from rawprobe.cli import render_packet
from rawprobe.cli.args import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_backend_option,
    defer_signals,
    int_in,
    interruptible,
    positive_int,
    received_signal,
    seconds,
)
from rawprobe.cli.live import LiveView
from rawprobe.cli.outputs import add_output_option, opens_outputs
from rawprobe.cli.render import header
from rawprobe.errors import UsageError
from rawprobe.transport import privileges
from rawprobe.transport.sniffer import open_sniffer
from rawprobe.transport.wire.dissect import dissect
from rawprobe.transport.wire.pcap import PcapReader, PcapWriter, network_packet
from rawprobe.transport.wire.pktfilter import PROTOCOL_NAMES, PacketFilter

_LIVE_ROWS = 20


def register(commands: Any) -> None:
    sniff = commands.add_parser(
        "sniff",
        help="watch IP packets (or read a pcap file), dissected",
        description="Capture every IPv4/IPv6 packet this host sends or receives "
        "(AF_PACKET), or read a pcap file, with simple filters.",
    )
    sniff.add_argument("-c", "--count", type=positive_int, help="stop after N packets")
    sniff.add_argument("--duration", type=seconds, help="stop after S seconds")
    sniff.add_argument(
        "-p",
        "--protocol",
        action="append",
        default=[],
        choices=sorted(PROTOCOL_NAMES),
        help="keep this protocol (repeatable)",
    )
    sniff.add_argument("--host", action="append", default=[], help="keep packets from/to ADDR")
    sniff.add_argument(
        "--port", action="append", default=[], type=int_in(0, 0xFFFF), help="TCP/UDP port"
    )
    sniff.add_argument("--direction", choices=("in", "out", "any"), default="any")
    family = sniff.add_mutually_exclusive_group()
    family.add_argument("-4", dest="version", action="store_const", const=4)
    family.add_argument("-6", dest="version", action="store_const", const=6)
    sniff.add_argument("-i", "--interface", help="capture on this interface only (all)")
    add_output_option(
        sniff, "-w", "--write", dest="write", help="write packets to a pcap file (- stdout)",
        stdout_ok=True,
    )  # fmt: skip
    sniff.add_argument("-r", "--read", metavar="FILE", help="read packets from a pcap file")
    sniff.add_argument("-v", "--verbose", action="store_true", help="every layer of each packet")
    sniff.add_argument("--json", action="store_true", help="one JSON object per packet (NDJSON)")
    add_backend_option(sniff)
    sniff.set_defaults(handler=run)


@opens_outputs
def run(args: argparse.Namespace) -> int:
    packet_filter = PacketFilter.build(
        protocols=tuple(args.protocol),
        hosts=tuple(args.host),
        ports=tuple(args.port),
        direction=args.direction,
        version=args.version,
    )
    if args.write == "-" and args.json:
        raise UsageError("-w - and --json both write to stdout: choose one")
    if args.read is not None and (args.interface or args.duration is not None):
        raise UsageError("-i and --duration apply to live captures, not to -r FILE")
    if args.read is not None:
        privileges.sockets_opened()  # reading a file needs no privilege: drop at once
        with _output(args) as writer:
            return _read(args, packet_filter, _Sink(args, writer))
    code: int = anyio.run(_live, args, packet_filter, backend=args.backend)
    return code


@contextlib.contextmanager
def _output(args: argparse.Namespace) -> Iterator[PcapWriter | None]:
    """The ``-w`` pcap writer: the file was opened before the capture started, as the
    invoking user (cli/outputs.py); ``-`` writes the capture to stdout, like tcpdump."""
    if args.write is None:
        yield None
        return
    out_file: BinaryIO = sys.stdout.buffer if args.write == "-" else args.write
    try:
        yield PcapWriter(out_file)
    finally:
        if args.write == "-":
            out_file.flush()  # a file is flushed and closed by opens_outputs


class _Sink:
    """Where each kept packet goes: pcap writer, NDJSON, live view or plain lines."""

    def __init__(self, args: argparse.Namespace, writer: PcapWriter | None) -> None:
        self.writer = writer
        self.json = args.json
        self.verbose = args.verbose
        self.console = Console(highlight=False, soft_wrap=True)
        self.print_lines = writer is None or args.json
        self.live = self.print_lines and not args.json and self.console.is_terminal
        self.rows: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=_LIVE_ROWS)
        self.kept = 0
        self.view: LiveView | None = None

    def packet(
        self, packet: bytes, timestamp_ns: int, outgoing: bool | None, iface: str | None
    ) -> None:
        self.kept += 1
        if self.writer is not None:
            self.writer.write(timestamp_ns, packet)
        if not self.print_lines:
            return
        dissection = dissect(packet)
        if self.json:
            data = render_packet.capture_data(timestamp_ns, outgoing, iface, dissection)
            print(json.dumps(data), flush=True)
        elif self.view is not None and not self.verbose:
            where = f"{iface} " if iface else ""
            direction = render_packet.direction_text(outgoing)
            stamp = render_packet.timestamp_text(timestamp_ns)
            self.rows.append((stamp, f"{where}{direction}".strip(), dissection.summary))
            self.view.refresh_soon()
        else:
            print(render_packet.capture_line(timestamp_ns, outgoing, iface, dissection), flush=True)
            if self.verbose:
                print("\n".join(render_packet.dissection_lines(dissection)), flush=True)

    def table(self, counters: str) -> Any:
        return render_packet.sniff_table(list(self.rows), counters)


def _read(args: argparse.Namespace, packet_filter: PacketFilter, sink: _Sink) -> int:
    try:
        stream = open(args.read, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {args.read}: {exc.strerror}") from exc
    seen = 0
    defer_signals()  # Ctrl-C: stop reading, print the counts so far
    with stream:
        reader = PcapReader(stream)
        linktype = reader.header.linktype
        for record in reader:
            if received_signal() is not None:
                break
            found = network_packet(linktype, record.data)
            if found is None:
                continue
            seen += 1
            if not packet_filter.matches(found.packet, found.outgoing):
                continue
            iface = None if found.ifindex is None else f"if{found.ifindex}"
            sink.packet(found.packet, record.timestamp_ns, found.outgoing, iface)
            if args.count is not None and sink.kept >= args.count:
                break
    _summary(sink, seen, None, received_signal() is not None, sockets=None)
    return EXIT_OK if received_signal() is None else EXIT_INTERRUPTED


async def _live(args: argparse.Namespace, packet_filter: PacketFilter) -> int:
    duration = math.inf if args.duration is None else args.duration
    async with open_sniffer(packet_filter, interface=args.interface) as sniffer:
        with _output(args) as writer:
            return await _live_sniff(args, sniffer, _Sink(args, writer), duration)


async def _live_sniff(args: argparse.Namespace, sniffer: Any, sink: _Sink, duration: float) -> int:
    """Capture into ``sink`` until the count, the duration or Ctrl-C."""
    where = args.interface or "all interfaces"
    print(f"rawprobe: listening on {where} (IPv4 and IPv6)", file=sys.stderr, flush=True)

    def counters() -> str:
        return render_packet.sniff_summary(sniffer.seen, sniffer.kept, None)

    async with interruptible() as interrupt:
        if sink.live:
            with LiveView(sink.console, lambda: sink.table(counters())) as view:
                sink.view = view
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(view.ticker)
                    await _capture(sniffer, sink, args.count, duration)
                    tasks.cancel_scope.cancel()
        else:
            await _capture(sniffer, sink, args.count, duration)
    stats = sniffer.stats()
    _summary(sink, stats.seen, stats.kernel_drops, interrupt.happened, sockets="packet")
    return EXIT_INTERRUPTED if interrupt.happened else EXIT_OK


async def _capture(sniffer: Any, sink: _Sink, count: int | None, duration_s: float) -> None:
    with anyio.move_on_after(duration_s):
        async for captured in sniffer:
            sink.packet(
                captured.packet, captured.timestamp_ns, captured.outgoing, captured.interface
            )
            if count is not None and sink.kept >= count:
                return


def _summary(
    sink: _Sink, seen: int, kernel_drops: int | None, interrupted: bool, *, sockets: str | None
) -> None:
    """The closing line on stderr; with ``--json``, the stream's last line too."""
    if sink.json:
        summary = {"sockets": sockets, "interrupted": interrupted, "captured": sink.kept,
                   "seen": seen, "kernel_drops": kernel_drops}  # fmt: skip
        print(json.dumps({**header("sniff", "summary"), **summary}), flush=True)
    line = render_packet.sniff_summary(seen, sink.kept, kernel_drops)
    print(line + ("; interrupted" if interrupted else ""), file=sys.stderr, flush=True)
