"""Target spaces: hosts, CIDR blocks and ranges as index-addressable blocks.

A sweep or scan walks indices of a TargetSpace in a permuted order; turning an index
into an address is a bisect and an addition, so no list of the space is ever built.
Names are resolved by the caller (the front door or the CLI): this module sees only
literal addresses and never touches DNS.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import socket
from array import array
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


#: Prefixes at least this long keep nmap's reading of a block with host bits set (the
#: whole network: ``198.19.0.5/24`` is 198.19.0.0/24); shorter ones are refused, since
#: ``198.19.0.0/8`` was almost surely not meant as 16.7 million addresses.
LOOSE_PREFIX = {4: 24, 6: 120}


def parse_block(spec: str, *, whole_network: bool = False, ends: bool = False) -> AddressBlock:
    """One target spec: an address, a CIDR block, or a range ``A-B``.

    IPv4 blocks of /30 or wider leave out their network and broadcast addresses, as
    ``fping -g`` does, unless ``ends`` (exclusions take the whole block). A block with
    host bits set is read as its whole network when the prefix is /24 or longer (/120
    for IPv6) or ``whole_network`` is set (``name/16``: the user cannot know the host
    bits of a name's address); otherwise it is refused with a hint naming the networks
    probably meant. Raises UsageError with the spec in the message.
    """
    text = spec.strip()
    try:
        if "/" in text:
            network = _network(text, whole_network)
            version, first, count = network.version, int(network[0]), network.num_addresses
            if version == 4 and network.prefixlen <= 30 and not ends:
                first, count = first + 1, count - 2
        elif "-" in text:
            start_text, end_text = text.split("-", 1)
            start = ipaddress.ip_address(start_text)
            end = _range_end(start, end_text)
            if int(end) < int(start):
                raise UsageError(f"{spec}: range ends before it starts")
            version, first, count = start.version, int(start), int(end) - int(start) + 1
        else:
            address = ipaddress.ip_address(text)
            version, first, count = address.version, int(address), 1
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(f"{spec}: not an address, CIDR block or range ({exc})") from None
    return AddressBlock(socket.AF_INET if version == 4 else socket.AF_INET6, first, count)


def _network(text: str, whole_network: bool) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    network = ipaddress.ip_network(text, strict=False)
    address = ipaddress.ip_address(text.partition("/")[0])
    if whole_network or address == network.network_address:
        return network
    if network.prefixlen >= LOOSE_PREFIX[network.version]:
        return network
    raise UsageError(host_bits_hint(text, address, network))


def host_bits_hint(
    text: str,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> str:
    """``198.19.0.0/8 has host bits set: did you mean 198.19.0.0/16, or 198.0.0.0/8
    (16,777,216 addresses)?``: first the smallest network the address starts (its
    trailing zero bits, at most a /24 or /120 so a host gets its neighbourhood), then
    the whole /N network the kernel's reading would give."""
    bits = address.max_prefixlen
    value = int(address)
    own = bits - ((value & -value).bit_length() - 1) if value else 0
    own = min(max(own, network.prefixlen + 1), LOOSE_PREFIX[address.version])
    meant = ipaddress.ip_network(f"{address}/{own}", strict=False)
    return (
        f"{text} has host bits set: did you mean {meant}, or {network}"
        f" ({_count_text(network.num_addresses)} addresses)?"
    )


def _count_text(count: int) -> str:
    """Addresses counted for a person: 16,777,216 or, past a billion billion, 2^112."""
    return f"{count:,}" if count < 10**12 else f"2^{count.bit_length() - 1}"


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

#: Addresses that are not one host, per family: (first, last, kind). Expanding a
#: network (a CIDR block or a range) leaves them out unless --broadcast is given; a
#: target made only of them is refused. The unspecified address is never a destination.
SPECIAL_RANGES: dict[int, tuple[tuple[int, int, str], ...]] = {
    socket.AF_INET: (
        (0, 0, "unspecified"),
        (0x00000001, 0x00FFFFFF, "'this network' (0.0.0.0/8)"),
        (0xE0000000, 0xEFFFFFFF, "multicast"),  # 224.0.0.0/4
        (0xF0000000, 0xFFFFFFFE, "reserved (240.0.0.0/4)"),
        (0xFFFFFFFF, 0xFFFFFFFF, "broadcast"),
    ),
    socket.AF_INET6: (
        (0, 0, "unspecified"),
        (0xFF << 120, (1 << 128) - 1, "multicast"),  # ff00::/8
    ),
}


def special_kind(block: AddressBlock) -> str | None:
    """The kind (``"broadcast"``, ``"multicast"``, ``"unspecified"``, ...) when every
    address of ``block`` is one of SPECIAL_RANGES (a destination reaching many hosts,
    or none), else None: a network only partly special is trimmed, not refused
    (``without_special``).

    Directed broadcasts of local subnets are not detected here: the kernel refuses
    them on sockets without SO_BROADCAST (the send reports EACCES).
    """
    last = block.first + block.count - 1
    ranges = SPECIAL_RANGES[block.family]
    covered_to = block.first
    kind: str | None = None
    for low, high, name in ranges:
        if high < covered_to or low > last:
            continue
        if low > covered_to:
            return None  # a gap of ordinary addresses
        if kind is None or kind == "unspecified":
            kind = name  # 0.0.0.0/31 is named by its other addresses
        covered_to = high + 1
        if covered_to > last:
            return kind
    return None


def special_refusal(
    target: str, block: AddressBlock, allowed: bool, hint: str = "add --broadcast"
) -> str | None:
    """Why ``block`` (typed as ``target``) is refused as a destination, or None: the
    unspecified address always, other special addresses unless ``allowed`` (``hint``
    says how to allow them)."""
    kind = special_kind(block)
    if kind is None:
        return None
    if kind == "unspecified":
        return f"{target}: the unspecified address is not a destination"
    if not allowed:
        return f"{target} is a {kind} destination: {hint} to probe it"
    return None


def without_special(blocks: Sequence[AddressBlock], allow: bool) -> list[AddressBlock]:
    """``blocks`` (sorted, disjoint) less the special addresses; with ``allow``
    (--broadcast) less only the unspecified address."""
    holes = [
        AddressBlock(family, low, high - low + 1)
        for family, ranges in SPECIAL_RANGES.items()
        for low, high, kind in ranges
        if not allow or kind == "unspecified"
    ]
    return subtract(blocks, sorted(holes, key=lambda b: (b.family, b.first)))


def subtract(blocks: Sequence[AddressBlock], holes: Sequence[AddressBlock]) -> list[AddressBlock]:
    """Block arithmetic: the addresses of ``blocks`` not in ``holes``. Both must be
    sorted by (family, first) and disjoint; so is the result. Linear in the number of
    blocks and holes, whatever their sizes (a 2**40 space is never expanded)."""
    spans = [(hole.family, hole.first, hole.first + hole.count) for hole in holes]
    out: list[AddressBlock] = []
    position, count = 0, len(spans)
    for block in blocks:
        family, first = block.family, block.first
        end = first + block.count
        while position < count and (spans[position][0], spans[position][2]) <= (family, first):
            position += 1  # holes wholly before this block
        if position == count or spans[position][0] != family or spans[position][1] >= end:
            out.append(block)  # untouched (the common case: no new object)
            continue
        scan = position
        while first < end and scan < count:
            hole_family, hole_first, hole_end = spans[scan]
            if hole_family != family or hole_first >= end:
                break
            if hole_first > first:
                out.append(AddressBlock(family, first, hole_first - first))
            first = max(first, hole_end)
            if hole_end > end:
                break  # this hole reaches into the next block
            scan += 1
        if first < end:
            out.append(AddressBlock(family, first, end - first))
    return out


class BlockSet:
    """Addresses collected from a stream of targets (millions of lines) as sorted,
    disjoint blocks, without keeping one object per line.

    Each block is packed into one integer (first address, then count - 1, in the low
    32 bits for IPv4 and 128 bits for IPv6) appended to a pending array; every CHUNK
    pending entries are sorted and merged with the runs so far (adjacent and
    overlapping addresses become one block), so a shuffled file of a /16's addresses,
    repeated, costs a few runs, not two million strings.
    """

    CHUNK = 1 << 17

    def __init__(self) -> None:
        self._pending: dict[int, array[int] | list[int]] = {
            socket.AF_INET: array("Q"),
            socket.AF_INET6: [],
        }
        self._runs: dict[int, array[int] | list[int]] = {
            socket.AF_INET: array("Q"),
            socket.AF_INET6: [],
        }

    def add(self, block: AddressBlock) -> None:
        pending = self._pending[block.family]
        pending.append(block.first << _SHIFT[block.family] | (block.count - 1))
        if len(pending) >= self.CHUNK:
            self.merge(block.family)

    def v4_pending(self) -> array[int]:
        """The IPv4 pending array, the fast path of target files: append an address's
        ``value << 32``, then call ``merge(AF_INET)`` once it holds CHUNK entries."""
        pending = self._pending[socket.AF_INET]
        assert isinstance(pending, array)
        return pending

    def merge(self, family: int) -> None:
        shift = _SHIFT[family]
        mask = (1 << shift) - 1
        runs: list[int] = []
        run_first, run_end = -1, -1
        for packed in sorted(itertools.chain(self._runs[family], self._pending[family])):
            first = packed >> shift
            end = first + (packed & mask) + 1
            if first <= run_end:
                if end > run_end:
                    run_end = end
                continue
            if run_end >= 0:
                runs.append(run_first << shift | (run_end - run_first - 1))
            run_first, run_end = first, end
        if run_end >= 0:
            runs.append(run_first << shift | (run_end - run_first - 1))
        self._runs[family] = array("Q", runs) if family == socket.AF_INET else runs
        del self._pending[family][:]  # in place: ``v4_pending`` stays valid

    def blocks(self) -> list[AddressBlock]:
        """Every address added, as sorted disjoint blocks (IPv4 first)."""
        out: list[AddressBlock] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            self.merge(family)
            shift = _SHIFT[family]
            mask = (1 << shift) - 1
            out += [AddressBlock(family, p >> shift, (p & mask) + 1) for p in self._runs[family]]
        return out


_SHIFT: dict[int, int] = {socket.AF_INET: 32, socket.AF_INET6: 128}


def refuse_special_block(
    target: str, block: AddressBlock, allowed: bool, hint: str = "pass broadcast=True"
) -> None:
    """UsageError for a broadcast or multicast destination unless ``allowed``, and for
    the unspecified address (0.0.0.0, ::) always: the one rule of the CLI (``hint``
    "add --broadcast") and the library (``broadcast=True``). ``target`` names it."""
    refusal = special_refusal(target, block, allowed, hint)
    if refusal is not None:
        raise UsageError(refusal)


def refuse_special(space: TargetSpace, allowed: bool, hint: str = "pass broadcast=True") -> None:
    """``refuse_special_block`` for every block of a resolved target space (names
    already turned into addresses, so a name that resolves to a broadcast address is
    caught too)."""
    for block in space.blocks:
        first = socket.inet_ntop(block.family, block.first.to_bytes(block.width, "big"))
        label = first if block.count == 1 else f"{first} (+{block.count - 1})"
        refuse_special_block(label, block, allowed, hint)
