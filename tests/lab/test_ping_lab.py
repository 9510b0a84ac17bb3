"""Ping against the real kernel in the lab: CLI output, concurrency, forgery, privilege."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import anyio
import output_check
import pytest
from unprivileged import can_run_unprivileged, run_as_nobody, unprivileged_tree

from rawprobe.lab import Lab
from rawprobe.probes.ping import PingOptions, ping_many_with, ping_protocols, ping_with
from rawprobe.transport.raw import open_transport

pytestmark = pytest.mark.lab

REPLY_LINE = re.compile(
    r"^64 bytes from (?P<src>\S+): icmp_seq=(?P<seq>\d+) ttl=(?P<ttl>\d+) time=(?P<ms>[\d.]+) ms$"
)


def rawprobe_cli(lab: Lab, *args: str) -> tuple[int, str, str]:
    """Run the rawprobe CLI as a subprocess inside the lab's client namespace."""
    # -I: isolated, so the repository root (cwd) cannot shadow the installed package.
    done = lab.run("client", sys.executable, "-I", "-m", "rawprobe", *args, check=False, timeout=60)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_cli_ping_prints_iputils_lines_and_summary(lab: Lab, family: str) -> None:
    target = lab.target_v4 if family == "v4" else lab.target_v6
    code, out, err = rawprobe_cli(lab, "ping", "-c", "3", "-i", "0.2", target)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"PING {target} ({target}) 56")
    replies = [REPLY_LINE.match(line) for line in lines[1:4]]
    assert all(replies), lines
    assert [int(m["seq"]) for m in replies if m] == [1, 2, 3]
    # Three routers between client and target: 64 - 3 = 61.
    assert {(m["src"], m["ttl"]) for m in replies if m} == {(target, "61")}
    assert f"--- {target} ping statistics ---" in lines
    assert re.search(
        r"^3 packets transmitted, 3 received, 0% packet loss, time \d+ms$", out, re.MULTILINE
    )
    assert re.search(r"^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$", out, re.M)


def test_cli_ping_json_has_the_documented_keys(lab: Lab) -> None:
    code, out, err = rawprobe_cli(
        lab, "ping", "--json", "-c", "2", "-i", "0.2", lab.target_v4, lab.target_v6
    )
    assert code == 0, err
    document = output_check.document(out, "ping")
    assert document["schema"] == "rawprobe/2"
    hosts = document["hosts"]
    assert [h["address"] for h in hosts] == [lab.target_v4, lab.target_v6]
    for host in hosts:
        assert host["transmitted"] == 2 and host["received"] == 2
        assert len(host["rtts_ms"]) == 2 and all(0 < rtt < 50 for rtt in host["rtts_ms"])
        assert host["packet_loss"] == 0.0 and host["state"] == "up"
    assert document["summary"] == {
        "interrupted": False,
        "sockets": "raw",
        "hosts_up": 2,
        "hosts_down": 0,
    }


def test_cli_ping_silent_address_exits_1(lab: Lab) -> None:
    code, out, _err = rawprobe_cli(lab, "ping", "-c", "1", "-W", "0.5", lab.silent_v4)
    assert code == 1
    assert "1 packets transmitted, 0 received, 100% packet loss" in out


def test_cli_ping_ttl_exceeded_names_the_router(lab: Lab) -> None:
    code, out, _err = rawprobe_cli(lab, "ping", "-c", "1", "-t", "2", lab.target_v4)
    assert code == 1
    assert f"From {lab.router_v4[1]} icmp_seq=1 Time to live exceeded" in out
    code, out, _err = rawprobe_cli(lab, "ping", "-c", "1", "-t", "2", lab.target_v6)
    assert f"From {lab.router_v6[1]} icmp_seq=1 Time exceeded: Hop limit" in out


@pytest.mark.anyio
async def test_500_hosts_twice_over_a_constant_number_of_sockets(lab: Lab) -> None:
    hosts = [f"198.19.{i // 200}.{i % 200 + 1}" for i in range(500)]
    options = PingOptions(count=2, interval_s=0.2, timeout_s=2.0)
    fds_before = len(os.listdir("/proc/self/fd"))
    with lab.entered("client"):
        async with open_transport(ping_protocols(hosts)) as transport:
            results = await ping_many_with(transport, hosts, options)
            assert transport.socket_count == 2  # one receiving, one sending
    assert sum(result.received for result in results) == 1000
    assert all(result.received == 2 for result in results)
    assert transport.counters.forged == 0
    assert len(os.listdir("/proc/self/fd")) == fds_before  # sockets closed


FORGER = textwrap.dedent(
    """
    # Sees every echo request reaching the target and answers with a forged reply
    # from the pinged address: right ident and seq, zero payload (a wrong cookie).
    import socket, struct, sys

    def checksum(data):
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    print("ready", flush=True)
    while True:
        packet, (source, _) = sock.recvfrom(65535)
        ihl = (packet[0] & 15) * 4
        if packet[ihl] != 8:
            continue
        ident, seq = struct.unpack_from("!HH", packet, ihl + 4)
        body = bytes(len(packet) - ihl - 8)
        icmp = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + body
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        # Spoof the pinged address as source; the kernel fills length and checksum.
        header = struct.pack("!BBHHHBBH", 0x45, 0, 0, 0, 0, 64, 1, 0)
        header += packet[16:20] + packet[12:16]
        sock.sendto(header + icmp, (source, 0))
    """
)


@pytest.mark.anyio
async def test_forged_echo_replies_in_the_lab_are_not_counted(lab: Lab) -> None:
    forger = lab.popen("target", sys.executable, "-c", FORGER, stdout=-1, text=True)
    try:
        assert forger.stdout is not None and forger.stdout.readline().strip() == "ready"
        with lab.entered("client"):
            async with open_transport(ping_protocols([lab.target_v4])) as transport:
                options = PingOptions(count=5, interval_s=0.05, timeout_s=1.0)
                result = await ping_with(transport, lab.target_v4, options)
                await anyio.sleep(0.3)  # the forger (a Python process) answers after the kernel
    finally:
        forger.kill()
        forger.communicate()
    assert result.received == 5
    assert result.duplicates == 0
    # Every forged reply was seen and refused: during the ping by its cookie, after it
    # (keys gone) as unmatched.
    assert transport.counters.forged >= 1
    assert transport.counters.forged + transport.counters.unmatched >= 5


def test_unprivileged_user_gets_exit_2_and_what_to_do(lab: Lab) -> None:
    reason = can_run_unprivileged()
    if reason is not None:
        pytest.fail(reason) if os.environ.get("RAWPROBE_LAB") == "required" else pytest.skip(reason)
    with unprivileged_tree() as tree:
        done = run_as_nobody(tree, ["ping", "-c", "1", lab.target_v4], netns=lab.ns("client"))
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "CAP_NET_RAW" in lines[0] and "sudo" in lines[0]


def test_rtt_is_plausible_and_uses_kernel_stamps(lab: Lab) -> None:
    async def main() -> None:
        with lab.entered("client"):
            async with open_transport(ping_protocols([lab.target_v4])) as transport:
                options = PingOptions(count=5, interval_s=0.05)
                result = await ping_with(transport, lab.target_v4, options)
        assert result.received == 5
        # Three veth hops each way on one machine: well under 5 ms, never negative.
        assert all(0 < rtt < 0.005 for rtt in result.rtts), result.rtts

    anyio.run(main)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_prints_the_summary_so_far_and_keeps_iputils_status(lab: Lab, backend: str) -> None:
    command = [sys.executable, "-I", "-m", "rawprobe", "--backend", backend, "ping"]
    proc = lab.popen(
        "client", *command, "-i", "0.1", lab.target_v4, stdout=-1, stderr=-1, text=True
    )
    assert proc.stdout is not None
    first = [proc.stdout.readline() for _ in range(3)]  # banner and two replies
    assert REPLY_LINE.match(first[2].strip()), first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err  # iputils: 0 when replies came (see test_edges_lab)
    assert "Traceback" not in err
    stats = re.search(r"^(\d+) packets transmitted, (\d+) received", out, re.MULTILINE)
    assert stats and int(stats[1]) >= 2 and int(stats[2]) >= 2
    assert "rtt min/avg/max/mdev" in out


def test_cli_ping_on_trio_and_several_hosts_table(lab: Lab) -> None:
    code, out, err = rawprobe_cli(
        lab, "--backend", "trio", "ping", "-c", "2", "-i", "0.1", "-W", "0.5",
        lab.target_v4, lab.target_v6, lab.silent_v6,
    )  # fmt: skip
    assert code == 1, err  # one host never answered (fping's rule for several hosts)
    table = out[out.index("HOST") :].splitlines()
    assert [row.split()[:3] for row in table[1:]] == [
        [lab.target_v4, "2", "2"],
        [lab.target_v6, "2", "2"],
        [lab.silent_v6, "2", "0"],
    ]


def test_cli_lab_commands(lab: Lab) -> None:
    """`rawprobe lab status` lists the session lab; `lab exec` runs in its client."""
    status = lab.run("client", sys.executable, "-I", "-m", "rawprobe", "lab", "status")
    assert lab.ns("client") in status.stdout
    done = subprocess.run(
        [sys.executable, "-I", "-m", "rawprobe", "lab", "exec", "--prefix", lab.prefix, "--",
         "ip", "-4", "-o", "addr", "show", "dev", "eth0"],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"inet {lab.client_v4}/" in done.stdout


@pytest.mark.anyio
async def test_front_door_ping_opens_its_own_transport(lab: Lab) -> None:
    import rawprobe

    with lab.entered("client"):
        result = await rawprobe.ping(lab.target_v6, count=2, interval_s=0.05)
        silent = await rawprobe.ping(lab.silent_v4, count=1, timeout_s=0.3)
    assert result.is_alive and result.received == 2 and result.address == lab.target_v6
    assert not silent.is_alive and silent.packet_loss == 1.0
