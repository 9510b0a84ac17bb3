"""The top-ports tables: nmap-services' open-frequency ranking, for TCP and UDP."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawprobe.errors import UsageError
from rawprobe.probes.portspec import DEFAULT_TOP_UDP_PORTS, top_ports
from rawprobe.probes.top_ports import TOP_TCP_PORTS, TOP_UDP_PORTS

NMAP_SERVICES = Path("/usr/share/nmap/nmap-services")


@pytest.mark.parametrize("table", [TOP_TCP_PORTS, TOP_UDP_PORTS], ids=["tcp", "udp"])
def test_tables_hold_1000_distinct_ports(table: tuple[int, ...]) -> None:
    assert len(table) == len(set(table)) == 1000 and all(1 <= p <= 65535 for p in table)


def test_udp_ranking_starts_as_nmaps_and_the_default_is_the_top_100() -> None:
    assert TOP_UDP_PORTS[:10] == (631, 161, 137, 123, 138, 1434, 445, 135, 67, 53)
    udp = top_ports(DEFAULT_TOP_UDP_PORTS, "udp")
    assert len(udp) == 100 and list(udp) == sorted(udp) and {53, 123, 161, 5353} <= set(udp)
    assert top_ports(3) == (23, 80, 443)  # TCP stays the default protocol


@pytest.mark.skipif(not NMAP_SERVICES.exists(), reason="nmap-services not installed")
@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_tables_are_the_open_frequency_ranking_of_nmap_services(protocol: str) -> None:
    rows = []
    for line in NMAP_SERVICES.read_text().splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 3:
            continue
        port, _, proto = fields[1].partition("/")
        if proto == protocol:
            rows.append((-float(fields[2]), int(port)))  # ties broken by port number
    ranked = tuple(port for _, port in sorted(rows)[:1000])
    assert ranked == {"tcp": TOP_TCP_PORTS, "udp": TOP_UDP_PORTS}[protocol]


@pytest.mark.parametrize("count", [0, 1001])
def test_bad_counts_are_usage_errors(count: int) -> None:
    with pytest.raises(UsageError, match="bad --top-ports"):
        top_ports(count, "udp")
