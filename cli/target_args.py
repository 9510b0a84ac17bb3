"""Targets on the command line, for every subcommand: target files (streamed),
``--exclude`` / ``--exclude-file``, and the source-address check.

sweep and scan take networks (``target_space``); ping, trace and send take hosts
(``host_targets``). Errors name the file and line of the bad target.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import anyio

from rawprobe.cli.args import refuse_special
from rawprobe.errors import UsageError
from rawprobe.probes.targets import TargetSpace
from rawprobe.targets import TargetReader, resolve, resolve_targets, split_exclusions
from rawprobe.transport.sockets import check_source_address


def add_file_option(parser: argparse.ArgumentParser, *flags: str) -> None:
    """The targets-file option (``-f``/``--file``; trace: ``-F``/``--file``)."""
    parser.add_argument(
        *flags,
        dest="file",
        metavar="FILE",
        help="read targets from FILE (- for stdin): whitespace-separated, # comments",
    )


def add_exclude_options(parser: argparse.ArgumentParser) -> None:
    """``--exclude A,B`` and ``--exclude-file FILE`` (nmap's ``--excludefile`` too)."""
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="LIST",
        help="leave out these addresses, CIDR blocks or ranges (comma-separated)",
    )
    parser.add_argument(
        "--exclude-file",
        "--excludefile",
        dest="exclude_file",
        metavar="FILE",
        help="leave out the targets listed in FILE",
    )


def target_space(args: argparse.Namespace, command: str, family: int | None = None) -> TargetSpace:
    """The networks of a sweep or scan: positional targets and ``--file``, less the
    exclusions and (without ``--broadcast``) the special addresses. Runs before any
    worker is forked, so a bad target is one line."""
    if not args.targets and args.file is None:
        raise UsageError(f"{command}: give targets (addresses, CIDR blocks, ranges) or -f FILE")
    reader = TargetReader(args.targets, [args.file] if args.file is not None else [])
    exclude = TargetReader(
        split_exclusions(args.exclude), [args.exclude_file] if args.exclude_file else []
    )
    try:
        space: TargetSpace = anyio.run(
            lambda: resolve_targets(
                reader, family, exclude=exclude, broadcast=getattr(args, "broadcast", False)
            )
        )
    except UsageError as exc:
        where = reader.where or exclude.where
        if where:
            raise UsageError(f"{where}: {exc}") from None
        if str(exc) == "no targets given" and args.file is not None:
            raise UsageError(f"{command}: no targets in {args.file}") from None
        raise
    return space


def host_targets(args: argparse.Namespace, command: str) -> list[str]:
    """The hosts of ping or trace: the command line, then ``--file`` (trace)."""
    files = [args.file] if getattr(args, "file", None) is not None else []
    reader = TargetReader(args.targets, files)
    targets = list(reader)
    if not targets:
        raise UsageError(f"rawprobe {command}: no target given (see rawprobe {command} --help)")
    return targets


def check_source(source: str | None, destinations: list[str]) -> None:
    """``-I``/``-S``/``-s``: of the targets' family and one of this host's addresses
    (iputils ping's bind check: "Cannot assign requested address"); None passes."""
    if source is None:
        return
    if any((":" in source) != (":" in a) for a in destinations):
        raise UsageError(f"source address {source} is not of the targets' family")
    check_source_address(source)


async def host_addresses(args: argparse.Namespace, hosts: Sequence[str]) -> list[str]:
    """The addresses of ping's or trace's hosts (``-4``/``-6``), broadcast and multicast
    refused unless ``--broadcast``, the source (``-I``/``-s``) checked against them."""
    addresses = [await resolve(host, args.family) for host in hosts]
    refuse_special(addresses, args.broadcast)
    check_source(args.source, addresses)
    return addresses
