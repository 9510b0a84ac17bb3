"""With workers, what would fail in each of them is refused before the fork: one line
on stderr, exit 2, no traceback (it printed one traceback per worker).

The commands run as subprocesses (they fork). Nothing reaches the network: every case
is refused before a socket for probing is opened (route lookups connect a UDP socket,
which sends nothing).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    # A space beyond the permutation's 2**40 (a /88): sweep and scan.
    ["sweep", "-w", "2", "2001:db8::/64"],
    ["sweep", "-w", "2", "-M", "tcp-syn", "-p", "80", "2001:db8::/80"],
    ["scan", "-w", "2", "-p-", "2001:db8::/96"],
    ["scan", "-w", "2", "-p", "1-65535", "10.0.0.0/8", "2001:db8::/100"],
    # Options and sources.
    ["sweep", "-w", "2", "--shard", "1/2", "2001:db8::/120"],
    ["sweep", "-w", "2", "-M", "udp", "2001:db8::/120"],
    ["scan", "-w", "2", "-S", "127.0.0.1", "-p", "80", "::1"],
]


@pytest.mark.parametrize("argv", CASES, ids=" ".join)
def test_refused_before_forking_with_one_line(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-m", "rawprobe", *argv, "-q"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "worker" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rawprobe: "), done.stderr
    assert done.stdout == ""


def test_the_limit_is_named() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-m", "rawprobe", "sweep", "-w", "2", "2001:db8::/87"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "2,199,023,255,552 addresses" in done.stderr
    assert "1,099,511,627,776 (2**40)" in done.stderr
