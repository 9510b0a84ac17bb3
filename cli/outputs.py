"""Output-file options of the subcommands, opened before anything is probed.

Every option that writes a file is declared with ``add_output_option`` and every
subcommand's ``run`` is wrapped by ``opens_outputs``: once the command line has parsed,
and before names are resolved, sockets opened or workers forked, each given path is
opened with ``transport.outfiles.open_output`` (no symbolic link followed; as the
invoking user under sudo), so a bad path is one line and exit 2 before any packet
leaves, as nmap opens its ``-o`` files first. The option's value then becomes the open
binary stream; ``-`` stays ``"-"`` (stdout) where the option allows it, and is refused
where stdout carries the command's own output. The streams are closed when ``run``
returns, however it returns. A bundle option (``add_output_bundle``: nmap's
``-oA BASENAME``) names several of these files at once, by suffix.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Callable
from typing import BinaryIO

from rawprobe.errors import UsageError
from rawprobe.transport.outfiles import open_output

__all__ = [
    "add_output_bundle",
    "add_output_option",
    "opens_outputs",
    "stdout_outputs",
    "write_output",
]

_SPECS = "_output_options"  # namespace attribute: ((dest, option, stdout_ok), ...)
_BUNDLES = "_output_bundles"  # namespace attribute: ((dest, option, ((dest, suffix), ...)), ...)


def add_output_option(
    parser: argparse.ArgumentParser, *flags: str, dest: str, help: str, stdout_ok: bool
) -> None:
    """Add an option naming a file to write (``stdout_ok``: ``-`` means stdout)."""
    parser.add_argument(*flags, dest=dest, metavar="FILE", type=_path_text, help=help)
    specs = parser.get_default(_SPECS) or ()
    parser.set_defaults(**{_SPECS: (*specs, (dest, flags[0], stdout_ok))})


def add_output_bundle(
    parser: argparse.ArgumentParser, flag: str, *, dest: str, help: str, parts: dict[str, str]
) -> None:
    """Add an option naming a base name: the output option of each ``parts`` dest
    (added with ``add_output_option``) gets the base name plus its suffix."""
    parser.add_argument(flag, dest=dest, metavar="BASENAME", type=_path_text, help=help)
    bundles = parser.get_default(_BUNDLES) or ()
    parser.set_defaults(**{_BUNDLES: (*bundles, (dest, flag, tuple(parts.items())))})


def _expand_bundles(args: argparse.Namespace) -> None:
    options = {dest: option for dest, option, _stdout_ok in getattr(args, _SPECS, ())}
    for dest, flag, parts in getattr(args, _BUNDLES, ()):
        base = getattr(args, dest, None)
        if base is None:
            continue
        if base == "-":
            raise UsageError(f"{flag} -: {flag} writes several files; give a base name")
        for part, suffix in parts:
            if getattr(args, part, None) is not None:
                raise UsageError(f"{flag} and {options[part]} both name that output: give one")
            setattr(args, part, base + suffix)


def _path_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty file name")
    return text


def opens_outputs(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a subcommand's ``run``: open its output files first, close them after."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        _expand_bundles(args)
        with contextlib.ExitStack() as stack:
            for dest, option, stdout_ok in getattr(args, _SPECS, ()):
                path = getattr(args, dest, None)
                if not isinstance(path, str):
                    continue
                if path == "-":
                    if stdout_ok:
                        continue
                    raise UsageError(
                        f"{option} -: stdout carries this command's output; name a file"
                    )
                stream = open_output(path, option=option)
                stack.callback(_close, stream, option, path)
                setattr(args, dest, stream)
            return run(args)

    return wrapper


def stdout_outputs(args: argparse.Namespace, *given: str) -> list[str]:
    """The outputs that go to stdout: the flags in ``given`` (``--json`` when given),
    then every output option whose value is ``-``. Two of them is a UsageError."""
    specs = getattr(args, _SPECS, ())
    users = [*given, *(option for dest, option, _ok in specs if getattr(args, dest) == "-")]
    if len(users) > 1:
        first, second = (user if user in given else user + " -" for user in users[:2])
        raise UsageError(f"{first} and {second} both write to stdout: give {users[1]} a file name")
    return users


def write_output(stream: BinaryIO, data: bytes, option: str) -> None:
    """Write ``data`` to an output file opened by ``opens_outputs``; an error (a full
    disk) is one line naming the option."""
    try:
        stream.write(data)
        stream.flush()
    except OSError as exc:
        raise UsageError(f"{option}: cannot write: {exc.strerror}") from None


def _close(stream: BinaryIO, option: str, path: str) -> None:
    try:
        stream.close()
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write: {exc.strerror}") from None
