"""Run a job in several forked worker processes and collect what each returns.

Python runs one core's worth of bytecode per process; a sweep at line speed needs
more, so it is split into shards (see probes/permute.py) run by forked workers, each
with its own raw sockets and event loop. Workers are forked before any event loop
starts, inherit the calling thread's network namespace, and send back one pickled
value through a pipe. A worker that fails sends its exception, re-raised here.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

from rawprobe.errors import RawProbeError

T = TypeVar("T")


class WorkerFailed(RawProbeError):
    """A worker process died without a result."""


def run_workers(
    job: Callable[[int], T],
    count: int,
    *,
    after_fork: Callable[[], object] | None = None,
    bulk_gc: bool = False,
) -> list[T]:
    """``[job(0), ..., job(count - 1)]``, each call in its own forked process.

    With ``count == 1`` the job runs here. SIGINT reaches every worker (they share the
    terminal's process group); each is expected to stop early and return what it has.
    ``after_fork`` runs in this process once every worker is forked (the CLI drops its
    privileges there: the workers open their own sockets, this process opens none).
    ``bulk_gc`` tunes this process's garbage collector for bulk work (commands only).
    """
    if bulk_gc:
        # Everything made so far (modules, parsed targets) is never garbage: keep the
        # collector from walking it again, and let it run less often while the job
        # makes tuples by the million (valgrind: 3.5% fewer instructions per host swept).
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
    if count == 1:
        return [job(0)]
    children: list[tuple[int, int]] = []
    sys.stdout.flush()
    sys.stderr.flush()
    for index in range(count):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the caller
            os.close(read_fd)
            _work(job, index, write_fd)
        os.close(write_fd)
        children.append((pid, read_fd))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers handle Ctrl-C
    pending = list(children)
    try:
        if after_fork is not None:
            after_fork()
        results: list[T] = []
        while pending:
            pid, read_fd = pending[0]
            with os.fdopen(read_fd, "rb") as pipe:
                data = pipe.read()
            pending.pop(0)
            _pid, status = os.waitpid(pid, 0)
            if not data:
                raise WorkerFailed(f"worker {pid} died (exit status {status})")
            ok, value = pickle.loads(data)
            if not ok:
                raise value
            results.append(value)
        return results
    finally:
        _stop(pending)  # after a failure: no worker goes on probing on its own
        signal.signal(signal.SIGINT, previous)


def _stop(children: list[tuple[int, int]]) -> None:
    """Terminate and reap workers whose results will not be read."""
    for pid, read_fd in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        os.close(read_fd)
    for pid, _read_fd in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _own_error(exc: BaseException) -> BaseException:
    """A task group's ExceptionGroup holding only our errors as its first RawProbeError:
    the parent prints that one line, and no worker a traceback."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    ours, rest = exc.split(RawProbeError)
    if ours is None or rest is not None:
        return exc
    first: BaseException = ours
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def _work(job: Callable[[int], T], index: int, write_fd: int) -> None:
    code = 0
    try:
        try:
            payload = pickle.dumps((True, job(index)))
        except BaseException as exc:  # sent to the parent, which re-raises it
            exc = _own_error(exc)
            if not isinstance(exc, RawProbeError):
                traceback.print_exc()
                exc = WorkerFailed(f"worker {index}: {exc!r}")
            payload = pickle.dumps((False, exc))
            code = 1
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        sys.stdout.flush()
    finally:
        os._exit(code)
