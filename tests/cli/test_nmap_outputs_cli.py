"""`scan -oX/-oN/-oA`, `scan --ndjson`, `scan --shard` and `sweep -oX/-oG` over a
simulated network (in-process CLI; `-w 2` forks this process, which is fine here: the
simulated network is copied into each worker)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import output_check
import pytest
from libnmap.parser import NmapParser
from nmap_files import comparable, dtd_errors, json_view, libnmap_view, merge_ndjson

from rawprobe.cli.app import main
from rawprobe.transport.memory import MemoryNetwork

FAST = ["-n", "-q", "--rate", "0", "--retries", "0", "--max-retries", "0"]
TARGETS = "198.19.0.4-7"


@pytest.fixture
def network(simulated_network: MemoryNetwork) -> MemoryNetwork:
    simulated_network.add("198.19.0.5", open_ports=frozenset({22, 80}),
                          udp_services=frozenset({53}), dropped_ports=frozenset({25}))  # fmt: skip
    simulated_network.add("198.19.0.6", open_ports=frozenset({443}))
    return simulated_network


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    assert main(list(argv)) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return out


def lines(text: str) -> list[dict[str, Any]]:
    """A scan's NDJSON stream, every line valid, ending with its summary."""
    return output_check.events(text.splitlines(), "scan")


def test_oa_writes_three_files_and_the_xml_says_what_the_json_of_the_run_says(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = tmp_path / "lab"
    out = run(capsys, "scan", *FAST, "-w", "1", "--json", "-oA", str(base), "-p", "20-30,80,443",
              TARGETS)  # fmt: skip
    document = output_check.document(out, "scan")
    xml = (tmp_path / "lab.xml").read_text()
    assert dtd_errors(tmp_path / "lab.xml") == ""
    assert libnmap_view(xml) == json_view(document["hosts"])
    report = NmapParser.parse_fromstring(xml)
    assert (report.hosts_total, report.hosts_up) == (4, 2)
    normal = (tmp_path / "lab.nmap").read_text().splitlines()
    assert normal[0].startswith("# rawprobe scan initiated ") and normal[0].endswith(TARGETS)
    assert "22/tcp    open       ssh" in normal and "25/tcp    filtered   smtp" in normal
    assert normal[-1].endswith("-- 4 IP addresses (2 hosts up) scanned in " + normal[-1][-12:])
    grepable = (tmp_path / "lab.gnmap").read_text()
    assert (
        "Host: 198.19.0.6 ()\tPorts: 443/open/tcp//https///\tIgnored State: closed (12)" in grepable
    )


def test_ox_dash_puts_the_xml_alone_on_stdout(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = run(capsys, "scan", *FAST, "-w", "1", "-sS", "-sU", "-p", "T:22,25,U:53,54", "-oX", "-",
              "198.19.0.5")  # fmt: skip
    assert out.startswith('<?xml version="1.0"') and out.endswith("</nmaprun>\n")
    (tmp_path / "both.xml").write_text(out)
    assert dtd_errors(tmp_path / "both.xml") == ""
    host = NmapParser.parse_fromstring(out).hosts[0]
    states = sorted((s.protocol, s.port, s.state) for s in host.services)
    assert states == [("tcp", 22, "open"), ("tcp", 25, "filtered"), ("udp", 53, "open")]
    assert out.count("<scaninfo ") == 2


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("ports", [["-p", "20-30,80,443"], ["-sS", "-sU", "-p", "T:20-30,U:53,54"]])
def test_ndjson_streams_the_hosts_of_the_json_document_then_a_summary(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str], workers: str, ports: list[str]
) -> None:
    argv = ["scan", *FAST, "-w", workers, "--seed", "3", *ports, TARGETS]
    events = lines(run(capsys, *argv, "--ndjson"))
    document = output_check.document(run(capsys, *argv, "--json"), "scan")
    assert [e["event"] for e in events] == ["host"] * 4 + ["summary"]
    strip = ("schema", "command", "event")
    hosts = {e["address"]: comparable({k: v for k, v in e.items() if k not in strip})
             for e in events[:-1]}  # fmt: skip
    assert hosts == {h["address"]: comparable(h) for h in document["hosts"]}
    summary = events[-1]
    assert summary["complete"] and summary["workers"] == int(workers)
    assert (summary["shard"], summary["seed"]) == ("0/1", 3)
    assert summary["state_totals"] == document["summary"]["state_totals"]


def test_shards_cover_every_port_once_and_merge_into_the_unsharded_run(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["scan", *FAST, "--seed", "9", "--all", "-p", "20-30,80,443", TARGETS]
    whole = output_check.document(run(capsys, *argv, "-w", "1", "--json"), "scan")
    streams = [
        run(capsys, *argv, "-w", "2", "--shard", f"{i}/3", "--ndjson") for i in range(3)
    ]  # (the shards' workers split each shard again)
    seen: list[tuple[str, int]] = []
    for text in streams:
        *hosts, summary = lines(text)
        assert summary["complete"]
        seen += [(h["address"], p["port"]) for h in hosts for p in h["ports"]]
    assert sorted(seen) == sorted(
        (h["address"], p["port"]) for h in whole["hosts"] for p in h["ports"]
    )
    assert len(seen) == 4 * 13  # every (host, port) once: closed ones listed too (--all)
    merged = merge_ndjson("".join(streams), "scan")
    assert [e["shard"] for e in merged if e["event"] == "summary"] == ["0/3", "1/3", "2/3"]
    strip = ("schema", "command", "event")
    hosts = {e["address"]: comparable({k: v for k, v in e.items() if k not in strip})
             for e in merged if e["event"] == "host"}  # fmt: skip
    assert hosts == {h["address"]: comparable(h) for h in whole["hosts"]}


def test_sweep_shards_merge_with_the_same_jq(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep's host is in one shard: the merge passes its lines as they are, then the
    shards' summaries."""
    argv = ["sweep", "-q", "-w", "1", "--rate", "0", "-t", "0.2", "--seed", "4", "--all",
            "--ndjson", "198.19.0.0/29"]  # fmt: skip
    streams = []
    for shard in range(3):
        assert main([*argv, "--shard", f"{shard}/3"]) in (0, 1)  # (1: none up in a shard)
        streams.append(capsys.readouterr().out)
    merged = merge_ndjson("".join(streams), "sweep")
    hosts = {e["address"]: e["state"] for e in merged if e["event"] == "host"}
    assert hosts == {f"198.19.0.{i}": "up" if i in (5, 6) else "down" for i in range(1, 7)}
    assert [e["shard"] for e in merged if e["event"] == "summary"] == ["0/3", "1/3", "2/3"]


def test_sweep_writes_what_nmap_sn_writes(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    xml_path, grepable_path = tmp_path / "sweep.xml", tmp_path / "sweep.gnmap"
    out = run(capsys, "sweep", "-q", "-w", "2", "--rate", "0", "-t", "0.2", "-oX", str(xml_path),
              "-oG", str(grepable_path), "198.19.0.0/29")  # fmt: skip
    assert sorted(out.split()) == ["198.19.0.5", "198.19.0.6"]
    assert dtd_errors(xml_path) == ""
    report = NmapParser.parse_fromstring(xml_path.read_text())
    assert sorted((h.address, h.status) for h in report.hosts) == [
        ("198.19.0.5", "up"), ("198.19.0.6", "up"),
    ]  # fmt: skip
    assert (report.hosts_total, report.hosts_up) == (6, 2)
    grepable = grepable_path.read_text().splitlines()
    assert grepable[0].startswith("# rawprobe sweep initiated ")
    assert sorted(grepable[1:-1]) == [f"Host: 198.19.0.{i} ()\tStatus: Up" for i in (5, 6)]
    assert " -- 6 IP addresses (2 hosts up) scanned in " in grepable[-1]
    out = run(
        capsys, "sweep", "-q", "-w", "1", "--rate", "0", "-t", "0.2", "-oG", "-", "198.19.0.5"
    )
    assert out.splitlines()[1] == "Host: 198.19.0.5 ()\tStatus: Up"  # and no bare address


def test_the_connect_scan_streams_its_shards_hosts_too(capsys: pytest.CaptureFixture[str]) -> None:
    """--unprivileged (connect() to loopback): its shards split the ports as the SYN
    scan's do, and --ndjson prints the host, then the summary."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        spec = f"{port - 3}-{port + 3}"
        parts = []
        for shard in ("0/2", "1/2"):
            argv = ["scan", "-q", "--unprivileged", "--seed", "5", "--shard", shard, "--all",
                    "--ndjson", "-p", spec, "127.0.0.1"]  # fmt: skip
            host, summary = lines(run(capsys, *argv))
            assert (host["event"], summary["event"], summary["technique"]) == (
                "host", "summary", "connect",
            )  # fmt: skip
            parts.append({p["port"]: p["state"] for p in host["ports"]})
    assert not parts[0].keys() & parts[1].keys()
    assert sorted({**parts[0], **parts[1]}) == list(range(port - 3, port + 4))
    assert {**parts[0], **parts[1]}[port] == "open"
