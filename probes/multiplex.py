"""Many machines behind one: one driver loop (one task, one inbox) runs them all.

Why not a task per machine: a thousand ``drive`` tasks make the event loop's ready
queue so long that the socket readers fall behind the replies (measured with
traceroute to a thousand targets), and each task wakes for its own deadlines. One
``Multiplex`` serves ``ping_many_with``, path MTU traces and live rounds (many traces
of the same kind run as one machine instead: ``TraceBatch``).

``poll`` visits the machines that are due, round-robin, each once per call at most,
until ``batch`` packets are due: a trace's next TTL is sent only after every other trace
had its turn, by when the previous TTL's replies (sub-millisecond in a lab, a few ms on
a LAN) have usually been read, so little is sent beyond a destination. Replies go to the machine
that sent their key (or that declared their route); a batch is handed on as one batch
per machine. Events are the machines' own, tagged with the machine's index
(``Emitted``), and ``Finished`` as soon as a machine is done, so results stream out in
completion order.

``run_many`` drives a Multiplex in a task and hands out each machine's result as soon as
it is done (``ManyResults``), and what the unfinished ones found when the caller leaves
early: any many-target probe whose machines give a ``result(now)`` can be built on it
(``run_targets``: a machine a target, made by the probe's factory);
``run_results`` does the same for one machine that runs many probes itself
(``ManyMachine``: ``trace_many_with``'s TraceBatch). ``run_one`` and ``run_all`` are
the plain forms: one machine to its end, or many to the end of the last (no task: the
caller's exceptions stay its own).
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from rawprobe.probes.drive import INBOX_SIZE, drive
from rawprobe.probes.machine import EventT, Machine, MachineOutbox, Outgoing, Route
from rawprobe.transport.base import Reply, Sent, Transport
from rawprobe.transport.keys import MatchKey


@dataclass(frozen=True, slots=True)
class Emitted(Generic[EventT]):
    """An event of the machine at ``index`` (its position in ``Multiplex.machines``)."""

    index: int
    event: EventT


@dataclass(frozen=True, slots=True)
class Finished:
    """The machine at ``index`` is done (after its last Emitted)."""

    index: int


class Multiplex(MachineOutbox[Emitted[EventT] | Finished]):
    """One Machine over ``machines``; done once every one of them is.

    One timer structure for all of them: a heap of each machine's ``next_deadline``,
    refreshed whenever the machine was called (a pure machine's deadline moves only
    then), so ``poll`` visits only the machines that are due, earliest first (ties in
    the order they became due: round-robin), and ``next_deadline`` is the heap's top.
    """

    def __init__(self, machines: Sequence[Machine[EventT]], *, batch: int = 256) -> None:
        super().__init__()
        self.machines = tuple(machines)
        count = len(self.machines)
        # Indices not finished, in order (a late reply to a finished one is dropped).
        self._active = dict.fromkeys(range(count))
        # Packets each machine made that have not left yet: a machine is finished only
        # once they did (the driver hands replies over between the slices of a batch,
        # and a reply may make a machine look done before its last packets left).
        self._unsent = [0] * count
        self._outboxes = [m if isinstance(m, MachineOutbox) else None for m in self.machines]
        # The heap of (deadline, entry number, index); an entry is current while its
        # number is the machine's ``_entry`` (-1: none, e.g. being polled, or finished).
        self._heap = [(-math.inf, index, index) for index in range(count)]
        self._entry = list(range(count))
        self._due = [-math.inf] * count
        self._entries = count
        self._batch = batch
        self._owner: dict[MatchKey, int] = {}
        self._route_owner: dict[Route, int] = {}
        for index, machine in enumerate(self.machines):
            for route in machine.routes:
                if route in self._route_owner:
                    raise ValueError(f"two machines declare the route {route}")
                self._route_owner[route] = index
        self.routes = tuple(self._route_owner)

    @property
    def done(self) -> bool:
        return not self._active

    @property
    def unfinished(self) -> tuple[int, ...]:
        """Indices of the machines not done yet (the partial ones, once cancelled)."""
        return tuple(self._active)

    def poll(self, now: float) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        heap, entry, machines, owner = self._heap, self._entry, self.machines, self._owner
        polled: list[int] = []
        while heap and len(outgoing) < self._batch:
            deadline, number, index = heap[0]
            if number != entry[index]:
                heapq.heappop(heap)  # stale
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            entry[index] = -1  # once per call: back on the heap after the loop
            due = machines[index].poll(now)
            for item in due:
                owner[item.key] = index
                for key in item.extra_keys:
                    owner[key] = index
            outgoing += due
            self._unsent[index] += len(due)
            if not self._collect(index):
                polled.append(index)
        for index in polled:
            self._schedule(index)
        return outgoing

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        for index, at in self._by_machine(keys).items():
            self._unsent[index] -= len(at)
            self.machines[index].sent_batch([keys[i] for i in at], [stamps[i] for i in at], now)
            if not self._collect(index):
                self._schedule(index)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        for index, at in self._by_machine([reply.key for reply in replies]).items():
            self.machines[index].receive_batch([replies[i] for i in at], now)
            if not self._collect(index):
                self._schedule(index)

    def _by_machine(self, keys: Sequence[MatchKey]) -> dict[int, list[int]]:
        """Positions in ``keys`` by the running machine each key belongs to."""
        positions: dict[int, list[int]] = {}
        owner, route_owner, running = self._owner, self._route_owner, self._active
        for position, key in enumerate(keys):
            index = owner.get(key)
            if index is None and route_owner:
                index = route_owner.get((key[0], key[2]))
            if index is not None and index in running:
                positions.setdefault(index, []).append(position)
        return positions

    def next_deadline(self) -> float:
        heap, entry = self._heap, self._entry
        while heap and heap[0][1] != entry[heap[0][2]]:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def _schedule(self, index: int) -> None:
        """Put a running machine's deadline on the heap, unless it is there already."""
        deadline = self.machines[index].next_deadline()
        if self._entry[index] >= 0 and deadline == self._due[index]:
            return
        self._due[index] = deadline
        self._entry[index] = number = self._entries
        self._entries += 1
        heapq.heappush(self._heap, (deadline, number, index))

    def _collect(self, index: int) -> bool:
        """Move the machine's events and retired keys up; True when it is finished
        (just now, or before: a running machine is then scheduled)."""
        machine = self.machines[index]
        outbox = self._outboxes[index]  # (its lists are read: no call when empty)
        if outbox is None or outbox._events:
            events = machine.take_events()
            self._events.extend([Emitted(index, event) for event in events])
        if outbox is None or outbox._retired:
            retired = machine.take_retired()
            owner = self._owner
            for key in retired:
                owner.pop(key, None)
            self._retired += retired
        if index not in self._active:
            return True
        if self._unsent[index] or not machine.done:
            return False
        self._entry[index] = -1
        del self._active[index]
        self._events.append(Finished(index))
        return True


# -- many machines, results as they complete -------------------------------------------

ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)


class ResultMachine(Machine[EventT], Protocol[EventT, ResultT_co]):
    """A machine that gives its result: complete once ``done``, as far as it got
    otherwise (``now`` dates an unfinished one)."""

    def result(self, now: float | None = None) -> ResultT_co: ...


class ManyMachine(Machine[Emitted[EventT] | Finished], Protocol[EventT, ResultT_co]):
    """A machine of many (a Multiplex, or one that runs many probes itself, as
    TraceBatch does): ``Emitted`` and ``Finished`` events by index, the indices not
    finished, and each one's result (``now`` dates an unfinished one)."""

    @property
    def unfinished(self) -> tuple[int, ...]: ...

    def result_of(self, index: int, now: float | None = None) -> ResultT_co: ...


class _Machines(Multiplex[EventT], Generic[EventT, ResultT]):
    """A Multiplex whose machines give results (``ManyMachine``)."""

    def __init__(self, machines: Sequence[ResultMachine[EventT, ResultT]]) -> None:
        super().__init__(machines)
        self._results = machines

    def result_of(self, index: int, now: float | None = None) -> ResultT:
        return self._results[index].result(now)


class ManyResults(Generic[ResultT]):
    """The async iterator ``run_many`` yields: results in completion order.
    ``remaining()`` gives, once the block was left early (Ctrl-C, a timeout), the results
    not yet taken: finished ones, then the unfinished machines' results as they stood."""

    def __init__(
        self, receive: MemoryObjectReceiveStream[ResultT], many: ManyMachine[Any, ResultT]
    ) -> None:
        self._receive = receive
        self._many = many
        self._left: list[ResultT] = []

    def __aiter__(self) -> ManyResults[ResultT]:
        return self

    async def __anext__(self) -> ResultT:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    def remaining(self) -> list[ResultT]:
        self.close()
        left, self._left = self._left, []
        now = anyio.current_time()
        return left + [self._many.result_of(i, now) for i in self._many.unfinished]

    def close(self) -> None:
        """Keep the finished results nobody took, and close the stream."""
        while True:
            try:
                self._left.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._receive.close()


def run_many(
    transport: Transport,
    machines: Sequence[ResultMachine[EventT, ResultT]],
    *,
    on_event: Callable[[int, EventT], None] | None = None,
) -> AbstractAsyncContextManager[ManyResults[ResultT]]:
    """Run ``machines`` in one driver loop over ``transport``; yields an async iterator
    of their results in completion order::

        async with run_many(transport, machines) as results:
            async for result in results:
                ...

    Leaving the block early cancels the machines still running; after the block,
    ``results.remaining()`` gives what they had found (see ManyResults). ``on_event``
    gets ``(index of the machine, event)`` as each machine emits.
    """
    return run_results(transport, _Machines(machines), on_event=on_event)


@asynccontextmanager
async def run_results(
    transport: Transport,
    many: ManyMachine[EventT, ResultT],
    *,
    on_event: Callable[[int, EventT], None] | None = None,
) -> AsyncIterator[ManyResults[ResultT]]:
    """``run_many`` for a machine of many: its results in completion order."""
    send, receive = anyio.create_memory_object_stream[ResultT](max(1, len(many.unfinished)))

    def dispatch(event: Emitted[EventT] | Finished) -> None:
        if isinstance(event, Finished):
            send.send_nowait(many.result_of(event.index))
        elif on_event is not None:
            on_event(event.index, event.event)

    async def drive_all() -> None:
        with send:
            await drive(many, transport, on_event=dispatch)

    results = ManyResults(receive, many)
    with contextlib.closing(results):  # once the driver is gone (its last replies count)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(drive_all)
            yield results  # (leaving the block by an exception cancels the machines too)
            task_group.cancel_scope.cancel()


# -- the library's probe functions: one target, or one machine a target ------------------


async def run_one(
    transport: Transport,
    machine: ResultMachine[EventT, ResultT],
    *,
    on_event: Callable[[EventT], None] | None = None,
    inbox_size: int = INBOX_SIZE,
) -> ResultT:
    """Drive ``machine`` to its end over ``transport`` (``on_event`` gets its events,
    ``inbox_size`` as ``drive``'s); its result."""
    await drive(machine, transport, on_event=on_event, inbox_size=inbox_size)
    return machine.result()


async def run_all(
    transport: Transport,
    machines: Sequence[Machine[EventT]],
    *,
    on_event: Callable[[int, EventT], None] | None = None,
) -> None:
    """Drive ``machines`` in one driver loop until every one is done; ``on_event`` gets
    ``(index of the machine, event)`` as each emits."""

    def dispatch(event: Emitted[EventT] | Finished) -> None:
        if on_event is not None and isinstance(event, Emitted):
            on_event(event.index, event.event)

    await drive(Multiplex(machines), transport, on_event=None if on_event is None else dispatch)


def by_name(
    names: Sequence[str], on_event: Callable[[str, EventT], None] | None
) -> Callable[[int, EventT], None] | None:
    """``on_event`` for events by machine index: ``on_event(names[index], event)``."""
    if on_event is None:
        return None
    return lambda index, event: on_event(names[index], event)


@asynccontextmanager
async def run_targets(
    transport: Transport,
    factory: Callable[..., ResultMachine[EventT, ResultT]],
    addresses: Sequence[str],
    options: object,
    *,
    targets: Sequence[str] | None = None,
    source: str | None = None,
    on_event: Callable[[str, EventT], None] | None = None,
) -> AsyncIterator[ManyResults[ResultT]]:
    """``run_many`` over a machine a target: ``factory(transport, address, options,
    source=source, target=name)``, ``targets`` naming the addresses as the user typed
    them (the result's ``target``); ``on_event`` gets ``(target, event)``."""
    names = list(targets) if targets is not None else list(addresses)
    machines = [
        factory(transport, address, options, source=source, target=name)
        for address, name in zip(addresses, names, strict=True)
    ]
    async with run_many(transport, machines, on_event=by_name(names, on_event)) as results:
        yield results
