"""The source-address check (``ping -I``, ``trace -s``, ``scan -S``): a bind on
loopback, no packet sent."""

from __future__ import annotations

import socket

import pytest

from rawprobe.errors import UsageError
from rawprobe.transport.sockets import check_source_address


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_an_address_of_this_host_passes() -> None:
    check_source_address("127.0.0.1")
    check_source_address("127.0.0.2")  # all of 127/8 is local, as iputils ping finds
    if _has_ipv6_loopback():
        check_source_address("::1")


@pytest.mark.parametrize("address", ["192.0.2.1", "2001:db8::1"])
def test_an_address_that_is_not_ours_is_refused_as_iputils_does(address: str) -> None:
    if ":" in address and not _has_ipv6_loopback():
        pytest.skip("no IPv6 on this host")
    with pytest.raises(UsageError, match=f"bind {address}: Cannot assign requested address"):
        check_source_address(address)
