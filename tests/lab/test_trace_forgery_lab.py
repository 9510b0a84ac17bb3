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
    # Sees (AF_PACKET, before routing) every echo request reaching the target, also those
    # to the silent range it blackholes, and answers each with a time-exceeded from a
    # made-up router and an echo reply from the address asked for, both with the probe's
    # identifier and sequence but a zeroed payload (an off-path forger cannot know the
    # cookie). Prints a running count of the packets it forged.
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
        return header + src + dst + payload

    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    print("ready", flush=True)
    forged = 0
    while True:
        packet, address = sniff.recvfrom(65535)
        ihl = (packet[0] & 15) * 4
        if address[2] == socket.PACKET_OUTGOING or packet[9] != 1 or packet[ihl] != 8:
            continue
        client, asked = packet[12:16], packet[16:20]
        request = packet[:ihl] + packet[ihl : ihl + 8] + bytes(len(packet) - ihl - 8)
        zeroed_echo = request[ihl:]
        error = icmp(11, 0, bytes(4), request)
        reply = icmp(0, 0, zeroed_echo[4:8], zeroed_echo[8:])
        for source, message in ((socket.inet_aton("{FAKE_ROUTER}"), error), (asked, reply)):
            sock.sendto(ip(source, client, message), (socket.inet_ntoa(client), 0))
            forged += 1
        print(forged, flush=True)
    """
)


async def test_forged_errors_and_replies_never_enter_a_trace(lab: Lab) -> None:
    forger = lab.popen("target", sys.executable, "-c", FORGER, stdout=-1, text=True)
    try:
        assert forger.stdout is not None and forger.stdout.readline().strip() == "ready"
        with lab.entered("client"):
            async with open_transport(trace_protocols([lab.target_v4], "icmp")) as transport:
                # The target's own replies race the forgeries and usually win...
                reached = await traceroute_with(
                    transport, lab.target_v4, TraceOptions(method="icmp", wait_s=0.5)
                )
                # ...but nothing answers for the silent range, so there the forgeries are
                # the only answers, however slowly the forger runs: they arrive while the
                # probes wait and must be refused as forged.
                silent = await traceroute_with(
                    transport,
                    lab.silent_v4,
                    TraceOptions(method="icmp", max_ttl=5, wait_s=2.0, retries=0),
                )
    finally:
        forger.kill()
        out, _err = forger.communicate()
    for result in (reached, silent):
        addresses = {a for hop in result.hops for a in hop.addresses}
        assert FAKE_ROUTER not in addresses
    assert reached.reached
    assert [hop.addresses[0] for hop in reached.hops] == [*lab.router_v4, lab.target_v4]
    assert not silent.reached
    assert [hop.addresses for hop in silent.hops] == [(a,) for a in lab.router_v4] + [(), ()]
    # Refused as forged: at least the 2 forgeries for each of the 3 probes at each silent
    # hop (4 and 5). The forger's running count of what it sent is in the message.
    assert transport.counters.forged >= 2 * 3 * 2, (transport.counters, out.split()[-1:])
