"""Target spaces: hosts, CIDR blocks and ranges as index-addressable blocks.

A sweep or scan walks indices of a TargetSpace in a permuted order; turning an index
into an address is a bisect and an addition, so no list of the space is ever built.
Names are resolved by the caller (the front door or the CLI): this module sees only
literal addresses and never touches DNS.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from rawprobe.errors import UsageError


@dataclass(frozen=True, slots=True)
class AddressBlock:
    """``count`` consecutive addresses of ``family`` starting at integer ``first``."""

    family: int
    first: int
    count: int

    @property
    def width(self) -> int:
        return 4 if self.family == socket.AF_INET else 16


def parse_block(spec: str) -> AddressBlock:
    """One target spec: an address, a CIDR block, or a range ``A-B``.

    IPv4 blocks of /30 or wider leave out their network and broadcast addresses, as
    ``fping -g`` does. Raises UsageError with the spec in the message.
    """
    text = spec.strip()
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            first, count = int(network.network_address), network.num_addresses
            family = socket.AF_INET if network.version == 4 else socket.AF_INET6
            if network.version == 4 and network.prefixlen <= 30:
                first, count = first + 1, count - 2
            return AddressBlock(family, first, count)
        if "-" in text:
            start_text, end_text = text.split("-", 1)
            start = ipaddress.ip_address(start_text)
            end = _range_end(start, end_text)
            if int(end) < int(start):
                raise UsageError(f"{spec}: range ends before it starts")
            family = socket.AF_INET if start.version == 4 else socket.AF_INET6
            return AddressBlock(family, int(start), int(end) - int(start) + 1)
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise UsageError(f"{spec}: not an address, CIDR block or range ({exc})") from None
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return AddressBlock(family, int(address), 1)


def _range_end(
    start: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``198.19.0.1-198.19.0.9`` or the short form ``198.19.0.1-9`` (last octet)."""
    if start.version == 4 and text.isdigit():
        last = int(text)
        if last > 255:
            raise UsageError(f"{start}-{text}: last octet above 255")
        return ipaddress.IPv4Address(int(start) & ~0xFF | last)
    end = ipaddress.ip_address(text)
    if end.version != start.version:
        raise UsageError(f"{start}-{text}: mixes IPv4 and IPv6")
    return end


_OCTETS = tuple(str(octet) for octet in range(256))


class TargetSpace:
    """An ordered union of address blocks, indexed 0..size-1."""

    def __init__(self, blocks: Iterable[AddressBlock]) -> None:
        self.blocks = tuple(blocks)
        if not self.blocks:
            raise UsageError("no targets given")
        self._starts: list[int] = []
        total = 0
        for block in self.blocks:
            self._starts.append(total)
            total += block.count
        self.size = total

    @classmethod
    def parse(cls, specs: Iterable[str]) -> TargetSpace:
        return cls(parse_block(spec) for spec in specs)

    @property
    def families(self) -> set[int]:
        return {block.family for block in self.blocks}

    def block_of(self, index: int) -> tuple[AddressBlock, int]:
        """The block holding ``index`` and the offset inside it."""
        position, offset = self.locate(index)
        return self.blocks[position], offset

    def locate(self, index: int) -> tuple[int, int]:
        """(position of the block holding ``index`` in ``blocks``, offset inside it)."""
        position = bisect.bisect_right(self._starts, index) - 1
        return position, index - self._starts[position]

    def first_address(self, block: AddressBlock) -> str:
        return socket.inet_ntop(block.family, block.first.to_bytes(block.width, "big"))

    def packed(self, index: int) -> bytes:
        """The address at ``index`` as packed bytes (4 or 16)."""
        block, offset = self.block_of(index)
        return (block.first + offset).to_bytes(block.width, "big")

    def address(self, index: int) -> str:
        block, offset = self.block_of(index)
        return socket.inet_ntop(block.family, (block.first + offset).to_bytes(block.width, "big"))

    def addresses(self, indices: Iterable[int]) -> Iterator[str]:
        """``address(i)`` for each of ``indices``, which must ascend (one block lookup
        per block rather than per address: output of million-host sweeps)."""
        ntop = socket.inet_ntop
        position, end = -1, 0
        family, first = 0, 0
        prefix_of, prefix = -1, ""  # IPv4: the "a.b.c." text of the current /24
        for index in indices:
            if index >= end:
                position = self.locate(index)[0]
                block = self.blocks[position]
                end = self._starts[position] + block.count
                family = block.family
                first = block.first - self._starts[position]
            value = first + index
            if family == socket.AF_INET6:
                yield ntop(family, value.to_bytes(16, "big"))
                continue
            if value >> 8 != prefix_of:
                prefix_of = value >> 8
                prefix = ntop(family, value.to_bytes(4, "big")).rpartition(".")[0] + "."
            yield prefix + _OCTETS[value & 0xFF]


# -- destinations that are not one host --------------------------------------------------

_V4_MULTICAST = (0xE0000000, 0xEFFFFFFF)  # 224.0.0.0/4
_V4_BROADCAST = 0xFFFFFFFF
_V6_MULTICAST = (0xFF << 120, (1 << 128) - 1)  # ff00::/8


def special_kind(block: AddressBlock) -> str | None:
    """``"broadcast"``, ``"multicast"`` or ``"unspecified"`` when ``block`` holds such a
    destination (one reaching many hosts, or none), else None.

    Directed broadcasts of local subnets are not detected here: the kernel refuses
    them on sockets without SO_BROADCAST (the send reports EACCES).
    """
    last = block.first + block.count - 1
    if block.family == socket.AF_INET:
        if last >= _V4_BROADCAST:
            return "broadcast"
        low, high = _V4_MULTICAST
    else:
        low, high = _V6_MULTICAST
    if block.first <= high and last >= low:
        return "multicast"
    if block.first == 0:
        return "unspecified"
    return None


def refuse_special_block(
    target: str, block: AddressBlock, allowed: bool, hint: str = "pass broadcast=True"
) -> None:
    """UsageError for a broadcast or multicast destination unless ``allowed``, and for
    the unspecified address (0.0.0.0, ::) always: the one rule of the CLI (``hint``
    "add --broadcast") and the library (``broadcast=True``). ``target`` names it."""
    kind = special_kind(block)
    if kind == "unspecified":
        raise UsageError(f"{target}: the unspecified address is not a destination")
    if kind is not None and not allowed:
        raise UsageError(f"{target} is a {kind} destination: {hint} to probe it")


def refuse_special(space: TargetSpace, allowed: bool, hint: str = "pass broadcast=True") -> None:
    """``refuse_special_block`` for every block of a resolved target space (names
    already turned into addresses, so a name that resolves to a broadcast address is
    caught too)."""
    for block in space.blocks:
        first = socket.inet_ntop(block.family, block.first.to_bytes(block.width, "big"))
        label = first if block.count == 1 else f"{first} (+{block.count - 1})"
        refuse_special_block(label, block, allowed, hint)


def disjoint_blocks(blocks: Sequence[AddressBlock]) -> list[AddressBlock]:
    """Blocks merged so no address appears twice (a port of a host is probed once)."""
    merged: list[AddressBlock] = []
    for block in sorted(blocks, key=lambda b: (b.family, b.first)):
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.family == block.family
            and block.first <= last.first + (last.count)
        ):
            end = max(last.first + last.count, block.first + block.count)
            merged[-1] = AddressBlock(last.family, last.first, end - last.first)
        else:
            merged.append(block)
    return merged
