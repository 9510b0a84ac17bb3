"""The sockets' side of path MTU discovery, on loopback (nothing sent): the outgoing
interface's MTU read from rtnetlink, and probe mode on the raw send sockets."""

from __future__ import annotations

import socket

import pytest

from rawprobe.transport.sockets import (
    IP_MTU_DISCOVER,
    IP_PMTUDISC_PROBE,
    IPV6_MTU_DISCOVER,
    IPV6_PMTUDISC_PROBE,
    MAX_PACKET,
    RouteLookup,
    open_send_socket,
    raw_sockets_allowed,
)


def _loopback_mtu() -> int:
    """lo's MTU as sysfs says (this process's namespace: the test's own)."""
    with open("/sys/class/net/lo/mtu", encoding="ascii") as file:
        return int(file.read())


def test_the_interface_mtu_towards_loopback_is_los() -> None:
    routes = RouteLookup()
    try:
        expected = min(_loopback_mtu(), MAX_PACKET)  # (65536 by default: capped)
        assert routes.interface_mtu("127.0.0.1") == expected
        assert routes.interface_mtu("127.0.0.9") == expected
        if socket.has_ipv6:
            assert routes.interface_mtu("::1") in (expected, None)  # (None: no IPv6 here)
    finally:
        routes.close()
    assert routes.interface_mtu("127.0.0.1") is None  # closed: no answer, no error


@pytest.mark.skipif(not raw_sockets_allowed(), reason="raw sockets need root or CAP_NET_RAW")
@pytest.mark.parametrize(
    ("family", "option"),
    [
        (socket.AF_INET, (socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)),
        (socket.AF_INET6, (socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)),
    ],
)
def test_raw_sends_ignore_a_learned_path_mtu(family: int, option: tuple[int, int, int]) -> None:
    """IP_PMTUDISC_PROBE: what a probe carries is what leaves (a learned path MTU
    would refuse or fragment it; the lab's MTU tests show both)."""
    level, name, mode = option
    with open_send_socket(family) as sock:
        assert sock.getsockopt(level, name) == mode
