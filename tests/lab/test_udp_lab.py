"""The lab target's UDP side, seen from the client with plain UDP sockets: the echo
ports and the DNS responder answer on every target address (from the address asked),
the reject range gives ICMP admin-prohibited, the drop range stays silent, and
``set_icmp_ratelimit(..., roles=["target"])`` switches the target's error rate limit."""

from __future__ import annotations

import select
import socket
import struct
import time

import dns.message
import dns.rcode
import pytest

from rawprobe.lab import Lab
from rawprobe.probes.udp_payloads import payload_for

pytestmark = pytest.mark.lab

ADDRESSES = ["198.19.0.5", "198.19.77.3", "2001:db8:ff::5", "2001:db8:ff::1234"]
IP_RECVERR, IPV6_RECVERR = 11, 25
# struct sock_extended_err: errno, origin, type, code, pad, info, data
EXTENDED_ERR = struct.Struct("=IBBBBII")
CLOSED_PORT = 9  # discard: not served by the lab


def client_socket(lab: Lab, address: str) -> socket.socket:
    """A UDP socket of the client's namespace that queues ICMP errors (IP_RECVERR)."""
    v6 = ":" in address
    with lab.entered("client"):
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    sock.setblocking(False)
    return sock


def exchange(sock: socket.socket, address: str, port: int, payload: bytes, wait_s: float):
    """Send one datagram and wait: ("reply", data, source), ("icmp", type, code) or
    ("silence",)."""
    sock.sendto(payload, (address, port))
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR)
    if not poller.poll(wait_s * 1000):
        return ("silence",)
    errors = icmp_errors(sock)
    if errors:
        return ("icmp", *errors[0])
    data, source = sock.recvfrom(2048)
    return ("reply", data, source[0])


def icmp_errors(sock: socket.socket) -> list[tuple[int, int]]:
    """(type, code) of every ICMP error queued on ``sock`` (MSG_ERRQUEUE), drained."""
    found = []
    while True:
        try:
            _, ancillary, _, _ = sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
        except BlockingIOError:
            return found
        for _level, _kind, data in ancillary:
            _errno, _origin, icmp_type, icmp_code, *_ = EXTENDED_ERR.unpack_from(data)
            found.append((icmp_type, icmp_code))


@pytest.mark.parametrize("address", ADDRESSES)
def test_echo_ports_and_dns_answer_from_the_address_asked(lab: Lab, address: str) -> None:
    with client_socket(lab, address) as sock:
        for port in lab.udp_open_ports:
            if port == 53:
                continue
            assert exchange(sock, address, port, b"probe", 2.0) == ("reply", b"probe", address)
        kind, data, source = exchange(sock, address, 53, payload_for(53), 2.0)
    assert (kind, source) == ("reply", address)
    reply = dns.message.from_wire(data)
    query = dns.message.from_wire(payload_for(53))
    assert reply.id == query.id and reply.question == query.question
    assert reply.rcode() == dns.rcode.NXDOMAIN  # an answer: the port is open


@pytest.mark.parametrize("address", ["198.19.0.5", "2001:db8:ff::5"])
def test_reject_range_is_admin_prohibited_drop_range_silent_others_closed(
    lab: Lab, address: str
) -> None:
    v6 = ":" in address
    prohibited, unreachable = ((1, 1), (1, 4)) if v6 else ((3, 13), (3, 3))
    with client_socket(lab, address) as sock:
        for port in (lab.udp_reject_ports[0], lab.udp_reject_ports[-1]):
            assert exchange(sock, address, port, b"x", 2.0) == ("icmp", *prohibited)
        assert exchange(sock, address, CLOSED_PORT, b"x", 2.0) == ("icmp", *unreachable)
        for port in (lab.udp_drop_ports[0], lab.udp_drop_ports[-1]):
            assert exchange(sock, address, port, b"x", 0.5) == ("silence",)


def count_port_unreachables(lab: Lab, count: int) -> int:
    """Send ``count`` datagrams to distinct closed ports at once (one socket each: a
    pending error would fail the next send); count the errors that come back."""
    sockets = [client_socket(lab, lab.target_v4) for _ in range(count)]
    try:
        for port, sock in enumerate(sockets, start=20000):
            sock.sendto(b"x", (lab.target_v4, port))
        found = 0
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            select.select([], [], [], 0.05)
            found += sum(len(icmp_errors(sock)) for sock in sockets)
        return found
    finally:
        for sock in sockets:
            sock.close()


def test_target_icmp_ratelimit_switches_per_test(lab: Lab) -> None:
    assert count_port_unreachables(lab, 20) == 20  # labs start with every limit off
    lab.set_icmp_ratelimit(True, roles=["target"])
    try:
        time.sleep(1.1)  # a full token bucket: the burst
        limited = count_port_unreachables(lab, 20)
    finally:
        lab.set_icmp_ratelimit(False, roles=["target"])
    assert 1 <= limited <= 10  # a burst of about six, then one a second
    assert count_port_unreachables(lab, 20) == 20
