"""Scan targets as the user typed them -> a TargetSpace (names resolved here, once).

Lives in the front-door layer because it may touch the resolver; ``probes`` only
ever sees literal address blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from rawprobe.errors import UsageError
from rawprobe.probes.scan import disjoint_blocks
from rawprobe.probes.targets import AddressBlock, TargetSpace, parse_block
from rawprobe.targets import literal_address, resolve

__all__ = ["resolve_targets"]


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
