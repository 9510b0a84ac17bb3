"""``rawprobe trace --mda``: every load-balanced path to each target (the MDA,
``probes/multipath.py``), many targets at once under the run's rate.

Plain output prints a block per trace as it completes (interfaces per TTL with their
next hops), a terminal a rich table, ``--json`` one document, ``--dot FILE`` Graphviz.
With ``--live``/``--report`` (cli/trace_cmd.py's rounds) each target's MDA trace comes
first, then its rounds probe flows through every interface it found
(``discovered_flows``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import anyio
from rich.console import Console

from rawprobe.cli import render_mda
from rawprobe.cli.args import interruptible, probe_transport, raw_rung, sockets_name
from rawprobe.cli.outputs import write_output
from rawprobe.cli.target_args import host_addresses
from rawprobe.cli.trace_cmd import (
    DEFAULT_WAIT,
    _emit,
    _input_order,
    _names_for,
    _with_names,
    collect,
    exit_code,
    mda_options_given,
    print_document,
)
from rawprobe.errors import UsageError
from rawprobe.probes.multipath import (
    MultipathOptions,
    multipath_many_with,
    multipath_with,
    path_flows,
)
from rawprobe.probes.trace_models import MultipathResult
from rawprobe.probes.traceroute import trace_protocols
from rawprobe.rdns import ReverseNames
from rawprobe.transport.base import Transport

#: One line, on stderr, for ``--mda -M icmp`` to IPv4 targets.
ICMP4_NOTE = (
    "rawprobe: --mda -M icmp: a Linux router hashes no ICMPv4 field (L3 and L4 "
    "policies), so it sends every ICMPv4 probe one way: use -M udp or tcp to see "
    "its paths (ICMPv6 flows differ in the flow label)"
)


def check_mda(args: argparse.Namespace) -> None:
    """Refuse what does not go with ``--mda`` (and its options without it)."""
    if not args.mda:
        alone = mda_options_given(args)
        if alone:
            raise UsageError(f"trace: {alone[0]} goes with --mda")
        return
    clashes = (
        (args.classic, "--classic"),
        (args.queries is not None, "-q"),
        (args.in_flight is not None, "-N"),
    )
    for given, flag in clashes:
        if given:
            raise UsageError(f"trace: --mda decides its own probes; {flag} does not go with it")
    if (args.live or args.report) and args.dot is not None:
        raise UsageError("trace: --dot draws one --mda trace, not --live/--report rounds")


def mda_options(args: argparse.Namespace) -> MultipathOptions:
    """The MDA's options from the command line (``--live --mda``'s discovery too)."""
    retries = args.retries if args.retries is not None else 2
    wait_max = (args.wait or DEFAULT_WAIT)[0]
    return MultipathOptions(
        method=args.method or "udp",
        confidence=args.confidence or 95,
        per_trace=not args.per_interface,
        lite=args.lite,
        first_ttl=args.first,
        max_ttl=args.max_hops,
        wait_s=wait_max / (1 + retries),  # (as -w for Paris: the tries share MAX)
        retries=retries,
        port=args.port,
    )


def icmp4_note(method: str, addresses: Sequence[str]) -> None:
    """``ICMP4_NOTE`` on stderr when ICMP probes go to an IPv4 target."""
    if method == "icmp" and any(":" not in a for a in addresses):
        print(ICMP4_NOTE, file=sys.stderr)


async def discovered_flows(
    args: argparse.Namespace, transport: Transport, address: str, target: str
) -> list[int]:
    """``--live --mda``: the target's MDA trace, then flows through each interface it
    found (``--flows N``, one by default) for the rounds to probe (``path_flows``)."""
    result = await multipath_with(
        transport, address, mda_options(args), source=args.source, target=target
    )
    return path_flows(result, args.flows or 1)


def run_mda(args: argparse.Namespace, targets: list[str]) -> int:
    options = mda_options(args)
    args.rung = raw_rung(args, "MDA traces")
    code: int = anyio.run(_with_names, _main, args, targets, options, backend=args.backend)
    return code


async def _main(
    args: argparse.Namespace,
    targets: list[str],
    options: MultipathOptions,
    names_dns: ReverseNames | None = None,
) -> int:
    addresses = await host_addresses(args, targets)
    icmp4_note(options.method, addresses)
    console = Console(highlight=False, soft_wrap=True)
    rich_out = console.is_terminal and not args.json
    results: list[MultipathResult] = []

    async def show(result: MultipathResult) -> None:
        seen = _addresses(result)
        if names_dns is not None:
            names_dns.want(seen)
        if args.json:
            return
        names = await _names_for(names_dns, seen)
        _print(result, names, console, rich_out)

    protocols = trace_protocols(addresses, options.method)
    partial: list[MultipathResult] = []
    async with (
        probe_transport(args, protocols, verbose=args.verbose) as transport,
        interruptible() as interrupt,
    ):
        traces = multipath_many_with(
            transport, addresses, options, targets=targets, source=args.source
        )
        await collect(traces, show, results, partial)
    if interrupt.happened and not args.json:
        for result in partial:  # names already known only: no lookup holds the exit
            seen = _addresses(result)
            _print(result, names_dns.known(seen) if names_dns else {}, console, rich_out)
    ordered = _input_order(results, targets)
    seen = [a for result in ordered for a in _addresses(result)]
    names = await _names_for(names_dns, seen, wait=not interrupt.happened)
    if args.dot is not None:
        dot = render_mda.mda_dot(ordered, names)
        write_output(args.dot, dot.encode(), "--dot")
    if args.json:
        document = render_mda.mda_document(
            ordered, names, interrupted=interrupt.happened, sockets=sockets_name(transport),
            counters=transport.counters.as_dict(),
        )  # fmt: skip
        print_document(document, len(ordered))
    return exit_code(ordered, interrupt.happened)


def _addresses(result: MultipathResult) -> list[str]:
    return [a for hop in result.hops for a in hop.addresses]


def _print(result: MultipathResult, names: Any, console: Console, rich_out: bool) -> None:
    if rich_out:
        console.print(render_mda.mda_table(result, names))
        return
    for line in render_mda.mda_lines(result, names):
        _emit(line)
    _emit("")
