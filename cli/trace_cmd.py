"""``rawprobe trace``: Paris traceroute over ICMP, UDP or TCP to many targets at once, and
an mtr-style live view (``--live``) or report (``--report -c N``).

Options follow traceroute where they can (``-f`` first TTL, ``-m`` max TTL, ``-q``
queries, ``-w`` wait, ``-p`` port, ``-n``, ``-I``/``-U``/``-T``); the targets file is
``-F``/``--file`` because traceroute's ``-f`` is the first TTL.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from rawprobe.cli import render_trace
from rawprobe.cli.args import (
    EXIT_INTERRUPTED,
    EXIT_NO_REPLY,
    EXIT_OK,
    add_backend_option,
    add_broadcast_option,
    add_family_options,
    add_pcap_option,
    add_rung_options,
    address,
    int_in,
    interruptible,
    positive_int,
    probe_transport,
    raw_rung,
    seconds,
    sockets_name,
)
from rawprobe.cli.outputs import add_output_option, opens_outputs
from rawprobe.cli.render import header, rtt_source_line
from rawprobe.cli.target_args import add_file_option, host_addresses, host_targets
from rawprobe.errors import UsageError
from rawprobe.probes.multiplex import ManyResults
from rawprobe.probes.pathmtu import new_mtu_machine, path_mtu_many_with
from rawprobe.probes.trace_live import fresh_flows, trace_rounds
from rawprobe.probes.trace_models import MultipathResult, TraceHop, TraceResult
from rawprobe.probes.trace_stats import LiveTrace
from rawprobe.probes.traceroute import (
    METHODS,
    TraceOptions,
    new_machine,
    trace_many_with,
    trace_protocols,
)
from rawprobe.rdns import ReverseNames
from rawprobe.transport.base import Transport

if TYPE_CHECKING:  # (rich only where something is drawn: not for --json)
    from rich.console import Console, Group

    from rawprobe.cli.live import LiveView


def register(commands: Any) -> None:
    trace = commands.add_parser(
        "trace",
        help="Paris traceroute (ICMP, UDP, TCP) to many targets at once; mtr-style --live",
        description="Trace routes with flow-stable (Paris) probes. -f is the first TTL, "
        "as in traceroute; read targets from a file with -F/--file.",
    )
    trace.add_argument("targets", nargs="*", metavar="TARGET")
    trace.add_argument("-M", "--method", choices=METHODS, default=None, help="probe protocol")
    trace.add_argument("-I", dest="method", action="store_const", const="icmp", help="-M icmp")
    trace.add_argument("-U", dest="method", action="store_const", const="udp", help="-M udp")
    trace.add_argument("-T", dest="method", action="store_const", const="tcp", help="-M tcp")
    trace.add_argument("-p", "--port", type=int_in(1, 65535), help="destination port")
    trace.add_argument("-f", "--first", type=int_in(1, 255), default=1, help="first TTL")
    trace.add_argument("-m", "--max-hops", type=int_in(1, 255), default=30, help="max TTL")
    trace.add_argument("-q", "--queries", type=int_in(1, 10), default=None, help="probes per hop")
    trace.add_argument(
        "-w", "--wait", type=trace_wait, default=None, metavar="MAX[,HERE[,NEAR]]",
        help="wait up to MAX s per query, less after answers: HERE x the RTT of the same "
        "hop's, NEAR x a later hop's (5,3,10; --live/--report 1,3,10; MAX alone: fixed)",
    )  # fmt: skip
    trace.add_argument("--retries", type=int_in(0, 10), default=None, help="re-probes per query")
    trace.add_argument(
        "-N", "--in-flight", type=positive_int, default=None, help="TTLs probed at once (all)"
    )
    trace.add_argument("--classic", action="store_true", help="vary ports like traceroute")
    trace.add_argument(
        "--mtu", action="store_true",
        help="path MTU of each hop, like tracepath (UDP unless -M), and MTU black holes",
    )  # fmt: skip
    trace.add_argument("-n", "--numeric", action="store_true", help="no reverse DNS")
    trace.add_argument("-s", "--source", type=address, metavar="ADDRESS", help="source address")
    add_broadcast_option(trace)
    add_family_options(trace)
    trace.add_argument(
        "--rate", type=seconds, default=None, help="max packets/s for the whole run (0: no cap)"
    )
    trace.add_argument("--json", action="store_true", help="JSON on stdout")
    mode = trace.add_mutually_exclusive_group()
    mode.add_argument("--live", action="store_true", help="mtr-style live table")
    mode.add_argument("--report", action="store_true", help="like mtr -r: rounds, then a table")
    trace.add_argument("-c", "--count", type=positive_int, help="rounds for --live/--report")
    trace.add_argument(
        "--flows", type=int_in(1, 256), default=None, metavar="N",
        help="--live/--report: probe N flows each round (each may take another path): "
        "statistics per (TTL, interface) and per path; with --mda: N flows through each "
        "interface it found (1)",
    )  # fmt: skip
    trace.add_argument(
        "-i", "--interval", type=seconds, default=1.0, help="seconds between rounds (live)"
    )
    add_file_option(trace, "-F", "--file")
    add_backend_option(trace)
    add_pcap_option(trace)
    add_rung_options(trace)
    # Multipath (cli/trace_mda.py).
    trace.add_argument(
        "--mda",
        action="store_true",
        help="every load-balanced path (MDA; UDP); with --live/--report: then statistics for each",
    )
    trace.add_argument(
        "--confidence", type=int, choices=(95, 99), help="--mda: %% chance to miss no interface"
    )
    trace.add_argument(
        "--per-interface", action="store_true", help="--mda: the classic rule (scamper's)"
    )
    trace.add_argument(
        "--lite", action="store_true", help="--mda: MDA-Lite (fewer probes; assumes no meshing)"
    )
    add_output_option(trace, "--dot", dest="dot", help="--mda: Graphviz file", stdout_ok=False)
    trace.set_defaults(handler=run)


#: traceroute's -w defaults (MAX seconds, HERE and NEAR factors); live rounds wait 1 s.
DEFAULT_WAIT = (5.0, 3.0, 10.0)
DEFAULT_LIVE_WAIT = (1.0, 3.0, 10.0)


def trace_wait(text: str) -> tuple[float, float, float]:
    """traceroute's ``-w MAX[,HERE[,NEAR]]`` (``/`` separates too). MAX alone means a
    fixed wait (HERE and NEAR 0, as traceroute keeps it for old scripts); a missing NEAR
    is 10."""
    parts = text.replace("/", ",").split(",")
    if not 1 <= len(parts) <= 3:
        raise argparse.ArgumentTypeError(f"not MAX[,HERE[,NEAR]]: {text!r}")
    values = [seconds(part) for part in parts]
    if not values[0] > 0:
        raise argparse.ArgumentTypeError(f"the wait must be more than 0 seconds: {text!r}")
    if len(values) == 1:
        return values[0], 0.0, 0.0
    return values[0], values[1], values[2] if len(values) == 3 else DEFAULT_WAIT[2]


@opens_outputs
def run(args: argparse.Namespace) -> int:
    targets = host_targets(args, "trace")
    if args.mtu:
        _check_mtu_options(args)  # (--mda among them: refused before MDA's own checks)
    live = args.live or args.report
    if args.count is not None and not live:
        raise UsageError("trace: -c counts the rounds of --live or --report (a trace runs once)")
    if args.flows is not None and not live:
        raise UsageError("trace: --flows N is for --live or --report (a trace follows one flow)")
    if args.flows is not None and args.classic:
        raise UsageError("trace: --flows needs Paris probes (--classic varies the flow)")
    if args.mda or mda_options_given(args):
        # (MDA's module, its rich and its machine only when asked: start-up)
        from rawprobe.cli.trace_mda import check_mda, run_mda  # (imports this module)

        check_mda(args)
        if args.mda and not live:
            return run_mda(args, targets)
    if args.report and args.count is None:
        args.count = 10  # mtr -r's default
    queries = args.queries if args.queries is not None else (1 if live else 3)
    retries = args.retries if args.retries is not None else (0 if live else 2)
    wait_max, here, near = args.wait or (DEFAULT_LIVE_WAIT if live else DEFAULT_WAIT)
    options = TraceOptions(
        method=args.method or ("udp" if args.mtu or args.mda else "icmp"),
        first_ttl=args.first,
        max_ttl=args.max_hops,
        queries=queries,
        # MAX bounds the whole query: its tries share it (an answer to any of them
        # counts until it is over), so a hop that never answers costs MAX, not 3 x MAX.
        wait_s=wait_max / (1 + retries),
        here=here,
        near=near,
        retries=retries,
        in_flight=args.in_flight,
        port=args.port,
        paris=not args.classic,
    )
    if args.mda:
        args.rung = raw_rung(args, "MDA traces")
    elif options.method == "tcp":
        args.rung = raw_rung(args, "TCP traces")
    elif args.mtu and options.method == "icmp":
        args.rung = raw_rung(args, "--mtu ICMP traces (the default UDP method is not)")
    main = _live_main if live else _main
    code: int = anyio.run(_with_names, main, args, targets, options, backend=args.backend)
    return code


def _check_mtu_options(args: argparse.Namespace) -> None:
    """``--mtu`` probes one flow, TTL after TTL, one probe a TTL (tracepath's way): the
    options that say otherwise are refused, one line each."""
    clashes = {
        "--mda": args.mda,  # (multipath: other flows, other MTUs)
        "--live": args.live,
        "--report": args.report,
        "--classic": args.classic,
        "-q": args.queries is not None,
        "-N": args.in_flight is not None,
    }
    for option, given in clashes.items():
        if given:
            raise UsageError(f"trace: --mtu and {option} cannot be used together")
    if args.method == "tcp":
        raise UsageError("trace: --mtu probes with UDP (the default) or ICMP, not TCP SYNs")


async def _with_names(main: Any, args: argparse.Namespace, *rest: Any) -> int:
    """Run ``main(args, *rest, names)`` with the run's reverse-DNS lookups (None with
    ``-n``): bounded in total (rawprobe/rdns.py), cancelled when the run ends."""
    async with lookup_names(args.numeric) as names:
        code: int = await main(args, *rest, names)
    return code


@asynccontextmanager
async def lookup_names(numeric: bool) -> AsyncIterator[ReverseNames | None]:
    """The run's reverse lookups: None when ``numeric`` (``-n``)."""
    if numeric:
        yield None
        return
    async with ReverseNames() as names:
        yield names


async def _names_for(
    names: ReverseNames | None, addresses: Iterable[str], *, wait: bool = True
) -> dict[str, str]:
    """Names of ``addresses`` within the run's budget; without ``wait`` (an interrupted
    run prints at once) only those already known."""
    if names is None:
        return {}
    return await names.names(addresses) if wait else names.known(addresses)


def _console(**options: Any) -> Console:
    from rich.console import Console

    return Console(**options)


def _emit(line: str, file: Any = None) -> None:
    print(line, flush=True, file=file or sys.stdout)


async def _main(
    args: argparse.Namespace,
    targets: list[str],
    options: TraceOptions,
    names_dns: ReverseNames | None = None,
) -> int:
    addresses = await host_addresses(args, targets)
    console = None if args.json else _console(highlight=False, soft_wrap=True)
    rich_out = console is not None and console.is_terminal
    streaming = len(targets) == 1 and not args.json and not rich_out
    results: list[TraceResult] = []
    partial: list[TraceResult] = []
    hops_in, hops_out = anyio.create_memory_object_stream[TraceHop](1024)
    printed = [options.first_ttl - 1]  # the last hop line streamed
    if not streaming:
        hops_out.close()  # only the streaming printer reads it

    async def print_hops() -> None:
        async with hops_out:
            async for hop in hops_out:
                names = await _names_for(names_dns, hop.addresses)
                if args.mtu:
                    for line in render_trace.mtu_hop_lines(hop, names):
                        _emit(line)
                else:
                    _emit(render_trace.hop_line(hop, names))
                printed[0] = hop.ttl

    def on_event(_target: str, event: object) -> None:
        if isinstance(event, TraceHop):
            if names_dns is not None:
                names_dns.want(event.addresses)  # asked now, not when the line prints
            hops_in.send_nowait(event)

    async def show(result: TraceResult) -> None:
        addresses_seen = []
        if names_dns is not None:
            addresses_seen = [a for hop in result.hops for a in hop.addresses]
            names_dns.want(addresses_seen)  # JSON: asked as each trace ends
        if streaming and args.mtu:
            for line in render_trace.mtu_summary(result):
                _emit(line)
        if args.json or streaming:
            return
        names = await _names_for(names_dns, addresses_seen)
        if rich_out:
            assert console is not None
            console.print(render_trace.trace_table(result, names))
            return
        _emit(render_trace.trace_banner(result))
        for line in render_trace.trace_lines(result, names):
            _emit(line)
        _emit("")

    protocols = trace_protocols(addresses, options.method)

    udp = options.method == "udp"
    async with probe_transport(args, protocols, udp=udp, verbose=args.verbose) as transport:
        if streaming and args.mtu:  # tracepath's [LOCALHOST] line, on stdout as it does
            first = new_mtu_machine(transport, addresses[0], options).interface_mtu
            _emit(render_trace.mtu_banner(options.first_ttl, first))
        elif streaming:
            size = new_machine(transport, addresses[0], options).result().packet_size
            banner = render_trace.trace_banner(
                targets[0], addresses[0], max_ttl=options.max_ttl, packet_size=size
            )
            _emit(banner, sys.stderr)  # traceroute prints its banner on stderr
        async with interruptible() as interrupt, anyio.create_task_group() as printers:
            if streaming:
                printers.start_soon(print_hops)
            with hops_in:
                traces = (path_mtu_many_with if args.mtu else trace_many_with)(
                    transport,
                    addresses,
                    options,
                    targets=targets,
                    source=args.source,
                    on_event=on_event if streaming else None,
                )
                await collect(traces, show, results, partial)
        if interrupt.happened:
            _show_partial(args, partial, printed[0], names_dns, console, rich_out, streaming)
        elif streaming and results:  # after the hop lines: what their loss and quotes say
            answered = (a for hop in results[0].hops for a in hop.addresses)
            known = names_dns.known(answered) if names_dns is not None else {}
            for note in render_trace.trace_notes(results[0], known):
                _emit(note)
    ordered = _input_order(results, targets)
    if args.verbose:
        for result in ordered:
            sources = [hop.rtt_source for hop in result.hops]
            _emit(rtt_source_line(result.target, sources), sys.stderr)
    if args.json:
        seen = [a for r in ordered for h in r.hops for a in h.addresses]
        names = await _names_for(names_dns, seen, wait=not interrupt.happened)
        document = render_trace.trace_document(
            ordered, names, interrupted=interrupt.happened, sockets=sockets_name(transport),
            counters=transport.counters.as_dict(),
        )  # fmt: skip
        print_document(document, len(ordered))
    return exit_code(ordered, interrupt.happened)


def _show_partial(
    args: argparse.Namespace,
    partial: Sequence[TraceResult],
    printed_ttl: int,
    names_dns: ReverseNames | None,
    console: Console | None,
    rich_out: bool,
    streaming: bool,
) -> None:
    """Plain and rich output of traces cut short by a signal (--json: in the document)."""
    if args.json:
        return
    for result in partial:
        # Names already known only: no lookup holds the exit after a signal.
        seen = (a for hop in result.hops for a in hop.addresses)
        names = names_dns.known(seen) if names_dns is not None else {}
        if rich_out:
            assert console is not None
            console.print(render_trace.trace_table(result, names))
            continue
        lines = render_trace.trace_lines(result, names)
        if streaming:  # the hop lines already streamed are not repeated
            hops = [h for h in result.hops if h.ttl > printed_ttl]
            if result.interface_mtu is not None:
                lines = [line for h in hops for line in render_trace.mtu_hop_lines(h, names)]
            else:
                lines = [render_trace.hop_line(h, names) for h in hops]
            lines.append(render_trace.interrupted_line(result))
            lines += render_trace.trace_notes(result, names)
        else:
            lines = [render_trace.trace_banner(result), *lines, ""]
        for line in lines:
            _emit(line)


#: (dest, flag) of the options that only go with --mda.
MDA_ONLY = (("confidence", "--confidence"), ("dot", "--dot"),
            ("per_interface", "--per-interface"), ("lite", "--lite"))  # fmt: skip


def mda_options_given(args: argparse.Namespace) -> list[str]:
    """The MDA-only options on the command line (their flags), ``--mda`` aside."""
    return [flag for dest, flag in MDA_ONLY if getattr(args, dest) not in (None, False)]


_Traced = TypeVar("_Traced", TraceResult, MultipathResult)


async def collect(
    traces: AbstractAsyncContextManager[ManyResults[_Traced]],
    show: Callable[[_Traced], Awaitable[None]],
    results: list[_Traced],
    partial: list[_Traced],
) -> None:
    """Run ``traces``: each result into ``results`` and shown as it comes. On the way
    out, a signal's too, the traces cut short, as far as they got, into ``partial``
    and ``results``."""
    finished: ManyResults[_Traced] | None = None
    try:
        async with traces as finished:
            async for result in finished:
                results.append(result)
                await show(result)
    finally:
        if finished is not None:
            left = finished.remaining()
            partial += left
            results += left


def print_document(document: dict[str, Any], traces: int) -> None:
    """A trace ``--json`` document on stdout: indented for a few traces, compact (the
    C encoder, ~10x faster) for thousands."""
    print(json.dumps(document, indent=2 if traces <= 10 else None))


def exit_code(ordered: Sequence[TraceResult | MultipathResult], interrupted: bool) -> int:
    """A trace run's exit status: interrupted, every target reached, or not."""
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if ordered and all(r.reached for r in ordered) else EXIT_NO_REPLY


def _input_order(results: Sequence[_Traced], targets: Sequence[str]) -> list[_Traced]:
    """Results sorted as the targets were given (a repeated target keeps its places)."""
    positions: dict[str, list[int]] = {}
    for index, target in enumerate(targets):
        positions.setdefault(target, []).append(index)
    keyed = []
    for result in results:
        slots = positions.get(result.target, [])
        keyed.append((slots.pop(0) if slots else len(targets), result))
    return [result for _, result in sorted(keyed, key=lambda item: item[0])]


# -- live / report ---------------------------------------------------------------------


async def live_flows(
    args: argparse.Namespace, transport: Transport, address: str, target: str
) -> list[int]:
    """The flow ids one target's rounds probe: ``--flows N`` fresh ones (one by default:
    mtr's single path); with ``--mda``, flows its multipath discovery saw, ``--flows N``
    (one by default) through each interface it found, so that every path is measured."""
    if args.mda:
        from rawprobe.cli.trace_mda import discovered_flows

        return await discovered_flows(args, transport, address, target)
    return fresh_flows(transport, args.flows or 1)


async def _live_main(
    args: argparse.Namespace,
    targets: list[str],
    options: TraceOptions,
    names_dns: ReverseNames | None = None,
) -> int:
    addresses = await host_addresses(args, targets)
    if args.mda:
        from rawprobe.cli.trace_mda import icmp4_note

        icmp4_note(options.method, addresses)
    stats = [LiveTrace(t, a) for t, a in zip(targets, addresses, strict=True)]
    console = _console(highlight=False)
    # Names fill in as they arrive: the view renders the resolver's live mapping.
    names: dict[str, str] = names_dns.found if names_dns is not None else {}
    stream_json = args.json and not args.report
    view: LiveView | None = None

    from rich.console import Group

    from rawprobe.cli.live import LiveView

    def render() -> Group:
        tables = [
            render_trace.live_table(s.target, s.address, s.rounds, s.rows(), names, s.paths())
            for s in stats
        ]
        return Group(*tables)

    def data_of(live: LiveTrace) -> dict[str, Any]:
        rows, paths = live.rows(), live.paths()
        return render_trace.live_data(live.target, live.address, live.rounds, rows, names, paths)

    def on_round(live: LiveTrace) -> None:
        if names_dns is not None:
            names_dns.want(a for row in live.rows() for a in row.addresses)
        if stream_json:
            _emit(json.dumps({**header("trace", "round"), **data_of(live)}))
        elif view is not None:
            view.refresh_soon()

    async def run_rounds(transport: Transport, live: LiveTrace) -> None:
        flows = await live_flows(args, transport, live.address, live.target)
        await trace_rounds(
            transport, live.address, live, options, count=args.count,
            interval_s=args.interval, source=args.source, target=live.target,
            flows=flows, on_round=on_round,
        )  # fmt: skip

    protocols = trace_protocols(addresses, options.method)
    async with (
        probe_transport(args, protocols, udp=options.method == "udp") as transport,
        interruptible() as interrupt,
    ):
        if args.report or args.json:
            async with anyio.create_task_group() as rounds:
                for s in stats:
                    rounds.start_soon(run_rounds, transport, s)
        else:
            with LiveView(console, render) as view:
                shown = view
                if names_dns is not None:  # redraw as names come in
                    names_dns.on_found = lambda _address, _name: shown.refresh_soon()
                async with anyio.create_task_group() as rounds:
                    rounds.start_soon(view.ticker)
                    async with anyio.create_task_group() as probes:
                        for s in stats:
                            probes.start_soon(run_rounds, transport, s)
                    rounds.cancel_scope.cancel()
            if names_dns is not None:
                names_dns.on_found = None  # the view is gone
    if args.report:
        seen = [a for s in stats for row in s.rows() for a in row.addresses]
        await _names_for(names_dns, seen, wait=not interrupt.happened)
    sockets = sockets_name(transport)
    if args.report and args.json:
        document = render_trace.report_document(
            stats, names, interrupted=interrupt.happened, sockets=sockets
        )
        print(json.dumps(document, indent=2))
    elif args.report:
        for s in stats:
            for line in render_trace.report_lines(s.target, s.rows(), names, paths=s.paths()):
                _emit(line)
            if interrupt.happened:
                _emit(f"(interrupted after {s.rounds} rounds; the round in progress is left out)")
    elif not args.json and interrupt.happened:  # the live view's last frame stays above
        done = ", ".join(f"{s.target}: {s.rounds}" for s in stats)
        gap = "" if console.is_terminal else "\n"  # (off a terminal the frame has no newline)
        _emit(f"{gap}(interrupted; rounds done: {done}; the round in progress is left out)")
    elif stream_json:  # the stream's last line: the rounds done, and whether it stopped short
        summary = render_trace.rounds_summary(
            stats, interrupted=interrupt.happened, sockets=sockets
        )
        _emit(json.dumps({**header("trace", "summary"), **summary}))
    if interrupt.happened:
        return EXIT_INTERRUPTED
    return EXIT_OK
