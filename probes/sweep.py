"""Host discovery at line speed (like ``fping -g`` / ``nmap -sn``): strategies on the
bulk engine (probes/engine.py).

The engine walks a permuted TargetSpace lazily and keeps state only for probes in
flight; decided hosts go into an IndexSet (memory follows the hosts that answered,
not the space). Timeouts adapt to the RTTs seen (RFC 6298 smoothing, on the kernel's
receive stamps), capped by ``timeout_s``; unanswered probes are retried ``retries``
times. The window is a fixed bound (``max_in_flight``), not congestion control: a
sweep sends one probe per host, as fast as the transport paces it.

Methods: ``icmp`` (echo: every reply on one route, the sweep's identifier),
``tcp-syn PORT`` and ``tcp-ack PORT`` (the scan's SYN and ACK probes; any TCP answer,
or an ICMP error sent by the host itself, proves it is up), ``udp PORT`` (a port
unreachable from the host or any UDP answer proves it). An ICMP error from a router
decides the host down at once, with the router's word for it.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio

from rawprobe.errors import UsageError
from rawprobe.probes.drive import EventCallback, drive
from rawprobe.probes.engine import (
    BulkEngine,
    Decided,
    EchoProbes,
    Pace,
    TcpProbes,
    UdpProbes,
    Verdict,
    permuted_order,
)
from rawprobe.probes.engine import block_sources as block_sources  # (a public name here)
from rawprobe.probes.machine import Outgoing
from rawprobe.probes.outage import DEFAULT_BUDGET_S
from rawprobe.probes.permute import check_space
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.base import (
    EchoAnswer,
    IcmpError,
    Reply,
    TcpAnswer,
    Transport,
    UdpAnswer,
)
from rawprobe.transport.keys import KIND_ECHO, Cookies
from rawprobe.transport.sockets import ICMP_SOCKETS, TCP_SOCKETS, UDP_SOCKETS
from rawprobe.transport.wire import icmp_table

METHODS = ("icmp", "tcp-syn", "tcp-ack", "udp")
_TCP_SYN = 0x02


def batch_for_rate(rate_pps: float) -> int:
    """Probes per batch for a sweep paced at ``rate_pps`` (0: none): about 20 ms of
    sending (16..256), so the machine looks at its answers and timeouts, and the outage
    guard sends its canaries, that often (a 256-probe batch lasts 0.26 s at 1,000/s)."""
    if not rate_pps:
        return 256
    return max(16, min(256, int(rate_pps / 50)))


@dataclass(frozen=True, slots=True)
class SweepOptions:
    """How a sweep probes. ``port`` is required by the TCP and UDP methods."""

    method: str = "icmp"
    port: int | None = None
    retries: int = 1
    timeout_s: float = 1.0
    min_timeout_s: float = 0.05
    batch: int = 256
    max_in_flight: int = 65536
    #: Seconds without any answer after which an outage ends the sweep, incomplete
    #: (probes/outage.py); 0: no outage guard (silence decides at once).
    outage_budget_s: float = DEFAULT_BUDGET_S

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"bad method {self.method!r}: one of {', '.join(METHODS)}")
        if self.method != "icmp" and self.port is None:
            raise UsageError(f"method {self.method} needs a port")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise UsageError(f"bad port {self.port}: must be 1..65535")
        if not 0 <= self.retries <= 10:
            raise UsageError(f"bad retries {self.retries}: must be 0..10")
        if not 0 < self.timeout_s <= 60:
            raise UsageError(f"bad timeout {self.timeout_s}: must be in (0, 60] seconds")
        if not 1 <= self.batch <= 65536 or self.max_in_flight < self.batch:
            raise UsageError("bad batch / in-flight limits")
        if not 0 <= self.outage_budget_s <= 3600:
            raise UsageError(f"bad outage limit {self.outage_budget_s:g}: must be 0..3600 s")

    @property
    def pace(self) -> Pace:
        """The engine's timing: a fixed window of ``max_in_flight``, ``batch`` a poll."""
        return Pace(
            retries=self.retries, max_retries=self.retries, initial_timeout_s=self.timeout_s,
            min_timeout_s=self.min_timeout_s, max_timeout_s=self.timeout_s,
            max_cwnd=self.max_in_flight, adaptive=False, kernel_rtt=True, batch=self.batch,
            outage_budget_s=self.outage_budget_s,
        )  # fmt: skip

    @property
    def socket_protocols(self) -> tuple[tuple[int, int], ...]:
        """The raw sockets this method needs."""
        if self.method == "icmp":
            return ICMP_SOCKETS
        return TCP_SOCKETS if self.method.startswith("tcp") else UDP_SOCKETS


@dataclass(frozen=True, slots=True)
class HostUp:
    """A host answered. ``reason``: echo-reply, syn-ack, reset, port-unreachable...;
    ``rtt_s`` None when the answer's round trip is not known."""

    address: str
    rtt_s: float | None
    ttl: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class HostDown:
    """No answer from the host after every retry (``reason`` names an ICMP error sent
    by a router instead, e.g. host-unreachable)."""

    address: str
    reason: str


#: Below this many members an IndexSet stays a list of offsets, whatever the space.
_SPARSE_MIN = 64


class IndexSet:
    """A set of indices of ``range(size)`` whose memory follows its members: offsets in
    an array (8 bytes each) while they are few, a bitmap (``size / 8`` bytes) once that
    is smaller. A sweep of a /88 (2**40 addresses) thus keeps 8 bytes per host that
    answered, a /16 a bitmap of 8 KiB. Iteration ascends. Picklable (shard outcomes
    travel from the workers through a pipe).
    """

    __slots__ = ("_bitmap", "_count", "_dense_at", "_offsets", "_sorted", "size")

    def __init__(self, size: int, indices: Iterable[int] = ()) -> None:
        self.size = size
        self._offsets: array[int] | None = array("Q")
        self._bitmap: bytearray | None = None
        self._count = 0  # members of the bitmap
        self._sorted = True  # the offsets ascend without repeats
        # The bitmap takes over where the offsets would outgrow it.
        self._dense_at = max(_SPARSE_MIN, size // 64)
        self.extend(array("Q", indices))

    def add(self, index: int) -> None:
        """Add ``index`` (0 <= index < size); adding a member again changes nothing."""
        self.extend(array("Q", (index,)))

    def extend(self, indices: array[int]) -> None:
        """Add every index of ``indices`` (an array of them, in any order)."""
        offsets = self._offsets
        if offsets is not None:
            if len(offsets) + len(indices) > 1:
                self._sorted = False  # sorted once, when read
            offsets.extend(indices)
            if len(offsets) >= self._dense_at:
                self._make_dense()
            return
        bitmap = self._bitmap
        assert bitmap is not None
        count = self._count
        for index in indices:
            byte, bit = index >> 3, 1 << (index & 7)
            if not bitmap[byte] & bit:
                bitmap[byte] |= bit
                count += 1
        self._count = count

    def update(self, other: IndexSet) -> None:
        """Add every member of ``other`` (a set over a space of the same size)."""
        if other.size != self.size:
            raise ValueError(f"index sets of spaces of {self.size} and {other.size}")
        if other._offsets is not None:
            self.extend(other._normalized())
            return
        if other._bitmap is not None:
            self._make_dense()
            assert self._bitmap is not None
            merged = int.from_bytes(self._bitmap, "little")
            merged |= int.from_bytes(other._bitmap, "little")
            self._bitmap[:] = merged.to_bytes(len(self._bitmap), "little")
            self._count = merged.bit_count()

    def copy(self) -> IndexSet:
        clone = IndexSet(self.size)
        clone._offsets = None if self._offsets is None else array("Q", self._offsets)
        clone._bitmap = None if self._bitmap is None else bytearray(self._bitmap)
        clone._count, clone._sorted = self._count, self._sorted
        return clone

    @property
    def is_dense(self) -> bool:
        """True once the members are kept as a bitmap."""
        return self._bitmap is not None

    @property
    def nbytes(self) -> int:
        """Bytes the members take (offsets or bitmap), for tests and documentation."""
        if self._offsets is not None:
            return self._offsets.itemsize * len(self._offsets)
        assert self._bitmap is not None
        return len(self._bitmap)

    def __len__(self) -> int:
        if self._offsets is not None:
            return len(self._normalized())
        return self._count

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int) or not 0 <= index < self.size:
            return False
        if self._offsets is not None:
            offsets = self._normalized()
            position = bisect.bisect_left(offsets, index)
            return position < len(offsets) and offsets[position] == index
        assert self._bitmap is not None
        return bool(self._bitmap[index >> 3] & (1 << (index & 7)))

    def __iter__(self) -> Iterator[int]:
        if self._offsets is not None:
            return iter(self._normalized())
        assert self._bitmap is not None
        return _set_bits(self._bitmap)

    def __repr__(self) -> str:
        kind = "bitmap" if self.is_dense else "offsets"
        return f"IndexSet(size={self.size}, members={len(self)}, {kind})"

    def _normalized(self) -> array[int]:
        """The offsets, sorted and without repeats (done once after unordered adds)."""
        offsets = self._offsets
        assert offsets is not None
        if not self._sorted:
            unique = sorted(set(offsets))
            offsets = self._offsets = array("Q", unique)
            self._sorted = True
        return offsets

    def _make_dense(self) -> None:
        offsets = self._offsets
        if offsets is not None:
            self._offsets, self._bitmap = None, bytearray((self.size + 7) // 8)
            self.extend(offsets)


@dataclass(frozen=True, slots=True)
class SweepResult:
    """The outcome: which indices of ``space`` are up (an IndexSet, so a result's size
    follows the hosts that answered, not the space), counts and timing. Addresses are
    made on demand."""

    space: TargetSpace
    alive_indices: IndexSet
    dead_count: int
    probes_sent: int
    elapsed_s: float
    #: Why the sweep stopped before deciding every host (an outage outlasting its
    #: limit: probes/outage.py); None when it did not give up.
    incomplete_reason: str | None = None

    @property
    def complete(self) -> bool:
        """False when the sweep gave up (``incomplete_reason`` says why)."""
        return self.incomplete_reason is None

    @property
    def targets(self) -> int:
        return self.space.size

    @property
    def alive_count(self) -> int:
        return len(self.alive_indices)

    @property
    def alive(self) -> tuple[str, ...]:
        """Addresses that answered, in the order of the target space."""
        return tuple(self.iter_alive())

    def iter_alive(self) -> Iterator[str]:
        """The same, one at a time (for output of very large sweeps)."""
        return self.space.addresses(iter(self.alive_indices))

    @property
    def rate_pps(self) -> float:
        return self.probes_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ShardOutcome:
    """What one shard (one worker process) found: picklable, merged by
    ``merge_outcomes``. ``alive`` holds the indices that are up."""

    alive: IndexSet
    dead_count: int
    probes_sent: int
    elapsed_s: float
    counters: dict[str, int]
    interrupted: bool = False
    incomplete_reason: str | None = None


def merge_outcomes(space: TargetSpace, outcomes: list[ShardOutcome]) -> SweepResult:
    """One SweepResult from the shards of one sweep (elapsed: the slowest shard)."""
    merged = IndexSet(space.size)
    for outcome in outcomes:
        merged.update(outcome.alive)
    return SweepResult(
        space=space,
        alive_indices=merged,
        dead_count=sum(o.dead_count for o in outcomes),
        probes_sent=sum(o.probes_sent for o in outcomes),
        elapsed_s=max(o.elapsed_s for o in outcomes),
        incomplete_reason=next(
            (o.incomplete_reason for o in outcomes if o.incomplete_reason), None
        ),
    )


_UP_ECHO = Verdict("up", "echo-reply", True, True)
_UP_SYN_ACK = Verdict("up", "syn-ack", True, True)
_UP_RESET = Verdict("up", "reset", True, True)
_UP_UDP = Verdict("up", "udp-response", True, True)
_UP_UNREACHABLE = Verdict("up", "port-unreachable", True, True)
_UP_ERROR = Verdict("up", "icmp-error", True, True)


class _SweepVerdicts:
    """What answers say about a host (shared by every method)."""

    silence = Verdict("down", "no-response")

    def classify(self, answer: Reply) -> Verdict | None:
        if isinstance(answer, EchoAnswer):
            return _UP_ECHO
        if isinstance(answer, TcpAnswer):
            return _UP_SYN_ACK if answer.flags & _TCP_SYN else _UP_RESET
        if not isinstance(answer, IcmpError):
            return _UP_UDP if isinstance(answer, UdpAnswer) else None
        family, icmp_type, code = answer.family, answer.icmp_type, answer.code
        word = icmp_table.alive_reason(family, icmp_type, code, answer.from_target)
        if word is not None:
            return _UP_UNREACHABLE if word == "port-unreachable" else _UP_ERROR
        return Verdict("down", icmp_table.dead_reason(family, icmp_type, code, answer.source))

    def refused(self, errno: str) -> Verdict:
        return Verdict("down", f"send-{errno.lower()}")


class _EchoSweep(_SweepVerdicts, EchoProbes):
    fixed: ClassVar[Mapping[type, Verdict]] = {EchoAnswer: _UP_ECHO}


class _TcpSweep(_SweepVerdicts, TcpProbes):
    pass


class _TcpAckSweep(_TcpSweep):
    ack = True


class _UdpSweep(_SweepVerdicts, UdpProbes):
    fixed: ClassVar[Mapping[type, Verdict]] = {UdpAnswer: _UP_UDP}


def _strategy(
    space: TargetSpace, options: SweepOptions, sources: list[str], ident: int, cookies: Cookies
) -> Any:
    if options.method == "icmp":
        return _EchoSweep(space, sources, cookies, ident)
    port, sport = options.port or 0, 32768 + ident % 28000  # one source port a sweep
    if options.method == "udp":
        return _UdpSweep(space, (port,), sources, cookies, sport=sport)
    kind = _TcpAckSweep if options.method == "tcp-ack" else _TcpSweep
    return kind(space, (port,), sources, cookies, sport=sport)


#: Hosts decided up that the machine buffers before adding them to its IndexSet.
_ALIVE_FLUSH = 4096


class SweepMachine(BulkEngine[HostUp | HostDown]):
    """Probe every index of ``order`` once (plus retries) and decide each host."""

    def __init__(
        self,
        space: TargetSpace,
        order: Iterator[int],
        options: SweepOptions,
        *,
        source_for: Callable[[str], str],
        ident: int,
        cookies: Cookies,
        emit_events: bool = False,
    ) -> None:
        self.options = options
        self.emit_events = emit_events
        # One template per distinct source routing picks for the blocks (blocks behind
        # different interfaces get their own).
        sources = block_sources(space, source_for)
        strategy = _strategy(space, options, sources, ident, cookies)
        super().__init__(space, 1, order, strategy, options.pace)
        if options.method == "icmp":
            # One route for every echo reply of this sweep: no key is registered or
            # retired per probe (the cookie still authenticates each reply).
            self.routes = ((KIND_ECHO, ident),)
            self._retire = False
        self._alive = IndexSet(space.size)
        # Hosts decided up go into an array first (a C append on the hot path), into
        # the set a few thousand at a time (``_flush_alive``).
        self._alive_new = array("Q")
        self._alive_flushed = 0  # hosts up moved into the set
        if not emit_events:
            self._up = self._alive_new  # (the engine appends them without a call)
        self._dead = 0

    def poll(self, now: float) -> list[Outgoing]:
        if len(self._alive_new) >= _ALIVE_FLUSH:
            self._flush_alive()
        return super().poll(now)

    # -- results -------------------------------------------------------------------

    def result(self, now: float | None = None) -> SweepResult:
        return merge_outcomes(self.space, [self.outcome(now)])

    def outcome(
        self, now: float | None = None, counters: dict[str, int] | None = None
    ) -> ShardOutcome:
        """This machine's findings as a picklable shard outcome."""
        start, finished = self.elapsed_span
        end = finished if finished is not None else (now or start)
        return ShardOutcome(
            self._flush_alive().copy(), self._dead, self.sent_count, end - start, counters or {},
            incomplete_reason=self.incomplete_reason,
        )  # fmt: skip

    @property
    def incomplete_reason(self) -> str | None:
        """Why the sweep stopped before deciding every host (None: it did not)."""
        if self.gave_up is None:
            return None
        return f"{self.gave_up}; stopped after deciding {self.decided_count} hosts"

    @property
    def alive_count(self) -> int:
        return self._alive_flushed + len(self._alive_new)

    @property
    def decided_count(self) -> int:
        """Hosts decided so far (for progress bars)."""
        return self._dead + self.alive_count

    # -- tallies -------------------------------------------------------------------

    def _tally(self, decided: Decided) -> None:
        verdict = decided.verdict
        if verdict.from_host:  # up
            self._alive_new.append(decided.item)
            if self.emit_events:
                answer = decided.answer
                ttl = answer.ttl if answer is not None else None
                address = self.space.address(decided.item)
                self._events.append(HostUp(address, decided.rtt_s, ttl, verdict.reason))
            return
        self._dead += 1
        if self.emit_events:
            self._events.append(HostDown(self.space.address(decided.item), verdict.reason))

    def _flush_alive(self) -> IndexSet:
        self._alive_flushed += len(self._alive_new)
        self._alive.extend(self._alive_new)
        del self._alive_new[:]
        return self._alive


def check_sweep(space: TargetSpace, source_for: Callable[[str], str]) -> None:
    """Raise now (UsageError, ResolutionError) what a sweep of ``space`` would raise
    once started: a space beyond the permutation's limit, a family without a route.
    The CLI calls it before forking workers, so a mistake gives one line, not one
    error per worker."""
    check_space(space.size, "sweep")
    block_sources(space, source_for, check_only=True)


def _set_bits(bitmap: bytes | bytearray) -> Iterator[int]:
    for byte_index, byte in enumerate(bitmap):
        if byte:
            base = byte_index << 3
            for bit in range(8):
                if byte >> bit & 1:
                    yield base + bit


def new_machine(
    transport: Transport,
    space: TargetSpace,
    order: Iterator[int],
    options: SweepOptions,
    *,
    emit_events: bool = False,
) -> SweepMachine:
    """A SweepMachine wired to ``transport``'s routing, identifier and cookies."""
    return SweepMachine(
        space,
        order,
        options,
        source_for=transport.source_for,
        ident=transport.cookies.new_ident(),
        cookies=transport.cookies,
        emit_events=emit_events,
    )


async def sweep_with(
    transport: Transport,
    space: TargetSpace,
    options: SweepOptions | None = None,
    *,
    seed: int | None = None,
    shard: int = 0,
    shards: int = 1,
    on_event: EventCallback | None = None,
) -> SweepResult:
    """Sweep ``space`` over ``transport`` (opened with ``options.socket_protocols``).

    ``seed`` fixes the random order; shard ``shard`` of ``shards`` probes its share of
    that order only, so N processes with one seed cover the space exactly once.
    ``on_event`` receives a HostUp or HostDown for every host as it is decided.
    """
    options = options or SweepOptions()
    order = permuted_order(space.size, seed, shard, shards)
    machine = new_machine(transport, space, order, options, emit_events=on_event is not None)
    await drive(machine, transport, on_event=on_event, inbox_size=2 * options.max_in_flight)
    return machine.result(anyio.current_time())
