"""Exit statuses, write failures and usage-error wording, without a network.

The lab tier (tests/lab/test_edges_lab.py) runs every probe command against the real
kernel; here: the mapping itself, and ``sniff -r`` (no privilege, no network) as a
real process whose stdout is a closed pipe, /dev/full or closed.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from rawprobe.cli.app import main
from rawprobe.cli.args import exit_status_after
from rawprobe.errors import UsageError, write_failure
from rawprobe.transport.wire.pcap import PcapWriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "wire"))
from wire_vectors import load_vector, vector_names


@pytest.mark.parametrize(
    ("signum", "code", "ping_rule", "status"),
    [
        (None, 0, False, 0),
        (None, 1, True, 1),
        (signal.SIGINT, 130, False, 130),
        (signal.SIGINT, 0, False, 130),  # a signal during the final output still counts
        (signal.SIGINT, 0, True, 0),  # ping after SIGINT: iputils' 0 (a reply came)...
        (signal.SIGINT, 1, True, 1),  # ... or 1 (none)
        (signal.SIGTERM, 0, True, 143),  # SIGTERM: 143 everywhere, ping included
        (signal.SIGTERM, 130, False, 143),
        (signal.SIGTERM, 1, False, 143),
    ],
)
def test_exit_status_after_a_signal(
    signum: int | None, code: int, ping_rule: bool, status: int
) -> None:
    assert exit_status_after(signum, code, ping_rule=ping_rule) == status


def _group(*excs: Exception) -> ExceptionGroup[Exception]:
    return ExceptionGroup("task group", [ExceptionGroup("inner", list(excs))])


def _rich_exit() -> SystemExit:
    try:
        try:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        except BrokenPipeError:
            raise SystemExit(1) from None  # what rich's Console.on_broken_pipe raises
    except SystemExit as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), errno.EPIPE),
        (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT),
        (_group(BrokenPipeError(errno.EPIPE, "x"), BrokenPipeError(errno.EPIPE, "y")), errno.EPIPE),
        (_group(OSError(errno.ENOSPC, "x"), BrokenPipeError(errno.EPIPE, "y")), errno.EPIPE),
        (_rich_exit(), errno.EPIPE),
        # the task that died of the broken pipe was a stream's reader: its feeder fails too
        (_group(BrokenPipeError(errno.EPIPE, "x"), anyio.BrokenResourceError()), errno.EPIPE),
        (_group(anyio.BrokenResourceError()), None),
        (_group(BrokenPipeError(errno.EPIPE, "x"), ValueError("a bug")), None),  # a bug shows
        (OSError(errno.EBADF, "Bad file descriptor"), None),
        (PermissionError(errno.EACCES, "denied"), None),
        (SystemExit(1), None),
        (UsageError("bad"), None),
        (KeyboardInterrupt(), None),
    ],
)
def test_write_failures_are_told_from_bugs(exc: BaseException, expected: int | None) -> None:
    failure = write_failure(exc)
    assert (failure.errno if failure is not None else None) == expected


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"rawprobe {metadata.version('rawprobe')}\n"


@pytest.mark.parametrize(
    ("argv", "help_of"),
    [
        (["ping", "--bogus", "198.19.0.5"], "rawprobe ping --help"),
        (["ping", "-c", "x", "198.19.0.5"], "rawprobe ping --help"),
        (["scan", "--top-ports", "0", "198.19.0.5"], "rawprobe scan --help"),
        (["lab", "up", "--bogus"], "rawprobe lab up --help"),
        (["--bogus"], "rawprobe --help"),
        (["frobnicate"], "rawprobe --help"),
    ],
)
def test_usage_errors_have_one_prefix_and_the_right_help(
    argv: list[str], help_of: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rawprobe: ") and "rawprobe: rawprobe" not in err, err
    assert err.endswith(f"(see {help_of})"), err
    if argv[0] in ("ping", "scan"):
        assert err.startswith(f"rawprobe: {argv[0]}: "), err


# -- sniff -r as a real process: stdout broken three ways ----------------------------------


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pcap") / "many.pcap"
    with path.open("wb") as stream:
        writer = PcapWriter(stream)
        for repeat in range(40):  # enough lines to outgrow any buffer before the end
            for i, name in enumerate(vector_names()):
                writer.write(1_700_000_000_000_000_000 + repeat * 10**6 + i, load_vector(name))
    return path


def run_with_stdout(argv: list[str], stdout: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout a pipe whose reader is gone (``pipe``), /dev/full
    (``full``) or closed (``closed``)."""
    command = [sys.executable, "-I", "-m", "rawprobe", *argv]
    if stdout == "closed":
        return subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *command],
            stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    if stdout == "full":
        with open("/dev/full", "w") as full:
            return subprocess.run(
                command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60, check=False
            )
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before the first line
    try:
        return subprocess.run(
            command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False
        )
    finally:
        os.close(write_end)


MODES = {"plain": [], "json": ["--json"], "verbose": ["-v"]}
BROKEN = {
    "pipe": (141, ""),
    "full": (2, "rawprobe: cannot write output: No space left on device"),
    "closed": (2, "rawprobe: standard output is closed"),
}


def test_sniff_read_with_a_broken_stdout(capture: Path) -> None:
    """Every mode x every broken stdout: the status, and one line (or none) on stderr."""
    cases = [(mode, broken) for mode in MODES for broken in BROKEN]

    def one(case: tuple[str, str]) -> subprocess.CompletedProcess[str]:
        return run_with_stdout(["sniff", "-r", str(capture), *MODES[case[0]]], case[1])

    with ThreadPoolExecutor(max_workers=6) as pool:
        done = list(pool.map(one, cases))
    for (mode, broken), proc in zip(cases, done, strict=True):
        status, line = BROKEN[broken]
        where = f"sniff -r {mode}, stdout {broken}: {proc.stderr!r}"
        assert proc.returncode == status, where
        assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, where
        lines = [x for x in proc.stderr.splitlines() if not x.startswith("rawprobe: read ")]
        if line:
            assert len(lines) == 1 and lines[0].startswith(line), where
        else:
            assert lines == [] or all("packets" in x for x in lines), where
