"""``rawprobe ping``: iputils-compatible ICMP echo, many hosts at once."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from rawprobe.cli import render
from rawprobe.cli.args import (
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
    seconds,
    sockets_name,
)
from rawprobe.cli.outputs import opens_outputs
from rawprobe.cli.target_args import host_addresses
from rawprobe.errors import UsageError
from rawprobe.probes.multiplex import run_all
from rawprobe.probes.ping import PingEvent, PingOptions, new_machine, ping_protocols
from rawprobe.transport import privileges


def register(commands: Any) -> None:
    ping = commands.add_parser("ping", help="ICMP echo, like iputils ping (many hosts at once)")
    ping.add_argument("hosts", nargs="+", metavar="HOST")
    ping.add_argument("-c", "--count", type=positive_int, help="stop after N probes per host")
    ping.add_argument("-i", "--interval", type=seconds, default=1.0, help="seconds between probes")
    ping.add_argument(
        "-W", "--timeout", type=seconds, default=2.0, help="seconds to wait for each reply"
    )
    ping.add_argument("-s", "--size", type=int_in(0, 65487), default=56, help="payload bytes")
    ping.add_argument("-t", "--ttl", type=int_in(1, 255), default=64, help="IP TTL / hop limit")
    ping.add_argument("-Q", "--tos", type=int_in(0, 255), default=0, help="TOS / traffic class")
    ping.add_argument("-I", "--source", type=address, metavar="ADDRESS", help="source address")
    ping.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    add_family_options(ping)
    ping.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ping.add_argument(
        "--rate", type=seconds, default=None, help="max packets/s for the whole run (0: no cap)"
    )
    add_pcap_option(ping)
    add_rung_options(ping)
    add_broadcast_option(ping)
    add_backend_option(ping)
    ping.set_defaults(handler=run)


#: iputils: "cannot flood; minimal interval allowed for user is 200ms".
MIN_USER_INTERVAL_S = 0.2


@opens_outputs
def run(args: argparse.Namespace) -> int:
    if args.interval < MIN_USER_INTERVAL_S and not privileges.has_net_raw():
        raise UsageError(
            f"interval {args.interval:g} s: below {MIN_USER_INTERVAL_S} s needs root or "
            "CAP_NET_RAW (as in iputils ping)"
        )
    options = PingOptions(
        count=args.count,
        interval_s=args.interval,
        timeout_s=args.timeout,
        payload_size=args.size,
        ttl=args.ttl,
        tos=args.tos,
        keep_records=_records_to_keep(args),
    )
    code: int = anyio.run(_main, args, options, backend=args.backend)
    return code


#: Reply and error records an endless ``--json`` ping keeps for its document: the most
#: recent ones (statistics count them all).
ENDLESS_JSON_RECORDS = 10_000


def _records_to_keep(args: argparse.Namespace) -> int | None:
    """Per-reply records only where they are output: the JSON document lists them
    (all with -c, the most recent ENDLESS_JSON_RECORDS without); lines are printed as
    replies arrive and the summary needs only the statistics."""
    if not args.json:
        return 0
    return None if args.count is not None else ENDLESS_JSON_RECORDS


def _emit(line: str) -> None:
    print(line, flush=True)


async def _main(args: argparse.Namespace, options: PingOptions) -> int:
    addresses = await host_addresses(args, args.hosts)
    live_lines = not args.json and not args.quiet

    several = len(addresses) > 1

    def on_event(index: int, event: PingEvent) -> None:
        line = render.ping_event_line(event, addresses[index] if several else None)
        if line is not None:
            _emit(line)

    protocols = ping_protocols(addresses)
    async with probe_transport(args, protocols, verbose=args.verbose) as transport:
        machines = [new_machine(transport, a, options, source=args.source) for a in addresses]
        if live_lines:
            for host, address in zip(args.hosts, addresses, strict=True):
                _emit(render.ping_banner(host, address, options.payload_size))
        async with interruptible() as interrupt:  # (one driver loop for every host)
            await run_all(transport, machines, on_event=on_event if live_lines else None)
        now = anyio.current_time()
        results = [machine.result(now) for machine in machines]
    if args.verbose:
        for host, result in zip(args.hosts, results, strict=True):
            print(render.rtt_source_line(host, [result.rtt_source]), file=sys.stderr)

    if args.json:
        document = render.ping_document(
            results, args.hosts, interrupted=interrupt.happened, sockets=sockets_name(transport)
        )
        print(json.dumps(document, indent=2))
    else:
        _print_summaries(args, results)
    # Ctrl-C keeps iputils' status (0: replies came, 1: none); cli/app.py makes SIGTERM 143.
    return EXIT_OK if all(result.is_alive for result in results) else EXIT_NO_REPLY


def _print_summaries(args: argparse.Namespace, results: list[Any]) -> None:
    single = len(results) == 1
    if not single or not args.quiet:
        _emit("")
    for host, result in zip(args.hosts, results, strict=True):
        for line in render.ping_summary(result, host):
            _emit(line)
    if single:
        return
    _emit("")
    from rich.console import Console  # only for several hosts (start-up time)

    console = Console(highlight=False, soft_wrap=True)
    if console.is_terminal:
        console.print(render.ping_table(results))
    else:
        for line in render.ping_table_plain(results):
            _emit(line)
