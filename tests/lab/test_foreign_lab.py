"""Forged and foreign replies in the lab.

- Two rawprobe processes and iputils ping, pinging the same target from the same
  namespace at the same time, each get exactly their own replies.
- A forger in the target namespace sees every SYN a ``tcp-syn`` sweep sends towards
  silent (blackholed) hosts and answers it with SYN-ACKs and RSTs from those hosts,
  right ports, guessed sequence numbers: no silent host is ever reported alive.
"""

from __future__ import annotations

import re
import sys
import textwrap

import anyio
import output_check
import pytest

from rawprobe.lab import Lab
from rawprobe.probes.sweep import SweepOptions, sweep_with
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.raw import open_transport

pytestmark = pytest.mark.lab


def test_concurrent_pingers_never_see_each_others_replies(lab: Lab) -> None:
    count = "30"
    rawprobe = [sys.executable, "-I", "-m", "rawprobe", "ping", "--json", "-c", count]
    pipes = {"stdout": -1, "stderr": -1, "text": True}
    procs = [
        lab.popen("client", *rawprobe, "-i", "0.02", lab.target_v4, **pipes),
        lab.popen("client", *rawprobe, "-i", "0.03", lab.target_v4, **pipes),
        lab.popen("client", *rawprobe, "-i", "0.02", lab.target_v6, **pipes),
        lab.popen("client", "ping", "-c", count, "-i", "0.02", lab.target_v4, **pipes),
    ]
    outputs = [proc.communicate(timeout=30) for proc in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    for out, _err in outputs[:3]:
        [result] = output_check.document(out, "ping")["hosts"]
        assert (result["transmitted"], result["received"], result["duplicates"]) == (30, 30, 0)
    iputils = outputs[3][0]
    assert "30 packets transmitted, 30 received" in iputils
    assert "DUP!" not in iputils
    assert len(re.findall(r"icmp_seq=", iputils)) == 30


FORGER = textwrap.dedent(
    """
    # Sees (AF_PACKET on its link) every SYN to the silent range and answers from the
    # silent address with the right ports but guessed sequence numbers: SYN-ACKs with
    # a wrong ack, RST+ACKs, and bare RSTs with a guessed sequence.
    import random, socket, struct, sys

    def checksum(data):
        if len(data) % 2:
            data += b"\\0"
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    silent_prefix = socket.inet_aton(sys.argv[1])[:3]
    rng = random.Random(1)
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    print("ready", flush=True)
    forged = 0
    while True:
        packet = sniff.recv(65535)
        ihl = (packet[0] & 15) * 4
        if packet[9] != 6 or packet[16:19] != silent_prefix:
            continue
        sport, dport, seq = struct.unpack_from("!HHI", packet, ihl)
        if packet[ihl + 13] != 0x02:
            continue
        src, dst = packet[16:20], packet[12:16]
        answers = [
            (rng.getrandbits(32), rng.getrandbits(32), 0x12),       # SYN-ACK, guessed ack
            (rng.getrandbits(32), (seq + 2) & 0xFFFFFFFF, 0x12),    # off by one
            (rng.getrandbits(32), rng.getrandbits(32), 0x14),       # RST+ACK, guessed
            (rng.getrandbits(32), 0, 0x04),                         # bare RST, guessed seq
        ]
        for their_seq, ack, flags in answers:
            tcp = struct.pack("!HHIIBBHHH", dport, sport, their_seq, ack, 5 << 4, flags,
                              65535, 0, 0)
            pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
            tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
            ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0) + src + dst
            out.sendto(ip + tcp, (socket.inet_ntoa(dst), 0))
            forged += 1
        print(forged, flush=True)
    """
)


def test_forged_tcp_answers_never_make_a_dead_host_alive(lab: Lab) -> None:
    silent_net = "198.18.200.0/28"
    forger = lab.popen(
        "target", sys.executable, "-I", "-c", FORGER, "198.18.200.0", stdout=-1, stderr=-1,
        text=True,
    )  # fmt: skip

    async def main() -> tuple[tuple[str, ...], int, int]:
        with lab.entered("client"):
            options = SweepOptions(method="tcp-syn", port=80, timeout_s=0.5, retries=2)
            async with open_transport(options.socket_protocols) as transport:
                space = TargetSpace.parse([silent_net, "198.19.0.1-4"])
                result = await sweep_with(transport, space, options, seed=3)
                return result.alive, transport.counters.unmatched, transport.counters.delivered

    try:
        assert forger.stdout is not None and forger.stdout.readline().strip() == "ready"
        alive, unmatched, _delivered = anyio.run(main)
    finally:
        forger.kill()
        out, err = forger.communicate(timeout=10)
    forged = int(out.split()[-1]) if out.split() else 0
    assert forged >= 14 * 4, (out, err)  # every SYN to the 14 silent hosts got 4 forgeries
    assert alive == ("198.19.0.1", "198.19.0.2", "198.19.0.3", "198.19.0.4")
    assert unmatched >= forged // 2  # refused (counted), not delivered
