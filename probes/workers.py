"""Run a job in several forked worker processes and collect what each returns.

Python runs one core's worth of bytecode per process; a sweep at line speed needs
more, so it is split into shards (see probes/permute.py) run by forked workers, each
with its own raw sockets and event loop. Workers are forked before any event loop
starts, inherit the calling thread's network namespace, and send back one pickled
value through a pipe. A worker that fails sends its exception, re-raised here. While
it runs, a worker may send values through the same pipe (``Messages``): the parent
hands them on as they come (a scan's hosts, printed as each is decided).

Lifecycle: no worker outlives this process (each asks the kernel for SIGKILL when its
parent dies: ``PR_SET_PDEATHSIG``), SIGINT and SIGTERM received here are passed on to
every worker, and when one worker fails the others are stopped at once.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import secrets
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, NamedTuple, TypeVar

from rawprobe.errors import RawProbeError, sole_error, write_failure
from rawprobe.transport import privileges

T = TypeVar("T")

#: Signals passed on to the workers.
FORWARDED: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
#: After a signal, how long workers have to send their partial results before they
#: are killed (they normally need a few milliseconds).
STOP_GRACE_S = 2.0

_PR_SET_PDEATHSIG = 1


class WorkerFailed(RawProbeError):
    """A worker process died without a result."""


#: A frame on a worker's pipe: kind (a message, or the result), length of the pickle.
_FRAME = struct.Struct("!BQ")
_MESSAGE, _RESULT = 0, 1
_NONE_YET = object()


class Messages:
    """Values workers send their parent while they run. Made before the workers are
    forked and given to ``run_workers``; a job calls ``send(value)``, and the parent
    calls ``receive(worker, value)`` for each, in the order that worker sent them (one
    worker: at once, in this process). Values are pickled: send batches, not crumbs."""

    def __init__(self, receive: Callable[[int, Any], object]) -> None:
        self.receive = receive
        self._worker = 0
        self._fd: int | None = None  # in a forked worker: its pipe to the parent

    def send(self, value: Any) -> None:
        if self._fd is None:
            self.receive(self._worker, value)
        else:
            _write_frame(self._fd, _MESSAGE, pickle.dumps(value))

    def _forked(self, worker: int, fd: int) -> None:
        self._worker, self._fd = worker, fd


def _write_frame(fd: int, kind: int, payload: bytes) -> None:
    data = memoryview(_FRAME.pack(kind, len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


class Plan(NamedTuple):
    """How a bulk run (scan, sweep) splits over worker processes: ``workers`` of them
    walk shards of one random order (``seed``); the run itself may be shard ``shard``
    of ``shards`` (a sweep's --shard I/N), which the workers split further."""

    workers: int
    seed: int | None
    shard: int = 0
    shards: int = 1

    def of(self, worker: int) -> tuple[int, int]:
        """(shard, shards) of the permutation that ``worker`` walks."""
        return self.shard + self.shards * worker, self.shards * self.workers


def plan_workers(
    requested: int | None,
    probes: int,
    seed: int | None,
    shard: tuple[int, int] = (0, 1),
    *,
    capture: bool = False,
) -> Plan:
    """``requested`` workers, else one per CPU (at most 4) for 4,096 probes or more;
    one when a capture file is written (one process writes it). Several workers share
    one order: a random seed when none is given."""
    workers = requested or (min(os.cpu_count() or 1, 4) if probes >= 4096 else 1)
    if capture:
        workers = 1
    if workers > 1 and seed is None:
        seed = secrets.randbits(32)
    return Plan(workers, seed, *shard)


def run_plan(job: Callable[[int], T], plan: Plan, messages: Messages | None = None) -> list[T]:
    """``run_workers`` for a bulk run: this process drops its privileges once every
    worker has forked (they open their own sockets), bulk garbage collection."""
    return run_workers(
        job, plan.workers, after_fork=privileges.sockets_opened, bulk_gc=True, messages=messages
    )


def run_workers(
    job: Callable[[int], T],
    count: int,
    *,
    after_fork: Callable[[], object] | None = None,
    bulk_gc: bool = False,
    messages: Messages | None = None,
) -> list[T]:
    """``[job(0), ..., job(count - 1)]``, each call in its own forked process.

    With ``count == 1`` the job runs here. Signals: while the workers run, SIGINT and
    SIGTERM received by this process are sent on to every worker still running, then
    handed to the handler this process had (the CLI's records them; Python's default
    for SIGINT raises KeyboardInterrupt here, which stops the workers). Each worker
    keeps the Python signal handlers this process had when it forked, and is
    expected to stop early and return what it has. A worker that fails (or is killed)
    stops the others. ``after_fork`` runs in this process once every worker is forked
    (the CLI drops its privileges there: the workers open their own sockets, this
    process opens none). ``bulk_gc`` tunes this process's garbage collector for bulk
    work (commands only). ``messages``: what the jobs send while they run (see
    ``Messages``).
    """
    if bulk_gc:
        # Everything made so far (modules, parsed targets) is never garbage: keep the
        # collector from walking it again, and let it run less often while the job
        # makes tuples by the million (valgrind: 3.5% fewer instructions per host swept).
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
    if count == 1:
        return [job(0)]
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    children: dict[int, int] = {}  # read end of its pipe -> pid
    stopping: list[float] = []  # when the first signal was passed on
    previous: dict[int, Any] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.append(time.monotonic())
        for pid in list(children.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)

    try:
        # Signals wait until the forwarding handler is in place (and no worker sees
        # one before it has asked to die with this process).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            for index in range(count):
                read_fd, write_fd = os.pipe()
                pid = os.fork()
                if pid == 0:  # the worker: never returns into the caller
                    os.close(read_fd)
                    for other in children:
                        os.close(other)
                    _die_with(parent)
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                    if messages is not None:
                        messages._forked(index, write_fd)
                    _work(job, index, write_fd)
                os.close(write_fd)
                children[read_fd] = pid
            for signum in FORWARDED:
                previous[signum] = signal.signal(signum, forward)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if after_fork is not None:
            after_fork()
        return _collect(children, stopping, messages)
    finally:
        _stop(children)  # after a failure: no worker goes on probing on its own
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _collect(
    children: dict[int, int], stopping: list[float], messages: Messages | None
) -> list[Any]:
    """Read every worker's pickled result (in worker order), whichever finishes first,
    and hand on its messages as they come; the first failure is raised at once."""
    order = {read_fd: index for index, read_fd in enumerate(children)}
    data: dict[int, bytearray] = {read_fd: bytearray() for read_fd in children}
    results: dict[int, Any] = {}
    poller = select.poll()
    for read_fd in children:
        poller.register(read_fd, select.POLLIN)
    while len(results) < len(order):
        timeout_ms = None
        if stopping:
            left = stopping[0] + STOP_GRACE_S - time.monotonic()
            if left <= 0:
                raise WorkerFailed(f"workers did not stop within {STOP_GRACE_S:g} s of the signal")
            timeout_ms = max(1, int(left * 1000))
        for read_fd, _events in poller.poll(timeout_ms):
            chunk = os.read(read_fd, 1 << 16)
            if chunk:
                buffer = data[read_fd]
                buffer += chunk
                result = _frames(buffer, order[read_fd], messages)
                if result is not _NONE_YET:
                    results[order[read_fd]] = result
                continue
            poller.unregister(read_fd)
            pid = children.pop(read_fd)
            os.close(read_fd)
            _pid, status = os.waitpid(pid, 0)
            if order[read_fd] not in results:
                raise WorkerFailed(f"worker {pid} died (exit status {status})")
    return [results[index] for index in sorted(results)]


def _frames(buffer: bytearray, worker: int, messages: Messages | None) -> Any:
    """Take the whole frames off the front of ``buffer``: messages handed on, the
    result returned (a failure raised); ``_NONE_YET`` while no result has come."""
    result: Any = _NONE_YET
    while len(buffer) >= _FRAME.size:
        kind, length = _FRAME.unpack_from(buffer)
        end = _FRAME.size + length
        if len(buffer) < end:
            break
        value = pickle.loads(buffer[_FRAME.size : end])
        del buffer[:end]
        if kind == _RESULT:
            ok, result = value
            if not ok:
                raise result
        elif messages is not None:
            messages.receive(worker, value)
    return result


def _die_with(parent: int) -> None:
    """Ask the kernel to SIGKILL this worker when its parent dies (nobody would read
    its result, and it must not go on probing); the parent may already be gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _stop(children: dict[int, int]) -> None:
    """Terminate and reap workers whose results will not be read (SIGKILL for any
    still there after a second)."""
    for read_fd, pid in children.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        os.close(read_fd)
    deadline = time.monotonic() + 1.0
    for pid in children.values():
        while True:
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                break
            time.sleep(0.005)
    children.clear()


def _work(job: Callable[[int], T], index: int, write_fd: int) -> None:
    code = 0
    try:
        try:
            value = job(index)
            sys.stdout.flush()  # a write failure is the job's failure
            payload = pickle.dumps((True, value))
        except BaseException as exc:  # sent to the parent, which re-raises it
            if isinstance(exc, BaseExceptionGroup):
                exc = sole_error(exc) or exc  # one of ours: the parent prints one line
            failure = write_failure(exc)
            if failure is not None:  # the output's fault: no traceback
                exc = failure
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing more to write
            elif not isinstance(exc, RawProbeError):
                traceback.print_exc()
                exc = WorkerFailed(f"worker {index}: {exc!r}")
            payload = pickle.dumps((False, exc))
            code = 1
        _write_frame(write_fd, _RESULT, payload)
        os.close(write_fd)
    finally:
        os._exit(code)
