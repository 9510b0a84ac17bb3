"""Forked workers: results in order, failures re-raised, no worker left running."""

import os
import time

import pytest

from rawprobe.errors import UsageError
from rawprobe.probes.workers import run_workers


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

    with pytest.raises(UsageError, match="bad 0"):
        run_workers(job, 2)
    assert "Traceback" not in capfd.readouterr().err
