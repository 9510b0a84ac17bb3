"""Shared pieces of the subcommands: the parser class, argument types, Ctrl-C handling."""

from __future__ import annotations

import argparse
import ipaddress
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import BinaryIO, NoReturn

import anyio

from rawprobe.cli.outputs import add_output_option
from rawprobe.errors import UsageError
from rawprobe.probes.targets import AddressBlock, TargetSpace, parse_block, refuse_special_block
from rawprobe.probes.targets import refuse_special as refuse_special_targets
from rawprobe.transport.capture import record_pcap
from rawprobe.transport.dgram import DatagramTransport
from rawprobe.transport.ladder import open_probe_transport, rung_privileged
from rawprobe.transport.raw import RawTransport
from rawprobe.transport.udp_dgram import UdpTransport

EXIT_OK = 0
EXIT_NO_REPLY = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

BACKENDS = ("asyncio", "trio")

#: Upper bound of counts (iputils ping's: a signed 64-bit integer).
MAX_COUNT = 2**63 - 1


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


def refuse_special(targets: Iterable[str], allowed: bool) -> None:
    """UsageError for a broadcast or multicast destination unless ``allowed``, and for
    the unspecified address (0.0.0.0, ::) always. ``targets``: addresses, CIDR blocks
    or ranges (already resolved)."""
    for target in targets:
        _refuse_block(target, parse_block(target), allowed)


def refuse_special_space(space: TargetSpace, allowed: bool) -> None:
    """``refuse_special`` for a resolved target space (names already turned into
    addresses, so a name that resolves to a broadcast address is caught too)."""
    refuse_special_targets(space, allowed, _HINT)


_HINT = "add --broadcast"


def _refuse_block(target: str, block: AddressBlock, allowed: bool) -> None:
    refuse_special_block(target, block, allowed, _HINT)


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


def add_pcap_option(parser: argparse.ArgumentParser) -> None:
    """``--pcap FILE``: record every probe sent and every reply matched (opened before
    probing by ``cli.outputs.opens_outputs``)."""
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
) -> AsyncIterator[RawTransport | DatagramTransport | UdpTransport]:
    """The transport for a probe command, recording to ``pcap`` when given.

    ``rung`` climbs the privilege ladder (transport/ladder.py, shared with the
    library's ``privileged=``): ``raw`` (raw sockets: root or CAP_NET_RAW),
    ``datagram`` (ICMP datagram sockets: ICMP echo only, for users in
    ``net.ipv4.ping_group_range``; with ``udp``, UDP sockets with IP_RECVERR), or
    ``auto``: raw sockets when allowed, else those; PrivilegeError says what to do when
    neither is.
    """
    async with open_probe_transport(
        protocols,
        rate_pps=rate_pps,
        privileged=rung_privileged(rung),
        unprivileged="udp" if udp else "icmp",
    ) as transport:
        with record_pcap(transport, pcap):
            yield transport


def add_rung_options(
    parser: argparse.ArgumentParser,
    unprivileged: str = "ICMP datagram sockets only (net.ipv4.ping_group_range)",
) -> None:
    """``--privileged`` / ``--unprivileged`` and ``-v`` (which rung was used)."""
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


def describe_rung(transport: object) -> str:
    """One line for ``-v``: which rung of the privilege ladder the transport is."""
    if isinstance(transport, DatagramTransport):
        return "rawprobe: using ICMP datagram sockets (unprivileged: net.ipv4.ping_group_range)"
    if isinstance(transport, UdpTransport):
        return "rawprobe: using UDP sockets with IP_RECVERR (unprivileged, like tracepath)"
    return "rawprobe: using raw sockets (CAP_NET_RAW)"
