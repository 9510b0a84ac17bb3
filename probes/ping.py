"""ICMP echo (ping) over IPv4 and IPv6: a pure state machine plus async functions."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rawprobe.errors import UsageError
from rawprobe.probes.machine import MachineOutbox, Outgoing
from rawprobe.probes.multiplex import by_name, run_all, run_one
from rawprobe.probes.ping_models import PingError, PingReply, PingResult, PingStats
from rawprobe.transport.base import EchoAnswer, IcmpError, Reply, Sent, Transport, measured_rtt
from rawprobe.transport.keys import KIND_ECHO, Cookies, MatchKey
from rawprobe.transport.sockets import PROTO_ICMP, PROTO_ICMPV6
from rawprobe.transport.wire.icmp import build_echo
from rawprobe.transport.wire.icmp_table import describe
from rawprobe.transport.wire.icmpv6 import build_echo6
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.ipv6 import IPv6Header, build_ipv6

_MAX_PAYLOAD = {socket.AF_INET: 65507, socket.AF_INET6: 65487}
#: Answered probes whose state is kept to recognise duplicates (iputils keeps a 64K-bit
#: window): the last 2,048 probes, 34 minutes at the default interval. Older state
#: goes, so an endless ping's memory stays flat.
_DUPLICATE_WINDOW = 2048


@dataclass(frozen=True, slots=True)
class PingOptions:
    """What one ping does; validated on construction (UsageError on nonsense).

    ``count=None`` pings until cancelled. ``timeout_s`` is how long each probe waits
    for its reply; the ping ends once every probe is answered or has timed out.

    ``keep_records``: how many reply and error records the result keeps (the most
    recent). None keeps every record of a ping with a count and none of an endless
    one, so an endless ping runs in constant memory; the statistics (PingStats)
    always cover every reply.
    """

    count: int | None = 4
    interval_s: float = 1.0
    timeout_s: float = 2.0
    payload_size: int = 56
    ttl: int = 64
    tos: int = 0
    keep_records: int | None = None

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 1:
            raise UsageError(f"bad count {self.count}: must be at least 1")
        if not (self.interval_s >= 0 and self.interval_s < 1e6):
            raise UsageError(f"bad interval {self.interval_s}: must be >= 0 seconds")
        if not (self.timeout_s > 0 and self.timeout_s < 1e6):
            raise UsageError(f"bad timeout {self.timeout_s}: must be > 0 seconds")
        if not 0 <= self.payload_size <= _MAX_PAYLOAD[socket.AF_INET6]:
            raise UsageError(f"bad packet size {self.payload_size}: must be 0..65487")
        if not 1 <= self.ttl <= 255:
            raise UsageError(f"bad ttl {self.ttl}: must be 1..255")
        if not 0 <= self.tos <= 255:
            raise UsageError(f"bad tos {self.tos}: must be 0..255")
        if self.keep_records is not None and self.keep_records < 0:
            raise UsageError(f"bad keep_records {self.keep_records}: must be >= 0")

    @property
    def records_limit(self) -> int | None:
        """Records kept: None for all (see ``keep_records``)."""
        if self.keep_records is not None:
            return self.keep_records
        return None if self.count is not None else 0


#: What a PingMachine emits: each reply or error as it arrives.
PingEvent = PingReply | PingError


class PingMachine(MachineOutbox[PingEvent]):
    """Echo requests to one address at a fixed interval; collects replies and errors.

    Pure: packets come out of ``poll(now)``, replies go into ``receive_batch``. Sequence
    numbers count from 1 like iputils and wrap at 16 bits on the wire.
    """

    def __init__(
        self,
        address: str,
        *,
        source: str,
        ident: int,
        cookies: Cookies,
        options: PingOptions,
    ) -> None:
        super().__init__()  # keys are never retired: late duplicates are still reported
        self.address = address
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if options.payload_size > _MAX_PAYLOAD[self.family]:
            raise UsageError(f"bad packet size {options.payload_size} for IPv4: max 65507")
        self.source = source
        self.ident = ident
        self.options = options
        self._cookies = cookies
        # Under 8 payload bytes the cookie does not fit: replies match by key alone.
        self._authenticated = options.payload_size >= Cookies.COOKIE_BYTES
        self._remote = socket.inet_pton(self.family, address)
        self._transmitted = 0
        self._left = 0  # requests that left (a cancelled send is not transmitted)
        self._next_send: float | None = None
        self._started: float | None = None
        self._finished: float | None = None
        self._seq_of: dict[int, int] = {}  # wire seq -> seq (wire seqs wrap at 16 bits)
        self._sent: dict[int, Sent] = {}  # wire seq -> send stamp
        self._expiry: dict[int, float] = {}  # wire seq -> when we stop waiting
        self._answered: set[int] = set()
        # The records kept (the most recent, up to the limit); statistics cover all.
        limit = options.records_limit
        self._replies: deque[PingReply] = deque(maxlen=limit)
        self._errors: deque[PingError] = deque(maxlen=limit)
        self._stats = PingStats()

    # -- machine interface ---------------------------------------------------------

    @property
    def done(self) -> bool:
        # (every request made has left: the driver may hand over replies in between)
        return self._all_sent() and not self._expiry and self._left >= self._transmitted

    def poll(self, now: float) -> list[Outgoing]:
        if self._started is None:
            self._started = now
            self._next_send = now
        for wire_seq, expiry in list(self._expiry.items()):
            if expiry <= now:
                del self._expiry[wire_seq]
                if wire_seq not in self._answered:
                    self._forget(wire_seq)  # unanswered and given up: nothing to match
        if self._all_sent() or self._next_send is None or now < self._next_send:
            self._note_finish(now)
            return []
        self._transmitted += 1
        seq = self._transmitted
        # Keep the schedule, but never burst to catch up after a stall.
        self._next_send += self.options.interval_s
        if self._next_send <= now:
            self._next_send = now + self.options.interval_s
        return [self._packet(seq)]

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        for key, sent in zip(keys, stamps, strict=True):
            wire_seq = key[3]
            self._sent[wire_seq] = sent
            self._left += 1
            if sent.error is not None:
                error = PingError(self._seq_of[wire_seq], self.source, f"sendto: {sent.error}")
                self._errors.append(error)
                self._stats = self._stats.with_error()
                self._events.append(error)
            else:
                self._expiry[wire_seq] = now + self.options.timeout_s
        self._note_finish(now)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        for reply in replies:
            wire_seq = reply.key[3]
            sent = self._sent.get(wire_seq)
            if sent is None:
                continue
            if wire_seq not in self._expiry and wire_seq not in self._answered:
                continue  # later than -W: the probe was given up (duplicates still count)
            seq = self._seq_of[wire_seq]
            event: PingEvent
            if isinstance(reply, EchoAnswer):
                duplicate = wire_seq in self._answered
                self._answered.add(wire_seq)
                rtt, stamped = measured_rtt(sent, reply)
                event = PingReply(seq, reply.source, rtt, reply.ttl, reply.size, duplicate, stamped)
                self._replies.append(event)
                self._stats = self._stats.with_reply(rtt, duplicate, stamped)
            elif isinstance(reply, IcmpError):
                reason = describe(self.family, reply.icmp_type, reply.code)
                event = PingError(seq, reply.source, reason, reply.icmp_type, reply.code)
                self._errors.append(event)
                self._stats = self._stats.with_error()
            else:
                continue  # (too short to type: the demux never delivers one)
            self._expiry.pop(wire_seq, None)
            self._events.append(event)
        self._note_finish(now)

    def next_deadline(self) -> float:
        candidates = list(self._expiry.values())
        if not self._all_sent() and self._next_send is not None:
            candidates.append(self._next_send)
        return min(candidates) if candidates else float("inf")

    # -- results -------------------------------------------------------------------

    def result(self, now: float | None = None) -> PingResult:
        """The result so far (complete once ``done``); ``now`` dates an unfinished one."""
        start = self._started if self._started is not None else 0.0
        end = self._finished if self._finished is not None else (now or start)
        return PingResult(
            address=self.address,
            transmitted=self._left,
            replies=tuple(self._replies),
            errors=tuple(self._errors),
            elapsed_s=max(0.0, end - start),
            payload_size=self.options.payload_size,
            stats=self._stats,
        )

    # -- internals -----------------------------------------------------------------

    def _all_sent(self) -> bool:
        count = self.options.count
        return count is not None and self._transmitted >= count

    def _note_finish(self, now: float) -> None:
        if self._finished is None and self.done:
            self._finished = now

    def _forget(self, wire_seq: int) -> None:
        self._seq_of.pop(wire_seq, None)
        self._sent.pop(wire_seq, None)
        self._answered.discard(wire_seq)

    def _packet(self, seq: int) -> Outgoing:
        wire_seq = seq & 0xFFFF
        if seq > _DUPLICATE_WINDOW:
            old = (seq - _DUPLICATE_WINDOW) & 0xFFFF
            if old not in self._expiry:  # still awaited: forgotten when it expires
                self._forget(old)
        key: MatchKey = (KIND_ECHO, self._remote, self.ident, wire_seq)
        payload = self._cookies.echo_payload(key, self.options.payload_size)
        self._seq_of[wire_seq] = seq
        self._sent.pop(wire_seq, None)
        self._answered.discard(wire_seq)
        src, dst, ttl, tos = self.source, self.address, self.options.ttl, self.options.tos
        if self.family == socket.AF_INET:
            ip = IPv4Header(src=src, dst=dst, protocol=1, ttl=ttl, tos=tos)
            packet = build_ipv4(ip, build_echo(self.ident, wire_seq, payload))
        else:
            ip6 = IPv6Header(src=src, dst=dst, next_header=58, hop_limit=ttl, traffic_class=tos)
            packet = build_ipv6(ip6, build_echo6(self.ident, wire_seq, payload, src=src, dst=dst))
        return Outgoing(key, packet, (), self._authenticated)


async def ping_with(
    transport: Transport,
    address: str,
    options: PingOptions | None = None,
    *,
    source: str | None = None,
    on_event: Callable[[PingEvent], None] | None = None,
) -> PingResult:
    """Ping one literal address over an open transport; results, never network errors.

    Cancelling (e.g. ``anyio.move_on_after``) propagates; to keep a partial result
    across cancellation use ``PingMachine`` with ``drive`` directly.
    """
    machine = new_machine(transport, address, options or PingOptions(), source=source)
    return await run_one(transport, machine, on_event=on_event)


def new_machine(
    transport: Transport, address: str, options: PingOptions, *, source: str | None = None
) -> PingMachine:
    """A PingMachine wired to ``transport``'s cookies and a fresh identifier."""
    return PingMachine(
        address,
        source=source or transport.source_for(address),
        ident=transport.cookies.new_ident(),
        cookies=transport.cookies,
        options=options,
    )


async def ping_many_with(
    transport: Transport,
    addresses: Sequence[str],
    options: PingOptions | None = None,
    *,
    source: str | None = None,
    on_event: Callable[[str, PingEvent], None] | None = None,
) -> list[PingResult]:
    """Ping every address concurrently over one transport (one driver loop: see
    probes/multiplex.py); results in input order."""
    options = options or PingOptions()
    machines = [new_machine(transport, a, options, source=source) for a in addresses]
    await run_all(transport, machines, on_event=by_name(addresses, on_event))
    return [machine.result() for machine in machines]


def ping_protocols(addresses: Sequence[str]) -> list[tuple[int, int]]:
    """The raw sockets pinging ``addresses`` needs (no IPv6 socket for IPv4-only)."""
    protocols: list[tuple[int, int]] = []
    if any(":" not in address for address in addresses):
        protocols.append((socket.AF_INET, PROTO_ICMP))
    if any(":" in address for address in addresses):
        protocols.append((socket.AF_INET6, PROTO_ICMPV6))
    return protocols
