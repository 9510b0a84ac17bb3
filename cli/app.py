"""The ``rawprobe`` command: argparse subcommands, one place that turns errors into exit 2.

Each subcommand lives in its own module with a ``register(commands)`` function that
adds its parser and sets ``handler``; this module lists them. Exit codes follow the
classic tools (see cli/args.py): 0 success, 1 no reply, 2 error, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from rawprobe.cli import demo, lab_cmd, ping_cmd
from rawprobe.cli.args import BACKENDS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, Parser
from rawprobe.errors import RawProbeError

COMMANDS = (ping_cmd, lab_cmd, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rawprobe", description="Async raw-socket network probes.")
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio", help="event loop")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except RawProbeError as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[red]rawprobe: {exc}[/]", markup=True
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
