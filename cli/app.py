"""The ``rawprobe`` command: argparse subcommands, one place that turns errors into exit 2.

Each subcommand lives in its own module with a ``register(commands)`` function that
adds its parser and sets ``handler``; this module lists them. Exit codes follow the
classic tools (see cli/args.py): 0 success, 1 no reply, 2 error, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape

from rawprobe.cli import (
    demo,
    lab_cmd,
    ping_cmd,
    scan_cmd,
    send_cmd,
    sniff_cmd,
    sweep_cmd,
    trace_cmd,
)
from rawprobe.cli.args import BACKENDS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, Parser
from rawprobe.errors import RawProbeError
from rawprobe.transport import privileges

COMMANDS = (ping_cmd, lab_cmd, demo, send_cmd, sniff_cmd, trace_cmd, sweep_cmd, scan_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rawprobe", description="Async raw-socket network probes.")
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio", help="event loop")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for command in COMMANDS:
        command.register(commands)
    return parser


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
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except RawProbeError as exc:
        _report(exc)
        return EXIT_ERROR
    except BaseExceptionGroup as group:
        # Raised inside a task group (every open transport holds one): report the error
        # when the group holds nothing but ours (and cancellations), else it is a bug.
        errors = _leaves(group)
        if errors and all(isinstance(e, RawProbeError) for e in errors):
            _report(errors[0])
            return EXIT_ERROR
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
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[red]rawprobe: {escape(str(exc))}[/]", markup=True
    )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions of a (nested) group, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        else:
            found.append(exc)
    return found


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
