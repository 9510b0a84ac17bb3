"""The ``rawprobe`` command: argparse subcommands, one place that turns errors into exit 2.

Exit codes follow the classic tools: ping 0 when every host answered, 1 when a host
got no reply, 2 for an error (bad input, no privilege), 130 after Ctrl-C (the summary
so far is printed first).
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import anyio
from rich.console import Console

from rawprobe.errors import RawProbeError, UsageError

EXIT_OK = 0
EXIT_NO_REPLY = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def _rate(text: str) -> float:
    value = _seconds(text)  # same shape: a finite number >= 0
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rawprobe", description="Async raw-socket network probes.")
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop to use"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    ping = commands.add_parser("ping", help="ICMP echo, like iputils ping (many hosts at once)")
    ping.add_argument("hosts", nargs="+", metavar="HOST")
    ping.add_argument("-c", "--count", type=_positive_int, help="stop after N probes per host")
    ping.add_argument("-i", "--interval", type=_seconds, default=1.0, help="seconds between probes")
    ping.add_argument(
        "-W", "--timeout", type=_seconds, default=2.0, help="seconds to wait for each reply"
    )
    ping.add_argument("-s", "--size", type=_int_in(0, 65487), default=56, help="payload bytes")
    ping.add_argument("-t", "--ttl", type=_int_in(1, 255), default=64, help="IP TTL / hop limit")
    ping.add_argument("-Q", "--tos", type=_int_in(0, 255), default=0, help="TOS / traffic class")
    ping.add_argument("-I", "--source", metavar="ADDRESS", help="source address")
    ping.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    family = ping.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET)
    family.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6)
    ping.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ping.add_argument(
        "--rate", type=_rate, default=None, help="max packets/s for the whole run (0: no cap)"
    )
    ping.add_argument("--backend", choices=("asyncio", "trio"), default=argparse.SUPPRESS)
    ping.set_defaults(handler=_run_ping)

    lab = commands.add_parser("lab", help="the network-namespace lab (root)")
    lab_commands = lab.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=_Parser)
    lab_commands.required = True
    up = lab_commands.add_parser("up", help="build a lab and leave it running")
    up.add_argument("--prefix", help="namespace name prefix (default: a fresh one)")
    up.set_defaults(handler=_run_lab_up)
    down = lab_commands.add_parser("down", help="tear a lab down")
    down.add_argument("prefix", nargs="?", help="which lab (default: the only one)")
    down.add_argument("--all", action="store_true", help="remove every rawprobe lab")
    down.set_defaults(handler=_run_lab_down)
    status = lab_commands.add_parser("status", help="list labs and their namespaces")
    status.set_defaults(handler=_run_lab_status)
    run = lab_commands.add_parser("exec", help="run a command in a lab namespace")
    run.add_argument("--prefix", help="which lab (default: the only one)")
    run.add_argument(
        "--ns",
        default="client",
        choices=("client", "r1", "r2", "r3", "target"),
        help="namespace role (default: client)",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    run.set_defaults(handler=_run_lab_exec)

    demo = commands.add_parser("demo", help="build a lab, probe it, tear it down")
    demo.add_argument("--backend", choices=("asyncio", "trio"), default=argparse.SUPPRESS)
    demo.set_defaults(handler=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except RawProbeError as exc:
        err.print(f"[red]rawprobe: {exc}[/]", markup=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


# -- ping -------------------------------------------------------------------------


def _run_ping(args: argparse.Namespace) -> int:
    from rawprobe.probes.ping import PingOptions

    options = PingOptions(
        count=args.count,
        interval_s=args.interval,
        timeout_s=args.timeout,
        payload_size=args.size,
        ttl=args.ttl,
        tos=args.tos,
    )
    code: int = anyio.run(_ping_main, args, options, backend=args.backend)
    return code


async def _ping_main(args: argparse.Namespace, options: Any) -> int:
    from rawprobe.cli import render
    from rawprobe.probes.drive import drive
    from rawprobe.probes.ping import new_machine, ping_protocols
    from rawprobe.targets import resolve
    from rawprobe.transport.pacing import DEFAULT_RATE_PPS
    from rawprobe.transport.raw import open_transport

    out = Console(highlight=False, soft_wrap=True)
    addresses = [await resolve(host, args.family) for host in args.hosts]
    if args.source is not None and any((":" in args.source) != (":" in a) for a in addresses):
        raise UsageError(f"source address {args.source} is not of the targets' family")
    single = len(addresses) == 1
    live_lines = not args.json and not args.quiet
    interrupted = False
    rate = DEFAULT_RATE_PPS if args.rate is None else args.rate

    def emit(line: str) -> None:
        print(line, flush=True)

    async with open_transport(ping_protocols(addresses), rate_pps=rate) as transport:
        machines = [new_machine(transport, a, options, source=args.source) for a in addresses]
        if live_lines:
            for host, address in zip(args.hosts, addresses, strict=True):
                emit(render.ping_banner(host, address, options.payload_size))

        def on_event(event: object) -> None:
            line = render.ping_event_line(event) if live_lines else None
            if line is not None:
                emit(line)

        async with anyio.create_task_group() as outer:

            async def watch_interrupt() -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _signum in signals:
                        interrupted = True
                        outer.cancel_scope.cancel()
                        return

            outer.start_soon(watch_interrupt)
            async with anyio.create_task_group() as probes:
                for machine in machines:
                    probes.start_soon(
                        functools.partial(drive, machine, transport, on_event=on_event)
                    )
            outer.cancel_scope.cancel()
        now = anyio.current_time()
        results = [machine.result(now) for machine in machines]

    if args.json:
        document = render.ping_document(results, args.hosts, interrupted=interrupted)
        print(json.dumps(document, indent=2))
    else:
        if not single or not args.quiet:
            emit("")
        for host, result in zip(args.hosts, results, strict=True):
            for line in render.ping_summary(result, host):
                emit(line)
        if not single:
            emit("")
            if out.is_terminal:
                out.print(render.ping_table(results))
            else:
                for line in render.ping_table_plain(results):
                    emit(line)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if all(result.is_alive for result in results) else EXIT_NO_REPLY


# -- lab --------------------------------------------------------------------------


def _run_lab_up(args: argparse.Namespace) -> int:
    from rawprobe.lab import lab_up

    lab = lab_up(args.prefix)
    print(f"lab {lab.prefix} is up")
    for line in _lab_description(lab):
        print(line)
    print("run commands in it with: rawprobe lab exec -- CMD   (tear down: rawprobe lab down)")
    return EXIT_OK


def _lab_description(lab: Any) -> list[str]:
    return [
        f"  namespaces: {' '.join(lab.namespaces)}",
        f"  client:  {lab.client_v4}  {lab.client_v6}",
        f"  routers: {' '.join(lab.router_v4)}",
        f"           {' '.join(lab.router_v6)}",
        f"  target:  {lab.target_v4}  {lab.target_v6}  (answers for 198.19.0.0/16 and"
        " 2001:db8:ff::/64)",
        f"  silent:  {lab.silent_v4}  {lab.silent_v6}",
        f"  tcp open: {','.join(map(str, lab.open_ports))}; dropped:"
        f" {_span(lab.drop_ports)}; rejected: {_span(lab.reject_ports)}",
    ]


def _span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}"


def _only_lab(prefix: str | None) -> Any:
    from rawprobe.lab import Lab, lab_prefixes

    if prefix is not None:
        return Lab.load(prefix)
    prefixes = lab_prefixes()
    if not prefixes:
        raise UsageError("no lab is up (start one with: rawprobe lab up)")
    if len(prefixes) > 1:
        raise UsageError(f"several labs are up ({', '.join(prefixes)}): name one with --prefix")
    return Lab.load(prefixes[0])


def _run_lab_down(args: argparse.Namespace) -> int:
    from rawprobe.lab import down_all

    if args.all:
        removed = down_all()
        print(f"removed {len(removed)} namespaces" + (f": {' '.join(removed)}" if removed else ""))
        return EXIT_OK
    lab = _only_lab(args.prefix)
    lab.down()
    print(f"lab {lab.prefix} is down")
    return EXIT_OK


def _run_lab_status(args: argparse.Namespace) -> int:
    from rawprobe.lab import lab_status

    lines = lab_status()
    if not lines:
        print("no lab is up")
    for line in lines:
        print(line)
    return EXIT_OK


def _run_lab_exec(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("lab exec: give a command after --, e.g. rawprobe lab exec -- ip addr")
    lab = _only_lab(args.prefix)
    completed = lab.run(args.ns, *argv, check=False, stdout=None, stderr=None)
    return int(completed.returncode)


# -- demo -------------------------------------------------------------------------


def _run_demo(args: argparse.Namespace) -> int:
    from rawprobe.cli.demo import run_demo

    return run_demo(args.backend)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
