"""`rawprobe scan -sU` against the lab target's UDP services (rawprobe/lab.py): open
echo/DNS ports, closed ports, the drop range open|filtered and the reject range
filtered (admin-prohibited), IPv4 and IPv6; one run under Linux's default ICMP rate
limit (the only slow test here, ~35 s)."""

from __future__ import annotations

import sys
from typing import Any

import output_check
import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab
PORTS = "1-12,50-56,120-125,160-162,1100-1103,1200-1203,1898-1901"


def udp_scan(lab: Lab, target: str, ports: str) -> dict[str, Any]:
    done = lab.run(
        "client", sys.executable, "-I", "-m", "rawprobe", "scan", "-sU", "-n", "-Pn", "-q",
        "--json", "-p", ports, target, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return output_check.document(done.stdout, "scan")


def states(document: dict[str, Any]) -> dict[int, tuple[str, str]]:
    (host,) = document["hosts"]
    assert all(p["protocol"] == "udp" for p in host["ports"])
    return {p["port"]: (p["state"], p["reason"]) for p in host["ports"]}


@pytest.mark.parametrize("target", ["198.19.0.5", "2001:db8:ff::5"])
def test_udp_scan_states_match_the_labs_services(lab: Lab, target: str) -> None:
    lab.set_icmp_ratelimit(False, roles=["target"])
    document = udp_scan(lab, target, PORTS)
    found = states(document)
    for port in (7, 53, 123, 161, 1900):
        assert found[port] == ("open", "udp-response")
    for port in range(1100, 1104):
        assert found[port] == ("open|filtered", "no-response")
    for port in range(1200, 1204):
        assert found[port] == ("filtered", "admin-prohibited")
    listed = len(found)
    total = 12 + 7 + 6 + 3 + 4 + 4 + 4
    assert document["hosts"][0]["closed"] == total - listed


def test_udp_scan_under_the_default_icmp_rate_limit_is_exact(lab: Lab) -> None:
    lab.set_icmp_ratelimit(True, roles=["target"])
    try:
        document = udp_scan(lab, "198.19.0.5", "1-40")
    finally:
        lab.set_icmp_ratelimit(False, roles=["target"])
    assert states(document) == {7: ("open", "udp-response")}
    assert document["hosts"][0]["closed"] == 39
    assert document["hosts"][0]["reason_counts"] == [
        {"protocol": "udp", "state": "closed", "reason": "port-unreach", "count": 39},
        {"protocol": "udp", "state": "open", "reason": "udp-response", "count": 1},
    ]
