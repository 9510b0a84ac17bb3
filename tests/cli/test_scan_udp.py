"""`rawprobe scan -sU` (and `-sS -sU`) over a simulated network (in-process CLI)."""

from __future__ import annotations

import output_check
import pytest

from rawprobe.cli.app import main
from rawprobe.transport.memory import MemoryNetwork

FAST = ["-n", "-Pn", "-q", "-w", "1", "--rate", "0", "--retries", "0", "--max-retries", "0"]


@pytest.fixture
def network(simulated_network: MemoryNetwork) -> MemoryNetwork:
    simulated_network.add("198.19.0.5", open_ports=frozenset({22}), udp_services=frozenset({53}))
    simulated_network.add("2001:db8:ff::5", udp_services=frozenset({123}))
    return simulated_network


def test_udp_scan_prints_udp_lines_and_counts_closed_ports(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "-sU", *FAST, "--reason", "-p", "50-60", "198.19.0.5"]) == 0
    out = capsys.readouterr().out
    assert "Not shown: 10 closed udp ports (port-unreach)" in out
    assert "53/udp    open       domain          udp-response" in out


def test_udp_scan_json_and_grepable_say_udp(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    assert main(["scan", "-sU", *FAST, "--json", "-p", "120-125", "2001:db8:ff::5"]) == 0
    document = output_check.document(capsys.readouterr().out)
    assert document["summary"]["technique"] == "udp"
    (host,) = document["hosts"]
    assert [(p["port"], p["protocol"], p["state"]) for p in host["ports"]] == [(123, "udp", "open")]
    assert host["closed"] == 5
    assert main(["scan", "-sU", *FAST, "-oG", "-", "-p", "53,54", "198.19.0.5"]) == 0
    assert "Ports: 53/open/udp//domain///\tIgnored State: closed (1)" in capsys.readouterr().out


def test_syn_and_udp_in_one_run_with_prefixed_ports(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "-sS", "-sU", *FAST, "-p", "T:22,23,U:53,54", "198.19.0.5"]) == 0
    out = capsys.readouterr().out
    assert "Not shown: 1 closed tcp port (reset), 1 closed udp port (port-unreach)" in out
    assert "22/tcp    open       ssh" in out and "53/udp    open       domain" in out
    assert main(["scan", "-sS", "-sU", *FAST, "--json", "-p", "T:22,U:53", "198.19.0.5"]) == 0
    document = output_check.document(capsys.readouterr().out)
    assert document["summary"]["technique"] == "syn+udp"
    assert set(document["summary"]["protocols"]) == {"tcp", "udp"}
    ports = [(p["port"], p["protocol"]) for p in document["hosts"][0]["ports"]]
    assert ports == [(22, "tcp"), (53, "udp")]


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "-sU", "-sT", "198.19.0.5"],
        ["scan", "-sU", "--unprivileged", "198.19.0.5"],
        ["scan", "-sS", "-sU", "-p", "U:53", "198.19.0.5"],
    ],
)
def test_udp_scan_errors_are_one_line_and_exit_2(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
