"""`rawprobe ping` output over a simulated network (in-process CLI)."""

from __future__ import annotations

import pytest

from rawprobe.cli.app import main
from rawprobe.transport.memory import MemoryNetwork


@pytest.fixture
def network(simulated_network: MemoryNetwork) -> MemoryNetwork:
    return simulated_network


def test_error_lines_name_their_target_when_several_hosts_are_pinged(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    network.add("198.19.0.5", error=(11, 0))  # the last router: time exceeded
    network.add("198.19.0.6")
    assert main(["ping", "-c", "1", "-W", "0.5", "198.19.0.5", "198.19.0.6"]) == 1
    out = capsys.readouterr().out
    assert "From 198.18.3.2 icmp_seq=1 Time to live exceeded (to 198.19.0.5)\n" in out
    assert "64 bytes from 198.19.0.6: icmp_seq=1" in out

    # One host: iputils' line exactly.
    assert main(["ping", "-c", "1", "-W", "0.5", "198.19.0.5"]) == 1
    out = capsys.readouterr().out
    assert "From 198.18.3.2 icmp_seq=1 Time to live exceeded\n" in out
