"""Shared pieces of the subcommands: the parser class, argument types, Ctrl-C handling."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import NoReturn

import anyio

from rawprobe.errors import PrivilegeError, UsageError
from rawprobe.probes.outage import DEFAULT_BUDGET_S
from rawprobe.probes.targets import AddressBlock, TargetSpace, parse_block, special_kind
from rawprobe.transport.capture import record_pcap
from rawprobe.transport.dgram import DatagramTransport, open_datagram_transport
from rawprobe.transport.raw import RawTransport, open_transport
from rawprobe.transport.udp_dgram import UdpTransport, open_udp_transport

EXIT_OK = 0
EXIT_NO_REPLY = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
#: scan and sweep: an outage outlasted --max-outage, the run stopped incomplete.
EXIT_INCOMPLETE = 3

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
    for block in space.blocks:
        first = socket.inet_ntop(block.family, block.first.to_bytes(block.width, "big"))
        _refuse_block(
            first if block.count == 1 else f"{first} (+{block.count - 1})", block, allowed
        )


def _refuse_block(target: str, block: AddressBlock, allowed: bool) -> None:
    kind = special_kind(block)
    if kind == "unspecified":
        raise UsageError(f"{target}: the unspecified address is not a destination")
    if kind is not None and not allowed:
        raise UsageError(f"{target} is a {kind} destination: add --broadcast to probe it")


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend`` after the subcommand too (it overrides the global one)."""
    parser.add_argument("--backend", choices=BACKENDS, default=argparse.SUPPRESS)


def add_max_outage_option(parser: argparse.ArgumentParser) -> None:
    """``--max-outage``: how long scan and sweep wait out a silent network."""
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
    """``--pcap FILE``: record every probe sent and every reply matched."""
    parser.add_argument(
        "--pcap", type=_pcap_path, metavar="FILE", help="record probes and replies to a pcap file"
    )


def _pcap_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty file name")
    return text


@asynccontextmanager
async def recording_transport(
    protocols: Iterable[tuple[int, int]],
    *,
    rate_pps: float,
    pcap: str | None,
    rung: str = "raw",
    udp: bool = False,
) -> AsyncIterator[RawTransport | DatagramTransport | UdpTransport]:
    """The transport for a probe command, recording to ``pcap`` when given.

    ``rung`` climbs the privilege ladder: ``raw`` (raw sockets: root or CAP_NET_RAW),
    ``datagram`` (ICMP datagram sockets: ICMP echo only, for users in
    ``net.ipv4.ping_group_range``; with ``udp``, UDP sockets with IP_RECVERR), or
    ``auto``: raw sockets when allowed, else those; PrivilegeError says what to do when
    neither is.
    """
    protocols = list(protocols)
    async with contextlib.AsyncExitStack() as stack:
        transport: RawTransport | DatagramTransport | UdpTransport
        if rung == "datagram":
            transport = await stack.enter_async_context(_datagram(protocols, rate_pps, udp))
        else:
            try:
                transport = await stack.enter_async_context(
                    open_transport(protocols, rate_pps=rate_pps)
                )
            except PrivilegeError as raw_refused:
                if rung == "raw":
                    raise
                try:
                    transport = await stack.enter_async_context(_datagram(protocols, rate_pps, udp))
                except PrivilegeError as exc:
                    raise PrivilegeError(f"{raw_refused}; or {exc}") from exc
        stack.enter_context(record_pcap(transport, pcap))
        yield transport


def _datagram(
    protocols: list[tuple[int, int]], rate_pps: float, udp: bool
) -> contextlib.AbstractAsyncContextManager[DatagramTransport | UdpTransport]:
    """The unprivileged transport: UDP sockets for UDP probes (tracepath's way), ICMP
    datagram sockets for ICMP echo."""
    if udp:
        return open_udp_transport(rate_pps=rate_pps)
    families = sorted({family for family, _protocol in protocols})
    return open_datagram_transport(families, rate_pps=rate_pps)


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
