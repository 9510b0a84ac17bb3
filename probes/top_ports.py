"""TCP and UDP ports ranked by how often they are found open, most frequent first.

``--top-ports N`` scans the first N of the scan's protocol; ``-sU`` defaults to the top
100 UDP ports. The ranking is the open-frequency column of the nmap-services table
shipped with nmap 7.93 (port numbers only, in rank order; ties broken by port number),
so ``--top-ports N`` covers nmap's ports. The two tables are data, not code: they live in
``top_ports.txt`` beside this module (package data), one ``[tcp]``/``[udp]`` section of
1000 space-separated ports each, read once at import (about 10 KB).
"""

from __future__ import annotations

from importlib.resources import files


def _tables() -> dict[str, tuple[int, ...]]:
    tables: dict[str, list[int]] = {}
    ports: list[int] = []
    text = files(__package__).joinpath("top_ports.txt").read_text(encoding="ascii")
    for line in text.splitlines():
        if line.startswith("["):
            ports = tables.setdefault(line.strip("[]"), [])
        elif not line.startswith("#"):
            ports.extend(map(int, line.split()))
    return {protocol: tuple(ranked) for protocol, ranked in tables.items()}


TOP_PORTS: dict[str, tuple[int, ...]] = _tables()
TOP_TCP_PORTS: tuple[int, ...] = TOP_PORTS["tcp"]
TOP_UDP_PORTS: tuple[int, ...] = TOP_PORTS["udp"]
