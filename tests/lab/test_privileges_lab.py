"""The CLI gives up its privileges once its sockets are open (transport/privileges.py).

Each probe runs as a real ``rawprobe`` process in the lab's client namespace; the test
watches ``/proc/PID/status`` while it runs: capabilities must fall to zero (and
``no_new_privs`` be set) while the probe is still working, and the probe must still
produce its normal result. Under sudo (SUDO_UID/SUDO_GID) the process also becomes
the invoking user, and the files it writes belong to that user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import output_check
import pytest
from unprivileged import (
    NOBODY,
    SYSTEM_PYTHON,
    can_run_unprivileged,
    run_as_nobody,
    unprivileged_tree,
)

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


def _children(pid: int) -> list[int]:
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def _watch(proc: subprocess.Popen[str], timeout_s: float = 20.0) -> list[dict[str, str]]:
    """Samples of /proc/PID/status for the process and its children until it exits."""
    samples: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in (proc.pid, *_children(proc.pid)):
            status = _status(pid)
            if status:
                status["pid"] = str(pid)
                samples.append(status)
        time.sleep(0.01)
    return samples


def _dropped(samples: list[dict[str, str]], pid: int) -> list[dict[str, str]]:
    return [s for s in samples if s["pid"] == str(pid) and s.get("CapEff") == "0000000000000000"]


@pytest.mark.parametrize(
    "argv",
    [
        ["ping", "-c", "6", "-i", "0.2", "198.19.0.5"],
        ["ping", "-c", "6", "-i", "0.2", "2001:db8:ff::5"],
        ["trace", "-n", "-q", "1", "-w", "1", "--retries", "0", "-m", "6", "198.19.0.5"],
        ["send", "-c", "4", "-i", "0.3", "--tcp", "-p", "22", "198.19.0.5"],
        ["sniff", "--duration", "1.2", "-c", "1000000"],
        ["sweep", "-q", "-w", "1", "--rate", "40", "198.19.0.0/26"],
    ],
    ids=["ping4", "ping6", "trace", "send", "sniff", "sweep"],
)
def test_probe_runs_with_no_capability_left(lab: Lab, argv: list[str]) -> None:
    command = [sys.executable, "-I", "-m", "rawprobe", *argv]
    proc = lab.popen("client", *command, stdout=-1, stderr=-1, text=True)
    samples = _watch(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # The test process (which enters lab namespaces again and again) keeps its own.
    assert _status(os.getpid()).get("CapEff") != "0000000000000000"
    dropped = _dropped(samples, proc.pid)
    assert dropped, f"CapEff never reached 0: {[s.get('CapEff') for s in samples][-5:]}"
    assert all(s.get("NoNewPrivs") == "1" for s in dropped)
    assert all(s.get("CapPrm") == "0000000000000000" for s in dropped)
    # Not started through sudo: the uid stays what it was (0), without any capability.
    assert dropped[-1]["Uid"].split()[0] == "0"
    # Once dropped, never regained (samples are in time order).
    first = samples.index(dropped[0])
    assert all(
        s.get("CapEff") == "0000000000000000" for s in samples[first:] if s["pid"] == str(proc.pid)
    )
    if argv[0] != "sniff":
        assert out.strip()


def test_sweep_workers_and_their_parent_drop(lab: Lab) -> None:
    argv = ["sweep", "-q", "-w", "2", "--rate", "40", "--json", "198.19.0.0/26"]
    proc = lab.popen(
        "client", sys.executable, "-I", "-m", "rawprobe", *argv, stdout=-1, stderr=-1, text=True
    )
    samples = _watch(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert output_check.document(out, "sweep")["summary"]["hosts_up"] == 62
    pids = {s["pid"] for s in samples if s.get("Name", "").startswith("python")}
    assert len(pids) >= 3, "expected the parent and two workers"
    for pid in pids:
        mine = [s for s in samples if s["pid"] == pid]
        assert mine[-1].get("CapEff") == "0000000000000000", (pid, mine[-1].get("CapEff"))


def test_under_sudo_the_process_becomes_the_user_and_owns_its_files(lab: Lab) -> None:
    reason = can_run_unprivileged()
    if reason is not None:
        pytest.fail(reason) if os.environ.get("RAWPROBE_LAB") == "required" else pytest.skip(reason)
    with unprivileged_tree() as tree, tempfile.TemporaryDirectory() as out_dir:
        os.chmod(out_dir, 0o1777)
        pcap = Path(out_dir) / "ping.pcap"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(tree),
            "PYTHONDONTWRITEBYTECODE": "1",
            "SUDO_UID": str(NOBODY),
            "SUDO_GID": str(NOBODY),
            "SUDO_USER": "nobody",
        }
        argv = ["ping", "-c", "4", "-i", "0.2", "--pcap", str(pcap), lab.target_v4]
        proc = lab.popen(
            "client", SYSTEM_PYTHON, "-m", "rawprobe", *argv,
            stdout=-1, stderr=-1, text=True, env=env, cwd="/",
        )  # fmt: skip
        samples = _watch(proc)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "4 received" in out
        dropped = _dropped(samples, proc.pid)
        assert dropped
        assert dropped[-1]["Uid"].split() == [str(NOBODY)] * 4
        assert dropped[-1]["Gid"].split() == [str(NOBODY)] * 4
        assert dropped[-1]["Groups"] in ("", str(NOBODY))
        stat = pcap.stat()
        assert (stat.st_uid, stat.st_gid) == (NOBODY, NOBODY)
        assert stat.st_size > 24 + 8 * 16  # header and 8 records at least


@pytest.mark.parametrize(
    "argv",
    [
        ["trace", "-n", "198.19.0.5"],
        ["sweep", "-q", "198.19.0.0/30"],
        ["send", "198.19.0.5"],
        ["sniff", "-c", "1"],
        ["trace", "-n", "-M", "tcp", "198.19.0.5"],
    ],
    ids=["trace", "sweep", "send", "sniff", "trace-tcp"],
)
def test_without_privilege_every_probe_says_what_to_do(lab: Lab, argv: list[str]) -> None:
    """The bottom of the privilege ladder: no raw socket (and, in the lab client, no ICMP
    datagram socket either), one line naming the fix. (scan climbs down to connect():
    tests/lab/test_ladder_lab.py.)"""
    reason = can_run_unprivileged()
    if reason is not None:
        pytest.fail(reason) if os.environ.get("RAWPROBE_LAB") == "required" else pytest.skip(reason)
    with unprivileged_tree() as tree:
        done = run_as_nobody(tree, argv, netns=lab.ns("client"))
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rawprobe") and "CAP_NET_RAW" in lines[0], lines[0]
