"""Shared pieces of the subcommands: the parser class, argument types, exit codes, and
what SIGINT and SIGTERM do.

Signals, in two phases (see README "Exit codes, signals and broken output"):

1. Until probing starts (parsing, resolving, checking), SIGINT and SIGTERM abort at
   once: KeyboardInterrupt (for SIGTERM its subclass ``Terminated``) reaches
   ``cli/app.py``, which exits 130 or 143. Nothing was decided, nothing is printed.
2. From ``defer_signals()`` on (``interruptible()`` calls it; scan and sweep call it
   before forking their workers, which inherit it), a signal is only recorded: the
   block inside ``interruptible()`` is cancelled, the command prints what it has, and
   ``cli/app.py`` turns the recorded signal into the exit status. A Python signal
   handler may run at any bytecode of the event loop, so it touches no loop state: it
   appends the signal number to a list and writes a byte to a socket pair, which a
   task inside ``interruptible()`` waits on (on asyncio and trio alike). The handler
   stays installed for the rest of the command, so there is no window in which
   SIGTERM has its default action and kills the process without a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, NoReturn

from rawprobe.errors import UsageError

if TYPE_CHECKING:  # the helpers import what they use: see cli/app.py on start-up
    from rawprobe.transport.ladder import LadderTransport

EXIT_OK = 0
EXIT_NO_REPLY = 1
EXIT_ERROR = 2
#: scan and sweep: an outage outlasted --max-outage, the run stopped incomplete.
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: The signals that stop a command (and what each one's exit status is).
STOP_SIGNALS: dict[int, int] = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}

BACKENDS = ("asyncio", "trio")

#: Upper bound of counts (iputils ping's: a signed 64-bit integer).
MAX_COUNT = 2**63 - 1


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (UsageError -> exit code 2).

    The top-level handler prefixes every error with ``rawprobe: ``; a subcommand's
    errors add the subcommand's name (``rawprobe: ping: argument -c/--count: ...``)
    and point at its own help.
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see {self.prog} --help)")


def parse_command_line(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> Any:
    """``parser.parse_args(argv)``, except that unknown arguments are reported by the
    (sub)command they follow, so that ``ping --bogus`` points at ``rawprobe ping
    --help`` (argparse has the top-level parser report them). The command line is kept
    as ``args.command_line`` (nmap's files name it)."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    words = sys.argv[1:] if argv is None else argv
    args.command_line = " ".join([parser.prog, *words])
    return args


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _chosen_parser(chosen, args)
    return parser


class VersionAction(argparse.Action):
    """``--version``: the package's version (``installed_version``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        print(f"rawprobe {installed_version()}")
        parser.exit()


def installed_version() -> str:
    """The package's version: ``rawprobe.__version__``, the one place it is written
    (pyproject.toml reads it; importlib.metadata would cost more than the rest of
    ``--version``)."""
    from rawprobe import __version__

    return __version__


def positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT}: {text!r}")
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


def add_shard_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--seed S`` and ``--shard I/N`` of the bulk commands (sweep, scan): N
    machines given one seed walk one random order, each its own share."""
    parser.add_argument("--seed", type=int, help=f"seed of the random order of {what}")
    parser.add_argument(
        "--shard", type=_shard, default=(0, 1), metavar="I/N", help="shard I of N (needs --seed)"
    )


def check_shard(args: argparse.Namespace) -> None:
    if args.shard[1] > 1 and args.seed is None:
        raise UsageError("--shard needs --seed: every shard must walk the same order")


def _shard(text: str) -> tuple[int, int]:
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not I/N: {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"shard {text}: need 0 <= I < N")
    return index, count


def address(text: str) -> str:
    """A literal IPv4/IPv6 address (a source address: never resolved)."""
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def add_broadcast_option(parser: argparse.ArgumentParser) -> None:
    """``--broadcast``: allow broadcast and multicast destinations (refused otherwise)."""
    parser.add_argument(
        "--broadcast",
        action="store_true",
        help="allow broadcast/multicast destinations (answers from other hosts are not shown)",
    )


def add_family_options(parser: argparse._ActionsContainer) -> None:
    """``-4`` / ``-6``: one address family only (``args.family``, else None)."""
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET)
    family.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6)


def refuse_special(targets: Iterable[str], allowed: bool) -> None:
    """UsageError for a broadcast or multicast destination unless ``allowed``, and for
    the unspecified address (0.0.0.0, ::) always. ``targets``: addresses (already
    resolved)."""
    from rawprobe.probes.targets import parse_block, refuse_special_block

    for target in targets:
        refuse_special_block(target, parse_block(target), allowed, _HINT)


_HINT = "add --broadcast"


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend`` after the subcommand too (it overrides the global one)."""
    parser.add_argument("--backend", choices=BACKENDS, default=argparse.SUPPRESS)


class Terminated(KeyboardInterrupt):
    """SIGTERM before probing started: the command stops as after Ctrl-C (exit 143)."""


class _Signals:
    """What this process has received (phase 2 of the module docstring)."""

    received: ClassVar[list[int]] = []  # signal numbers, in order
    #: Written by the handler, read by ``interruptible``'s watcher (made on first use,
    #: and again after a fork: a worker must not read its parent's wake-ups).
    wake: ClassVar[tuple[socket.socket, socket.socket] | None] = None
    fork_hook: ClassVar[bool] = False


def received_signal() -> int | None:
    """The first stop signal this process received since the command began, if any."""
    return _Signals.received[0] if _Signals.received else None


def exit_status_after(signum: int | None, code: int, *, ping_rule: bool = False) -> int:
    """The exit status of a command that would exit ``code`` had it not received
    ``signum``: 143 after SIGTERM; after SIGINT 130, except for ping (``ping_rule``),
    which keeps its own status as iputils does (0 a reply came, 1 none)."""
    if signum is None or (signum == signal.SIGINT and ping_rule):
        return code
    return STOP_SIGNALS.get(signum, code)


def _abort(signum: int, _frame: FrameType | None) -> None:
    _Signals.received.append(signum)
    raise Terminated()


def _record(signum: int, _frame: FrameType | None) -> None:
    _Signals.received.append(signum)
    if _Signals.wake is not None:
        with contextlib.suppress(OSError):  # full (already woken) or closed
            _Signals.wake[1].send(b"\0")


def abort_on_signals() -> Callable[[], None]:
    """Phase 1 (the start of a command): SIGINT raises KeyboardInterrupt (Python's
    default, which asyncio and trio handle), SIGTERM raises ``Terminated``. Returns a
    function that restores the previous handlers and forgets what was received (for
    in-process callers of ``cli.app.main``)."""
    _Signals.received = []
    if not _main_thread():
        return lambda: None
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _abort)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _close_wake()
        _Signals.received = []

    return restore


def defer_signals() -> None:
    """Phase 2: from now on SIGINT and SIGTERM are recorded, never raised; probing
    stops (``interruptible``) and the command prints its partial results."""
    if not _main_thread():
        return
    if _Signals.wake is None:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        _Signals.wake = (reader, writer)
    if not _Signals.fork_hook:
        os.register_at_fork(after_in_child=_close_wake)
        _Signals.fork_hook = True
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record)


def _close_wake() -> None:
    if _Signals.wake is not None:
        for sock in _Signals.wake:
            sock.close()
        _Signals.wake = None


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def add_max_outage_option(parser: argparse.ArgumentParser) -> None:
    """``--max-outage``: how long scan and sweep wait out a silent network."""
    from rawprobe.probes.outage import DEFAULT_BUDGET_S

    parser.add_argument(
        "--max-outage",
        type=seconds,
        default=DEFAULT_BUDGET_S,
        metavar="S",
        help=f"give up, incomplete (exit {EXIT_INCOMPLETE}), after S seconds without any answer"
        f" once answers had come ({DEFAULT_BUDGET_S:g}; 0: no outage guard)",
    )


class Interrupt:
    """Set when Ctrl-C (SIGINT) or SIGTERM cancelled the work; see ``interruptible``."""

    def __init__(self) -> None:
        self.happened = False


@asynccontextmanager
async def interruptible() -> AsyncIterator[Interrupt]:
    """Run the block until it ends or a SIGINT/SIGTERM arrives, which cancels it.

    A signal received before the block (since ``defer_signals``: while a worker was
    starting, say) cancels it at once. Afterwards ``interrupt.happened`` says whether
    the block was cut short; the caller prints what it has so far, and ``cli/app.py``
    turns the signal into the exit status. Works the same on asyncio and trio.
    """
    import anyio

    defer_signals()
    interrupt = Interrupt()
    async with anyio.create_task_group() as task_group:

        async def watch(wake: socket.socket) -> None:
            while not _Signals.received:
                await anyio.wait_readable(wake)
                with contextlib.suppress(OSError):
                    wake.recv(64)
            interrupt.happened = True
            task_group.cancel_scope.cancel()

        if _Signals.received:
            interrupt.happened = True
            task_group.cancel_scope.cancel()
        elif _Signals.wake is not None:  # None: not the main thread (no signals there)
            task_group.start_soon(watch, _Signals.wake[0])
        yield interrupt
        task_group.cancel_scope.cancel()


def add_pcap_option(parser: argparse.ArgumentParser) -> None:
    """``--pcap FILE``: record every probe sent and every reply matched (opened before
    probing by ``cli.outputs.opens_outputs``)."""
    from rawprobe.cli.outputs import add_output_option

    add_output_option(
        parser, "--pcap", dest="pcap", help="record probes and replies to a pcap file",
        stdout_ok=False,
    )  # fmt: skip


@asynccontextmanager
async def recording_transport(
    protocols: Iterable[tuple[int, int]],
    *,
    rate_pps: float,
    pcap: str | BinaryIO | None,
    rung: str = "raw",
    udp: bool = False,
    tx_stamps: bool = False,
) -> AsyncIterator[LadderTransport]:
    """The transport for a probe command, recording to ``pcap`` when given.

    ``rung`` climbs the privilege ladder (transport/ladder.py, shared with the
    library's ``privileged=``): ``raw`` (raw sockets: root or CAP_NET_RAW),
    ``datagram`` (ICMP datagram sockets: ICMP echo only, for users in
    ``net.ipv4.ping_group_range``; with ``udp``, UDP sockets with IP_RECVERR), or
    ``auto``: raw sockets when allowed, else those; PrivilegeError says what to do when
    neither is. ``tx_stamps``: raw sockets ask for the kernel's transmit stamps.
    """
    from rawprobe.transport.ladder import open_probe_transport, rung_privileged

    async with open_probe_transport(
        protocols,
        rate_pps=rate_pps,
        privileged=rung_privileged(rung),
        unprivileged="udp" if udp else "icmp",
        tx_stamps=tx_stamps,
    ) as transport:
        if pcap is None:
            yield transport
            return
        from rawprobe.transport.capture import record_pcap

        with record_pcap(transport, pcap):
            yield transport


@asynccontextmanager
async def probe_transport(
    args: argparse.Namespace,
    protocols: Iterable[tuple[int, int]],
    *,
    udp: bool = False,
    verbose: bool = False,
) -> AsyncIterator[LadderTransport]:
    """``recording_transport`` as ping's and trace's options ask: ``--rate`` (unset: the
    default cap), ``--pcap``, the rung, kernel transmit stamps (their RTTs are what they
    report); with ``verbose``, ``-v``'s line on stderr."""
    from rawprobe.transport.pacing import DEFAULT_RATE_PPS

    rate = DEFAULT_RATE_PPS if args.rate is None else args.rate
    async with recording_transport(
        protocols, rate_pps=rate, pcap=args.pcap, rung=args.rung, udp=udp, tx_stamps=True
    ) as transport:
        if verbose:
            print(describe_rung(transport), file=sys.stderr)
        yield transport


def add_rung_options(
    parser: argparse.ArgumentParser,
    unprivileged: str = "ICMP datagram sockets only (net.ipv4.ping_group_range)",
) -> argparse._MutuallyExclusiveGroup:
    """``--privileged`` / ``--unprivileged`` and ``-v`` (which rung was used); returns
    the group of the two, for a command's own spellings of a rung (scan's ``-sT``)."""
    rung = parser.add_mutually_exclusive_group()
    rung.add_argument(
        "--privileged", dest="rung", action="store_const", const="raw",
        help="raw sockets only (root or CAP_NET_RAW)",
    )  # fmt: skip
    rung.add_argument(
        "--unprivileged", dest="rung", action="store_const", const="datagram",
        help=unprivileged,
    )  # fmt: skip
    parser.set_defaults(rung="auto")
    parser.add_argument("-v", "--verbose", action="store_true", help="say which sockets are used")
    return rung


def raw_rung(args: argparse.Namespace, what: str) -> str:
    """The rung for probes that only raw sockets can send (``what``: "TCP traces"):
    ``raw``, and a UsageError when ``--unprivileged`` asked for what cannot be."""
    if args.rung == "datagram":
        raise UsageError(f"--unprivileged: {what} need raw sockets (root or CAP_NET_RAW)")
    return "raw"


def sockets_name(transport: object) -> str:
    """The rung of the privilege ladder a transport is, as the JSON says it: ``raw``,
    ``icmp-datagram`` (ICMP datagram sockets) or ``udp-datagram`` (UDP sockets with
    IP_RECVERR)."""
    from rawprobe.transport.raw import RawTransport

    if not isinstance(transport, RawTransport):
        from rawprobe.transport.dgram import DatagramTransport  # loaded if it is one
        from rawprobe.transport.udp_dgram import UdpTransport

        if isinstance(transport, DatagramTransport):
            return "icmp-datagram"
        if isinstance(transport, UdpTransport):
            return "udp-datagram"
    return "raw"


_RUNG_LINES = {
    "raw": "rawprobe: using raw sockets (CAP_NET_RAW)",
    "icmp-datagram": "rawprobe: using ICMP datagram sockets (unprivileged:"
    " net.ipv4.ping_group_range)",
    "udp-datagram": "rawprobe: using UDP sockets with IP_RECVERR (unprivileged, like tracepath)",
}


def describe_rung(transport: object) -> str:
    """One line for ``-v``: which rung of the privilege ladder the transport is."""
    return _RUNG_LINES[sockets_name(transport)]
