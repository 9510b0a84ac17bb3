"""The ``rawprobe`` command: argparse subcommands, one place that turns errors into exit 2.

Start-up time is part of every probe's wall time, so imports are lazy by rule:

- this module (the console script's entry point) and ``cli/args.py`` import only the
  standard library's light modules and ``rawprobe.errors`` at top level; what a
  helper of args.py needs (anyio, transports, probes) it imports inside the function;
- each subcommand lives in its own module with a ``register(commands)`` function that
  adds its parser and sets ``handler``. ``COMMANDS`` lists them by module *name* with
  their one-line help; only the module the command line names is imported (``--help``
  and ``--version`` import none), and it may import what it uses at top level;
- rich is imported only where something is drawn, a backend only by ``anyio.run``.

A new subcommand is one module with ``register`` and one line in ``COMMANDS``.
tests/cli/test_startup.py pins what ``--version``, ``import rawprobe.cli.app`` and a
ping import; bench/startup.py measures it. Exit codes follow the classic tools (see
cli/args.py): 0 success, 1 no reply, 2 error, 130 after Ctrl-C, 143 after SIGTERM,
141 when the reader of stdout went away.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from rawprobe.cli.args import (
    BACKENDS,
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Parser,
    Terminated,
    VersionAction,
    abort_on_signals,
    exit_status_after,
    parse_command_line,
    received_signal,
)
from rawprobe.errors import RawProbeError, leaves, sole_error, write_failure

#: Subcommand -> (module defining it, one-line help for ``rawprobe --help``).
COMMANDS = {
    "ping": ("rawprobe.cli.ping_cmd", "ICMP echo, like iputils ping (many hosts at once)"),
    "trace": ("rawprobe.cli.trace_cmd", "traceroute (ICMP/UDP/TCP, Paris), many targets, live"),
    "scan": ("rawprobe.cli.scan_cmd", "TCP SYN port scan (like nmap -sS)"),
    "sweep": ("rawprobe.cli.sweep_cmd", "find the live hosts of networks (like fping -g)"),
    "send": ("rawprobe.cli.send_cmd", "send one hand-made packet, show the reply dissected"),
    "sniff": ("rawprobe.cli.sniff_cmd", "watch IP packets (or read a pcap file), dissected"),
    "schema": ("rawprobe.cli.schema_cmd", "print the JSON Schema of the JSON output"),
    "lab": ("rawprobe.cli.lab_cmd", "the network-namespace lab (root)"),
    "demo": ("rawprobe.cli.demo", "build a lab, probe it, tear it down"),
}


def build_parser(
    argv: Sequence[str] | None = None, *, complete: bool = True
) -> argparse.ArgumentParser:
    """The parser, with the full definition of the subcommand ``argv`` names. When it
    names none: every subcommand in full (the docs' CLI reference), or without
    ``complete`` (the command itself: ``--help``, ``--version``, usage errors) a
    placeholder (name and help) for each."""
    parser = Parser(prog="rawprobe", description="Async raw-socket network probes.")
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio", help="event loop")
    parser.add_argument("--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    chosen = _command_word(sys.argv[1:] if argv is None else argv)
    for name, (module_name, help_text) in COMMANDS.items():
        if name == chosen or (chosen is None and complete):
            importlib.import_module(module_name).register(commands)
        elif chosen is None:
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
    ``python -m rawprobe``); in-process callers passing ``argv`` keep their privileges,
    and their garbage collector's settings (the command raises gen 0's threshold and
    freezes its start-up's objects: collections were 6% of a 1000-trace run).

    Exit statuses: see README "Exit codes, signals and broken output". Output that
    cannot be written ends the command: silently with 141 when the reader went away (a
    classic tool dies of SIGPIPE there), else with one line and 2. stdout is flushed
    here, inside the handling, so Python's own flush at exit never meets an error.
    """
    as_command = argv is None  # (the process is the command's: its GC settings too)
    if drop_privileges is None:
        drop_privileges = as_command
    if as_command:
        gc.set_threshold(20_000, 20, 20)
    unusable = _stdout_unusable()
    if unusable is not None:
        _report(f"standard output is {unusable} (redirect it to /dev/null to discard it)")
        return EXIT_ERROR
    restore_signals = abort_on_signals()
    command = None
    opted_in = False
    try:
        parser = build_parser(argv, complete=False)
        args = parse_command_line(parser, argv)
        if drop_privileges:  # before the handler opens anything
            opted_in = _drop_after_open(True)
        command = args.command
        handler: Callable[[argparse.Namespace], int] = args.handler
        if as_command:
            gc.freeze()
        code = handler(args)
        sys.stdout.flush()
        return exit_status_after(received_signal(), code, ping_rule=command == "ping")
    except BaseException as exc:  # also SystemExit: --help, --version, rich's broken pipe
        return _exit_status(exc)
    finally:
        restore_signals()
        if opted_in:
            _drop_after_open(False)


def _drop_after_open(enabled: bool) -> bool:
    """``privileges.drop_after_open(enabled)``, imported only by commands that run."""
    from rawprobe.transport import privileges

    privileges.drop_after_open(enabled)
    return enabled


def _exit_status(exc: BaseException) -> int:
    """The exit status for what ended the command; re-raises what is a bug."""
    failure = write_failure(exc)
    if failure is not None:
        _silence_stdout()
        if isinstance(failure, BrokenPipeError):
            return EXIT_BROKEN_PIPE  # the reader went away: nothing to say
        _report(f"cannot write output: {failure.strerror}")
        return EXIT_ERROR
    if isinstance(exc, SystemExit):
        try:
            sys.stdout.flush()  # the help text
        except OSError as flush_error:
            return _exit_status(flush_error)
        raise exc
    if isinstance(exc, RawProbeError):
        _report(str(exc))
        return EXIT_ERROR
    # Raised inside a task group (every open transport holds one): report the error
    # when the group holds nothing but ours (and cancellations), else it is a bug.
    error = sole_error(exc) if isinstance(exc, BaseExceptionGroup) else None
    if error is not None:
        _report(str(error))
        return EXIT_ERROR
    found = leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    if found and all(isinstance(e, KeyboardInterrupt) for e in found):
        # A signal before probing began (later ones are recorded, not raised).
        signum = received_signal()
        if signum is None and any(isinstance(e, Terminated) for e in found):
            signum = signal.SIGTERM
        return exit_status_after(signum or signal.SIGINT, EXIT_INTERRUPTED)
    raise exc


def _stdout_unusable() -> str | None:
    """Why stdout cannot take output: ``closed`` (``>&-``: Python then sets sys.stdout
    to None) or ``read-only``; None when it can. Checked first: a socket opened later
    could take descriptor 1."""
    if sys.stdout is None:
        return "closed"
    if sys.stdout is not sys.__stdout__:
        return None  # replaced in-process (tests): trust it
    try:
        flags = fcntl.fcntl(1, fcntl.F_GETFL)
    except OSError:
        return "closed"
    return "read-only" if flags & os.O_ACCMODE == os.O_RDONLY else None


def _silence_stdout() -> None:
    """Point descriptor 1 at /dev/null so that what is still buffered for the broken
    stdout goes nowhere, quietly (also at Python's exit-time flush)."""
    if sys.stdout is None or sys.stdout is not sys.__stdout__:
        return
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


def _report(message: str) -> None:
    """One red line on stderr: ``rawprobe: MESSAGE``."""
    if sys.stderr is None:
        return
    from rich.console import Console  # only on errors (start-up time)
    from rich.markup import escape

    with contextlib.suppress(OSError, SystemExit):  # stderr broken too: the status says it
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[red]rawprobe: {escape(message)}[/]", markup=True
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
