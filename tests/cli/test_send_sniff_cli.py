"""`rawprobe send` / `rawprobe sniff` without a network: errors, reading pcap files,
rendering of dissections."""

from __future__ import annotations

import sys
from pathlib import Path

import output_check
import pytest

from rawprobe.cli.app import main
from rawprobe.cli.render_packet import capture_line, dissection_lines
from rawprobe.transport.wire.dissect import dissect
from rawprobe.transport.wire.pcap import PcapWriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "wire"))
from wire_vectors import load_vector, vector_names

T0_NS = 1_700_000_000_000_000_000


@pytest.fixture
def vectors_pcap(tmp_path: Path) -> Path:
    path = tmp_path / "vectors.pcap"
    with path.open("wb") as stream:
        writer = PcapWriter(stream)
        for i, name in enumerate(vector_names()):
            writer.write(T0_NS + i * 1000, load_vector(name))
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["send"],
        ["send", "999.1.1.1"],
        ["send", "198.19.0.5", "--tcp", "--flags", "SX"],
        ["send", "198.19.0.5", "--flags", "S"],
        ["send", "198.19.0.5", "--icmp", "-p", "80"],
        ["send", "198.19.0.5", "--udp", "--type", "3"],
        ["send", "198.19.0.5", "--ttl", "300"],
        ["send", "198.19.0.5", "--data-hex", "zz"],
        ["send", "198.19.0.5", "--data", "a", "--size", "3"],
        ["send", "198.19.0.5", "--frag-offset", "9000"],
        ["send", "198.19.0.5", "--tcp", "--ts", "x:y"],
        ["send", "198.19.0.5", "-6"],
        ["sniff", "-p", "sctp"],
        ["sniff", "--port", "70000"],
        ["sniff", "--direction", "up"],
        ["sniff", "-r", "/nonexistent/x.pcap"],
        ["sniff", "-c", "0"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rawprobe"), captured.err
    assert "Traceback" not in captured.err


def test_sniff_reading_garbage_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(b"not a capture at all, sorry")
    assert main(["sniff", "-r", str(path)]) == 2
    assert "not a pcap file" in capsys.readouterr().err


def test_sniff_reads_a_pcap_like_tcpdump(
    vectors_pcap: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sniff", "-r", str(vectors_pcap)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    names = vector_names()
    assert len(lines) == len(names)
    assert lines[names.index("tcp4_syn")].startswith(
        f"1700000000.{names.index('tcp4_syn'):06d} IP 198.18.1.2.39948 > 198.18.2.2.8080: "
        "Flags [S], seq 1584000546"
    )
    assert f"{len(names)} packets captured" in captured.err


def test_sniff_filters_a_pcap(vectors_pcap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sniff", "-r", str(vectors_pcap), "-p", "tcp", "--port", "8080", "-6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        dissect(load_vector("tcp6_syn")).summary,
        dissect(load_vector("tcp6_synack")).summary,
    ]


def test_sniff_json_is_one_object_per_packet(
    vectors_pcap: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sniff", "-r", str(vectors_pcap), "-c", "2", "--json"]) == 0
    *objects, summary = output_check.events(capsys.readouterr().out.splitlines(), "sniff")
    assert [o["event"] for o in objects] == ["packet", "packet"]
    assert {o["schema"] for o in objects} == {"rawprobe/2"}
    assert summary["captured"] == 2 and summary["sockets"] is None
    assert summary["kernel_drops"] is None and not summary["interrupted"]
    first = objects[0]["packet"]
    assert first["layers"][0]["layer"] in ("IPv4", "IPv6")
    assert objects[0]["timestamp_ns"] == T0_NS


def test_sniff_read_then_write_copies_what_passes(
    vectors_pcap: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "udp.pcap"
    assert main(["sniff", "-r", str(vectors_pcap), "-p", "udp", "-w", str(out)]) == 0
    assert capsys.readouterr().out == ""  # like tcpdump -w: packets go to the file
    assert main(["sniff", "-r", str(out)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_dissection_lines_nest_the_quoted_packet() -> None:
    lines = dissection_lines(dissect(load_vector("icmp4_time_exceeded")))
    assert lines[0] == "  IPv4"
    quoted = lines.index("    Quoted packet")
    assert "      IPv4" in lines[quoted:]
    assert any(line.strip().startswith("ttl") and line.strip().endswith(" 1") for line in lines)
    assert capture_line(T0_NS, True, "eth0", dissect(load_vector("tcp4_syn"))).startswith(
        "1700000000.000000 eth0 Out IP 198.18.1.2.39948 >"
    )
