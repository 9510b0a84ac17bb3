"""Port scans against the real kernel in the lab: every port of the target classified
exactly (IPv4 and IPv6), forged SYN-ACKs ignored, loss survived by retries."""

from __future__ import annotations

import sys
import textwrap

import anyio
import output_check
import pytest

from rawprobe.lab import Lab
from rawprobe.probes.scan import ScanOptions, scan_protocols, syn_scan_with
from rawprobe.targets import resolve_targets
from rawprobe.transport.raw import open_transport

pytestmark = pytest.mark.lab


def rawprobe_cli(lab: Lab, *args: str) -> tuple[int, str, str]:
    done = lab.run(
        "client", sys.executable, "-I", "-m", "rawprobe", *args, check=False, timeout=120
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_all_65535_ports_classified_with_zero_errors(lab: Lab, family: str) -> None:
    target = lab.target_v4 if family == "v4" else lab.target_v6
    code, out, err = rawprobe_cli(lab, "scan", "-p-", "--rate", "0", "--json", target)
    assert code == 0, err
    document = output_check.document(out, "scan")
    assert document["schema"] == "rawprobe/2" and document["summary"]["complete"]
    (host,) = document["hosts"]
    assert host["address"] == target and host["state"] == "up"
    states = {p["port"]: (p["state"], p["reason"]) for p in host["ports"]}
    expected = {port: ("open", "syn-ack") for port in lab.open_ports}
    expected |= {port: ("filtered", "no-response") for port in lab.drop_ports}
    expected |= {port: ("filtered", "admin-prohibited") for port in lab.reject_ports}
    assert states == expected  # every listed port right, none missing, none extra
    assert host["closed"] == 65535 - len(expected)
    assert all(p["ttl"] == 61 for p in host["ports"] if p["state"] == "open")


def test_a_slash_24_times_100_ports_gets_every_state_right(lab: Lab) -> None:
    """254 lab hosts (the target's AnyIP range) x 100 ports: open, closed, silently
    dropped and rejected ports on every host, in one randomised scan."""
    ports = [*range(1, 51), *range(1990, 2040)]  # 22 open, 1990-1999 drop, 2000+ reject
    spec = "1-50,1990-2039"
    code, out, err = rawprobe_cli(lab, "scan", "-p", spec, "--rate", "0", "--json", "198.19.7.0/24")
    assert code == 0, err
    document = output_check.document(out, "scan")
    summary = document["summary"]
    assert summary["complete"] and summary["host_count"] == summary["hosts_up"] == 254
    expected = {port: ("open", "syn-ack") for port in ports if port in lab.open_ports}
    expected |= {port: ("filtered", "no-response") for port in ports if port in lab.drop_ports}
    expected |= {
        port: ("filtered", "admin-prohibited") for port in ports if port in lab.reject_ports
    }
    assert len(expected) == 1 + 10 + 40
    hosts = document["hosts"]
    assert sorted(h["address"] for h in hosts) == sorted(f"198.19.7.{i}" for i in range(1, 255))
    for host in hosts:
        assert host["state"] == "up"
        assert {p["port"]: (p["state"], p["reason"]) for p in host["ports"]} == expected
        assert host["closed"] == 100 - len(expected)


FORGER = textwrap.dedent(
    """
    # Sees every SYN reaching the target and answers first with a forged SYN-ACK from
    # the probed address: right ports, a wrong acknowledgement number. When its stdin
    # closes it answers the SYNs still queued and prints how many it forged.
    import os, select, socket, struct, sys

    def checksum(data):
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: keep every SYN
    sock.setblocking(False)
    print("ready", flush=True)
    forged, last = 0, False
    while True:
        readable, _, _ = select.select([sock, sys.stdin], [], [])
        last = last or sys.stdin in readable and not os.read(sys.stdin.fileno(), 1)
        while True:
            try:
                packet, (source, _) = sock.recvfrom(65535)
            except BlockingIOError:
                break
            ihl = (packet[0] & 15) * 4
            sport, dport, seq = struct.unpack_from("!HHI", packet, ihl)
            if packet[ihl + 13] != 0x02:
                continue
            tcp = struct.pack("!HHIIBBHHH", dport, sport, 12345, (seq + 2) & 0xFFFFFFFF,
                              5 << 4, 0x12, 65535, 0, 0)
            pseudo = packet[16:20] + packet[12:16] + struct.pack("!BBH", 0, 6, len(tcp))
            tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
            header = struct.pack("!BBHHHBBH", 0x45, 0, 0, 0, 0, 64, 6, 0)
            sock.sendto(header + packet[16:20] + packet[12:16] + tcp, (source, 0))
            forged += 1
        if last:
            print(forged, flush=True)
            break
    """
)


@pytest.mark.anyio
async def test_forged_syn_acks_with_wrong_acks_never_open_a_port(lab: Lab) -> None:
    pipes = {"stdin": -1, "stdout": -1, "text": True}
    forger = lab.popen("target", sys.executable, "-c", FORGER, **pipes)
    try:
        assert forger.stdout is not None and forger.stdout.readline().strip() == "ready"
        space = await resolve_targets([lab.target_v4])
        with lab.entered("client"):
            transport_cm = open_transport(scan_protocols(space), rate_pps=0)
            transport = await transport_cm.__aenter__()
        try:
            options = ScanOptions(max_rate_pps=5000)
            result = await syn_scan_with(transport, space, range(4000, 5001), options)
            # Every SYN has reached the target by now: the forger answers those it has
            # not yet answered (however far behind a loaded machine left it), and the
            # transport stays open until its forgeries are all in.
            out, _err = await anyio.to_thread.run_sync(forger.communicate)
            forged = int(out.split()[-1])
            with anyio.move_on_after(30):
                while transport.counters.unmatched < forged:
                    await anyio.sleep(0.01)
            counters = transport.counters
        finally:
            await transport_cm.__aexit__(None, None, None)
    finally:
        forger.kill()
        forger.communicate()
    (host,) = result.hosts
    assert host.open_ports == () and host.closed == 1001
    assert forged >= 1001  # a forged SYN-ACK for every SYN
    assert counters.unmatched >= forged, counters  # the forgeries reached us, matched nothing


@pytest.mark.anyio
async def test_ten_percent_loss_still_finds_every_open_port(lab: Lab) -> None:
    rule = ["FORWARD", "-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"]
    lab.run("r2", "iptables", "-I", *rule)
    try:
        space = await resolve_targets([lab.target_v4])
        with lab.entered("client"):
            transport_cm = open_transport(scan_protocols(space), rate_pps=0)
            transport = await transport_cm.__aenter__()
        try:
            ports = sorted({*range(1, 3001), *lab.open_ports})
            # 10% loss each way loses an exchange with p = 0.19; later tries wait out
            # the target's 500 ms limit on answering repeated SYNs (scan.py).
            options = ScanOptions(max_rate_pps=0, retries=4)
            result = await syn_scan_with(transport, space, ports, options)
        finally:
            await transport_cm.__aexit__(None, None, None)
    finally:
        lab.run("r2", "iptables", "-D", *rule)
    (host,) = result.hosts
    states = {port.port: (port.state, port.reason, port.tries) for port in host.ports}
    missed = {port: states.get(port) for port in lab.open_ports if port not in host.open_ports}
    assert not missed, (missed, result.timing)
    # Congestion control saw the loss (answers to retransmissions) and backed off.
    assert result.timing.backoffs >= 1 and result.timing.max_retries_used >= 3
