"""The contract between a probe state machine and the driver loop.

Machines are synchronous and never touch a socket or a clock: the driver passes
``now`` (event-loop seconds) in, and takes packets and events out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import MatchKey


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


class Machine(Protocol):
    """What drive() needs from a probe."""

    #: ICMP identifiers routed to this machine as a whole (``register_route(KIND_ECHO, ident)``).
    #: A machine that names any sends only echo probes with these identifiers: the
    #: driver registers no key of its own for them and unregisters nothing.
    echo_idents: tuple[int, ...]

    @property
    def done(self) -> bool: ...

    def poll(self, now: float) -> list[Outgoing]:
        """Packets due at ``now`` (possibly none); also expires what timed out."""
        ...

    def sent(self, key: MatchKey, sent: Sent, now: float) -> None:
        """The packet with ``key`` left (or the network refused it: ``sent.error``)."""
        ...

    def receive(self, reply: Reply, now: float) -> None:
        """A reply for one of this machine's keys arrived."""
        ...

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        """``sent`` for each key and stamp, in order (what the driver calls)."""
        ...

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        """``receive`` for each reply, in order (what the driver calls)."""
        ...

    def next_deadline(self) -> float:
        """When ``poll`` must next be called, in event-loop seconds."""
        ...

    def take_events(self) -> list[object]:
        """Events since the last call (for live output), oldest first."""
        ...

    def take_retired(self) -> list[MatchKey]:
        """Keys no longer awaited (answered or given up), to unregister now; keeps a
        long run's routing table small. Keys never retired are dropped at the end."""
        ...


class MachineOutbox:
    """The two hand-off lists every machine keeps: events for live output and keys
    to unregister. Machines inherit it and append to ``_events`` / ``_retired``."""

    echo_idents: tuple[int, ...] = ()

    def __init__(self) -> None:
        self._events: list[object] = []
        self._retired: list[MatchKey] = []

    def sent(self, key: MatchKey, sent: Sent, now: float) -> None:
        raise NotImplementedError

    def receive(self, reply: Reply, now: float) -> None:
        raise NotImplementedError

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        """One ``sent`` per packet; machines on a hot path override it with a loop."""
        sent = self.sent
        for key, stamp in zip(keys, stamps, strict=True):
            sent(key, stamp, now)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        """One ``receive`` per reply; machines on a hot path override it with a loop."""
        receive = self.receive
        for reply in replies:
            receive(reply, now)

    def take_events(self) -> list[object]:
        events, self._events = self._events, []
        return events

    def take_retired(self) -> list[MatchKey]:
        retired, self._retired = self._retired, []
        return retired
