"""Many machines behind one: one driver loop (one task, one inbox) runs them all.

Why not a task per machine: a thousand ``drive`` tasks make the event loop's ready
queue so long that the socket readers fall behind the replies (measured with
traceroute to a thousand targets), and each task wakes for its own deadlines. One
``Multiplex`` serves ``trace_many_with`` and ``ping_many_with``.

``poll`` visits the machines round-robin, each once per call at most, until ``batch``
packets are due: a trace's next TTL is sent only after every other trace had its turn,
by when the previous TTL's replies (sub-millisecond in a lab, a few ms on a LAN) have
usually been read, so little is sent beyond a destination. Replies go to the machine
that sent their key (or that declared their route); a batch is handed on as one batch
per machine. Events are the machines' own, tagged with the machine's index
(``Emitted``), and ``Finished`` as soon as a machine is done, so results stream out in
completion order.

``run_many`` drives a Multiplex in a task and hands out each machine's result as soon as
it is done (``ManyResults``), and what the unfinished ones found when the caller leaves
early: ``trace_many_with`` is built on it, and so can be any many-target probe whose
machines give a ``result(now)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from rawprobe.probes.drive import drive
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
    """One Machine over ``machines``; done once every one of them is."""

    def __init__(self, machines: Sequence[Machine[EventT]], *, batch: int = 256) -> None:
        super().__init__()
        self.machines = tuple(machines)
        self._active = list(range(len(self.machines)))  # indices, in round-robin order
        self._running = [True] * len(self.machines)  # (a late reply to a done one: dropped)
        # Packets each machine made that have not left yet: a machine is finished only
        # once they did (the driver hands replies over between the slices of a batch,
        # and a reply may make a machine look done before its last packets left).
        self._unsent = [0] * len(self.machines)
        self._cursor = 0
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
        active = self._active
        visited = 0
        while active and visited < len(active) and len(outgoing) < self._batch:
            self._cursor %= len(active)
            index = active[self._cursor]
            visited += 1
            due = self.machines[index].poll(now)
            for item in due:
                self._owner[item.key] = index
                for key in item.extra_keys:
                    self._owner[key] = index
            outgoing += due
            self._unsent[index] += len(due)
            if not self._collect(index):
                self._cursor += 1  # (else removed: the cursor is on the next one)
        return outgoing

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        for index, at in self._by_machine(keys).items():
            self._unsent[index] -= len(at)
            self.machines[index].sent_batch([keys[i] for i in at], [stamps[i] for i in at], now)
            self._collect(index)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        for index, at in self._by_machine([reply.key for reply in replies]).items():
            self.machines[index].receive_batch([replies[i] for i in at], now)
            self._collect(index)

    def _by_machine(self, keys: Sequence[MatchKey]) -> dict[int, list[int]]:
        """Positions in ``keys`` by the running machine each key belongs to."""
        positions: dict[int, list[int]] = {}
        owner, route_owner, running = self._owner, self._route_owner, self._running
        for position, key in enumerate(keys):
            index = owner.get(key)
            if index is None and route_owner:
                index = route_owner.get((key[0], key[2]))
            if index is not None and running[index]:
                positions.setdefault(index, []).append(position)
        return positions

    def next_deadline(self) -> float:
        return min((self.machines[i].next_deadline() for i in self._active), default=math.inf)

    def _collect(self, index: int) -> bool:
        """Move the machine's events and retired keys up; True when it just finished."""
        machine = self.machines[index]
        self._events.extend(Emitted(index, event) for event in machine.take_events())
        for key in machine.take_retired():
            self._owner.pop(key, None)
            self._retired.append(key)
        if self._unsent[index] or not machine.done or not self._running[index]:
            return False
        self._running[index] = False
        position = self._active.index(index)
        del self._active[position]
        if position < self._cursor:
            self._cursor -= 1
        self._events.append(Finished(index))
        return True


# -- many machines, results as they complete -------------------------------------------

ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)


class ResultMachine(Machine[EventT], Protocol[EventT, ResultT_co]):
    """A machine that gives its result: complete once ``done``, as far as it got
    otherwise (``now`` dates an unfinished one)."""

    def result(self, now: float | None = None) -> ResultT_co: ...


class ManyResults(Generic[ResultT]):
    """The async iterator ``run_many`` yields: results in completion order.
    ``remaining()`` gives, once the block was left early (Ctrl-C, a timeout), the results
    not yet taken: finished ones, then the unfinished machines' results as they stood."""

    def __init__(
        self,
        receive: MemoryObjectReceiveStream[ResultT],
        many: Multiplex[Any],
        machines: Sequence[ResultMachine[Any, ResultT]],
    ) -> None:
        self._receive = receive
        self._many = many
        self._machines = machines
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
        return left + [self._machines[i].result(now) for i in self._many.unfinished]

    def close(self) -> None:
        """Keep the finished results nobody took, and close the stream."""
        while True:
            try:
                self._left.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._receive.close()


@asynccontextmanager
async def run_many(
    transport: Transport,
    machines: Sequence[ResultMachine[EventT, ResultT]],
    *,
    on_event: Callable[[int, EventT], None] | None = None,
) -> AsyncIterator[ManyResults[ResultT]]:
    """Run ``machines`` in one driver loop over ``transport``; yields an async iterator
    of their results in completion order::

        async with run_many(transport, machines) as results:
            async for result in results:
                ...

    Leaving the block early cancels the machines still running; after the block,
    ``results.remaining()`` gives what they had found (see ManyResults). ``on_event``
    gets ``(index of the machine, event)`` as each machine emits.
    """
    many = Multiplex(machines)
    send, receive = anyio.create_memory_object_stream[ResultT](max(1, len(machines)))

    def dispatch(event: Emitted[EventT] | Finished) -> None:
        if isinstance(event, Finished):
            send.send_nowait(machines[event.index].result())
        elif on_event is not None:
            on_event(event.index, event.event)

    async def run_all() -> None:
        with send:
            await drive(many, transport, on_event=dispatch)

    results = ManyResults(receive, many, machines)
    with contextlib.closing(results):  # once the driver is gone (its last replies count)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run_all)
            yield results  # (leaving the block by an exception cancels the machines too)
            task_group.cancel_scope.cancel()
