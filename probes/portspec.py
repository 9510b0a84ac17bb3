"""Port lists in nmap's syntax: ``22,80,443``, ``1-1024``, ``-`` (all), ``--top-ports N``.

Pure parsing; every mistake is one UsageError naming the bad part.
"""

from __future__ import annotations

from rawprobe.errors import UsageError
from rawprobe.probes.top_ports import TOP_PORTS

MAX_PORT = 65535
#: nmap's defaults: the 1000 most frequently open TCP ports, the 100 UDP ones (``-sU``).
DEFAULT_TOP_PORTS = 1000
DEFAULT_TOP_UDP_PORTS = 100


def parse_ports(spec: str) -> tuple[int, ...]:
    """Sorted distinct ports of an nmap port spec.

    Accepts comma-separated ports and ranges; a range may leave out either end
    (``-1024`` is 1-1024, ``60000-`` runs to 65535, ``-`` alone is every port, as in
    ``-p-``); a leading ``T:`` (nmap's TCP marker) is allowed. Port 0, ports above
    65535, reversed ranges, empty parts and anything else raise UsageError.
    """
    text = spec.strip()
    if text.upper().startswith("T:"):
        text = text[2:]
    if not text:
        raise UsageError("empty port list")
    ports: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise UsageError(f"bad port list {spec!r}: empty item")
        if "-" in item:
            low_text, _, high_text = item.partition("-")
            low = _port(low_text, spec) if low_text.strip() else 1
            high = _port(high_text, spec) if high_text.strip() else MAX_PORT
            if low > high:
                raise UsageError(f"bad port range {item!r}: {low} is above {high}")
            ports.update(range(low, high + 1))
        else:
            ports.add(_port(item, spec))
    return tuple(sorted(ports))


def _port(text: str, spec: str) -> int:
    item = text.strip()
    if not item.isdigit():
        raise UsageError(f"bad port {item!r} in {spec!r}: ports are numbers 1-65535")
    port = int(item)
    if not 1 <= port <= MAX_PORT:
        raise UsageError(f"bad port {port} in {spec!r}: ports are 1-65535")
    return port


def top_ports(count: int, protocol: str = "tcp") -> tuple[int, ...]:
    """The ``count`` most frequently open ``protocol`` ("tcp" or "udp") ports, sorted
    (1 <= count <= 1000)."""
    ranked = TOP_PORTS[protocol]
    if not 1 <= count <= len(ranked):
        raise UsageError(f"bad --top-ports {count}: must be 1..{len(ranked)}")
    return tuple(sorted(ranked[:count]))
