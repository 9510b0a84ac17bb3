"""Host discovery at line speed (like ``fping -g`` / ``nmap -sn``): a pure machine.

The machine walks a permuted TargetSpace lazily and keeps state only for probes in
flight: a dict from match key to (index, attempt, send stamp) and a deque of send
times for expiry. Decided hosts go into a bitmap. Packets come from per-method
templates: fixed header bytes, with the address, the cookie and the checksum filled
in per probe. Timeouts adapt to the RTTs seen (RFC 6298 smoothing), capped by
``timeout_s``; unanswered probes are retried ``retries`` times.

Methods: ``icmp`` (echo), ``tcp-syn PORT`` and ``tcp-ack PORT`` (any TCP answer, or
an ICMP error sent by the host itself, proves it is up), ``udp PORT`` (a port
unreachable from the host or any UDP answer proves it).
"""

from __future__ import annotations

import bisect
import math
import socket
import struct
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import anyio

from rawprobe.errors import RawProbeError, UsageError
from rawprobe.probes.drive import EventCallback, drive
from rawprobe.probes.machine import MachineOutbox, Outgoing
from rawprobe.probes.outage import DEFAULT_BUDGET_S, CanarySends, OutageGuard
from rawprobe.probes.permute import Permutation, check_space
from rawprobe.probes.rtt import RttEstimator
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.base import Reply, Sent, Transport, new_tuple, rtt_s
from rawprobe.transport.keys import (
    KIND_ECHO,
    KIND_TCP,
    KIND_UDP,
    KIND_UDP_DATA,
    Cookies,
    MatchKey,
)
from rawprobe.transport.sockets import ICMP_SOCKETS, TCP_SOCKETS, UDP_SOCKETS
from rawprobe.transport.wire.checksum import internet_checksum, ones_complement_sum

METHODS = ("icmp", "tcp-syn", "tcp-ack", "udp")
_V4: int = socket.AF_INET
_V6: int = socket.AF_INET6
_PROTOCOL = {"icmp": 0, "tcp-syn": 6, "tcp-ack": 6, "udp": 17}
_ECHO_REPLY: dict[int, int] = {_V4: 0, _V6: 129}
_PORT_UNREACHABLE: dict[int, tuple[int, int]] = {_V4: (3, 3), _V6: (1, 4)}
_ICMP_TYPE: dict[int, int] = {_V4: 8, _V6: 128}
_TCP_SYN, _TCP_ACK = 0x02, 0x10
#: Attempt numbers (the echo sequence, a TCP/UDP cookie input): canaries use the last
#: one (probes/outage.py), hosts probed again after outages the ones below it.
_CANARY_ATTEMPT = 63
_LAST_ATTEMPT = _CANARY_ATTEMPT - 1


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
    def socket_protocols(self) -> tuple[tuple[int, int], ...]:
        """The raw sockets this method needs."""
        if self.method == "icmp":
            return ICMP_SOCKETS
        return TCP_SOCKETS if self.method.startswith("tcp") else UDP_SOCKETS


@dataclass(frozen=True, slots=True)
class HostUp:
    """A host answered. ``reason``: echo-reply, syn-ack, reset, port-unreachable..."""

    address: str
    rtt_s: float
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
        if self._offsets is not None and other._offsets is not None:
            if self._offsets and other._offsets:
                self._sorted = False
            elif other._offsets:
                self._sorted = other._sorted
            self._offsets.extend(other._offsets)
            if len(self._offsets) >= self._dense_at:
                self._make_dense()
            return
        if other._bitmap is not None:
            self._make_dense()
            assert self._bitmap is not None
            merged = int.from_bytes(self._bitmap, "little")
            merged |= int.from_bytes(other._bitmap, "little")
            self._bitmap[:] = merged.to_bytes(len(self._bitmap), "little")
            self._count = merged.bit_count()
            return
        self.extend(array("Q", other))

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
        if self._bitmap is not None:
            return
        bitmap = bytearray((self.size + 7) // 8)
        count = 0
        for index in self._offsets or ():
            byte, bit = index >> 3, 1 << (index & 7)
            if not bitmap[byte] & bit:
                bitmap[byte] |= bit
                count += 1
        self._bitmap, self._count, self._offsets = bitmap, count, None


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


class _Template:
    """Packets of one method and family: fixed bytes, per-probe address, cookie and
    checksum. ``echo(dst, attempt)`` returns (key, packet) of an echo request,
    ``probe(dst, attempt)`` (key, packet, extra keys) of a TCP or UDP probe."""

    def __init__(
        self, family: int, options: SweepOptions, source: str, ident: int, cookies: Cookies
    ) -> None:
        self.family = family
        self.method = options.method
        self.port = options.port or 0
        self.ident = ident
        self.sport = 32768 + ident % 28000  # one source port for the whole sweep
        self.cookie = cookies.cookie
        self.source = socket.inet_pton(family, source)
        protocol = _PROTOCOL[self.method] or (1 if family == _V4 else 58)
        self.protocol = protocol
        body_length = {"icmp": 16, "tcp-syn": 20, "tcp-ack": 20, "udp": 16}[self.method]
        if family == _V4:
            # version/IHL, TOS, total length, ID (0: the kernel fills it), flags, TTL,
            # protocol, checksum (the kernel fills it with IP_HDRINCL).
            self.head = struct.pack("!BBHHHBBH", 0x45, 0, 20 + body_length, 0, 0, 64, protocol, 0)
            self.head += self.source
        else:
            self.head = struct.pack("!IHBB", 6 << 28, body_length, protocol, 64) + self.source
        self.body_length = body_length
        self._pseudo_base = ones_complement_sum(self.source) + protocol + body_length
        # Echo requests: the type/code word and the (ident, seq = attempt) words are
        # fixed per attempt; the checksum adds the cookie (and for ICMPv6 the
        # destination) to a precomputed sum (2**16 == 1 mod 0xFFFF: one integer sum).
        self._echo_type = struct.pack("!BB", _ICMP_TYPE[family], 0)
        self._echo_sum = (_ICMP_TYPE[family] << 8) + ident
        if family == _V6:
            self._echo_sum += self._pseudo_base
        self._echo_words = [
            struct.pack("!HH", ident, attempt) for attempt in range(_CANARY_ATTEMPT + 1)
        ]

    def _checksum(self, dst: bytes, body: bytes) -> int:
        return internet_checksum(body, self._pseudo_base + ones_complement_sum(dst))

    def echo(self, dst: bytes, attempt: int) -> tuple[MatchKey, bytes]:
        """An echo request to ``dst`` (seq = attempt) carrying the cookie of its key."""
        key: MatchKey = (KIND_ECHO, dst, self.ident, attempt)
        cookie = self.cookie(key)
        total = self._echo_sum + attempt + int.from_bytes(cookie, "big")
        if self.family == _V6:
            total += int.from_bytes(dst, "big")
        checksum = (0xFFFF - total % 0xFFFF) % 0xFFFF
        packet = b"".join(
            (self.head, dst, self._echo_type, checksum.to_bytes(2, "big"),
             self._echo_words[attempt], cookie)
        )  # fmt: skip
        return key, packet

    def probe(self, dst: bytes, attempt: int) -> tuple[MatchKey, bytes, tuple[MatchKey, ...]]:
        """A TCP or UDP probe to ``dst`` (echo requests come from ``echo``)."""
        method = self.method
        ports = self.sport << 16 | self.port
        secret = int.from_bytes(self.cookie((KIND_TCP, dst, ports, attempt))[:4], "big")
        if method == "udp":
            payload = secret.to_bytes(4, "big") * 2
            body = struct.pack("!HHHH", self.sport, self.port, 16, 0) + payload
            checksum = self._checksum(dst, body) or 0xFFFF
            body = body[:6] + checksum.to_bytes(2, "big") + payload
            extra = ((KIND_UDP_DATA, dst, ports, 0),)
            return (KIND_UDP, dst, ports, checksum), self.head + dst + body, extra
        flags = _TCP_SYN if method == "tcp-syn" else _TCP_ACK
        ack = secret if flags == _TCP_ACK else 0
        body = struct.pack(
            "!HHIIBBHHH", self.sport, self.port, secret, ack, 5 << 4, flags, 1024, 0, 0
        )
        checksum = self._checksum(dst, body)
        body = body[:16] + checksum.to_bytes(2, "big") + body[18:]
        return (KIND_TCP, dst, ports, secret), self.head + dst + body, ()


#: Hosts decided up that the machine buffers before adding them to its IndexSet.
_ALIVE_FLUSH = 4096

#: What the machine keeps per probe in flight: (index, attempt, send stamp or None
#: before the send, previous attempt's key, extra keys).
_Flight = tuple[int, int, Sent | None, MatchKey | None, tuple[MatchKey, ...]]


class SweepMachine(MachineOutbox[object]):
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
        self.space = space
        self.options = options
        self.emit_events = emit_events
        self._order = order
        self._exhausted = False
        # One template per block, from the source address routing picks for it (blocks
        # behind different interfaces get their own); blocks sharing a source share it.
        by_source: dict[str, _Template] = {}
        self._templates: list[_Template] = []
        for block, chosen in zip(space.blocks, block_sources(space, source_for), strict=True):
            if chosen not in by_source:
                by_source[chosen] = _Template(block.family, options, chosen, ident, cookies)
            self._templates.append(by_source[chosen])
        self._single_block = len(space.blocks) == 1
        self._block_firsts = [block.first for block in space.blocks]
        self._block_widths = [block.width for block in space.blocks]
        if options.method == "icmp":
            # One route for every echo reply of this sweep: no key is registered or
            # retired per probe (the cookie still authenticates each reply).
            self.routes = ((KIND_ECHO, ident),)
        # key -> (index, attempt, send stamp, the previous attempt's key): the chain of
        # a host's keys, all retired together once the host is decided.
        self._in_flight: dict[MatchKey, _Flight] = {}
        self._probes: deque[tuple[float, MatchKey]] = deque()  # (sent at, key), in order
        self._retry: deque[tuple[int, int, MatchKey]] = deque()  # (index, attempt, prev key)
        # index -> key of its latest attempt: the hosts in flight. A host drawn from the
        # order and no longer here is decided, so no per-space record of decided hosts.
        self._newest: dict[int, MatchKey] = {}
        self._alive = IndexSet(space.size)
        # Hosts decided up go into an array first (a C append on the hot path), into
        # the set a few thousand at a time (``_flush_alive``).
        self._alive_new = array("Q")
        self._alive_count = 0
        self._dead = 0
        self._sent_count = 0
        # Silence verdicts wait for proof of life (probes/outage.py); None: off.
        budget_s = options.outage_budget_s
        self._guard = OutageGuard[MatchKey, int](budget_s) if budget_s else None
        self._bases: dict[int, int] = {}  # index -> first attempt of its current budget
        self._canary_keys = CanarySends[MatchKey]()  # canaries in flight -> their sends
        self._canary_alias: dict[MatchKey, MatchKey] = {}  # extra key -> canary key
        self._gave_up = False
        super().__init__()
        self._rtt = RttEstimator(options.timeout_s, options.min_timeout_s, options.timeout_s)
        self._started: float | None = None
        self._finished: float | None = None

    # -- machine interface ---------------------------------------------------------

    @property
    def done(self) -> bool:
        return (self._exhausted and not self._in_flight and not self._retry) or self._gave_up

    @property
    def timeout_s(self) -> float:
        """Current per-probe timeout: SRTT + 4 RTTVAR, within [min_timeout_s, timeout_s]."""
        return self._rtt.timeout_s

    def poll(self, now: float) -> list[Outgoing]:
        if self._started is None:
            self._started = now
        self._expire(now)
        out: list[Outgoing] = []
        guard = self._guard
        if guard is not None and (guard.pending or guard.ended):
            self._guard_step(guard, now, out)
            if guard.outage_s is not None or self._gave_up:
                if self.done and self._finished is None:
                    self._finished = now
                return out  # nothing new into an outage
        room = min(self.options.batch, self.options.max_in_flight - len(self._in_flight))
        retry = self._retry
        while retry and len(out) < room:
            index, attempt, previous = retry.popleft()
            if self._is_decided(index):
                continue
            out.append(self._probe(index, attempt, previous))
        if len(self._alive_new) >= _ALIVE_FLUSH:
            self._flush_alive()
        order = self._order
        while not self._exhausted and len(out) < room:
            try:
                index = next(order)
            except StopIteration:
                self._exhausted = True
                break
            out.append(self._probe(index, 0, None))
        if out and guard is not None:
            guard.sending(now)
        if out and guard is not None and guard.quiet(now, self.timeout_s):
            self._canaries(guard, now, out)
        if self.done and self._finished is None:
            self._finished = now
        return out

    def sent(self, key: MatchKey, sent: Sent, now: float) -> None:
        self.sent_batch((key,), (sent,), now)

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        in_flight, probes = self._in_flight, self._probes
        for key, sent in zip(keys, stamps, strict=True):
            entry = in_flight.get(key)
            if entry is None:
                if self._canary_keys and self._canary_keys.left(key, sent[1]):
                    assert self._guard is not None  # (the guard's clock, then the loop's)
                    self._guard.round_left(now)  # a round is timed from when it left
                continue
            if sent[2] is not None:  # the network refused the send (Sent.error)
                self._decide_dead(key, f"send-{sent[2].lower()}")
                continue
            self._sent_count += 1  # counted once it left: an interrupted batch is not
            in_flight[key] = (entry[0], entry[1], sent, entry[3], entry[4])
            probes.append((now, key))

    def receive(self, reply: Reply, now: float) -> None:
        self.receive_batch((reply,), now)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        in_flight, sample = self._in_flight, self._rtt.sample
        guard = self._guard
        proof_s = -math.inf  # the latest send an answer of this batch proves delivered
        heard = False  # a canary answered (even one whose send proves nothing)
        for reply in replies:
            key = reply[0]
            entry = in_flight.get(key)
            if entry is None:
                if self._canary_keys:
                    canary_s = self._canary_keys.answer(self._canary_alias.get(key, key))
                    if canary_s is not None:
                        heard = True
                        proof_s = max(proof_s, canary_s)
                continue  # a late answer for a host already decided
            sent = entry[2]
            rtt = rtt_s(sent, reply) if sent is not None else 0.0
            if sent is not None and sent[1] > proof_s:
                proof_s = sent[1]  # (Sent.monotonic_s: the guard's clock)
            data = reply[3]
            if key[0] == KIND_ECHO and (
                data[0] == 129 if reply[1] == _V6 else data[0] == 0x45 and data[20] == 0
            ):
                reason: str | None = "echo-reply"  # the common case, without a call
            else:
                reason = _reason(reply)
            if reason is None:  # an ICMP error from a router: the host is unreachable
                self._decide_dead(key, _error_reason(reply))
                continue
            sample(rtt)
            if guard is not None:
                guard.recent.append(entry[0])  # a canary if the network goes quiet
            self._decide(key, True)
            if self.emit_events:
                self._events.append(HostUp(self.space.address(entry[0]), rtt, reply.ttl, reason))
        if guard is not None and (heard or proof_s > -math.inf):
            guard.answered(proof_s, now, None)
        if self._finished is None and self.done:
            self._finished = now

    def next_deadline(self) -> float:
        guard = self._guard
        if guard is not None and (guard.pending or guard.ended):
            deadline = guard.next_deadline(self.timeout_s)
            if self._probes:
                deadline = min(deadline, self._probes[0][0] + self.timeout_s)
            if guard.outage_s is not None:
                return deadline  # nothing is sent but canaries
        else:
            deadline = float("inf")
        has_work = self._retry or not self._exhausted
        if has_work and len(self._in_flight) < self.options.max_in_flight:
            return 0.0  # send more as soon as the transport lets us
        if self._probes:
            return min(deadline, self._probes[0][0] + self.timeout_s)
        return deadline if not self.done else 0.0

    # -- results -------------------------------------------------------------------

    def result(self, now: float | None = None) -> SweepResult:
        return merge_outcomes(self.space, [self.outcome(now)])

    def outcome(
        self, now: float | None = None, counters: dict[str, int] | None = None
    ) -> ShardOutcome:
        """This machine's findings as a picklable shard outcome."""
        start = self._started or 0.0
        end = self._finished if self._finished is not None else (now or start)
        return ShardOutcome(
            self._flush_alive().copy(), self._dead, self._sent_count, end - start, counters or {},
            incomplete_reason=self.incomplete_reason,
        )  # fmt: skip

    @property
    def incomplete_reason(self) -> str | None:
        """Why the sweep stopped before deciding every host (None: it did not)."""
        guard = self._guard
        if guard is None or guard.gave_up is None:
            return None
        return f"{guard.gave_up}; stopped after deciding {self.decided_count} hosts"

    @property
    def alive_count(self) -> int:
        return self._alive_count

    @property
    def decided_count(self) -> int:
        """Hosts decided so far (for progress bars)."""
        return self._dead + self.alive_count

    # -- internals -----------------------------------------------------------------

    def _probe(self, index: int, attempt: int, previous: MatchKey | None) -> Outgoing:
        if self._single_block:
            position, offset = 0, index
        else:
            position, offset = self.space.locate(index)
        dst = (self._block_firsts[position] + offset).to_bytes(self._block_widths[position], "big")
        template = self._templates[position]
        if template.method == "icmp":
            key, packet = template.echo(dst, attempt)
            extra: tuple[MatchKey, ...] = ()
        else:
            key, packet, extra = template.probe(dst, attempt)
        flight: _Flight = (index, attempt, None, previous, extra)
        self._in_flight[key] = flight
        self._newest[index] = key  # the head of this host's chain of keys
        for extra_key in extra:  # answers that do not name the attempt (UDP data)
            self._in_flight[extra_key] = flight
        return new_tuple(Outgoing, (key, packet, extra, True))  # type: ignore[no-any-return]

    def _expire(self, now: float) -> None:
        deadline = now - self.timeout_s
        probes, in_flight = self._probes, self._in_flight
        while probes and probes[0][0] <= deadline:
            _sent_at, key = probes.popleft()
            entry = in_flight.get(key)
            if entry is None:
                continue  # answered meanwhile
            index, attempt = entry[0], entry[1]
            if self._is_decided(index):
                continue
            guard = self._guard
            if guard is not None and guard.outage_s is not None:
                guard.hold(_mono(entry), now, key)  # probed again once the outage ends
                continue
            limit = self.options.retries
            if self._bases:
                limit = min(_LAST_ATTEMPT, limit + self._bases.get(index, 0))
            if attempt < limit:
                self._retry.append((index, attempt + 1, key))  # earlier keys stay awaited
            elif guard is not None and guard.recent:
                guard.hold(_mono(entry), now, key)  # down once the network is proven up
            else:
                self._decide_dead(key, "no-response")

    def _guard_step(
        self, guard: OutageGuard[MatchKey, int], now: float, out: list[Outgoing]
    ) -> None:
        """Give the silence verdicts proven, probe again what an outage held, send a
        round of canaries (the hosts that answered last) when proof is overdue."""
        given, again, canaries = guard.poll(now, self.timeout_s)
        in_flight = self._in_flight
        for key in given:
            if key in in_flight and not self._is_decided(in_flight[key][0]):
                self._decide_dead(key, "no-response")
        for key in again:
            entry = in_flight.get(key)
            if entry is None or self._is_decided(entry[0]):
                continue
            index, attempt = entry[0], entry[1]
            if attempt >= _LAST_ATTEMPT:
                self._decide_dead(key, "no-response")
                continue
            self._bases[index] = attempt + 1  # a whole new budget of retries
            self._retry.append((index, attempt + 1, key))
        if guard.gave_up is not None:
            self._gave_up = True
            return
        if canaries:
            self._canaries(guard, now, out)

    def _canaries(self, guard: OutageGuard[MatchKey, int], now: float, out: list[Outgoing]) -> None:
        """A round of canaries: the hosts that answered last, probed again."""
        sent, alias = self._canary_keys, self._canary_alias
        round_keys = set()
        for index in guard.recent:
            outgoing = self._canary(index)
            round_keys.add(outgoing.key)
            sent.expect(outgoing.key)  # (an earlier round's send stays awaited)
            for extra_key in outgoing.extra_keys:  # (a UDP answer's key)
                alias[extra_key] = outgoing.key
            out.append(outgoing)
        stale = [k for k in sent if k not in round_keys]
        stale += [k for k, main in alias.items() if main not in round_keys]
        for key in stale:
            if key in sent:
                sent.drop(key)
            alias.pop(key, None)
            if not self.routes:  # keys routed one by one: unregister stale canaries
                self._retired.append(key)
        guard.sent_round(now)

    def _canary(self, index: int) -> Outgoing:
        """A probe of a host already decided up, under a key no other attempt uses."""
        if self._single_block:
            position, offset = 0, index
        else:
            position, offset = self.space.locate(index)
        dst = (self._block_firsts[position] + offset).to_bytes(self._block_widths[position], "big")
        template = self._templates[position]
        self._sent_count += 1
        if template.method == "icmp":
            key, packet = template.echo(dst, _CANARY_ATTEMPT)
            return Outgoing(key, packet)
        key, packet, extra = template.probe(dst, _CANARY_ATTEMPT)
        return Outgoing(key, packet, extra)

    def _decide_dead(self, key: MatchKey, reason: str) -> None:
        index = self._in_flight[key][0]
        self._decide(key, False)
        self._dead += 1
        if self.emit_events:
            self._events.append(HostDown(self.space.address(index), reason))

    def _decide(self, key: MatchKey, alive: bool) -> None:
        """Mark the host of ``key`` decided and retire the keys of all its attempts."""
        flight = self._in_flight[key]
        index = flight[0]
        if alive:
            self._alive_new.append(index)
            self._alive_count += 1
        in_flight = self._in_flight
        retired = self._retired if not self.routes else None  # no per-key routes
        for extra_key in flight[4]:
            if in_flight.pop(extra_key, None) is not None and retired is not None:
                retired.append(extra_key)
        # Walk the chain from the newest attempt back to the first (the reply may carry
        # an extra key, such as a UDP answer's, that is not in the chain).
        newest: MatchKey | None = self._newest.pop(index, key)
        while newest is not None:
            entry = in_flight.pop(newest, None)
            if entry is None:
                break
            if retired is not None:
                retired.append(newest)
            newest = entry[3]

    def _flush_alive(self) -> IndexSet:
        self._alive.extend(self._alive_new)
        del self._alive_new[:]
        return self._alive

    def _is_decided(self, index: int) -> bool:
        """For an index already drawn from the order: its host is no longer in flight."""
        return index not in self._newest


def block_sources(
    space: TargetSpace, source_for: Callable[[str], str], *, check_only: bool = False
) -> list[str]:
    """The source address of each block of ``space``: routing's pick for its first
    address. A block without a route takes another block's source of its family (its
    sends are then refused, EHOSTUNREACH..., and its hosts decided down with that
    reason); a family without any route raises the first lookup's error.

    ``check_only`` stops at the first route of each family and returns those sources
    only: the same verdict for a few lookups (``check_sweep``).
    """
    sources: list[str | None] = []
    fallback: dict[int, str] = {}
    failure: RawProbeError | None = None
    for block in space.blocks:
        if check_only and block.family in fallback:
            continue
        try:
            source = source_for(space.first_address(block))
        except RawProbeError as exc:
            sources.append(None)
            failure = failure or exc
            continue
        sources.append(source)
        fallback.setdefault(block.family, source)
    if failure is not None and not space.families <= fallback.keys():
        raise failure
    if check_only:
        return list(fallback.values())
    pairs = zip(space.blocks, sources, strict=True)
    return [found or fallback[block.family] for block, found in pairs]


def check_sweep(space: TargetSpace, source_for: Callable[[str], str]) -> None:
    """Raise now (UsageError, ResolutionError) what a sweep of ``space`` would raise
    once started: a space beyond the permutation's limit, a family without a route.
    The CLI calls it before forking workers, so a mistake gives one line, not one
    error per worker."""
    check_space(space.size, "sweep")
    block_sources(space, source_for, check_only=True)


def _mono(entry: _Flight) -> float:
    """The attempt's send stamp on the transport's clock (the outage guard's)."""
    return entry[2][1] if entry[2] is not None else -math.inf


def _set_bits(bitmap: bytes | bytearray) -> Iterator[int]:
    for byte_index, byte in enumerate(bitmap):
        if byte:
            base = byte_index << 3
            for bit in range(8):
                if byte >> bit & 1:
                    yield base + bit


def _reason(reply: Reply) -> str | None:
    """Why ``reply`` proves the host up, or None when it does not (a router's error)."""
    data = reply.data
    if reply.family == _V4:
        offset = (data[0] & 0x0F) * 4
        protocol = data[9]
    else:
        offset, protocol = 0, reply.protocol
    if protocol == 6:
        return "syn-ack" if data[offset + 13] & _TCP_SYN else "reset"
    if protocol == 17:
        return "udp-response"
    icmp_type, code = data[offset], data[offset + 1]
    if icmp_type == _ECHO_REPLY[reply.family]:
        return "echo-reply"
    if (icmp_type, code) == _PORT_UNREACHABLE[reply.family]:
        return "port-unreachable"  # only the host itself says so (from any of its addresses)
    if reply.source_packed == reply.key[1]:
        return "icmp-error"  # the host itself refused: it exists
    return None


def _error_reason(reply: Reply) -> str:
    data = reply.data
    offset = (data[0] & 0x0F) * 4 if reply.family == _V4 else 0
    icmp_type, code = data[offset], data[offset + 1]
    if (reply.family == _V4 and icmp_type == 11) or (reply.family == _V6 and icmp_type == 3):
        return "ttl-exceeded"
    return f"unreachable-from-{reply.source}-code-{code}"


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
    order = iter(Permutation(space.size, seed, shard, shards))
    machine = new_machine(transport, space, order, options, emit_events=on_event is not None)
    await drive(machine, transport, on_event=on_event, inbox_size=2 * options.max_in_flight)
    return machine.result(anyio.current_time())
