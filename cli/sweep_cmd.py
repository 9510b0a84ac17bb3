"""``rawprobe sweep``: host discovery over whole networks (like ``fping -g``, ``nmap -sn``)."""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import mmap
import struct
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio

from rawprobe.cli.args import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_NO_REPLY,
    EXIT_OK,
    add_backend_option,
    add_broadcast_option,
    add_max_outage_option,
    add_pcap_option,
    add_rung_options,
    add_shard_options,
    check_shard,
    defer_signals,
    describe_rung,
    installed_version,
    int_in,
    interruptible,
    raw_rung,
    recording_transport,
    seconds,
    sockets_name,
)
from rawprobe.cli.outputs import add_output_option, opens_outputs, stdout_outputs, write_output
from rawprobe.cli.render import header, ms
from rawprobe.cli.target_args import add_exclude_options, add_file_option, target_space
from rawprobe.errors import UsageError
from rawprobe.probes.drive import drive
from rawprobe.probes.permute import Permutation
from rawprobe.probes.sweep import (
    METHODS,
    HostDown,
    HostUp,
    ShardOutcome,
    SweepMachine,
    SweepOptions,
    batch_for_rate,
    check_sweep,
    merge_outcomes,
    new_machine,
)
from rawprobe.probes.targets import TargetSpace
from rawprobe.probes.workers import plan_workers, run_plan
from rawprobe.transport.pacing import DEFAULT_RATE_PPS
from rawprobe.transport.sockets import RouteLookup


def register(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="find the live hosts of networks (like fping -g / nmap -sn)",
        description="Probe every address of the targets once (plus retries) in a random "
        "order and report which hosts answered.",
    )
    sweep.add_argument("targets", nargs="*", metavar="TARGET", help="address, CIDR or range A-B")
    add_file_option(sweep, "-f", "--file")
    add_exclude_options(sweep)
    sweep.add_argument("-M", "--method", choices=METHODS, default="icmp", help="probe type")
    sweep.add_argument("-p", "--port", type=int_in(1, 65535), help="port for tcp-syn/tcp-ack/udp")
    sweep.add_argument("-r", "--retries", type=int_in(0, 10), default=1, help="retries (1)")
    sweep.add_argument(
        "-t", "--timeout", type=seconds, default=1.0, help="max seconds to wait per probe (1)"
    )
    sweep.add_argument(
        "--rate", type=seconds, default=DEFAULT_RATE_PPS, help="packets/s cap (0: none)"
    )
    add_max_outage_option(sweep)
    add_shard_options(sweep, "the addresses")
    output = sweep.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document at the end")
    output.add_argument("--ndjson", action="store_true", help="one JSON line per host as decided")
    add_output_option(sweep, "-oX", dest="xml", help="nmap -sn's XML (- stdout)", stdout_ok=True)
    add_output_option(
        sweep, "-oG", dest="grepable", help="nmap -sn's grepable lines (- stdout)", stdout_ok=True
    )
    sweep.add_argument(
        "--all", action="store_true", help="--json/--ndjson: list the hosts down too"
    )
    sweep.add_argument(
        "-w", "--workers", type=int_in(1, 64), help="worker processes (default: CPUs, max 4)"
    )
    sweep.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_broadcast_option(sweep)
    add_backend_option(sweep)
    add_pcap_option(sweep)
    add_rung_options(sweep)
    sweep.set_defaults(handler=run)


@opens_outputs
def run(args: argparse.Namespace) -> int:
    options = SweepOptions(
        method=args.method,
        port=args.port,
        retries=args.retries,
        timeout_s=args.timeout,
        outage_budget_s=args.max_outage,
        batch=batch_for_rate(args.rate),
    )
    if args.port is not None and args.method == "icmp":
        raise UsageError("sweep: -p is for -M tcp-syn, tcp-ack or udp (ICMP echo has no port)")
    check_shard(args)
    if args.all and not (args.json or args.ndjson):
        raise UsageError("sweep: --all lists down hosts in --json and --ndjson output "
                         "(plain output lists the hosts up)")  # fmt: skip
    stdout_outputs(args, *(["--json"] if args.json else ["--ndjson"] if args.ndjson else []))
    space = target_space(args, "sweep")
    _check_before_fork(space)
    capture = args.pcap is not None
    plan = plan_workers(args.workers, space.size, args.seed, args.shard, capture=capture)
    workers, args.seed = plan.workers, plan.seed
    files = _NmapFiles(args) if args.xml is not None or args.grepable is not None else None
    progress = mmap.mmap(-1, 16 * workers)  # per worker: decided, up (shared after fork)
    show_progress = sys.stderr.isatty() and not args.quiet

    def job(worker: int) -> _Shard:
        draw = show_progress and worker == 0
        shard: _Shard = anyio.run(
            _sweep_shard, args, options, space, plan.of(worker),
            (progress, worker, workers, draw), files, backend=args.backend,
        )  # fmt: skip
        return shard

    defer_signals()  # from here on a signal stops the probing and the summary is printed
    shards = run_plan(job, plan)
    outcomes = [outcome for outcome, _sockets, _down in shards]
    result = merge_outcomes(space, outcomes)
    interrupted = any(outcome.interrupted for outcome in outcomes)
    counters = {
        name: sum(outcome.counters.get(name, 0) for outcome in outcomes)
        for name in outcomes[0].counters
    }
    total = Permutation(space.size, args.seed, *args.shard).size_hint()
    alive_count = result.alive_count
    # Interrupted: hosts not decided (never probed, or probed and still awaited) are
    # neither up nor down; only the probes that left are counted.
    undecided = total - alive_count - result.dead_count
    summary = {
        "method": options.method,
        "port": options.port,
        "sockets": shards[0][1],
        "lists_down": args.all,
        "hosts_up": alive_count,
        "hosts_down": result.dead_count,
        "hosts_undecided": undecided,
        "targets": total,
        "probes_sent": result.probes_sent,
        "elapsed_ms": ms(result.elapsed_s),
        "rate_pps": round(result.rate_pps),
        "workers": workers,
        "shard": f"{args.shard[0]}/{args.shard[1]}",
        "seed": args.seed,
        "interrupted": interrupted,
        "complete": result.complete and not interrupted,
        "incomplete_reason": result.incomplete_reason,
        "counters": counters,
    }
    if args.json:
        hosts: Iterator[tuple[str, str]] = ((a, "up") for a in result.iter_alive())
        if args.all:  # the hosts down merged in, in the same (address) order
            down = sorted((a for _o, _s, found in shards for a in found), key=_address_order)
            hosts = heapq.merge(
                hosts, ((a, "down") for a in down), key=lambda host: _address_order(host[0])
            )
        _write_document({**header("sweep"), "hosts": "@HOSTS@", "summary": summary}, hosts)
    elif args.ndjson:  # the stream's last line: the counts, and whether it stopped short
        print(json.dumps({**header("sweep", "summary"), **summary}), flush=True)
    elif not stdout_outputs(args):  # (nmap: with -oX -, stdout has the XML only)
        _write_chunks(f"{address}\n" for address in result.iter_alive())
    if files is not None:
        if interrupted:
            error: str | None = f"interrupted: {total - undecided} of {total} hosts decided"
        else:
            error = result.incomplete_reason and f"sweep incomplete: {result.incomplete_reason}"
        files.tail(result.elapsed_s, (alive_count, total), error)
    if not args.json and not args.quiet:
        line = sweep_summary(
            (alive_count, result.dead_count, total), result.probes_sent, result.elapsed_s,
            workers, counters.get("kernel_drops", 0), interrupted,
        )  # fmt: skip
        _summary(line)
    if result.incomplete_reason and not args.json:
        print(f"rawprobe: sweep incomplete: {result.incomplete_reason}", file=sys.stderr)
    if interrupted:
        return EXIT_INTERRUPTED
    if result.incomplete_reason:
        return EXIT_INCOMPLETE
    return EXIT_OK if alive_count else EXIT_NO_REPLY


def sweep_summary(
    hosts: tuple[int, int, int],
    probes_sent: int,
    elapsed_s: float,
    workers: int,
    kernel_drops: int,
    interrupted: bool,
) -> str:
    """The closing line on stderr (``hosts``: up, down, targets); an interrupted sweep
    says how far it got."""
    up, down, total = hosts
    rate = probes_sent / elapsed_s if elapsed_s > 0 else 0.0
    line = (
        f"{up} of {total} hosts up, {probes_sent} probes in {elapsed_s:.2f} s"
        f" ({rate:,.0f} probes/s, {workers} workers); kernel drops {kernel_drops}"
    )
    if interrupted:
        line += (
            f"; interrupted: {up + down} hosts decided ({down} down), {total - up - down} undecided"
        )
    return line


def _summary(line: str) -> None:
    """One line on stderr: rich (colour, no wrapping) on a terminal, else plain text
    (a file or a pipe gets the line whole, never cut at 80 columns)."""
    if sys.stderr.isatty():
        from rich.console import Console  # start-up time: see _report_progress

        Console(stderr=True, soft_wrap=True).print(line, highlight=False)
    else:
        print(line, file=sys.stderr, flush=True)


class _NmapFiles:
    """``-oX`` and ``-oG``: what ``nmap -sn`` writes. The heads are written before the
    workers fork, each host up by the worker that found it as it is found (one write
    each: the workers' outputs interleave whole), the tails at the end. The renderer
    loads only when one of them is asked for."""

    def __init__(self, args: argparse.Namespace) -> None:
        from rawprobe.cli import render_nmap, render_scan

        self.nmap, self.comments = render_nmap, render_scan
        self.xml, self.grepable = args.xml, args.grepable
        command_line, started_s = args.command_line, time.time()
        run = render_nmap.Run(command_line, started_s, installed_version() or "unknown")
        started = render_nmap.nmap_time(started_s)
        head = render_scan.initiated_comment("sweep", started, command_line)
        self._write(render_nmap.sweep_xml_head(run), head + "\n")

    def host(self, event: HostUp) -> None:
        xml = self.nmap.sweep_xml_host(event.address, event.reason, event.ttl)
        self._write(xml, self.nmap.sweep_grepable_host(event.address))

    def tail(self, elapsed_s: float, counts: tuple[int, int], error: str | None) -> None:
        """``counts``: hosts up, addresses swept; ``error``: why it stopped short."""
        finished_s = time.time()
        up, total = counts
        finished = self.nmap.nmap_time(finished_s)
        done = self.comments.done_comment(finished, total, up, elapsed_s)
        self._write(self.nmap.sweep_xml_tail(finished_s, elapsed_s, counts, error), done + "\n")

    def _write(self, xml: str, grepable: str) -> None:
        for target, text, option in ((self.xml, xml, "-oX"), (self.grepable, grepable, "-oG")):
            if target == "-":
                sys.stdout.write(text)
                sys.stdout.flush()  # (the head: before the workers fork, written once)
            elif target is not None:
                write_output(target, text.encode(), option)


def _check_before_fork(space: TargetSpace) -> None:
    """What would fail in every worker fails here, once: the size of the space, a
    family without a route (the workers inherit this network namespace)."""
    routes = RouteLookup()
    try:
        check_sweep(space, routes.source_for)
    finally:
        routes.close()


def _address_order(address: str) -> tuple[int, int]:
    """Addresses in the order of a target space: IPv4 first, then by value."""
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def _write_document(document: dict[str, Any], hosts: Iterator[tuple[str, str]]) -> None:
    """The document with ``hosts`` (address, state) written in place of its marker, a
    chunk at a time: a million hosts are never one Python list or one string."""
    head, tail = json.dumps(document, indent=2).split('"@HOSTS@"')
    sys.stdout.write(head + "[")
    items = (
        f'{"," if i else ""}\n    {{"address": "{a}", "state": "{state}"}}'
        for i, (a, state) in enumerate(hosts)
    )
    written = _write_chunks(items)
    sys.stdout.write(("\n  ]" if written else "]") + tail + "\n")


def _write_chunks(pieces: Iterator[str], chunk: int = 4096) -> int:
    """Write many small strings to stdout in joined chunks (one write per chunk);
    returns how many."""
    batch: list[str] = []
    count = 0
    for piece in pieces:
        count += 1
        batch.append(piece)
        if len(batch) >= chunk:
            sys.stdout.write("".join(batch))
            batch.clear()
    sys.stdout.write("".join(batch))
    return count


_Progress = tuple[mmap.mmap, int, int, bool]  # shared counters, worker, workers, draw?


#: What a worker sends back: its outcome, the sockets it used, and the hosts it found
#: down when the document lists them (``--json --all``).
_Shard = tuple[ShardOutcome, str, list[str]]


async def _sweep_shard(
    args: argparse.Namespace,
    options: SweepOptions,
    space: TargetSpace,
    shard: tuple[int, int],
    progress: _Progress,
    files: _NmapFiles | None,
) -> _Shard:
    """One worker: its own transport, its shard of the order, Ctrl-C -> partial."""
    order = Permutation(space.size, args.seed, *shard)
    rate = args.rate / progress[2]  # the workers share the rate cap
    down: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, HostUp) and files is not None:
            files.host(event)
        if isinstance(event, HostDown):
            if not args.all:
                return
            if args.json:  # (listed in the document, in address order)
                down.append(event.address)
                return
        if args.ndjson:  # whole lines: shards interleave
            print(json.dumps(_event_data(event)), flush=True)

    emit = args.ndjson or args.all or files is not None
    protocols = options.socket_protocols
    rung = args.rung if options.method == "icmp" else raw_rung(args, "TCP and UDP sweeps")
    async with recording_transport(
        protocols, rate_pps=rate, pcap=args.pcap, rung=rung
    ) as transport:
        if args.verbose and progress[1] == 0:
            print(describe_rung(transport), file=sys.stderr)
        machine = new_machine(transport, space, iter(order), options, emit_events=emit)
        async with interruptible() as interrupt, anyio.create_task_group() as tasks:
            tasks.start_soon(_report_progress, machine, progress, order.size_hint())

            async def run_sweep() -> None:
                await drive(
                    machine,
                    transport,
                    on_event=on_event if emit else None,
                    inbox_size=2 * options.max_in_flight,
                )
                tasks.cancel_scope.cancel()

            tasks.start_soon(run_sweep)
        outcome = machine.outcome(anyio.current_time(), transport.counters.as_dict())
    if interrupt.happened:
        outcome = ShardOutcome(
            outcome.alive, outcome.dead_count, outcome.probes_sent,
            outcome.elapsed_s, outcome.counters, interrupted=True,
        )  # fmt: skip
    return outcome, sockets_name(transport), down


def _event_data(event: object) -> dict[str, Any]:
    """The NDJSON line of a host decided."""
    if isinstance(event, HostUp):
        rtt_ms = None if event.rtt_s is None else ms(event.rtt_s)
        return {**header("sweep", "host"), "address": event.address, "state": "up",
                "reason": event.reason, "rtt_ms": rtt_ms, "ttl": event.ttl}  # fmt: skip
    assert isinstance(event, HostDown)
    return {**header("sweep", "host"), "address": event.address, "state": "down",
            "reason": event.reason, "rtt_ms": None, "ttl": None}  # fmt: skip


async def _report_progress(machine: SweepMachine, progress: _Progress, shard_size: int) -> None:
    """Publish this worker's counts; worker 0 also draws the bar for all of them
    (refreshed from this task, never from a thread)."""
    shared, worker, workers, draw = progress
    slot = struct.Struct("=qq")
    if not draw:
        while True:
            slot.pack_into(shared, 16 * worker, machine.decided_count, machine.alive_count)
            await anyio.sleep(0.2)
    # rich loads only here: a sweep's wall time includes the start-up, and scripts
    # (--json, -q, no terminal) never draw.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[up]} up"),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True)
    total = shard_size * workers  # shards differ by at most a few addresses
    with Progress(*columns, console=console, auto_refresh=False, transient=True) as bar:
        task = bar.add_task("sweep", total=total, up=0)
        while True:
            slot.pack_into(shared, 0, machine.decided_count, machine.alive_count)
            counts = [slot.unpack_from(shared, 16 * i) for i in range(workers)]
            done, up = sum(c[0] for c in counts), sum(c[1] for c in counts)
            bar.update(task, completed=done, up=up, refresh=True)
            await anyio.sleep(0.2)
