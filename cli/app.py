"""The ``rawprobe`` command: argparse subcommands, one place that turns errors into exit 2.

Each subcommand lives in its own module with a ``register(commands)`` function that
adds its parser and sets ``handler``; this module lists them, and imports only the one
the command line names (start-up time is part of every probe's wall time). Exit codes
follow the classic tools (see cli/args.py): 0 success, 1 no reply, 2 error, 130 after
Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from rawprobe.cli.args import BACKENDS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, Parser
from rawprobe.errors import RawProbeError, leaves, sole_error
from rawprobe.transport import privileges

#: Subcommand -> (module defining it, one-line help for ``rawprobe --help``).
COMMANDS = {
    "ping": ("rawprobe.cli.ping_cmd", "ICMP echo, like iputils ping (many hosts at once)"),
    "trace": ("rawprobe.cli.trace_cmd", "traceroute (ICMP/UDP/TCP, Paris), many targets, live"),
    "scan": ("rawprobe.cli.scan_cmd", "TCP SYN port scan (like nmap -sS)"),
    "sweep": ("rawprobe.cli.sweep_cmd", "find the live hosts of networks (like fping -g)"),
    "send": ("rawprobe.cli.send_cmd", "send one hand-made packet, show the reply dissected"),
    "sniff": ("rawprobe.cli.sniff_cmd", "watch IP packets (or read a pcap file), dissected"),
    "lab": ("rawprobe.cli.lab_cmd", "the network-namespace lab (root)"),
    "demo": ("rawprobe.cli.demo", "build a lab, probe it, tear it down"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full definition of the subcommand ``argv`` names (every
    subcommand when ``argv`` names none; placeholders for the others)."""
    parser = Parser(prog="rawprobe", description="Async raw-socket network probes.")
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio", help="event loop")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    chosen = _command_word(sys.argv[1:] if argv is None else argv)
    for name, (module_name, help_text) in COMMANDS.items():
        if chosen is None or name == chosen:
            importlib.import_module(module_name).register(commands)
        else:
            commands.add_parser(name, help=help_text)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand in ``argv`` (after global options), if it names a known one."""
    words = iter(argv)
    for word in words:
        if word == "--backend":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None, *, drop_privileges: bool | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    ``drop_privileges``: give up capabilities (and, under sudo, become the invoking
    user) as soon as the sockets are open (see transport/privileges.py). By default
    only when running as the command (``argv`` None: the console script and
    ``python -m rawprobe``); in-process callers passing ``argv`` keep their privileges.
    """
    if drop_privileges is None:
        drop_privileges = argv is None
    try:
        if drop_privileges:
            privileges.drop_after_open()
        args = build_parser(argv).parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except RawProbeError as exc:
        _report(exc)
        return EXIT_ERROR
    except BaseExceptionGroup as group:
        # Raised inside a task group (every open transport holds one): report the error
        # when the group holds nothing but ours (and cancellations), else it is a bug.
        error = sole_error(group)
        if error is not None:
            _report(error)
            return EXIT_ERROR
        errors = leaves(group)
        if errors and all(isinstance(e, KeyboardInterrupt) for e in errors):
            return EXIT_INTERRUPTED
        raise
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit-time
        # flush of stdout from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        if drop_privileges:
            privileges.drop_after_open(False)


def _report(exc: BaseException) -> None:
    from rich.console import Console  # only on errors (start-up time)
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[red]rawprobe: {escape(str(exc))}[/]", markup=True
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
