"""The contract between a probe state machine and the driver loop.

Machines are synchronous and never touch a socket or a clock: the driver passes
``now`` (event-loop seconds) in, and takes packets and events out.

Design choices (issue 12): callbacks are batch-only (``sent_batch``/``receive_batch``:
the driver always has a batch, and a machine on a hot path loops once); events are
typed (``Machine`` is generic in the event type it emits); a machine routes its replies
either key by key (the driver registers each Outgoing's keys) or by the wide ``routes``
it declares (one ``register_route`` for, e.g., every echo reply of a sweep's
identifier), so the driver needs no knowledge of a probe's kind.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Generic, NamedTuple, Protocol, TypeVar

from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import MatchKey

EventT = TypeVar("EventT")

#: ``(key kind, key[2])``: every key of that kind and third field (an echo identifier)
#: is routed to the machine that declares it (``Transport.register_route``).
Route = tuple[int, int]


class Outgoing(NamedTuple):
    """A packet to send, and the key its replies will carry.

    ``extra_keys`` are further keys replies may carry (a UDP probe is answered by an
    ICMP error keyed by its checksum, or by a datagram keyed by its ports). A
    NamedTuple: sweeps and scans make one per packet.
    """

    key: MatchKey
    packet: bytes
    extra_keys: tuple[MatchKey, ...] = ()
    #: False when the packet cannot carry a whole cookie (an echo payload under 8
    #: bytes): its replies are then matched by key alone.
    authenticated: bool = True


class Machine(Protocol[EventT]):
    """What drive() needs from a probe."""

    #: Wide routes (see ``Route``): keys they cover are not registered one by one, and
    #: the machine receives every authenticated reply under them (also ones for keys it
    #: no longer awaits, which it ignores). ``()``: every key is registered.
    routes: tuple[Route, ...]

    @property
    def done(self) -> bool: ...

    def poll(self, now: float) -> list[Outgoing]:
        """Packets due at ``now`` (possibly none); also expires what timed out."""
        ...

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        """The packets with ``keys`` left, in order (or the network refused one:
        its ``stamp.error``)."""
        ...

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        """Replies for this machine's keys (or routes) arrived, in order."""
        ...

    def next_deadline(self) -> float:
        """When ``poll`` must next be called, in event-loop seconds."""
        ...

    def take_events(self) -> list[EventT]:
        """Events since the last call (for live output), oldest first."""
        ...

    def take_retired(self) -> list[MatchKey]:
        """Keys no longer awaited (answered or given up), to unregister now; keeps a
        long run's routing table small. Keys never retired are dropped at the end."""
        ...


class MachineOutbox(Generic[EventT]):
    """The two hand-off lists every machine keeps: events for live output and keys
    to unregister. Machines inherit it and append to ``_events`` / ``_retired``."""

    routes: tuple[Route, ...] = ()

    def __init__(self) -> None:
        self._events: list[EventT] = []
        self._retired: list[MatchKey] = []

    def take_events(self) -> list[EventT]:
        events, self._events = self._events, []
        return events

    def take_retired(self) -> list[MatchKey]:
        retired, self._retired = self._retired, []
        return retired


class TargetMachine(MachineOutbox[EventT]):
    """A MachineOutbox that probes one literal ``address``: ``target`` names it as the
    user typed it (the address when None), ``family`` is its address family and
    ``source`` our address towards it (path MTU and MDA traces)."""

    def __init__(self, address: str, source: str, target: str | None) -> None:
        super().__init__()
        self.address = address
        self.target = target or address
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.source = source
