"""Forged ICMP errors and echo replies during a traceroute are never reported."""

from __future__ import annotations

import sys
import textwrap

import pytest

from rawprobe.lab import Lab
from rawprobe.probes.traceroute import TraceOptions, trace_protocols, traceroute_with
from rawprobe.transport.raw import open_transport

pytestmark = [pytest.mark.lab, pytest.mark.anyio]

FAKE_ROUTER = "198.18.9.9"

FORGER = textwrap.dedent(
    f"""
    # For every echo request reaching the target: a time-exceeded from a made-up router
    # and an echo reply, both with the probe's identifier and sequence but a zeroed
    # payload (an off-path forger cannot know the cookie).
    import socket, struct

    def checksum(data):
        data += b"\\0" * (len(data) % 2)
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    def icmp(kind, code, rest, body):
        message = struct.pack("!BBH", kind, code, 0) + rest + body
        return message[:2] + struct.pack("!H", checksum(message)) + message[4:]

    def ip(src, dst, payload):
        header = struct.pack("!BBHHHBBH", 0x45, 0, 0, 0, 0, 64, 1, 0)
        return header + socket.inet_aton(src) + dst + payload

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    print("ready", flush=True)
    while True:
        packet, (client, _port) = sock.recvfrom(65535)
        ihl = (packet[0] & 15) * 4
        if packet[ihl] != 8:
            continue
        request = packet[:ihl] + packet[ihl : ihl + 8] + bytes(len(packet) - ihl - 8)
        zeroed_echo = request[ihl:]
        error = icmp(11, 0, bytes(4), request)
        reply = icmp(0, 0, zeroed_echo[4:8], zeroed_echo[8:])
        sock.sendto(ip("{FAKE_ROUTER}", packet[12:16], error), (client, 0))
        target = socket.inet_ntoa(packet[16:20])
        sock.sendto(ip(target, packet[12:16], reply), (client, 0))
    """
)


async def test_forged_errors_and_replies_never_enter_a_trace(lab: Lab) -> None:
    forger = lab.popen("target", sys.executable, "-c", FORGER, stdout=-1, text=True)
    try:
        assert forger.stdout is not None and forger.stdout.readline().strip() == "ready"
        with lab.entered("client"):
            async with open_transport(trace_protocols([lab.target_v4], "icmp")) as transport:
                options = TraceOptions(method="icmp", wait_s=0.5)
                results = [
                    await traceroute_with(transport, lab.target_v4, options) for _ in range(3)
                ]
    finally:
        forger.kill()
        forger.communicate()
    for result in results:
        addresses = {a for hop in result.hops for a in hop.addresses}
        assert FAKE_ROUTER not in addresses
        assert result.reached
        assert [hop.addresses[0] for hop in result.hops] == [*lab.router_v4, lab.target_v4]
    # The forger's packets did arrive and were refused: as forged while a probe was in
    # flight, or as unmatched once the target's own (faster) reply had retired it; which of
    # the two depends on how fast the forger runs on a loaded machine.
    assert transport.counters.forged + transport.counters.unmatched > 0
