"""``--pcap FILE`` on ping, trace, scan and sweep: a capture tcpdump reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab


def tcpdump_lines(path: Path) -> list[str]:
    done = subprocess.run(
        ["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["ping", "-c", "2", "-i", "0.1", "{v4}"], ["ICMP echo request", "ICMP echo reply"]),
        (["trace", "-n", "-q", "1", "{v4}"], ["time exceeded", "echo reply"]),
        # UDP sockets (tracepath's way): the probes are recorded too.
        (
            ["trace", "-n", "-q", "1", "-M", "udp", "--unprivileged", "{v4}"],
            ["UDP,", "time exceeded"],
        ),
        (["scan", "-p", "80,81", "{v6}"], ["Flags [S]", "Flags [S.]", "Flags [R.]"]),
        (["sweep", "-q", "198.19.9.1-4"], ["ICMP echo request", "ICMP echo reply"]),
    ],
)
def test_every_probe_command_records_its_exchange(
    lab: Lab, tmp_path: Path, argv: list[str], expect: list[str]
) -> None:
    path = tmp_path / "probe.pcap"
    args = [a.format(v4=lab.target_v4, v6=lab.target_v6) for a in argv]
    command = [sys.executable, "-I", "-m", "rawprobe", *args, "--pcap", str(path)]
    done = lab.run("client", *command, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = tcpdump_lines(path)
    assert lines, "empty capture"
    for text in expect:
        assert any(text in line for line in lines), (text, lines[:6])
