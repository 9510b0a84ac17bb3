"""Every command's edges against the real kernel: broken stdout and stop signals.

Two tables, each run once per module with its cases concurrently (the whole module
takes well under a minute), then checked case by case:

- write failures: every command and output mode with stdout a pipe whose reader is
  gone (exit 141, silent), /dev/full (one line, exit 2) and closed (one line, exit 2);
- signals: every command (scan and sweep with 1 and 2 workers, signalled alone or as
  a process group) gets SIGINT or SIGTERM once it probes: partial output present
  (marked interrupted where the format has a mark), the documented exit status, a
  prompt exit, and no process of the run left.

The commands run as subprocesses inside the lab's client namespace, each in its own
session (process group), so the tests find, signal and check only what they started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import output_check
import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

T4 = "198.19.0.5"
T6 = "2001:db8:ff::5"
SILENT = "198.18.200.1"


def cli(lab: Lab, *args: str) -> list[str]:
    return ["ip", "netns", "exec", lab.ns("client"), sys.executable, "-I", "-m", "rawprobe", *args]


def group_members(pgid: int) -> list[int]:
    """Processes of the process group ``pgid`` (zombies excluded)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def probing(pgid: int) -> bool:
    """True once a process of the group holds a raw or packet socket."""
    for pid in group_members(pgid):
        try:
            inodes = {
                os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
                for fd in os.listdir(f"/proc/{pid}/fd")
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
            }
            for table in ("raw", "raw6", "packet"):
                with open(f"/proc/{pid}/net/{table}") as lines:
                    rows = [line.split() for line in lines.readlines()[1:]]
                column = 8 if table == "packet" else 9
                if inodes & {row[column] for row in rows if len(row) > column}:
                    return True
        except OSError:
            continue
    return False


@pytest.fixture(scope="module")
def background_traffic(lab: Lab) -> Iterator[None]:
    """Something for live sniffers in the client namespace to see."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    pinger = lab.popen("client", "ping", "-q", "-i", "0.1", T4, **quiet)
    try:
        yield
    finally:
        pinger.terminate()
        pinger.wait(timeout=10)


# -- write failures ------------------------------------------------------------------------

WRITE_CASES: dict[str, list[str]] = {
    "ping": ["ping", "-c", "3", "-i", "0.2", T4],
    "ping --json": ["ping", "--json", "-c", "2", "-i", "0.2", T4],
    "ping two hosts": ["ping", "-c", "2", "-i", "0.2", T4, T6],
    "trace": ["trace", "-n", "-w", "0.5", T4],
    "trace two targets": ["trace", "-n", "-w", "0.5", T4, T6],
    "trace --json": ["trace", "-n", "--json", "-w", "0.5", T4],
    "trace --live": ["trace", "-n", "--live", "-c", "2", "-i", "0.2", T4],
    "trace --report": ["trace", "-n", "--report", "-c", "2", "-i", "0.2", T4],
    "trace --live --json": ["trace", "-n", "--live", "--json", "-c", "2", "-i", "0.2", T4],
    "scan": ["scan", "-p", "22,80,1000", T4],
    "scan --json": ["scan", "--json", "-p", "22,80", T4],
    "scan -oG -": ["scan", "-oG", "-", "-p", "22,80", T4],
    "scan -w 2": ["scan", "-w", "2", "-p", "1-300", T4],
    "sweep": ["sweep", "198.19.7.0/28"],
    "sweep --json": ["sweep", "--json", "198.19.7.0/28"],
    "sweep --ndjson": ["sweep", "--ndjson", "198.19.7.0/28"],
    # A worker writes the lines: its broken pipe must stop the whole run (33 s if not).
    "sweep --ndjson -w 2": ["sweep", "--ndjson", "-w", "2", "--rate", "2000", "198.19.0.0/16"],
    "send": ["send", T4],
    "send --json": ["send", "--json", T4],
    "sniff": ["sniff", "-c", "3"],
    "sniff --json": ["sniff", "--json", "-c", "3"],
}
BROKEN = ("pipe", "full", "closed")
#: (case, stdout): every case with every broken stdout, and a real `| head -1` for two
WRITE_RUNS = [(name, broken) for name in WRITE_CASES for broken in BROKEN]
WRITE_RUNS += [("ping", "head"), ("sweep --ndjson -w 2", "head")]


@dataclass
class Done:
    code: int
    out: str
    err: str
    seconds: float


def run_broken(lab: Lab, argv: list[str], broken: str) -> Done:
    """Run with stdout a pipe whose reader is gone (``pipe``), /dev/full (``full``) or
    closed (``closed``)."""
    started = time.monotonic()
    command = cli(lab, *argv)
    stdout: int | None = None
    if broken == "closed":
        command = ["sh", "-c", 'exec "$@" >&-', "sh", *command]
    elif broken == "full":
        stdout = os.open("/dev/full", os.O_WRONLY)
    else:
        read_end, stdout = os.pipe()
        os.close(read_end)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            command, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60, check=False
        )
    finally:
        if stdout is not None:
            os.close(stdout)
    return Done(done.returncode, "", done.stderr, time.monotonic() - started)


def run_head(lab: Lab, argv: list[str]) -> Done:
    """``CMD | head -1`` in bash: the exit status of CMD (PIPESTATUS) and head's line."""
    started = time.monotonic()
    quoted = " ".join(f"'{word}'" for word in cli(lab, *argv))
    done = subprocess.run(
        ["bash", "-c", f"{quoted} | head -1; echo status=${{PIPESTATUS[0]}} >&2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    status = done.stderr.rsplit("status=", 1)
    return Done(int(status[1]), done.stdout, status[0], time.monotonic() - started)


@pytest.fixture(scope="module")
def write_table(lab: Lab, background_traffic: None) -> dict[tuple[str, str], Done]:
    cases = WRITE_RUNS

    def one(case: tuple[str, str]) -> Done:
        name, broken = case
        if broken == "head":
            return run_head(lab, WRITE_CASES[name])
        return run_broken(lab, WRITE_CASES[name], broken)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        table = dict(zip(cases, pool.map(one, cases), strict=True))
    print(f"write table: {len(cases)} runs in {time.monotonic() - started:.1f} s")
    for case, done in sorted(table.items(), key=lambda item: -item[1].seconds)[:8]:
        print(f"  {case}: {done.seconds:.1f} s")
    return table


@pytest.mark.parametrize(("name", "broken"), WRITE_RUNS, ids=[f"{n}-{b}" for n, b in WRITE_RUNS])
def test_broken_stdout(write_table: dict[tuple[str, str], Done], name: str, broken: str) -> None:
    done = write_table[(name, broken)]
    where = f"{name}, stdout {broken}: exit {done.code} after {done.seconds:.1f} s, {done.err!r}"
    assert "Traceback" not in done.err and "Exception" not in done.err, where
    complaints = [x for x in done.err.splitlines() if "cannot write" in x or "closed" in x]
    if broken in ("pipe", "head"):
        assert done.code == 141, where  # as a classic tool killed by SIGPIPE
        assert complaints == [], where
        assert "Error" not in done.err, where
        if name == "sweep --ndjson -w 2":
            assert done.seconds < 20, where  # the run stopped (33 s at 2000 probes/s)
        if broken == "head":
            assert done.out.startswith("PING" if name == "ping" else "{"), where
    elif broken == "full":
        assert done.code == 2, where
        assert complaints == ["rawprobe: cannot write output: No space left on device"], where
    else:
        assert done.code == 2, where
        assert done.err.splitlines() == [
            "rawprobe: standard output is closed (redirect it to /dev/null to discard it)"
        ], where


# -- signals -------------------------------------------------------------------------------


def interrupted_document(out: str, _err: str) -> bool:
    """The JSON document on stdout (valid against the schema) says it was interrupted."""
    return output_check.document(out)["summary"]["interrupted"] is True


def interrupted_stream(out: str, err: str, err_has: str = "") -> bool:
    """The NDJSON lines on stdout (each valid) end with a summary saying it was
    interrupted; ``err_has``: what the stderr summary must say too."""
    *_items, summary = output_check.events(out.splitlines())
    return summary["interrupted"] is True and err_has in err


def has(text: str, where: str = "out") -> Callable[[str, str], bool]:
    return lambda out, err: text in (out if where == "out" else err)


def some_output(out: str, _err: str) -> bool:
    return out.strip() != ""


@dataclass
class Case:
    argv: list[str]
    partial: Callable[[str, str], bool]  # checks the partial output (stdout, stderr)
    sigint_status: int = 130


SIGNAL_CASES: dict[str, Case] = {
    "ping": Case(["ping", "-i", "0.2", T4], has("packets transmitted"), 0),  # iputils: replies
    "ping silent": Case(["ping", "-i", "0.2", SILENT], has("packets transmitted"), 1),  # none
    "ping --json": Case(["ping", "--json", "-i", "0.2", T4], interrupted_document, 0),
    "trace": Case(["trace", "-n", "-q", "1", "-w", "5", SILENT], has(" 1  198.18.1.1")),
    "trace --json": Case(
        ["trace", "-n", "--json", "-q", "1", "-w", "5", SILENT], interrupted_document
    ),
    "trace --live": Case(["trace", "-n", "--live", "-i", "0.2", T4], has("198.18.1.1")),
    "trace --report": Case(
        ["trace", "-n", "--report", "-c", "999", "-i", "0.2", T4], has("198.18.1.1")
    ),
    "trace --live --json": Case(
        ["trace", "-n", "--live", "--json", "-i", "0.2", T4],
        lambda out, err: '"round"' in out and interrupted_stream(out, err),
    ),
    "send": Case(["send", "-c", "999", "-i", "0.2", T4], has("reply from")),
    "send --json": Case(["send", "--json", "-c", "999", "-i", "0.2", T4], interrupted_document),
    "sniff": Case(["sniff"], has("packets captured", "err")),
    "sniff --json": Case(
        ["sniff", "--json"], lambda out, err: interrupted_stream(out, err, "packets captured")
    ),
    # the same signal plumbing on trio
    "ping trio": Case(
        ["ping", "--backend", "trio", "-i", "0.2", T4], has("packets transmitted"), 0
    ),
    "trace --live trio": Case(
        ["trace", "--backend", "trio", "-n", "--live", "-i", "0.2", T4], has("198.18.1.1")
    ),
    "sweep -w 2 trio": Case(
        ["sweep", "--backend", "trio", "-w", "2", "--rate", "1000", "198.19.0.0/16"],
        has("hosts up", "err"),
    ),
}
for _w in ("1", "2"):
    _scan = ["scan", "-w", _w, "-p", "1-65535", "--rate", "1000", T4]
    _sweep = ["sweep", "-w", _w, "--rate", "1000", "198.19.0.0/16"]
    SIGNAL_CASES[f"scan -w {_w}"] = Case(_scan, some_output)
    SIGNAL_CASES[f"scan --json -w {_w}"] = Case([*_scan, "--json"], interrupted_document)
    SIGNAL_CASES[f"sweep -w {_w}"] = Case(_sweep, has("hosts up", "err"))
    SIGNAL_CASES[f"sweep --json -w {_w}"] = Case([*_sweep, "--json"], interrupted_document)
    SIGNAL_CASES[f"sweep --ndjson -w {_w}"] = Case(
        [*_sweep, "--ndjson"], lambda out, err: interrupted_stream(out, err, "hosts up")
    )

#: (case, signal, sent to the process group?)
SIGNAL_RUNS = [(name, signum, False) for name in SIGNAL_CASES for signum in ("SIGINT", "SIGTERM")]
SIGNAL_RUNS += [
    (name, signum, True) for name in ("scan -w 2", "sweep -w 2") for signum in ("SIGINT", "SIGTERM")
]


@dataclass
class Stopped:
    code: int
    out: str
    err: str
    exit_s: float  # from the signal to the exit
    left: list[int]  # processes of the run still there after it exited
    members: int  # processes of the run when signalled


def run_signalled(lab: Lab, argv: list[str], signum: int, to_group: bool) -> Stopped:
    proc = subprocess.Popen(
        cli(lab, *argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not probing(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.8)  # some probes sent and answered
        members = len(group_members(proc.pid))
        signalled = time.monotonic()
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        exit_s = time.monotonic() - signalled
        time.sleep(0.2)  # a worker would still be probing now
        return Stopped(proc.returncode, out, err, exit_s, group_members(proc.pid), members)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.fixture(scope="module")
def signal_table(lab: Lab, background_traffic: None) -> dict[tuple[str, str, bool], Stopped]:
    def one(run: tuple[str, str, bool]) -> Stopped:
        name, signame, to_group = run
        return run_signalled(lab, SIGNAL_CASES[name].argv, getattr(signal, signame), to_group)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        table = dict(zip(SIGNAL_RUNS, pool.map(one, SIGNAL_RUNS), strict=True))
    print(f"signal table: {len(SIGNAL_RUNS)} runs in {time.monotonic() - started:.1f} s")
    return table


@pytest.mark.parametrize(
    ("name", "signame", "to_group"),
    SIGNAL_RUNS,
    ids=[f"{n}-{s}{'-group' if g else ''}" for n, s, g in SIGNAL_RUNS],
)
def test_stop_signal(
    signal_table: dict[tuple[str, str, bool], Stopped], name: str, signame: str, to_group: bool
) -> None:
    case = SIGNAL_CASES[name]
    done = signal_table[(name, signame, to_group)]
    where = (
        f"{name} {signame}{' to the group' if to_group else ''}: exit {done.code} "
        f"{done.exit_s:.2f} s after the signal; out {done.out[-300:]!r}; err {done.err[-300:]!r}"
    )
    print(where)
    assert done.code == (case.sigint_status if signame == "SIGINT" else 143), where
    assert "Traceback" not in done.err, where
    assert case.partial(done.out, done.err), where
    assert done.left == [], where  # no worker left behind
    if "-w 2" in name:
        assert done.members == 3, where  # the parent and two workers were running
    assert done.exit_s < 5, where  # the contract says 1 s; the margin is the shared machine


def test_workers_follow_a_killed_parent(lab: Lab) -> None:
    """SIGKILL (no handler can run) to the parent of a 2-worker sweep: the workers die
    with it (PR_SET_PDEATHSIG) instead of probing on."""
    proc = subprocess.Popen(
        cli(lab, "sweep", "-q", "-w", "2", "--rate", "1000", "198.19.0.0/16"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not probing(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(group_members(proc.pid)) == 3
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(proc.pid) == []
    finally:
        for pid in group_members(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("argv", "signame"),
    [
        (["sweep", "-q", "-w", "2", "--rate", "2000", "198.19.128.0/17"], "SIGTERM"),
        (["scan", "-w", "2", "-p", "1-65535", "--rate", "2000", "198.19.200.7"], "SIGINT"),
    ],
    ids=["sweep-w2-SIGTERM", "scan-w2-SIGINT"],
)
def test_the_last_probe_leaves_promptly(lab: Lab, argv: list[str], signame: str) -> None:
    """tcpdump on r1 (the client's first hop) stamps every probe: none may leave more
    than 0.2 s after the signal (asserted with a margin for the shared machine)."""
    dump = lab.popen(
        "r1", "tcpdump", "-i", "eth0", "-n", "-tt", "-l", "--immediate-mode", "-Q", "in",
        "dst", "net", "198.19.128.0/17",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert dump.stderr is not None and dump.stdout is not None
        while "listening" not in (line := dump.stderr.readline()) and line:
            pass
        # Read as tcpdump prints (it drops what it has not read yet when stopped).
        reader = threading.Thread(target=lambda: lines.extend(iter(dump.stdout.readline, "")))
        reader.start()
        proc = subprocess.Popen(
            cli(lab, *argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not probing(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        signalled = time.time()
        proc.send_signal(getattr(signal, signame))
        proc.communicate(timeout=30)
        # Until tcpdump has been quiet for a second (it may lag behind on a busy machine;
        # orphaned workers would keep it busy): at most 6 s.
        quiet_until = time.monotonic() + 6
        seen = -1
        while len(lines) != seen and time.monotonic() < quiet_until:
            seen = len(lines)
            time.sleep(1.0)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=10)
    out = "".join(lines)
    stamps = [float(line.split()[0]) for line in out.splitlines() if line[:1].isdigit()]
    assert stamps and stamps[0] < signalled, "no probe seen before the signal"
    late = max(stamps) - signalled
    print(f"{' '.join(argv[:3])} {signame}: last probe {late * 1000:+.0f} ms after the signal")
    assert late < 0.5, f"a probe left {late:.3f} s after the signal"
    assert proc.returncode == (143 if signame == "SIGTERM" else 130)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interrupted_connect_scan_prints_what_it_decided(lab: Lab, signame: str) -> None:
    """The unprivileged rung (connect() scan) stops on a signal like the SYN scan: the
    ports decided so far, the interruption said, 130 or 143."""
    proc = subprocess.Popen(
        cli(lab, "scan", "--unprivileged", "-p", "1-65535", T4),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert "TCP connect() scan" in proc.stderr.readline()  # probing has begun
        time.sleep(1.0)
        signalled = time.monotonic()
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=30)
        exit_s = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    where = f"exit {proc.returncode} {exit_s:.2f} s after {signame}; {out[-400:]!r} {err!r}"
    assert proc.returncode == (130 if signame == "SIGINT" else 143), where
    assert "rawprobe interrupted: " in out and "Traceback" not in err, where
    assert exit_s < 5, where  # the contract says 1 s; the margin is the shared machine
