"""Shared pieces of the subcommands: the parser class, argument types, Ctrl-C handling."""

from __future__ import annotations

import argparse
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import NoReturn

import anyio

from rawprobe.errors import UsageError

EXIT_OK = 0
EXIT_NO_REPLY = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

BACKENDS = ("asyncio", "trio")


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (UsageError -> exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argument type accepting integers from ``low`` to ``high`` inclusive."""

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def seconds(text: str) -> float:
    """A finite, non-negative number (seconds, or a rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend`` after the subcommand too (it overrides the global one)."""
    parser.add_argument("--backend", choices=BACKENDS, default=argparse.SUPPRESS)


class Interrupt:
    """Set when Ctrl-C (SIGINT) or SIGTERM cancelled the work; see ``interruptible``."""

    def __init__(self) -> None:
        self.happened = False


@asynccontextmanager
async def interruptible() -> AsyncIterator[Interrupt]:
    """Run the block until it ends or a SIGINT/SIGTERM arrives, which cancels it.

    Afterwards ``interrupt.happened`` says which; the caller prints what it has so
    far and exits 130. Works the same on asyncio and trio.
    """
    interrupt = Interrupt()
    async with anyio.create_task_group() as task_group:

        async def watch() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _signum in signals:
                    interrupt.happened = True
                    task_group.cancel_scope.cancel()
                    return

        task_group.start_soon(watch)
        yield interrupt
        task_group.cancel_scope.cancel()
