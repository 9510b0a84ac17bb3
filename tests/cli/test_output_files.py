"""Output files (``--pcap``, ``-oG``, ``sniff -w``): checked and opened before anything
is probed, never through a symbolic link (cli/outputs.py, transport/outfiles.py).

The CLI runs in-process over an empty simulated network; the fakes record whether a
transport or sniffer was opened, which must not happen when an output path is bad.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from unprivileged import NOBODY, SYSTEM_PYTHON, can_run_unprivileged, unprivileged_tree

from rawprobe.cli import args, ping_cmd, scan_cmd, send_cmd, sniff_cmd, sweep_cmd, trace_cmd
from rawprobe.cli.app import main
from rawprobe.transport import ladder
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport
from rawprobe.transport.wire.pcap import LINKTYPE_RAW, PcapReader, PcapWriter

VECTORS = Path(__file__).parent.parent / "vectors"

V4 = "127.0.0.1"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of what the command opened (transport, sniffer)."""
    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def transport(*_args: Any, **_kwargs: Any) -> AsyncIterator[Any]:
        seen.append("transport")
        async with open_memory_transport(MemoryNetwork()) as memory:
            yield memory

    @contextlib.asynccontextmanager
    async def sniffer(*_args: Any, **_kwargs: Any) -> AsyncIterator[Any]:
        seen.append("sniffer")
        raise AssertionError("no sniffer in these tests")
        yield  # pragma: no cover

    for module in (args, ladder, ping_cmd, trace_cmd, sweep_cmd, scan_cmd, send_cmd):
        if hasattr(module, "open_transport"):
            monkeypatch.setattr(module, "open_transport", transport)
    monkeypatch.setattr(sniff_cmd, "open_sniffer", sniffer)
    return seen


COMMANDS = [
    ["ping", "-c", "1", "-W", "0.05", V4, "--pcap", "{out}"],
    ["trace", "-n", "-m", "2", "-w", "0.05", V4, "--pcap", "{out}"],
    ["trace", "-n", "--report", "-c", "1", "-m", "2", "-w", "0.05", V4, "--pcap", "{out}"],
    ["scan", "-q", "-p", "80", V4, "--pcap", "{out}"],
    ["scan", "-q", "-p", "80", V4, "-oG", "{out}"],
    ["sweep", "-q", "-t", "0.05", V4, "--pcap", "{out}"],
    ["send", "-W", "0.05", V4, "--pcap", "{out}"],
    ["sniff", "-c", "1", "-w", "{out}"],
]


def _run(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([word.replace("{out}", str(out)) for word in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:1] + argv[-2:-1]))
def test_a_planted_symlink_is_refused_before_probing(
    argv: list[str], tmp_path: Path, opened: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "out"
    link.symlink_to(victim)
    code, err = _run(argv, link, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "symbolic link" in err
    assert victim.read_bytes() == b"precious"
    assert opened == []


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:1] + argv[-2:-1]))
def test_a_path_in_a_missing_directory_fails_before_probing(
    argv: list[str], tmp_path: Path, opened: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(argv, tmp_path / "no" / "such" / "x", capsys)
    assert code == 2
    assert "No such file or directory" in err
    assert opened == []


def test_grepable_output_is_written_to_its_file(
    tmp_path: Path, opened: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scan.gnmap"
    out.write_text("old contents, longer than the new ones would be if not truncated" * 50)
    code, _err = _run(["scan", "-q", "-p", "80", "--retries", "0", V4, "-oG", "{out}"], out, capsys)
    assert code == 0
    text = out.read_text()
    assert text.startswith("# rawprobe")
    assert "Host: 127.0.0.1" in text
    assert "old contents" not in text
    assert opened == ["transport"]


def test_pcap_to_dev_null_works_and_to_stdout_is_refused(
    tmp_path: Path, opened: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ping", "-c", "1", "-W", "0.05", V4, "--pcap", "{out}"]
    assert _run(argv, Path("/dev/null"), capsys)[0] == 1  # no reply on the empty network
    code, err = _run(argv, Path("-"), capsys)
    assert code == 2
    assert "--pcap -: stdout" in err


def test_sniff_writes_a_pcap_to_stdout_with_dash(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    source = tmp_path / "in.pcap"
    text = VECTORS.joinpath("icmp4_echo_request.hex").read_text()
    packet = bytes.fromhex("".join(line for line in text.splitlines() if not line.startswith("#")))
    with source.open("wb") as f:
        PcapWriter(f, linktype=LINKTYPE_RAW).write(1_000_000_000, packet)
    assert main(["sniff", "-r", str(source), "-w", "-"]) == 0
    records = list(PcapReader(io.BytesIO(capsysbinary.readouterr().out)))
    assert [record.data for record in records] == [packet]
    assert main(["sniff", "-r", str(source), "-w", "-", "--json"]) == 2


def test_under_sudo_output_files_are_opened_as_the_invoking_user() -> None:
    """Opened before any socket, yet with the user's permissions: a directory only root
    may write is refused, and a file made in a shared one belongs to the user."""
    reason = can_run_unprivileged()
    if reason is not None:
        pytest.fail(reason) if os.environ.get("RAWPROBE_LAB") == "required" else pytest.skip(reason)
    with tempfile.TemporaryDirectory(dir="/tmp") as where:  # pytest's tmp_path is 0700
        _sudo_case(Path(where))


def _sudo_case(tmp_path: Path) -> None:
    source = tmp_path / "in.pcap"
    with source.open("wb") as f:
        PcapWriter(f, linktype=LINKTYPE_RAW).write(1_000_000_000, bytes(20))
    source.chmod(0o644)
    tmp_path.chmod(0o755)
    root_only = tmp_path / "root-only"
    root_only.mkdir(mode=0o755)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "SUDO_UID": str(NOBODY),
        "SUDO_GID": str(NOBODY),
    }
    with unprivileged_tree() as tree:
        env["PYTHONPATH"] = str(tree)

        def sniff(out: Path) -> subprocess.CompletedProcess[str]:
            argv = [SYSTEM_PYTHON, "-m", "rawprobe", "sniff", "-r", str(source), "-w", str(out)]
            return subprocess.run(
                argv, capture_output=True, text=True, env=env, cwd="/", timeout=60, check=False
            )

        refused = sniff(root_only / "x.pcap")
        assert refused.returncode == 2, refused.stderr
        assert "-w " in refused.stderr and "Permission denied" in refused.stderr
        assert not (root_only / "x.pcap").exists()
        written = sniff(shared / "x.pcap")
        assert written.returncode == 0, written.stderr
        info = (shared / "x.pcap").stat()
        assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)
        assert info.st_size == 24 + 16 + 20
