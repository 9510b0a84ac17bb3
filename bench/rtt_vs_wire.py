"""RTT against the wire: each echo's reported RTT minus its RTT as tcpdump saw it.

Builds a lab and captures with tcpdump (nanosecond stamps) on the client's lab
interface, while interleaved rounds of iputils ``ping`` and of rawprobe's ping ping the
lab target: rawprobe with the kernel's transmit stamps (what ``ping`` and ``trace``
use; ``rtt_source`` kernel) and, for comparison, with user-space send stamps (what
scans and sweeps use). For every echo the wire RTT is the capture's reply stamp minus
its request stamp (matched by ICMP identifier and sequence); the script prints, per
tool and family, the median of (reported - wire) and its absolute value, against the
5 µs target.

It also measures the observer: how long after the scheduler's transmit stamp (taken
before the qdisc and before tcpdump's tap) the driver's (rawprobe's) comes, with
tcpdump capturing and without. tcpdump stamps an outgoing packet as it takes its copy,
then copies it, then the driver sends it: that copy is in tcpdump's RTT, not in the
kernel-stamped one. Root only; every packet stays inside the lab this script builds.

    sudo .venv/bin/python bench/rtt_vs_wire.py [--rounds 5] [--count 50] [-4 | -6]
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

from rawprobe.lab import Lab, lab
from rawprobe.probes.drive import drive
from rawprobe.probes.ping import PingOptions, new_machine, ping_protocols
from rawprobe.transport.raw import open_transport
from rawprobe.transport.sockets import (
    EXTENDED_ERR,
    SO_TIMESTAMPING,
    TX_STAMP_FLAGS,
    open_send_socket,
)
from rawprobe.transport.txstamps import SCM_TSTAMP_SND
from rawprobe.transport.wire.icmp import build_echo
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.pcap import PcapReader, network_packet

TARGET_US = 5.0
#: iputils' ICMP identifier in the first round (one more each round).
IPUTILS_IDENT = 0x7E01
_REPLY = re.compile(r"icmp_seq=(\d+) .*time=([\d.]+) ms")
#: (ICMP type of an echo request, of an echo reply) per IP version.
_ECHO = {4: (8, 0), 6: (128, 129)}

SOF_TIMESTAMPING_TX_SCHED = 1 << 8  # linux/net_tstamp.h: stamped before the qdisc
SCM_TSTAMP_SCHED = 1

OBSERVER_IDENT = 0x7DFF

#: One tool's echoes: (ident, sequence number) -> reported RTT in seconds.
Echoes = dict[tuple[int, int], float]


@contextmanager
def capture(the_lab: Lab, path: Path) -> Iterator[None]:
    """tcpdump on the client's lab interface for the block (nanosecond stamps)."""
    device = the_lab.run("client", "ip", "-o", "-4", "addr", "show", "to", the_lab.client_v4)
    interface = device.stdout.split()[1]
    tcpdump = the_lab.popen(
        "client", "tcpdump", "-i", interface, "-n", "-U", "-Z", "root", "-B", "16384",
        "--time-stamp-precision=nano", "-w", str(path), "icmp or icmp6",
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert tcpdump.stderr is not None
    line = tcpdump.stderr.readline()  # "listening on ...": capturing from now on
    if "listening" not in line:
        tcpdump.kill()
        raise SystemExit(f"tcpdump did not start: {line}{tcpdump.stderr.read()}")
    try:
        yield
    finally:
        time.sleep(0.2)
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)


def wire_rtts(
    path: Path, client: set[str]
) -> tuple[dict[tuple[int, int, int], int], dict[tuple[int, int, int], float]]:
    """(IP version, ident, seq) -> the capture's stamp of every echo request the client
    sent, and the wire RTT in seconds of every one answered."""
    sent: dict[tuple[int, int, int], int] = {}
    rtts: dict[tuple[int, int, int], float] = {}
    with path.open("rb") as stream:
        reader = PcapReader(stream)
        for record in reader:
            link = network_packet(reader.header.linktype, record.data)
            if link is None:
                continue
            packet = link.packet
            version = packet[0] >> 4
            if version == 4 and packet[9] == 1:
                icmp, source = (
                    packet[(packet[0] & 0x0F) * 4 :],
                    socket.inet_ntop(socket.AF_INET, packet[12:16]),
                )
            elif version == 6 and packet[6] == 58:
                icmp, source = packet[40:], socket.inet_ntop(socket.AF_INET6, packet[8:24])
            else:
                continue
            key = (version, int.from_bytes(icmp[4:6], "big"), int.from_bytes(icmp[6:8], "big"))
            request, reply = _ECHO[version]
            if icmp[0] == request and source in client:
                sent.setdefault(key, record.timestamp_ns)
            elif icmp[0] == reply and key in sent and key not in rtts:
                rtts[key] = (record.timestamp_ns - sent[key]) / 1e9
    return sent, rtts


def iputils(the_lab: Lab, target: str, count: int, interval_s: float, ident: int) -> Echoes:
    done = the_lab.run(
        "client", "ping", "-n", "-e", str(ident), "-c", str(count), "-i", str(interval_s), target
    )
    return {(ident, int(seq)): float(ms) / 1000 for seq, ms in _REPLY.findall(done.stdout)}


async def rawprobe(
    the_lab: Lab, target: str, count: int, interval_s: float, tx_stamps: bool
) -> tuple[Echoes, set[str]]:
    """rawprobe's ping in this process (sockets in the client namespace): its echoes
    and the ``rtt_source`` of their RTTs."""
    options = PingOptions(count=count, interval_s=interval_s, timeout_s=1.0)
    with the_lab.entered("client"):
        async with open_transport(ping_protocols([target]), tx_stamps=tx_stamps) as transport:
            machine = new_machine(transport, target, options)
            await drive(machine, transport)
    replies = [r for r in machine.result().replies if not r.duplicate]
    echoes = {(machine.ident, r.seq & 0xFFFF): r.rtt_s for r in replies}
    return echoes, {r.rtt_source for r in replies}


def transmit_stamps(
    the_lab: Lab, ident: int, interval_s: float, count: int = 40
) -> list[tuple[int, int]]:
    """(scheduler stamp, driver stamp) of ``count`` IPv4 echo requests (identifier
    ``ident``, sequence 0 on) sent ``interval_s`` apart to the lab target, nothing
    listening for the replies: SCM_TSTAMP_SCHED is taken before the qdisc and tcpdump's
    tap, SCM_TSTAMP_SND (rawprobe's) by the driver after them."""
    with the_lab.entered("client"):
        sock = open_send_socket(socket.AF_INET)
    stamps: dict[int, dict[int, int]] = {}
    with sock:
        flags = TX_STAMP_FLAGS | SOF_TIMESTAMPING_TX_SCHED
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, flags)
        header = IPv4Header(src=the_lab.client_v4, dst=the_lab.target_v4, protocol=1)
        for seq in range(count):  # a fresh socket: the kernel's keys are the seqs
            packet = build_ipv4(header, build_echo(ident, seq, bytes(56)))
            sock.sendto(packet, (the_lab.target_v4, 0))
            time.sleep(interval_s)
            while True:
                try:
                    _data, ancillary, _flags, _address = sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
                except BlockingIOError:
                    break
                seconds = nanos = key = info = 0
                for level, _kind, value in ancillary:
                    if level == socket.SOL_SOCKET:
                        seconds, nanos = struct.unpack_from("=qq", value)
                    else:
                        *_, info, key = EXTENDED_ERR.unpack_from(value)
                stamps.setdefault(key, {})[info] = seconds * 1_000_000_000 + nanos
    return [
        (s[SCM_TSTAMP_SCHED], s[SCM_TSTAMP_SND])
        for s in stamps.values()
        if SCM_TSTAMP_SND in s and SCM_TSTAMP_SCHED in s
    ]


def observer_line(
    tapped: list[tuple[int, int]], untapped: list[tuple[int, int]], requests: dict[int, int]
) -> str:
    """Where tcpdump stamps an outgoing packet, between the scheduler's and the driver's
    stamps (``requests``: tcpdump's stamp of each echo request of ``tapped``, by seq)."""
    seen = [
        (sched, requests[seq], snd) for seq, (sched, snd) in enumerate(tapped) if seq in requests
    ]
    after_scheduler = statistics.median(tcpdump - sched for sched, tcpdump, _ in seen) / 1000
    before_driver = statistics.median(snd - tcpdump for _, tcpdump, snd in seen) / 1000
    untapped_gap = statistics.median(snd - sched for sched, snd in untapped) / 1000
    return (
        f"tcpdump stamps an outgoing packet {after_scheduler:.1f} us after the scheduler's"
        f" stamp (before the qdisc) and {before_driver:.1f} us before the driver's (rawprobe's),"
        f" which comes {untapped_gap:.1f} us after the scheduler's without tcpdump: tcpdump's"
        " copy of the packet is in its RTT"
    )


def report(
    name: str, echoes: Echoes, wire: dict[tuple[int, int, int], float], version: int
) -> float:
    """Print one tool's line; return its absolute median difference in µs."""
    pairs = [(rtt, wire[(version, *key)]) for key, rtt in echoes.items() if (version, *key) in wire]
    if not pairs:
        print(f"  {name:28} no echo matched the capture")
        return float("nan")
    diffs = sorted((rtt - on_wire) * 1e6 for rtt, on_wire in pairs)
    median = statistics.median(diffs)
    p10, p90 = diffs[len(diffs) // 10], diffs[len(diffs) * 9 // 10]
    on_wire = statistics.median(w for _, w in pairs) * 1e6
    reported = statistics.median(r for r, _ in pairs) * 1e6
    print(
        f"  {name:28} {len(pairs):4} echoes  wire {on_wire:6.1f} us  reported {reported:6.1f} us"
        f"  reported - wire: median {median:+6.1f} us (|{abs(median):.1f}|), p10 {p10:+.1f},"
        f" p90 {p90:+.1f}"
    )
    return abs(median)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=50, help="echoes per tool and round")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between echoes")
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="versions", action="store_const", const=(4,))
    family.add_argument("-6", dest="versions", action="store_const", const=(6,))
    args = parser.parse_args()
    versions = args.versions or (4, 6)

    tools = ("rawprobe (kernel stamps)", "rawprobe (user stamps)", "iputils ping")
    echoes: dict[tuple[str, int], Echoes] = {(t, v): {} for t in tools for v in versions}
    sources: set[str] = set()
    with lab() as the_lab, tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wire.pcap"
        targets = {4: the_lab.target_v4, 6: the_lab.target_v6}
        with capture(the_lab, path):
            tapped = transmit_stamps(the_lab, OBSERVER_IDENT, args.interval)
            for round_ in range(args.rounds):
                for version in versions:  # interleaved: every tool sees the same conditions
                    target = targets[version]
                    for tx_stamps, tool in ((True, tools[0]), (False, tools[1])):
                        found, used = anyio.run(
                            rawprobe, the_lab, target, args.count, args.interval, tx_stamps,
                            backend=args.backend,
                        )  # fmt: skip
                        echoes[(tool, version)].update(found)
                        if tx_stamps:
                            sources |= used
                    ident = IPUTILS_IDENT + round_
                    found = iputils(the_lab, target, args.count, args.interval, ident)
                    echoes[(tools[2], version)].update(found)
        untapped = transmit_stamps(the_lab, OBSERVER_IDENT, args.interval)
        requests, wire = wire_rtts(path, {the_lab.client_v4, the_lab.client_v6})

    print(
        f"{args.rounds} interleaved rounds of {args.count} echoes per tool, {args.interval} s"
        f" apart; tcpdump (nanosecond stamps) on the client's lab interface"
    )
    print(f"rawprobe's rtt_source with kernel stamps: {', '.join(sorted(sources))}")
    observed = {seq: ns for (v, ident, seq), ns in requests.items() if ident == OBSERVER_IDENT}
    print(observer_line(tapped, untapped, observed))
    for version in versions:
        print(f"IPv{version} ({targets[version]}):")
        ours = report(tools[0], echoes[(tools[0], version)], wire, version)
        report(tools[1], echoes[(tools[1], version)], wire, version)
        theirs = report(tools[2], echoes[(tools[2], version)], wire, version)
        verdict = "meets" if ours <= TARGET_US else "misses"
        print(
            f"  => rawprobe |median(reported - wire)| {ours:.1f} us {verdict} the"
            f" {TARGET_US:g} us target; iputils {theirs:.1f} us"
        )


if __name__ == "__main__":
    main()
