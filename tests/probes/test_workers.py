"""Forked workers: results in order, failures re-raised, no worker left running."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from rawprobe.errors import UsageError
from rawprobe.probes.workers import Messages, run_workers


def test_results_come_back_in_worker_order() -> None:
    assert run_workers(lambda i: (i, os.getpid())[0] * 10, 3) == [0, 10, 20]


def test_a_failing_worker_stops_its_siblings() -> None:
    marker = f"/tmp/rawprobe-worker-test-{os.getpid()}"

    def job(index: int) -> int:
        if index == 0:
            raise UsageError("worker 0 refuses")
        time.sleep(3)
        with open(marker, "w") as file:  # reached only if nobody stopped this worker
            file.write("still running")
        return index

    started = time.monotonic()
    with pytest.raises(UsageError, match="worker 0 refuses"):
        run_workers(job, 2)
    assert time.monotonic() - started < 2  # the sibling was terminated, not awaited
    time.sleep(3.5)
    assert not os.path.exists(marker)


def test_a_task_group_of_our_errors_comes_back_as_one_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Errors raised inside a task group (every transport holds one) reach the parent
    as the RawProbeError itself: one line from the CLI, no traceback from each worker."""

    def job(index: int) -> int:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [UsageError(f"bad {index}")])

    # Both fail: whichever failure reaches the parent first is raised (either, under load).
    with pytest.raises(UsageError, match=r"^bad [01]$"):
        run_workers(job, 2)
    assert "Traceback" not in capfd.readouterr().err


def test_a_late_worker_failing_stops_the_others_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    """A write failure in worker 1 is raised while worker 0 is still busy (the parent
    waits on every worker at once), as itself and without a traceback."""

    def job(index: int) -> int:
        if index == 1:
            raise BrokenPipeError(32, "Broken pipe")
        time.sleep(5)
        return index

    started = time.monotonic()
    with pytest.raises(BrokenPipeError):
        run_workers(job, 2)
    assert time.monotonic() - started < 3
    assert "Traceback" not in capfd.readouterr().err


def test_signals_reach_every_worker_which_returns_what_it_has() -> None:
    """SIGTERM to the parent is passed on to each worker (which keeps the parent's
    Python handler: here one that records), then to the parent's own handler."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))

    def job(index: int) -> str:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        return f"worker {index} stopped by {seen}"

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        started = time.monotonic()
        timer.start()
        results = run_workers(job, 2)
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    term = int(signal.SIGTERM)
    assert results == [f"worker 0 stopped by [{term}]", f"worker 1 stopped by [{term}]"]
    assert seen == [term] and elapsed < 5


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    """SIGKILL the process running run_workers: its workers go too (PR_SET_PDEATHSIG)."""
    pids = tmp_path / "pids"
    middle = os.fork()
    if middle == 0:  # pragma: no cover - the middle process
        try:

            def job(index: int) -> int:
                with pids.open("a") as file:
                    file.write(f"{os.getpid()}\n")
                time.sleep(30)
                return index

            run_workers(job, 2)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_lines(pids)) < 2:
        time.sleep(0.02)
    workers = [int(line) for line in _lines(pids)]
    os.kill(middle, signal.SIGKILL)
    os.waitpid(middle, 0)
    assert len(workers) == 2
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in workers)


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("count", [1, 3])
def test_messages_reach_the_parent_while_the_workers_run(count: int, tmp_path: Path) -> None:
    """Each worker's messages come in the order it sent them, while the others still
    run (here: worker 0 waits for a file the parent writes on its first message), and
    a job's result may be None."""
    release = tmp_path / "release"
    received: list[tuple[int, object]] = []

    def receive(worker: int, value: object) -> None:
        received.append((worker, value))
        release.touch()

    messages = Messages(receive)

    def job(index: int) -> bool | None:
        messages.send(("hello", index))
        if index != 0:
            return None
        deadline = time.monotonic() + 5
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        released = release.exists()  # the parent had a message while this worker ran
        messages.send(("big", index, bytes(200_000)))  # several pipe buffers
        return released

    assert run_workers(job, count, messages=messages) == [True] + [None] * (count - 1)
    assert [value for w, value in received if w == 0] == [("hello", 0), ("big", 0, bytes(200_000))]
    assert sorted(value for w, value in received if w) == [("hello", w) for w in range(1, count)]
