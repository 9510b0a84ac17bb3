"""Hostile conditions in the lab: garbage from the network while probes run.

A process in the target namespace sprays malformed ICMP and ICMPv6 at the client (the
kernel delivers it to raw sockets as it is: errors quoting truncated headers, quoted
headers of the wrong version or with a bad IHL, echo replies too short for their
identifier). The probe must finish with its normal result and the transport must
count the garbage as malformed or unmatched, never deliver it.
"""

from __future__ import annotations

import sys
import textwrap

import anyio
import pytest

from rawprobe.lab import Lab
from rawprobe.probes.ping import PingOptions, ping_protocols, ping_with
from rawprobe.transport.raw import open_transport

pytestmark = pytest.mark.lab

GARBAGE = textwrap.dedent(
    """
    import os, random, socket, struct, sys, time

    def checksum(data):
        if len(data) % 2:
            data += b"\\0"
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    def icmp(kind, code, body):
        msg = struct.pack("!BBHI", kind, code, 0, 0) + body
        return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]

    client4, client6, peer4 = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = random.Random(7)
    probe = struct.pack("!BBHHHBBH", 0x45, 0, 84, 0, 0, 1, 1, 0)
    probe += socket.inet_aton(client4) + socket.inet_aton(peer4) + bytes(8)
    garbage4 = [
        icmp(3, 3, probe[:12]),                  # quote cut inside the IP header
        icmp(11, 0, probe[:24]),                 # quote cut inside the probe's header
        icmp(3, 1, b"\\x41" + probe[1:]),        # quoted IHL 1
        icmp(3, 1, b"\\x4f" + probe[1:]),        # quoted IHL 15 over 28 bytes
        icmp(11, 0, b"\\x65" + probe[1:]),       # quoted version 6
        icmp(12, 0, b""),                        # nothing quoted at all
        struct.pack("!BB", 0, 0),                # echo reply cut after the type
    ]
    garbage6 = [
        struct.pack("!BBHI", 1, 4, 0, 0) + b"\\x60" + bytes(10),       # quote cut short
        struct.pack("!BBHI", 3, 0, 0, 0) + b"\\x45" + bytes(60),       # quoted version 4
        struct.pack("!BBHI", 1, 4, 0, 0) + b"\\x60" + bytes(5) + b"\\x00\\x01"
        + bytes(32) + b"\\x00\\xff" * 40,                               # hop-by-hop overrun
        bytes([129, 0, 0, 0]),                                          # echo reply, no ident
    ]
    s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    print("ready", flush=True)
    sent = 0
    deadline = time.monotonic() + float(sys.argv[4])
    while time.monotonic() < deadline:
        s4.sendto(rng.choice(garbage4) + rng.randbytes(rng.randrange(3)), (client4, 0))
        s6.sendto(rng.choice(garbage6), (client6, 0))
        sent += 2
        time.sleep(0.002)
    print(sent, flush=True)
    """
)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_garbage_icmp_during_a_ping_is_counted_and_harmless(lab: Lab, family: str) -> None:
    target = lab.target_v4 if family == "v4" else lab.target_v6
    spray = lab.popen(
        "target", sys.executable, "-I", "-c", GARBAGE,
        lab.client_v4, lab.client_v6, lab.target_v4, "1.5",
        stdout=-1, stderr=-1, text=True,
    )  # fmt: skip

    async def main() -> tuple[int, int, int, int]:
        with lab.entered("client"):
            async with open_transport(ping_protocols([target])) as transport:
                result = await ping_with(
                    transport, target, PingOptions(count=8, interval_s=0.1, timeout_s=1.0)
                )
                counters = transport.counters
                return result.received, counters.malformed, counters.unmatched, counters.forged

    try:
        assert spray.stdout is not None and spray.stdout.readline().strip() == "ready"
        received, malformed, unmatched, forged = anyio.run(main)
    finally:
        _out, err = spray.communicate(timeout=10)
    assert spray.returncode == 0, err
    assert received == 8
    assert malformed >= 50, (malformed, unmatched)
    assert forged == 0
