"""Turning what a user typed into addresses: literals, and names through the resolver.

Literal addresses never touch the resolver. Text that looks like a dotted quad but is
not a valid IPv4 address (``999.1.1.1``) is refused here rather than handed to DNS.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence

import anyio

from rawprobe.errors import ResolutionError, UsageError
from rawprobe.probes.targets import AddressBlock, TargetSpace, disjoint_blocks, parse_block

_DOTTED = re.compile(r"^[0-9.]+$")


def literal_address(text: str) -> str | None:
    """Canonical text of an IP literal, None if ``text`` is not one.

    Raises ResolutionError for text that can only have meant an address (digits and
    dots) but is not a valid one.
    """
    try:
        return ipaddress.ip_address(text.strip("[]")).compressed
    except ValueError:
        pass
    if _DOTTED.match(text):
        raise ResolutionError(f"{text}: not a valid IPv4 address")
    return None


async def resolve(host: str, family: int | None = None) -> str:
    """One address for ``host`` (a literal or a name), of ``family`` if given.

    Raises ResolutionError with the host in the message when it cannot be resolved or
    has no address of the requested family.
    """
    host = host.strip()
    if not host:
        raise ResolutionError("empty host name")
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


async def resolve_targets(texts: Sequence[str], family: int | None = None) -> TargetSpace:
    """A TargetSpace from addresses, CIDR blocks (``198.19.0.0/24``, ``2001:db8::/120``),
    ranges (``198.19.0.1-20``) and host names (resolved once; ``name/24`` takes the
    block around the name's address). Duplicates and overlaps are merged.

    Raises ResolutionError / UsageError naming the bad target.
    """
    if not texts:
        raise UsageError("no targets given")
    blocks: list[AddressBlock] = []
    for text in texts:
        spec = text.strip()
        host, slash, prefix = spec.partition("/")
        if "-" not in spec and literal_address(host) is None:
            spec = await resolve(host, family) + slash + prefix
        block = parse_block(spec)
        if family is not None and block.family != family:
            raise UsageError(f"{text}: not of the requested address family")
        blocks.append(block)
    return TargetSpace(disjoint_blocks(blocks))
