"""``rawprobe scan``: TCP SYN (or ACK) and UDP port scans with nmap-like output.

``-sU`` scans UDP (the top 100 UDP ports by default); with ``-sS``/``-sA`` too, both
protocols in one run as nmap does: one transport (TCP, UDP and ICMP sockets) per
worker, the TCP scan then the UDP scan over it, each worker on its shard of each.
``-p`` takes nmap's ``T:``/``U:`` prefixes (``-p 22,U:53,T:80``: unprefixed ports are
for every protocol scanned). UDP needs raw sockets: there is no connect() rung for it.

``--shard I/N`` (with ``--seed``) scans this machine's share of the (host, port) order,
which ``--workers`` splits again between processes. ``--ndjson`` prints each host as
soon as its ports (its share of them) are decided: the workers send their part of each
host to this process (``Messages``), which prints a host once every part is in.
Output files: nmap's XML (``-oX``), normal (``-oN``) and grepable (``-oG``), or all
three (``-oA BASENAME``), rendered by cli/render_nmap.py and cli/render_scan.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio

from rawprobe.cli import render_scan
from rawprobe.cli.args import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_backend_option,
    add_broadcast_option,
    add_family_options,
    add_max_outage_option,
    add_pcap_option,
    add_rung_options,
    add_shard_options,
    address,
    check_shard,
    defer_signals,
    installed_version,
    int_in,
    interruptible,
    recording_transport,
    seconds,
)
from rawprobe.cli.outputs import (
    add_output_bundle,
    add_output_option,
    opens_outputs,
    stdout_outputs,
    write_output,
)
from rawprobe.cli.render import header
from rawprobe.cli.target_args import (
    add_exclude_options,
    add_file_option,
    check_source,
    target_space,
)
from rawprobe.errors import UsageError
from rawprobe.probes.connect_scan import ConnectScan
from rawprobe.probes.drive import drive
from rawprobe.probes.portspec import DEFAULT_TOP_UDP_PORTS, top_ports
from rawprobe.probes.scan import (
    SCAN_INBOX,
    ScanMachine,
    ScanOptions,
    ScanProgress,
    check_scan,
    merge_hosts,
    merge_results,
    new_machine,
    scan_ports,
    scan_protocols,
    source_lookup,
)
from rawprobe.probes.scan_models import HostPorts, ScanResult
from rawprobe.probes.targets import TargetSpace
from rawprobe.probes.udp_scan import UdpScanMachine
from rawprobe.probes.workers import Messages, plan_workers, run_plan
from rawprobe.transport.ladder import rung_privileged, wants_raw
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.sockets import RouteLookup


def register(commands: Any) -> None:
    scan = commands.add_parser(
        "scan",
        help="TCP SYN port scan (like nmap -sS)",
        description="Send a TCP SYN to every port of every target in a random order and "
        "report each port as open (SYN-ACK), closed (RST) or filtered (no answer after "
        "retries, or an ICMP error). Default ports: the 1000 most common.",
    )
    scan.add_argument("targets", nargs="*", metavar="TARGET", help="host, address, CIDR or A-B")
    add_file_option(scan, "-f", "--file", "-iL")
    add_exclude_options(scan)
    scan.add_argument(
        "-p", "--ports", metavar="PORTS", help="22,80,443 / 1-1024 / - (all; -p- works too)"
    )
    scan.add_argument("--top-ports", type=int_in(1, 1000), metavar="N", help="N most common")
    scan.add_argument(
        "--rate", type=seconds, default=DEFAULT_RATE_PPS, help="max probes/s (0: no cap)"
    )
    scan.add_argument("--min-rate", type=seconds, default=0.0, help="min probes/s")
    scan.add_argument("--retries", type=int_in(0, 20), default=1, help="retransmissions (1)")
    scan.add_argument(
        "--max-retries", type=int_in(0, 50), default=6, help="retransmissions when loss is seen"
    )
    add_max_outage_option(scan)
    scan.add_argument(
        "--ack", "-sA", action=_ScanType, const=True, default=False,
        help="ACK scan: unfiltered vs filtered",
    )  # fmt: skip
    scan.add_argument(
        "-sS", dest="ack", action=_ScanType, const=False, help="SYN scan (the default)"
    )
    scan.add_argument(
        "-sU", dest="udp", action="store_true",
        help="UDP scan (default ports: the top 100 UDP); with -sS/-sA: both protocols",
    )  # fmt: skip
    scan.add_argument("-Pn", action="store_true", help="no-op: rawprobe never pings first")
    scan.add_argument("-n", action="store_true", help="no-op: scans never resolve names")
    shown = scan.add_mutually_exclusive_group()
    shown.add_argument("--open", action="store_true", help="show only open ports")
    shown.add_argument("--all", action="store_true", help="list every port, closed ones too")
    scan.add_argument("--reason", action="store_true", help="show why each port has its state")
    scan.add_argument("-r", dest="sequential", action="store_true", help="ports in order")
    add_shard_options(scan, "(host, port) pairs")
    scan.add_argument("-S", "--source", type=address, metavar="ADDRESS", help="source address")
    add_family_options(scan)
    output = scan.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document on stdout")
    output.add_argument("--ndjson", action="store_true", help="one JSON line per host as decided")
    for flag, dest, what in _FILES:
        add_output_option(scan, flag, dest=dest, help=f"{what} (- stdout)", stdout_ok=True)
    add_output_bundle(
        scan, "-oA", dest="all_formats", help="BASENAME.xml, .nmap and .gnmap",
        parts={"xml": ".xml", "normal": ".nmap", "grepable": ".gnmap"},
    )  # fmt: skip
    scan.add_argument(
        "-w", "--workers", type=int_in(1, 64), help="worker processes (default: CPUs, max 4)"
    )
    scan.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_backend_option(scan)
    add_pcap_option(scan)
    rung = add_rung_options(scan, unprivileged="a TCP connect() scan (like nmap -sT)")
    rung.add_argument(
        "-sT", dest="rung", action=_ScanType, const="datagram",
        help="TCP connect() scan (= --unprivileged)",
    )  # fmt: skip
    add_broadcast_option(scan)
    scan.set_defaults(handler=run)


#: nmap's output files: option, namespace attribute, what it writes.
_FILES = (
    ("-oX", "xml", "nmap's XML output"),
    ("-oN", "normal", "nmap's normal output"),
    ("-oG", "grepable", "grepable output"),
)


class _ScanType(argparse.Action):
    """nmap's scan-type spellings, one type per run as in nmap: ``-sS`` (the default SYN
    scan), ``-sA`` (``--ack``), ``-sT`` (the connect() rung, ``--unprivileged``). Each
    stores its ``const`` in its ``dest`` and refuses a different type given before it."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        spelling = self.option_strings[-1]
        chosen = getattr(namespace, "scan_type", None)
        if chosen not in (None, spelling):
            raise argparse.ArgumentError(self, f"not with {chosen}: one scan type at a time")
        namespace.scan_type = spelling
        setattr(namespace, self.dest, self.const)


@opens_outputs
def run(args: argparse.Namespace) -> int:
    stdout_outputs(args, *(["--json"] if args.json else ["--ndjson"] if args.ndjson else []))
    check_shard(args)
    techniques = _techniques(args)
    options = ScanOptions(
        technique=techniques[0],
        retries=args.retries,
        max_retries=max(args.max_retries, args.retries),
        max_rate_pps=args.rate,
        min_rate_pps=args.min_rate,
        randomize=not args.sequential,
        seed=args.seed,
        keep_closed=args.all,
        closed_events=False,  # nothing here streams closed ports
        host_events=args.ndjson,
        outage_budget_s=args.max_outage,
    )
    port_lists = _port_lists(args, techniques)
    space = target_space(args, "scan", args.family)
    check_source(args.source, ["::" if f == socket.AF_INET6 else "0.0.0.0" for f in space.families])
    started_s = time.time()
    if not wants_raw(rung_privileged(args.rung), space.families):
        if args.udp:
            raise UsageError("a UDP scan (-sU) needs raw sockets (root or CAP_NET_RAW)")
        return _connect_scan(args, space, port_lists[0], started_s)
    for technique, ports in zip(techniques, port_lists, strict=True):
        _check_before_fork(space, ports, dataclasses.replace(options, technique=technique),
                           args.source)  # fmt: skip
    capture = args.pcap is not None
    total = space.size * sum(len(ports) for ports in port_lists)
    plan = plan_workers(args.workers, total, options.seed, args.shard, capture=capture)
    workers, args.seed = plan.workers, plan.seed  # (the documents say the order's seed)
    options = dataclasses.replace(
        options,
        seed=plan.seed,
        max_rate_pps=options.max_rate_pps / workers,  # the workers share the caps
        min_rate_pps=options.min_rate_pps / workers,
    )
    show_progress = sys.stderr.isatty() and not args.quiet
    hosts = _HostStream(techniques, port_lists, workers)
    messages = Messages(hosts.receive) if args.ndjson else None

    def job(worker: int) -> _Shard:
        shard, shards = plan.of(worker)
        shard_options = dataclasses.replace(options, shard=shard, shards=shards)
        draw = show_progress and worker == 0
        scans = [
            (dataclasses.replace(shard_options, technique=technique), ports)
            for technique, ports in zip(techniques, port_lists, strict=True)
        ]
        shard_result: _Shard = anyio.run(
            _scan_shard, args, scans, space, (draw, workers, messages), backend=args.backend
        )
        return shard_result

    defer_signals()  # from here on a signal stops the probing and the summary is printed
    shards = run_plan(job, plan, messages)
    results = [
        merge_results(list(parts)) for parts in zip(*(shard[0] for shard in shards), strict=True)
    ]
    interrupted = any(shard[2] for shard in shards)
    counters = {name: sum(shard[1][name] for shard in shards) for name in shards[0][1]}
    if args.ndjson:
        hosts.finish(interrupted)
    _print_result(args, results, port_lists, started_s, interrupted, counters, workers)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_INCOMPLETE if any(r.incomplete_reason for r in results) else EXIT_OK


class _HostStream:
    """``--ndjson``: prints a ``host`` event once a host is decided. Each worker sends
    its part of a host (of each protocol's scan) once that part is decided; a host is
    printed when its parts add up to every port scanned, or every worker has sent its
    part of every protocol. On this machine's shard of a sharded scan a host may have
    ports in fewer workers: such hosts are printed once the workers are done."""

    def __init__(
        self, techniques: list[str], port_lists: list[tuple[int, ...]], workers: int
    ) -> None:
        self.protocols = [render_scan.technique_protocol(t) for t in techniques]
        self.ports = sum(len(ports) for ports in port_lists)
        self.parts = workers * len(techniques)
        self.pending: dict[str, list[tuple[int, HostPorts]]] = {}

    def receive(self, _worker: int, batch: tuple[int, list[HostPorts]]) -> None:
        scan, hosts = batch
        for host in hosts:
            parts = self.pending.setdefault(host.address, [])
            parts.append((scan, host))
            if len(parts) == self.parts or sum(p.scanned for _s, p in parts) == self.ports:
                self._write(self.pending.pop(host.address))

    def finish(self, interrupted: bool) -> None:
        """After the workers: the hosts whose parts are all in (unless interrupted:
        then a host still waiting for a part was not decided)."""
        if not interrupted:
            for parts in self.pending.values():
                self._write(parts)
        self.pending.clear()

    def _write(self, parts: list[tuple[int, HostPorts]]) -> None:
        merged = [
            (protocol, merge_hosts([host for s, host in parts if s == scan]))
            for scan, protocol in enumerate(self.protocols)
            if any(s == scan for s, _host in parts)
        ]
        if len(self.protocols) == 1:
            data = render_scan.host_data(merged[0][1], merged[0][0])
        else:
            data = render_scan.protocols_data(merged)
        print(json.dumps({**header("scan", "host"), **data}), flush=True)


def _techniques(args: argparse.Namespace) -> list[str]:
    """The scans of this run, in order: the TCP one (unless -sU alone), then UDP."""
    tcp = "ack" if args.ack else "syn"
    if not args.udp:
        return [tcp]
    if args.rung == "datagram" or getattr(args, "scan_type", None) == "-sT":
        raise UsageError("a UDP scan (-sU) needs raw sockets: not with -sT/--unprivileged")
    return [tcp, "udp"] if getattr(args, "scan_type", None) else ["udp"]


def _port_lists(args: argparse.Namespace, techniques: list[str]) -> list[tuple[int, ...]]:
    """Each scan's ports: ``-p`` split by nmap's ``T:``/``U:`` prefixes, or the
    protocol's top ports (``--top-ports``, default 1000 TCP, 100 UDP)."""
    specs: dict[str, list[str]] = {"tcp": [], "udp": []}
    prefixed = False
    if args.ports is not None:
        current = None
        for token in args.ports.split(","):
            head, colon, rest = token.partition(":")
            if colon and head.upper() in ("T", "U"):
                current, token, prefixed = ("tcp" if head.upper() == "T" else "udp"), rest, True
            for protocol in [current] if current else ["tcp", "udp"]:
                specs[protocol].append(token)
    lists = []
    for technique in techniques:
        protocol = "udp" if technique == "udp" else "tcp"
        spec = ",".join(specs[protocol]) if args.ports is not None else None
        if prefixed and not spec:
            raise UsageError(
                f"-p {args.ports}: no {protocol.upper()} ports for the {technique} scan"
            )
        if protocol == "udp" and spec is None:
            lists.append(top_ports(args.top_ports or DEFAULT_TOP_UDP_PORTS, "udp"))
        else:
            lists.append(scan_ports(spec, args.top_ports))
    return lists


def _check_before_fork(
    space: TargetSpace, ports: tuple[int, ...], options: ScanOptions, source: str | None
) -> None:
    """What would fail in every worker fails here, once (workers inherit this network
    namespace, so the routes seen here are theirs)."""
    routes = RouteLookup()
    try:
        check_scan(space, ports, options, source_lookup(source, routes.source_for))
    finally:
        routes.close()


def _connect_scan(
    args: argparse.Namespace, space: TargetSpace, ports: tuple[int, ...], started_s: float
) -> int:
    """The unprivileged rung: a TCP connect() scan, labelled as such (nmap -sT)."""
    print("rawprobe: no raw sockets here: TCP connect() scan (like nmap -sT)", file=sys.stderr)
    scan = ConnectScan(space, ports, seed=args.seed, shard=args.shard, keep_closed=args.all)

    async def run_scan() -> bool:
        async with interruptible() as interrupt:
            await scan.run()
        return interrupt.happened

    interrupted: bool = anyio.run(run_scan, backend=args.backend)
    result = scan.result()
    if args.ndjson:  # (hosts printed at the end: the connect scan keeps no order of them)
        hosts = _HostStream(["connect"], [ports], 1)
        decided = [h for h in result.hosts if not interrupted or h.scanned == len(ports)]
        hosts.receive(0, (0, decided))
        hosts.finish(interrupted)
    _print_result(args, result, [ports], started_s, interrupted, None, 1)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _print_result(
    args: argparse.Namespace,
    results: ScanResult | list[ScanResult],
    port_lists: list[tuple[int, ...]],
    started_s: float,
    interrupted: bool,
    counters: dict[str, int] | None,
    workers: int,
) -> None:
    """The report, the JSON document or the NDJSON stream's summary, and nmap's files
    (``counters`` None: a connect() scan)."""
    result = render_scan.combined(results)
    if args.json or args.ndjson:
        document = render_scan.scan_document(
            results, interrupted=interrupted, counters=counters, workers=workers,
            sockets="raw" if counters is not None else "tcp-connect", shard=args.shard,
            seed=args.seed, with_hosts=False,
        )  # fmt: skip
        if args.ndjson:  # the stream's last line
            print(json.dumps({**header("scan", "summary"), **document["summary"]}))
        else:
            hosts = render_scan.hosts_data(results)
            # Indented for a few hosts; compact (json's C encoder) for networks.
            indent = 2 if result.host_count <= 10 else None
            render_scan.write_document(document, "hosts", hosts, sys.stdout.write, indent=indent)
    elif not stdout_outputs(args):  # (nmap: with -oX -, stdout has the XML only)
        for line in render_scan.scan_report(
            results,
            only_open=args.open,
            show_all=args.all,
            reason=args.reason,
            interrupted=interrupted,
        ):
            print(line)
    _write_files(args, results, port_lists, started_s, interrupted)


def _write_files(
    args: argparse.Namespace,
    results: ScanResult | list[ScanResult],
    port_lists: list[tuple[int, ...]],
    started_s: float,
    interrupted: bool,
) -> None:
    """nmap's files asked for (-oX, -oN, -oG, -oA), each to its file or stdout."""
    wanted = [(flag, dest) for flag, dest, _what in _FILES if getattr(args, dest) is not None]
    if not wanted:
        return
    from rawprobe.cli import render_nmap  # (loaded only for these files)

    run = render_nmap.Run(args.command_line, started_s, installed_version() or "unknown")
    finished_s = time.time()
    for flag, dest in wanted:
        if dest == "xml":
            pieces: Iterable[str] = render_nmap.scan_xml(
                results, port_lists, run, finished_s, only_open=args.open, interrupted=interrupted
            )
        elif dest == "normal":
            pieces = _lines(render_nmap.normal_output(
                results, run, finished_s, only_open=args.open, show_all=args.all,
                reason=args.reason, interrupted=interrupted,
            ))  # fmt: skip
        else:
            started, finished = (render_nmap.nmap_time(t) for t in (started_s, finished_s))
            pieces = _lines(render_scan.grepable(
                results, run.command_line, started, finished, interrupted=interrupted
            ))  # fmt: skip
        _write_file(getattr(args, dest), pieces, flag)


def _lines(lines: list[str]) -> list[str]:
    return [line + "\n" for line in lines]


def _write_file(target: Any, pieces: Iterable[str], flag: str, chunk: int = 1 << 16) -> None:
    """Write ``pieces`` to stdout (``-``) or to a file opened before probing
    (cli/outputs.py), in chunks of about ``chunk`` characters."""
    batch: list[str] = []
    size = 0

    def flush() -> None:
        text = "".join(batch)
        if target == "-":
            sys.stdout.write(text)
        else:
            write_output(target, text.encode(), flag)
        batch.clear()

    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= chunk:
            flush()
            size = 0
    flush()


#: What a scan worker sends back: its results (one a scan), transport counters,
#: interrupted?
_Shard = tuple[list[ScanResult], dict[str, int], bool]


async def _scan_shard(
    args: argparse.Namespace,
    scans: list[tuple[ScanOptions, tuple[int, ...]]],
    space: TargetSpace,
    output: tuple[bool, int, Messages | None],
) -> _Shard:
    """One worker: its own transport (every scan's sockets) and its shard of each
    scan's (host, port) order, the scans one after the other (an interrupt stops all).
    ``output``: draw the progress bar?, the number of workers, where hosts go."""
    show_progress, workers, messages = output
    protocols = list(dict.fromkeys(p for o, _ in scans for p in scan_protocols(space, o.technique)))
    results = []
    async with recording_transport(
        protocols, rate_pps=scans[0][0].max_rate_pps, pcap=args.pcap
    ) as transport:
        async with interruptible() as interrupt:
            for index, (options, ports) in enumerate(scans):
                machine = _machine(transport, space, ports, options, args.source)
                bar = _progress_bar(space.size * len(ports), workers) if show_progress else None
                with bar or contextlib.nullcontext() as on_progress:
                    on_event = _host_sender(index, messages, on_progress)
                    try:
                        await drive(machine, transport, on_event=on_event, inbox_size=SCAN_INBOX)
                    finally:
                        if on_event is not None:
                            on_event(None)  # the hosts decided last (interrupted too)
                results.append(machine.result(anyio.current_time()))
        if len(results) < len(scans):  # interrupted: the scans not run are partial too
            results.append(machine.result(anyio.current_time()))
            results += [_machine(transport, space, p, o, args.source).result(anyio.current_time())
                        for o, p in scans[len(results):]]  # fmt: skip
        counters = transport.counters.as_dict()
    return results, counters, interrupt.happened


def _host_sender(
    scan: int, messages: Messages | None, on_progress: Callable[[object], None] | None
) -> Callable[[object], None] | None:
    """The event handler of a worker's scan: HostPorts events sent to the parent in
    batches (at each progress event, and when called with None), progress events to
    ``on_progress``."""
    if messages is None:
        return on_progress
    batch: list[HostPorts] = []

    def on_event(event: object) -> None:
        if isinstance(event, HostPorts):
            batch.append(event)
            return
        if on_progress is not None and event is not None:
            on_progress(event)
        if batch and (event is None or isinstance(event, ScanProgress)):
            messages.send((scan, list(batch)))
            batch.clear()

    return on_event


def _machine(
    transport: Any, space: TargetSpace, ports: tuple[int, ...], options: ScanOptions,
    source: str | None,
) -> ScanMachine:  # fmt: skip
    """A scan's machine on ``transport`` (for TCP, its replies filtered to this scan)."""
    if options.technique != "udp":
        machine = new_machine(transport, space, ports, options, source=source)
        transport.filter_tcp([machine.source_port])  # this process's scan only
        return machine
    lookup = source_lookup(source, transport.source_for)
    return UdpScanMachine(
        space, ports, cookies=transport.cookies, source_for=lookup, options=options
    )


@contextlib.contextmanager
def _progress_bar(total: int, workers: int) -> Iterator[Callable[[object], None]]:
    """A progress bar for the block, drawn by the event handler it yields from this
    shard's ScanProgress events (scaled to the whole scan). rich is imported here only:
    scripts (--json, no terminal) never pay its start-up time."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} probes/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True, highlight=False),
        auto_refresh=False,  # redrawn from the event loop on progress events
        transient=True,
    )
    task = progress.add_task("scan", total=total, rate=0.0)

    def on_event(event: object) -> None:
        if isinstance(event, ScanProgress):
            done, rate = event.decided * workers, event.rate_pps * workers
            progress.update(task, completed=done, rate=rate, refresh=True)

    with progress:
        yield on_event
