"""Bad user input, for every subcommand: exit 2, one line on stderr, never a traceback.

The CLI runs in-process. No case may reach the network: the transports and the sniffer
are replaced by fakes that fail the test if a case gets as far as opening them (the
ping/trace/sweep/scan/send ones by an empty simulated network, so a case that wrongly
passes validation ends quickly instead of probing anything real).

Placeholders in the argv: ``{missing}`` a file that does not exist, ``{junk}`` a text
file of nonsense targets, ``{binary}`` random bytes, ``{empty}`` an empty file,
``{dir}`` a directory, ``{nodir}`` a path in a directory that does not exist.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import output_check
import pytest

from rawprobe.cli import args, ping_cmd, scan_cmd, send_cmd, sniff_cmd, sweep_cmd, trace_cmd
from rawprobe.cli.app import main
from rawprobe.transport import ladder, privileges
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport

V4 = "127.0.0.1"
V6 = "::1"

PING = [
    ["ping"],
    ["ping", ""],
    ["ping", " "],
    ["ping", "999.1.1.1"],
    ["ping", "1.2.3"],
    ["ping", "1.2.3.4.5"],
    ["ping", "127.0.0.1/8"],
    ["ping", "fe80::1::2"],
    ["ping", "-c", "0", V4],
    ["ping", "-c", "-1", V4],
    ["ping", "-c", "x", V4],
    ["ping", "-c", "", V4],
    ["ping", "-c", "1.5", V4],
    ["ping", "-c", "99999999999999999999999", V4],
    ["ping", "-i", "-1", V4],
    ["ping", "-i", "nan", V4],
    ["ping", "-i", "inf", V4],
    ["ping", "-i", "", V4],
    ["ping", "-i", "1e400", V4],
    ["ping", "-W", "abc", V4],
    ["ping", "-W", "0", V4],
    ["ping", "-W", "-2", V4],
    ["ping", "-s", "70000", V4],
    ["ping", "-s", "-1", V4],
    ["ping", "-s", "big", V4],
    ["ping", "-t", "0", V4],
    ["ping", "-t", "256", V4],
    ["ping", "-t", "-1", V4],
    ["ping", "-Q", "256", V4],
    ["ping", "-4", V6],
    ["ping", "-6", V4],
    ["ping", "-4", "-6", V4],
    ["ping", "-I", V6, V4],
    ["ping", "-I", "999.1.1.1", V4],
    ["ping", "-I", "", V4],
    ["ping", "-I", "not an address", V4],
    ["ping", "--rate", "-5", V4],
    ["ping", "--rate", "nan", V4],
    ["ping", "--rate", "fast", V4],
    ["ping", "--pcap", "{nodir}", "-c", "1", V4],
    ["ping", "--pcap", "{dir}", "-c", "1", V4],
    ["ping", "--pcap", "", "-c", "1", V4],
    ["ping", "--bogus", V4],
    ["ping", "-c", "1", "255.255.255.255"],
    ["ping", "-c", "1", "224.0.0.1"],
    ["ping", "-c", "1", "239.255.255.250"],
    ["ping", "-c", "1", "ff02::1"],
    ["ping", "-c", "1", "0.0.0.0"],
    ["ping", "-c", "1", "::"],
    ["--backend", "tokio", "ping", V4],
    ["ping", "--backend", "curio", V4],
    ["ping", "127.0.0.1-5"],
    ["ping", "::1/128"],
    ["ping", "[::1"],
    ["ping", "::1]"],
    ["ping", "0x7f.1"],
    ["ping", "2130706433"],
    ["ping", "-c", "1", "-I", "192.0.2.1", V4],
    ["ping", "-c", "1", "240.0.0.1"],
]

TRACE = [
    ["trace"],
    ["trace", ""],
    ["trace", "999.1.1.1"],
    ["trace", "-f", "0", V4],
    ["trace", "-f", "256", V4],
    ["trace", "-m", "0", V4],
    ["trace", "-m", "300", V4],
    ["trace", "-f", "10", "-m", "5", V4],
    ["trace", "-q", "0", V4],
    ["trace", "-q", "11", V4],
    ["trace", "-w", "-1", V4],
    ["trace", "-w", "nan", V4],
    ["trace", "-w", "0", V4],
    ["trace", "-w", "0,3,10", V4],
    ["trace", "-w", "5,3,10,1", V4],
    ["trace", "-w", "5,-1", V4],
    ["trace", "-w", "5,,10", V4],
    ["trace", "-p", "0", V4],
    ["trace", "-p", "65536", V4],
    ["trace", "-p", "http", V4],
    ["trace", "-M", "sctp", V4],
    ["trace", "--retries", "-1", V4],
    ["trace", "-N", "0", V4],
    ["trace", "-c", "0", "--report", V4],
    ["trace", "-c", "3", V4],
    ["trace", "--live", "--report", V4],
    ["trace", "--mtu", "-M", "tcp", V4],
    ["trace", "--mtu", "-T", V4],
    ["trace", "--mtu", "--live", V4],
    ["trace", "--mtu", "--report", V4],
    ["trace", "--mtu", "--classic", V4],
    ["trace", "--mtu", "-q", "2", V4],
    ["trace", "--mtu", "-N", "3", V4],
    ["trace", "--mtu", "-I", "--unprivileged", V4],
    ["trace", "-i", "-1", "--live", V4],
    ["trace", "--flows", "4", V4],
    ["trace", "--flows", "0", "--report", V4],
    ["trace", "--flows", "257", "--report", V4],
    ["trace", "--flows", "4", "--report", "--classic", V4],
    ["trace", "--rate", "-1", V4],
    ["trace", "-s", V6, V4],
    ["trace", "-4", V6],
    ["trace", "-F", "{missing}"],
    ["trace", "-F", "{junk}"],
    ["trace", "-F", "{binary}"],
    ["trace", "-F", "{empty}"],
    ["trace", "-F", "{dir}"],
    ["trace", "224.0.0.1"],
    ["trace", "255.255.255.255"],
    ["trace", "ff02::1"],
    ["trace", "127.0.0.0/24"],
    ["trace", "127.0.0.1-9"],
    ["trace", "0x7f.1"],
    ["trace", "[::1"],
    ["trace", "-s", "192.0.2.1", V4],
    ["trace", "--confidence", "95", V4],
    ["trace", "--confidence", "90", "--mda", V4],
    ["trace", "--per-interface", V4],
    ["trace", "--lite", V4],
    ["trace", "--dot", "{nodir}", "--mda", V4],
    ["trace", "--dot", "-", "--mda", V4],
    ["trace", "--dot", "{dir}", V4],
    ["trace", "--mda", "--classic", V4],
    ["trace", "--mda", "-q", "2", V4],
    ["trace", "--mda", "-N", "2", V4],
    ["trace", "--mda", "--unprivileged", V4],
    ["trace", "--mda", "--mtu", V4],
    ["trace", "--mtu", "--mda", "--live", V4],
    ["trace", "--mda", "-c", "3", V4],
    ["trace", "--mda", "--flows", "2", V4],
    ["trace", "--mda", "--live", "--unprivileged", V4],
    ["trace", "--mda", "--report", "--classic", V4],
    ["trace", "--mda", "--live", "-q", "2", V4],
    ["trace", "--mda", "--live", "--dot", "{dir}/g.dot", V4],
]

SWEEP = [
    ["sweep", "--json", "-oG", "-", V4],
    ["sweep", "-oX", "-", "-oG", "-", V4],
    ["sweep", "-oX", "{nodir}", V4],
    ["sweep"],
    ["sweep", ""],
    ["sweep", "999.1.1.1"],
    ["sweep", "127.0.0.0/33"],
    ["sweep", "127.0.0.0/-1"],
    ["sweep", "127.0.0.0/x"],
    ["sweep", "::/129"],
    ["sweep", "127.0.0.9-1"],
    ["sweep", "127.0.0.1-256"],
    ["sweep", "127.0.0.1-::5"],
    ["sweep", "127.0.0.1-"],
    ["sweep", "-127.0.0.1"],
    ["sweep", "127.0.0.1--5"],
    ["sweep", "127.0.0.1/24/8"],
    ["sweep", "-M", "tcp-syn", "127.0.0.1"],
    ["sweep", "-M", "udp", "127.0.0.1"],
    ["sweep", "-M", "sctp", "127.0.0.1"],
    ["sweep", "-M", "tcp-syn", "-p", "0", "127.0.0.1"],
    ["sweep", "-M", "icmp", "-p", "80", "127.0.0.1"],
    ["sweep", "-p", "80", "127.0.0.1"],
    ["sweep", "-M", "tcp-syn", "-p", "65536", "127.0.0.1"],
    ["sweep", "-r", "-1", "127.0.0.1"],
    ["sweep", "-r", "11", "127.0.0.1"],
    ["sweep", "-t", "0", "127.0.0.1"],
    ["sweep", "-t", "-1", "127.0.0.1"],
    ["sweep", "-t", "nan", "127.0.0.1"],
    ["sweep", "-t", "61", "127.0.0.1"],
    ["sweep", "--rate", "-1", "127.0.0.1"],
    ["sweep", "--shard", "1/1", "--seed", "1", "127.0.0.1"],
    ["sweep", "--shard", "2/1", "--seed", "1", "127.0.0.1"],
    ["sweep", "--shard", "0/0", "--seed", "1", "127.0.0.1"],
    ["sweep", "--shard", "-1/2", "--seed", "1", "127.0.0.1"],
    ["sweep", "--shard", "x", "--seed", "1", "127.0.0.1"],
    ["sweep", "--shard", "0/2", "127.0.0.1"],
    ["sweep", "--seed", "x", "127.0.0.1"],
    ["sweep", "-w", "0", "127.0.0.1"],
    ["sweep", "-w", "65", "127.0.0.1"],
    ["sweep", "-f", "{missing}"],
    ["sweep", "-f", "{junk}"],
    ["sweep", "-f", "{binary}"],
    ["sweep", "-f", "{empty}"],
    ["sweep", "-f", "{dir}"],
    ["sweep", "--json", "--ndjson", "127.0.0.1"],
    ["sweep", "--all", "127.0.0.1"],
    ["schema", "pong"],
    ["schema", "ping", "scan"],
    ["sweep", "255.255.255.255"],
    ["sweep", "224.0.0.0/28"],
    ["sweep", "ff02::1"],
    ["sweep", "127.0.0.1", "239.1.1.1-3"],
    ["sweep", "127.1.0.0/8"],
    ["sweep", "127.0.0.1/16"],
    ["sweep", "2001:db8:ff::/16"],
    ["sweep", "240.0.0.0/30"],
    ["sweep", "0.0.0.0/8"],
    ["sweep", "0.0.0.0"],
    ["sweep", "--exclude", "127.0.0.0/24", "127.0.0.1-9"],
    ["sweep", "--exclude", "127.1.0.0/8", "127.0.0.1"],
    ["sweep", "--exclude", "nonsense!", "127.0.0.1"],
    ["sweep", "--exclude-file", "{missing}", "127.0.0.1"],
    ["sweep", "--excludefile", "{binary}", "127.0.0.1"],
    ["sweep", "--exclude-file", "{junk}", "127.0.0.1"],
    ["sweep", "-f", "{hostbits}"],
    ["sweep", "[::1"],
    ["sweep", "0x7f.1"],
]


SCAN: list[Any] = [
    ["scan"],
    ["scan", ""],
    ["scan", "999.1.1.1"],
    ["scan", "127.0.0.0/33"],
    ["scan", "127.0.0.9-1"],
    ["scan", "-p", "", V4],
    ["scan", "-p", "0", V4],
    ["scan", "-p", "65536", V4],
    ["scan", "-p", "80,", V4],
    ["scan", "-p", ",80", V4],
    ["scan", "-p", "100-1", V4],
    ["scan", "-p", "http", V4],
    ["scan", "-p", "1-2-3", V4],
    ["scan", "-p", "-5", V4, "--top-ports", "10"],
    ["scan", "--top-ports", "0", V4],
    ["scan", "--open", "--all", V4],
    ["scan", "--top-ports", "1001", V4],
    ["scan", "--rate", "-1", V4],
    ["scan", "--min-rate", "nan", V4],
    ["scan", "--retries", "-1", V4],
    ["scan", "--max-retries", "51", V4],
    ["scan", "--seed", "x", V4],
    ["scan", "-S", "999.1.1.1", V4],
    ["scan", "-S", "", V4],
    ["scan", "-S", V6, V4],
    ["scan", "224.0.0.1"],
    ["scan", "-4", V6],
    ["scan", "-6", V4],
    ["scan", "-f", "{missing}"],
    ["scan", "-f", "{junk}"],
    ["scan", "-f", "{binary}"],
    ["scan", "-f", "{empty}"],
    ["scan", "-f", "{dir}"],
    ["scan", "127.1.0.0/8"],
    ["scan", "-S", "192.0.2.1", V4],
    ["scan", "--exclude", V4, V4],
    ["scan", "--exclude-file", "{dir}", V4],
    ["scan", "-f", "{hostbits}"],
    ["scan", "0x7f.1"],
    ["scan", "--shard", "1/2", V4],  # no --seed
    ["scan", "--shard", "2/2", "--seed", "1", V4],
    ["scan", "--json", "--ndjson", V4],
    ["scan", "--ndjson", "-oX", "-", V4],
    ["scan", "-oX", "-", "-oN", "-", V4],
    ["scan", "-oA", "-", V4],
    ["scan", "-oA", "{nodir}", V4],
    ["scan", "-oN", "{dir}", V4],
    ["scan", "-oA", "{dir}/x", "-oG", "{dir}/y", V4],
]

SEND = [
    ["send"],
    ["send", ""],
    ["send", "999.1.1.1"],
    ["send", "127.0.0.0/24"],
    ["send", "-t", "256", V4],
    ["send", "-t", "-1", V4],
    ["send", "--tos", "x", V4],
    ["send", "--id", "65536", V4],
    ["send", "--frag-offset", "8192", V4],
    ["send", "--ip-options", "zz", V4],
    ["send", "--ip-options", "abc", V4],
    ["send", "--flow-label", "1048576", V6],
    ["send", "--ip-proto", "256", V4],
    ["send", "--ip-length", "-1", V4],
    ["send", "--tcp", "-p", "65536", V4],
    ["send", "--tcp", "-s", "-1", V4],
    ["send", "--tcp", "--flags", "XYZ", V4],
    ["send", "--tcp", "--seq", "4294967296", V4],
    ["send", "--tcp", "--ts", "a:b", V4],
    ["send", "--tcp", "--ts", "1:4294967296", V4],
    ["send", "--tcp", "--wscale", "256", V4],
    ["send", "--flags", "S", V4],
    ["send", "--icmp", "-p", "80", V4],
    ["send", "--udp", "--type", "8", V4],
    ["send", "--tcp", "--udp", V4],
    ["send", "--data", "x", "--size", "3", V4],
    ["send", "--data-hex", "0g", V4],
    ["send", "--size", "-1", V4],
    ["send", "--size", "70000", V4],
    ["send", "--badsum", "--checksum", "1", V4],
    ["send", "-c", "0", V4],
    ["send", "-i", "-1", V4],
    ["send", "-W", "nan", V4],
    ["send", "-I", V6, V4],
    ["send", "-6", V4],
    ["send", "--pcap", "{nodir}", V4],
    ["send", "127.0.0.1-5"],
    ["send", "::1/128"],
    ["send", "[::1"],
    ["send", "0x7f.1"],
    ["send", "0.0.0.0"],
    ["send", "::"],
    ["send", "255.255.255.255"],
    ["send", "224.0.0.1"],
    ["send", "ff02::1"],
]

SNIFF = [
    ["sniff", "-c", "0"],
    ["sniff", "-c", "x"],
    ["sniff", "--duration", "-1"],
    ["sniff", "--duration", "nan"],
    ["sniff", "-p", "sctp"],
    ["sniff", "--host", "999.1.1.1"],
    ["sniff", "--host", ""],
    ["sniff", "--host", "example"],
    ["sniff", "--port", "65536"],
    ["sniff", "--port", "-1"],
    ["sniff", "--direction", "sideways"],
    ["sniff", "-4", "-6"],
    ["sniff", "-r", "{missing}"],
    ["sniff", "-r", "{binary}"],
    ["sniff", "-r", "{empty}"],
    ["sniff", "-r", "{dir}"],
    ["sniff", "-r", "{junk}"],
    ["sniff", "-r", "{empty}", "-i", "lo"],
    ["sniff", "-r", "{empty}", "--duration", "1"],
    ["sniff", "-w", "{nodir}", "-r", "{empty}"],
    ["sniff", "-w", "{dir}", "-r", "{empty}"],
]

LAB = [
    ["lab"],
    ["lab", "frobnicate"],
    ["lab", "exec"],
    ["lab", "exec", "--"],
    ["lab", "exec", "--ns", "nowhere", "--", "true"],
    ["lab", "exec", "--prefix", "rpnosuchlab", "--", "true"],
    ["lab", "exec", "--prefix", "../../etc", "--", "true"],
    ["lab", "down", "rpnosuchlab"],
    ["lab", "down", "../etc"],
    ["lab", "up", "--prefix", "bad name!"],
    ["lab", "up", "--prefix", ""],
    ["lab", "up", "--prefix", "x" * 40],
]

OTHER: list[list[str]] = [[], ["frobnicate"], ["--backend"], ["demo", "--bogus"]]

CASES: list[Any] = [*PING, *TRACE, *SWEEP, *SCAN, *SEND, *SNIFF, *LAB, *OTHER]


def _case_id(case: Any) -> str:
    argv = case.values[0] if hasattr(case, "values") else case
    return " ".join(argv) or "<none>"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "junk.txt").write_text("not-an-address\n198.19.0.1/99\n")
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 3 + b"\xff\xfe\x00garbage")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    (tmp_path / "hostbits").write_text("127.0.0.1\n127.1.0.0/8\n")
    (tmp_path / "bom").write_bytes(b"\xef\xbb\xbf127.0.0.1 # with a byte-order mark\n")
    return {
        "missing": str(tmp_path / "missing.txt"),
        "junk": str(tmp_path / "junk.txt"),
        "binary": str(tmp_path / "binary"),
        "empty": str(tmp_path / "empty"),
        "dir": str(tmp_path / "dir"),
        "nodir": str(tmp_path / "no" / "such" / "dir" / "out"),
        "hostbits": str(tmp_path / "hostbits"),
        "bom": str(tmp_path / "bom"),
    }


@contextlib.asynccontextmanager
async def _simulated(*_args: Any, **_kwargs: Any) -> AsyncIterator[Any]:
    async with open_memory_transport(MemoryNetwork()) as transport:
        yield transport


@contextlib.asynccontextmanager
async def _no_sniffer(*_args: Any, **_kwargs: Any) -> AsyncIterator[Any]:
    raise AssertionError("a bad-input case reached the sniffer")
    yield  # pragma: no cover


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No real socket: simulated transports, no sniffer, no privilege drop, and an
    alarm so a case that wrongly starts probing cannot hang the suite."""
    for module in (args, ladder, ping_cmd, trace_cmd, sweep_cmd, scan_cmd, send_cmd):
        if hasattr(module, "open_transport"):  # wherever the CLI opens transports
            monkeypatch.setattr(module, "open_transport", _simulated)
    monkeypatch.setattr(ladder, "_unprivileged", _simulated)  # (the datagram rungs too)
    monkeypatch.setattr(sniff_cmd, "open_sniffer", _no_sniffer)

    def timeout(_signum: int, _frame: Any) -> None:
        raise AssertionError("a bad-input case ran for more than 20 s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run(argv: list[str], files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    argv = [arg.format(**files) if "{" in arg else arg for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("rawprobe"), lines[0]
    return lines[0]


@pytest.mark.parametrize("argv", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    files: dict[str, str],
    offline: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _run(argv, files, capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["ping", "-c", "1", "-W", "0.1", "255.255.255.255"],
        ["ping", "-c", "1", "-W", "0.1", "224.0.0.1"],
        ["sweep", "-q", "-t", "0.1", "224.0.0.0/30"],
        ["send", "-W", "0.1", "255.255.255.255"],
    ],
)
def test_broadcast_and_multicast_need_the_flag(
    argv: list[str], files: dict[str, str], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _run(argv, files, capsys)
    assert "--broadcast" in line
    # With the flag the same command runs (here on the empty simulated network).
    assert main([argv[0], "--broadcast", *argv[1:]]) in (0, 1)


@pytest.mark.parametrize("interval", ["0.1", "0", "0.199"])
def test_short_ping_interval_needs_privilege(
    interval: str,
    files: dict[str, str],
    offline: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(privileges, "has_net_raw", lambda: False)
    line = _run(["ping", "-c", "1", "-i", interval, V4], files, capsys)
    assert "0.2" in line
    monkeypatch.setattr(privileges, "has_net_raw", lambda: True)
    assert main(["ping", "-c", "2", "-W", "0.05", "-i", interval, V4]) == 1  # allowed: no reply


def test_interval_of_0_2_needs_no_privilege(
    offline: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(privileges, "has_net_raw", lambda: False)
    assert main(["ping", "-c", "1", "-W", "0.05", "-i", "0.2", V4]) == 1
    assert "rawprobe" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sweep", "198.19.0.0/8"], "198.19.0.0/8 has host bits set: did you mean 198.19.0.0/16,"
         " or 198.0.0.0/8 (16,777,216 addresses)?"),
        (["sweep", "-f", "{hostbits}"], "hostbits:2: 127.1.0.0/8 has host bits set"),
        (["scan", "127.1.0.0/8"], "did you mean 127.1.0.0/16, or 127.0.0.0/8"),
        (["ping", "127.0.0.0/24"], "a network, not a host: ping, trace and send take hosts"
         " (sweep and scan take networks)"),
        (["trace", "127.0.0.1-9"], "take hosts (sweep and scan take networks)"),
        (["trace", "--mda", "--mtu", V4], "trace: --mtu and --mda cannot be used together"),
        (["trace", "--mda", "--live", "--dot", "{dir}/g.dot", V4], "--dot draws one --mda"),
        (["send", "::1/128"], "take hosts (sweep and scan take networks)"),
        (["ping", "[::1"], "unbalanced brackets"),
        (["ping", "0x7f.1"], "not a valid IPv4 address"),
        (["ping", "-c", "1", "-I", "192.0.2.1", V4], "Cannot assign requested address"),
        (["scan", "-S", "192.0.2.1", V4], "Cannot assign requested address"),
        (["trace", "-s", "192.0.2.1", V4], "Cannot assign requested address"),
        (["send", "0.0.0.0"], "the unspecified address is not a destination"),
        (["send", "224.0.0.1"], "multicast destination: add --broadcast"),
        (["sweep", "240.0.0.0/30"], "reserved (240.0.0.0/4) destination: add --broadcast"),
        (["sweep", "--exclude", "127.0.0.0/24", "127.0.0.1-9"], "no targets left"),
        (["trace", "-n", "--unprivileged", "-T", V4], "--unprivileged: TCP traces need raw"),
        (["sweep", "--unprivileged", "-M", "tcp-syn", "-p", "80", V4], "TCP and UDP sweeps need"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)  # fmt: skip
def test_target_refusals_say_why(
    argv: list[str],
    says: str,
    files: dict[str, str],
    offline: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert says in _run(argv, files, capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "-q", "-t", "0.05", "-f", "{bom}"],
        ["scan", "-q", "--retries", "0", "-p", "80", "-f", "{bom}"],
        ["trace", "-n", "-q", "1", "-m", "1", "-w", "0.05", "--retries", "0", "-F", "{bom}"],
    ],
)
def test_a_byte_order_mark_in_a_target_file_is_skipped(
    argv: list[str], files: dict[str, str], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg.format(**files) if "{" in arg else arg for arg in argv]
    assert main(argv) in (0, 1)  # runs (on the empty simulated network)
    assert "rawprobe" not in capsys.readouterr().err


def test_exclusions_leave_addresses_out_of_sweep_and_scan(
    offline: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    excluded = tmp_path / "exclude"
    excluded.write_text("127.0.0.200-210\n")
    common = [
        "-q",
        "--json",
        "--exclude",
        "127.0.0.5,127.0.0.10-12",
        "--excludefile",
        str(excluded),
    ]
    assert main(["sweep", "-t", "0.05", "-r", "0", *common, "127.0.0.0/24"]) == 1
    assert output_check.document(capsys.readouterr().out)["summary"]["targets"] == 254 - 4 - 11
    assert main(["scan", "--retries", "0", "-p", "80", *common, "127.0.0.0/28"]) == 0
    assert output_check.document(capsys.readouterr().out)["summary"]["host_count"] == 14 - 4
