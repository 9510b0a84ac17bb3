"""Human wording of ICMP errors, as iputils ping and traceroute print them."""

from __future__ import annotations

import socket

_V4: dict[tuple[int, int], str] = {
    (3, 0): "Destination Net Unreachable",
    (3, 1): "Destination Host Unreachable",
    (3, 2): "Destination Protocol Unreachable",
    (3, 3): "Destination Port Unreachable",
    (3, 4): "Frag needed and DF set",
    (3, 5): "Source Route Failed",
    (3, 6): "Destination Net Unknown",
    (3, 7): "Destination Host Unknown",
    (3, 8): "Source Host Isolated",
    (3, 9): "Destination Net Prohibited",
    (3, 10): "Destination Host Prohibited",
    (3, 11): "Destination Net Unreachable for Type of Service",
    (3, 12): "Destination Host Unreachable for Type of Service",
    (3, 13): "Packet filtered",
    (3, 14): "Precedence Violation",
    (3, 15): "Precedence Cutoff",
    (4, 0): "Source Quench",
    (5, 0): "Redirect Network",
    (5, 1): "Redirect Host",
    (11, 0): "Time to live exceeded",
    (11, 1): "Frag reassembly time exceeded",
    (12, 0): "Parameter problem",
}
_V6: dict[tuple[int, int], str] = {
    (1, 0): "Destination unreachable: No route",
    (1, 1): "Destination unreachable: Administratively prohibited",
    (1, 2): "Destination unreachable: Beyond scope",
    (1, 3): "Destination unreachable: Address unreachable",
    (1, 4): "Destination unreachable: Port unreachable",
    (1, 5): "Destination unreachable: Source address failed ingress/egress policy",
    (1, 6): "Destination unreachable: Reject route to destination",
    (2, 0): "Packet too big",
    (3, 0): "Time exceeded: Hop limit",
    (3, 1): "Time exceeded: Defrag",
    (4, 0): "Parameter problem: Wrong header field",
    (4, 1): "Parameter problem: Unknown header",
    (4, 2): "Parameter problem: Unknown option",
}


def describe_icmp(family: int, icmp_type: int, code: int) -> str:
    """iputils-style text for an ICMP error; unknown values are named by number."""
    table = _V4 if family == socket.AF_INET else _V6
    text = table.get((icmp_type, code))
    if text is None:
        text = table.get((icmp_type, 0), "ICMP error")
        text = f"{text} (type {icmp_type}, code {code})"
    return text
