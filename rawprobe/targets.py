"""Turning what a user typed into addresses: literals, and names through the resolver.

Literal addresses never touch the resolver. Text that can only have meant an address
but is not a valid one is refused here rather than handed to DNS (whose inet_aton
reading would take ``0x7f.1`` or ``2130706433`` as 127.0.0.1): ``999.1.1.1``,
``0x7f.1``, ``[::1``. A network or a range given where one host is wanted gets a hint,
not a resolver error.

Target files are streamed (``TargetReader``): millions of lines cost a few merged
blocks (``BlockSet``), never a list of strings.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

import anyio

from rawprobe.errors import ResolutionError, UsageError
from rawprobe.probes.targets import (
    AddressBlock,
    BlockSet,
    TargetSpace,
    parse_block,
    special_refusal,
    subtract,
    without_special,
)

#: What inet_aton reads as an IPv4 address: 1 to 4 parts, decimal, octal or hex.
_INET_ATON = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.I)
_RANGE_START = re.compile(r"^[0-9a-f.:]+-", re.I)


def literal_address(text: str) -> str | None:
    """Canonical text of an IP literal (``[::1]`` too), None if ``text`` is not one.

    Raises ResolutionError for text that can only have meant an address (dotted
    numbers, hex parts, brackets) but is not a valid one.
    """
    try:  # the common case first, at a tenth of the cost: a dotted quad
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except OSError:
        pass
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(inner)
    except ValueError:
        pass
    else:
        if inner is not text and address.version == 4:
            raise ResolutionError(f"{text}: brackets are for IPv6 addresses")
        return address.compressed
    if "[" in text or "]" in text:
        raise ResolutionError(f"{text}: not a valid address (unbalanced brackets)")
    if _INET_ATON.match(text):
        raise ResolutionError(f"{text}: not a valid IPv4 address (dotted decimal: a.b.c.d)")
    return None


def refuse_network(text: str) -> None:
    """ResolutionError (a UsageError) for a CIDR block or a range where one host is
    wanted (ping, trace, send): said as such, not as a resolver's "Name or service not
    known"."""
    if "/" in text or (_RANGE_START.match(text) and literal_address(text.split("-")[0])):
        raise ResolutionError(
            f"{text}: a network, not a host: ping, trace and send take hosts"
            " (sweep and scan take networks)"
        )


async def resolve(host: str, family: int | None = None) -> str:
    """One address for ``host`` (a literal or a name), of ``family`` if given.

    Raises ResolutionError with the host in the message when it cannot be resolved or
    has no address of the requested family, or is a network or a range.
    """
    host = host.strip()
    if not host:
        raise ResolutionError("empty host name")
    refuse_network(host)
    address = literal_address(host)
    if address is not None:
        is_v6 = ":" in address
        if family == socket.AF_INET and is_v6:
            raise ResolutionError(f"{host}: is an IPv6 address but -4 was given")
        if family == socket.AF_INET6 and not is_v6:
            raise ResolutionError(f"{host}: is an IPv4 address but -6 was given")
        return address
    try:
        infos = await anyio.getaddrinfo(
            host, None, family=family or socket.AF_UNSPEC, type=socket.SOCK_RAW
        )
    except OSError as exc:
        message = getattr(exc, "strerror", None) or str(exc)
        raise ResolutionError(f"{host}: {message}") from exc
    for info_family, *_rest, sockaddr in infos:
        if family is None or info_family == family:
            return ipaddress.ip_address(str(sockaddr[0]).split("%")[0]).compressed
    raise ResolutionError(f"{host}: no address of the requested family")


async def resolve_targets(
    texts: Iterable[str],
    family: int | None = None,
    *,
    exclude: Iterable[str] = (),
    broadcast: bool = False,
    hint: str = "add --broadcast",
) -> TargetSpace:
    """A TargetSpace from addresses, CIDR blocks (``198.19.0.0/24``, ``2001:db8::/120``),
    ranges (``198.19.0.1-20``) and host names (resolved once; ``name/24`` takes the
    block around the name's address). Duplicates and overlaps are merged; the space is
    sorted (IPv4 first). ``texts`` may be a stream (``TargetReader``): it is read once.

    Networks never yield the special addresses (multicast, broadcast, 0.0.0.0/8,
    240.0.0.0/4, ff00::/8) unless ``broadcast``; a target made only of them is refused.
    ``exclude`` (the same forms) is subtracted as block arithmetic. ``hint``: how the
    refusal of a special address says to allow it.

    Raises ResolutionError / UsageError naming the bad target.
    """
    collected = BlockSet()
    # The fast path of big files, inlined: one ordinary IPv4 address a word.
    pending = collected.v4_pending()
    append, pton, inet, chunk = pending.append, socket.inet_pton, socket.AF_INET, BlockSet.CHUNK
    fast = family != socket.AF_INET6
    for text in texts:
        try:
            value = int.from_bytes(pton(inet, text), "big") if fast else -1
        except OSError:
            value = -1
        if 0x01000000 <= value < 0xE0000000:
            append(value << 32)
            if len(pending) >= chunk:
                collected.merge(inet)
        else:
            await _collect(text, collected, family, special=broadcast, hint=hint)
    blocks = collected.blocks()
    if not blocks:
        raise UsageError("no targets given")
    blocks = without_special(blocks, broadcast)
    holes = BlockSet()
    for text in exclude:
        await _collect(text, holes, family, special=None)
    blocks = subtract(blocks, holes.blocks())
    if not blocks:
        raise UsageError("no targets left once the exclusions are left out")
    return TargetSpace(blocks)


async def _collect(
    text: str, into: BlockSet, family: int | None, special: bool | None, hint: str = ""
) -> None:
    """Add one target to ``into``; ``special``: whether special addresses are allowed
    (None: not checked, for exclusions)."""
    spec = text.strip()
    host, slash, prefix = spec.partition("/")
    whole_network = False
    if "-" not in spec:
        literal = literal_address(host)
        if literal is None:
            literal = await resolve(host, family)
            whole_network = True  # the host bits of a name's address are not the user's
        spec = literal + slash + prefix
    block = parse_block(spec, whole_network=whole_network, ends=special is None)
    if family is not None and block.family != family:
        raise UsageError(f"{text}: not of the requested address family")
    if special is not None:
        refusal = special_refusal(text.strip(), block, special, hint)
        if refusal is not None:
            raise UsageError(refusal)
    into.add(block)


class TargetReader:
    """The words of target files, streamed: one or more per line, separated by
    whitespace; ``#`` starts a comment; a UTF-8 byte-order mark is skipped. ``-`` reads
    standard input. ``where`` names the file and line of the word last yielded, for
    error messages. Unreadable or non-text files raise UsageError naming them."""

    def __init__(self, words: Iterable[str] = (), files: Iterable[str] = ()) -> None:
        self._words = list(words)
        self._files = list(files)
        self._path = ""
        self._line = 0

    @property
    def where(self) -> str:
        """``FILE:LINE`` of the word last yielded ("" for the command line's)."""
        return f"{self._path}:{self._line}" if self._path else ""

    def __iter__(self) -> Iterator[str]:
        yield from self._words
        for path in self._files:
            yield from self._read(path)
        self._path = ""

    def _read(self, path: str) -> Iterator[str]:
        try:
            if path == "-":
                stdin = sys.stdin.fileno()
                stream: TextIO = open(stdin, encoding="utf-8-sig", closefd=False)  # noqa: SIM115
            else:
                stream = open(path, encoding="utf-8-sig")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise UsageError(f"cannot read targets file {path}: {exc.strerror}") from None
        with stream:
            self._path = path
            try:
                for self._line, line in enumerate(stream, 1):
                    yield from line.partition("#")[0].split()
            except UnicodeDecodeError:
                raise UsageError(f"targets file {path} is not UTF-8 text") from None
            except OSError as exc:
                raise UsageError(f"cannot read targets file {path}: {exc.strerror}") from None


def split_exclusions(texts: Iterable[str]) -> Iterator[str]:
    """``--exclude A,B C`` values: comma-separated (nmap's spelling), possibly repeated."""
    for text in texts:
        for part in text.split(","):
            if part.strip():
                yield part.strip()


__all__ = [
    "AddressBlock",
    "TargetReader",
    "literal_address",
    "refuse_network",
    "resolve",
    "resolve_targets",
    "split_exclusions",
]
