"""Received IPv4 header and ICMP checksums: a matched packet with a bad one is counted
malformed and never delivered (transport/demux.py); unmatched traffic is not summed."""

from __future__ import annotations

import socket

import pytest

from rawprobe.transport import demux as demux_module
from rawprobe.transport.base import Counters, Inbox
from rawprobe.transport.demux import Demux, checksums_ok_v4
from rawprobe.transport.keys import KIND_ECHO, Cookies, MatchKey, key_of_sent
from rawprobe.transport.wire.icmp import build_echo, build_icmp
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4

ME, HOST, ROUTER = "198.18.1.2", "198.19.0.7", "198.18.2.2"
COOKIES = Cookies(b"k" * 32)
KEY: MatchKey = (KIND_ECHO, socket.inet_aton(HOST), 0x4201, 5)


def echo_reply() -> bytearray:
    icmp = build_echo(0x4201, 5, COOKIES.cookie(KEY) + b"payload!", reply=True)
    return bytearray(build_ipv4(IPv4Header(src=HOST, dst=ME, protocol=1, ttl=61), icmp))


def time_exceeded() -> bytearray:
    probe = build_ipv4(
        IPv4Header(src=ME, dst=HOST, protocol=1, ttl=1),
        build_echo(0x4201, 5, COOKIES.cookie(KEY) + b"payload!"),
    )
    assert key_of_sent(probe) == KEY
    icmp = build_icmp(11, 0, 0, probe[: 28 + 8])
    return bytearray(build_ipv4(IPv4Header(src=ROUTER, dst=ME, protocol=1, ttl=62), icmp))


def dispatch(packet: bytes, *, verify: bool = True, header: bool = True) -> tuple[int, Counters]:
    counters = Counters()
    routes = Demux(COOKIES, counters)
    routes.verify_icmp = verify
    routes.verify_ip_header = verify and header
    inbox = Inbox(4)
    routes.register(KEY, inbox)
    routes.dispatch_v4(bytes(packet), 1, 0.0)
    return len(inbox.take_all()), counters


@pytest.mark.parametrize("build", [echo_reply, time_exceeded])
def test_a_good_reply_is_delivered(build: object) -> None:
    packet = build()  # type: ignore[operator]
    assert checksums_ok_v4(bytes(packet))
    delivered, counters = dispatch(packet)
    assert delivered == 1 and counters.malformed == 0


@pytest.mark.parametrize("build", [echo_reply, time_exceeded])
@pytest.mark.parametrize("where", ["ip header checksum", "icmp checksum", "quoted bytes"])
def test_a_bad_checksum_is_malformed_and_not_delivered(build: object, where: str) -> None:
    packet = build()  # type: ignore[operator]
    offset = {"ip header checksum": 10, "icmp checksum": 22, "quoted bytes": 30}[where]
    packet[offset] ^= 0x01
    delivered, counters = dispatch(packet)
    assert delivered == 0
    assert counters.malformed == 1 and counters.forged == 0 and counters.delivered == 0


def test_transports_that_rebuild_packets_can_turn_the_check_off() -> None:
    packet = echo_reply()
    packet[10:12] = b"\0\0"  # as the datagram transports build it: no header checksum
    assert dispatch(packet, verify=False)[0] == 1


def test_without_the_header_check_the_icmp_checksum_is_still_verified() -> None:
    """The raw transport: the kernel verified the IP header; ICMP is summed here."""
    packet = echo_reply()
    packet[22] ^= 0x01
    delivered, counters = dispatch(packet, header=False)
    assert delivered == 0 and counters.malformed == 1
    odd = time_exceeded()  # odd ICMP lengths are padded as RFC 1071 says
    odd = bytearray(build_ipv4(IPv4Header(src=ROUTER, dst=ME, protocol=1, ttl=62),
                               build_icmp(11, 0, 0, bytes(odd[28:]) + b"x")))  # fmt: skip
    assert checksums_ok_v4(bytes(odd), header=False)
    odd[-1] ^= 0x10
    assert not checksums_ok_v4(bytes(odd), header=False)


def test_unmatched_packets_are_not_summed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(_packet: bytes) -> bool:
        raise AssertionError("summed a packet nobody waits for")

    monkeypatch.setattr(demux_module, "checksums_ok_v4", fail)
    counters = Counters()
    Demux(COOKIES, counters).dispatch_v4(bytes(echo_reply()), 1, 0.0)
    assert counters.unmatched == 1
