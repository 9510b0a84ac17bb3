"""The one bulk engine: many independent probes, each a strategy over one machine.

Scan (SYN, ACK), sweep (every method) and the UDP scan send many independent probes
to the (host, port) pairs of a TargetSpace. What they share lives here, once:

- **The order**: a lazily generated random permutation of ``hosts x ports``
  (probes/permute.py: zmap's cyclic group, one integer of state), or one shard of it
  (``seed``, ``shard``, ``shards``: N processes with one seed cover the space once).
  An *item* is an index of that space: ``host * len(ports) + port_index``.
- **In-flight records**: one small record per item in flight, reachable from every
  match key its tries and answers may carry; a deque of send times for expiry; a
  deque of items to send again (and, for strategies that need it, a second one for
  tries that must wait out a gap: a host answers a repeated SYN at most once per
  500 ms). Keys of an item retire together once it is decided. Nothing is kept for
  items decided or not yet drawn.
- **Timing** (nmap's scan_engine, simplified): RFC 6298 smoothing of the RTT
  (``RttEstimator``, sampled on first tries only: Karn) gives the timeout; an
  unanswered probe is sent again up to ``retries`` times, and up to ``max_retries``
  once retransmissions are seen to be answered (evidence of loss).
- **Congestion**: a window bounds the probes in flight. It grows by one per answer
  or timeout (slow start), then by about 1/8 per window; an answer to a
  retransmission is loss and halves it, and a queueing delay (RTT above each host's
  least) above a target holds it, twice the target shrinks it, once per window. A
  strategy may run with a fixed window instead (the sweep: a bound that never moves).
  ``min_rate_pps`` floors the send rate whatever the window says.
- **One rate limiter: the transport's.** The engine never emits more than the window
  (and the batch) allows; the transport paces the sends (drive() sends a poll's
  packets in ~10 ms slices, handing answers back in between).
- **Silence needs proof of life** (probes/outage.py): a silent item is decided only
  once an answered send stands beside its last try; canaries (the items that
  answered last, probed again) supply the proof when answers are rare; an outage
  holds every silent item and gives it a fresh budget of retries when it ends.
- **Sources**: routing is asked once per target block (``block_sources``).
- **Packets** come from templates per (family, source): fixed header bytes,
  the constant part of the checksum precomputed, address, port, cookie and checksum
  added per probe (``TcpProbes``, ``EchoProbes``, ``UdpProbes``).

A probe is a ``Strategy``: ``probe(target, port_index, attempt)`` gives the
Outgoing (key, packet, extra keys) -- the probe builders above are strategies' usual
parents; ``classify(answer)`` gives a ``Verdict`` (state, reason, whether the host
itself answered, whether the item may serve as a canary) or None when the answer
says nothing; ``silence`` is the verdict of an item never answered, and
``refused(errno)`` the verdict of a send the network refused. The machine that
owns the strategy keeps the tallies (``_tally``): ScanMachine per-host counts and
PortResults, SweepMachine an IndexSet of hosts up and HostUp/HostDown events.

Hot path: a record is a list (a tenth of a slotted object's cost to make), indexed
by the constants below inside this module only; the builders' ``make`` is ``probe``
with the Target's fields as arguments (a Target tuple per probe cost the sweep more
than the rest of the engine's work for it: callgrind, bench/engine_cost.py), and
their templates are tuples unpacked per probe; Outgoing tuples are made with
``new_tuple``; answers are handled in batches with one guard update per batch.
"""

from __future__ import annotations

import math
import socket
import struct
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, ClassVar, Generic, NamedTuple, Protocol

from rawprobe.errors import RawProbeError, UsageError
from rawprobe.probes.machine import EventT, MachineOutbox, Outgoing
from rawprobe.probes.outage import DEFAULT_BUDGET_S, CanarySends, OutageGuard
from rawprobe.probes.permute import Permutation
from rawprobe.probes.rtt import RttEstimator
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.base import Reply, Sent, measured_rtt, new_tuple
from rawprobe.transport.keys import KIND_ECHO, KIND_TCP, KIND_UDP, KIND_UDP_DATA, Cookies, MatchKey
from rawprobe.transport.sockets import PROTO_TCP, PROTO_UDP
from rawprobe.transport.wire.checksum import ones_complement_sum

_V4 = socket.AF_INET
_V6 = socket.AF_INET6
#: The attempt number (echo sequence, cookie input) of canaries; tries stay below it.
CANARY_ATTEMPT = 63
#: The attempt number of witnesses (see ``Pace.limit_gap_s``).
WITNESS_ATTEMPT = 62
#: Tries of one item at most, outages' fresh budgets of retries included.
MAX_TRIES = 60
#: Items a host answered rate-limited kept as its witnesses (see ``Pace.limit_gap_s``).
_WITNESSES = 32
#: Hosts whose least RTT is remembered for the queueing-delay estimate.
_BASE_RTT_CACHE = 4096


class Verdict(NamedTuple):
    """What an answer (or silence) says about an item: ``state`` and ``reason`` (the
    strategy's words), ``from_host`` (the probed host itself answered: it is up) and
    ``canary`` (the item may be probed again as proof of life: its answers are not
    rate-limited ICMP errors)."""

    state: str
    reason: str
    from_host: bool = False
    canary: bool = False


class Target(NamedTuple):
    """Where a probe goes: the block's position in the space (its source and
    template), the address packed and as an integer (checksums add it)."""

    position: int
    packed: bytes
    value: int


class Decided(NamedTuple):
    """A decision, handed to the machine's tallies: the ``item``, its latest try's
    ``key``, the ``verdict``, how many ``tries`` it took, the ``answer`` that
    decided it (None: silence, a refused send) and its round-trip time."""

    item: int
    key: MatchKey
    verdict: Verdict
    tries: int
    answer: Reply | None
    rtt_s: float | None


class Strategy(Protocol):
    """What a bulk probe supplies to the engine (see the module docstring)."""

    silence: Verdict
    #: Verdicts that follow from an answer's type alone (found without a call).
    fixed: Mapping[type, Verdict]

    def probe(self, target: Target, port_index: int, attempt: int) -> Outgoing: ...

    def classify(self, answer: Reply) -> Verdict | None: ...

    def refused(self, errno: str) -> Verdict: ...


@dataclass(frozen=True, slots=True)
class Pace:
    """How the engine times, retries and bounds its probes (made by the probes from
    their options). ``adaptive`` False keeps the window at ``max_cwnd`` (a bound,
    not congestion control); ``kernel_rtt`` samples the kernel's receive stamp
    instead of the event loop's clock (which counts our own receive backlog, so a
    timeout never fires for a reply merely waiting to be read); ``retry_gap_s``
    spaces third and later tries; ``batch`` caps the probes of one poll."""

    retries: int = 1
    max_retries: int = 1
    initial_timeout_s: float = 1.0
    min_timeout_s: float = 0.1
    max_timeout_s: float = 3.0
    initial_cwnd: int = 64
    max_cwnd: int = 4096
    adaptive: bool = True
    kernel_rtt: bool = False
    min_rate_pps: float = 0.0
    batch: int = 1 << 30
    retry_gap_s: float = 0.0
    outage_budget_s: float = DEFAULT_BUDGET_S
    #: A target that rate-limits its answers (Linux: ICMP errors, a burst of 6, then
    #: one a second). Every retry of an item goes out with a *witness*: the probe of
    #: an item its host answered with a rate-limited answer (a closed port), sent
    #: right after it. An answered witness shows the host had a token to answer the
    #: try with, so the item's silence is its own (a dropped port); a silent item
    #: whose witnesses all went unanswered is evidence of the limit. From then on,
    #: probe ONE item at a time, the next this long after a rate-limited answer (at
    #: once after a timeout), every undecided item with a fresh budget of retries: a
    #: try is then silent only with a token to spare. 0: off.
    limit_gap_s: float = 0.0


def permuted_order(
    total: int, seed: int | None, shard: int = 0, shards: int = 1, randomize: bool = True
) -> Iterator[int]:
    """Shard ``shard`` of ``shards`` of a random order of ``range(total)`` (from
    ``seed``), or of the plain order when not ``randomize``."""
    if randomize and total > 1:
        return iter(Permutation(total, seed, shard, shards))
    if not 0 <= shard < shards:
        raise UsageError(f"bad shard {shard}/{shards}: need 0 <= I < N")
    return iter(range(shard, total, shards))


def source_lookup(source: str | None, route: Callable[[str], str]) -> Callable[[str], str]:
    """Our source towards an address: ``source`` (-S) when given, which must be of
    the address's family, else routing's pick (``route``)."""

    def source_for(address: str) -> str:
        if source is not None:
            if (":" in source) != (":" in address):
                raise UsageError(f"source address {source} is not of {address}'s family")
            return source
        return route(address)

    return source_for


def block_sources(
    space: TargetSpace, source_for: Callable[[str], str], *, check_only: bool = False
) -> list[str]:
    """The source address of each block of ``space``: routing's pick for its first
    address. A block without a route takes another block's source of its family (its
    sends are then refused, EHOSTUNREACH..., and its items decided with that reason);
    a family without any route raises the first lookup's error.

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


# -- packet templates ------------------------------------------------------------------

_IP4 = struct.Struct("!BBHHHBBH")  # then source and destination
_IP6 = struct.Struct("!IHBB")  # then source and destination
_TCP_MSS = struct.Struct("!HHIIBBHHHHH")  # the TCP header and the MSS option
_UDP = struct.Struct("!HHHH")
_U32 = struct.Struct("!I")
_SYN, _ACK = 0x02, 0x10
_TCP_WINDOW = 1024  # nmap's SYN probe window
_MSS_OPTION = (2 << 8 | 4, 1460)  # kind 2, length 4, MSS 1460 (as nmap sends)
_TCP_LENGTH = 24


def _ip_head(family: int, protocol: int, length: int, ttl: int, source: bytes) -> bytes:
    """The IP header up to the destination (IPv4: ID and checksum 0, the kernel
    fills them with IP_HDRINCL); ``length``: the payload's."""
    if family == _V4:
        return _IP4.pack(0x45, 0, 20 + length, 0, 0, ttl, protocol, 0) + source
    return _IP6.pack(6 << 28, length, protocol, ttl) + source


def _per_block(
    space: TargetSpace, sources: Sequence[str], make: Callable[[int, bytes], Any]
) -> list[Any]:
    """One template per distinct source of the space's blocks (routing's pick for
    each: ``block_sources``), by block position."""
    made: dict[str, Any] = {}
    for block, source in zip(space.blocks, sources, strict=True):
        if source not in made:
            made[source] = make(block.family, socket.inet_pton(block.family, source))
    return [made[source] for source in sources]


class _Builder:
    """A probe builder: ``make`` is ``probe`` with the Target's fields as arguments,
    the form the engine calls (a Target tuple per probe would cost more than the
    engine's own work for it); a subclass overrides ``make``, never ``probe``.

    Checksums are summed, not folded, until the end: 2**16 == 1 (mod 0xFFFF), so any
    integer that sums 16-bit words (a 32-bit word, a whole address) adds directly, and
    ``(0xFFFF - total % 0xFFFF) % 0xFFFF`` is the checksum of the total
    (``checksum.checksum_of_sum``, inline here: one call less per probe)."""

    fixed: ClassVar[Mapping[type, Verdict]] = {}

    def probe(self, target: Target, port_index: int, attempt: int) -> Outgoing:
        return self.make(*target, port_index, attempt)

    def make(
        self, position: int, dst: bytes, value: int, port_index: int, attempt: int
    ) -> Outgoing:
        raise NotImplementedError


def _maker(strategy: Strategy) -> Callable[[int, bytes, int, int, int], Outgoing]:
    """``strategy.probe`` with the Target's fields as arguments: a builder's ``make``."""
    if isinstance(strategy, _Builder):
        return strategy.make
    return lambda position, dst, value, port_index, attempt: strategy.probe(
        Target(position, dst, value), port_index, attempt
    )


class _PortProbes(_Builder):
    """Probes to ports, from one source port: per-port words (ports as keys carry
    them) and one template per source (``_template``)."""

    def __init__(
        self,
        space: TargetSpace,
        ports: Sequence[int],
        sources: Sequence[str],
        cookies: Cookies,
        *,
        sport: int,
        ttl: int = 64,
    ) -> None:
        self.sport, self.ttl = sport, ttl
        self._ports = tuple(ports)
        self._words = tuple(sport << 16 | port for port in self._ports)
        self._cookie = cookies.cookie
        self._templates = _per_block(space, sources, self._template)

    def _template(self, family: int, source: bytes) -> tuple[Any, ...]:
        raise NotImplementedError


class TcpProbes(_PortProbes):
    """SYN (or ACK) probes, as nmap sends them (window 1024, MSS 1460), from one
    source port. The sequence number is a keyed cookie of (address, ports): the key is
    the same for every try of a port (a retransmitted SYN, as a target expects one),
    and an ACK probe acks its own sequence number."""

    #: An ACK probe (acking its own sequence number) instead of a SYN.
    ack = False

    def _template(self, family: int, source: bytes) -> tuple[bytes, int, int]:
        """The IP header up to the destination, the flags, and the checksum's sum of
        the pseudo-header (source, protocol, length) and every TCP word but
        dport/seq/ack."""
        flags = _ACK if self.ack else _SYN
        fixed = (
            ones_complement_sum(source) + PROTO_TCP + _TCP_LENGTH + self.sport
            + (6 << 12 | flags) + _TCP_WINDOW + _MSS_OPTION[0] + _MSS_OPTION[1]
        )  # fmt: skip
        return _ip_head(family, PROTO_TCP, _TCP_LENGTH, self.ttl, source), flags, fixed

    def make(
        self, position: int, dst: bytes, value: int, port_index: int, attempt: int
    ) -> Outgoing:
        word = self._words[port_index]
        isn: int = _U32.unpack_from(self._cookie((KIND_TCP, dst, word, 0)))[0]
        head, flags, fixed = self._templates[position]
        dport = self._ports[port_index]
        ack = isn if self.ack else 0
        total = fixed + value + dport + isn + ack
        checksum = (0xFFFF - total % 0xFFFF) % 0xFFFF
        packet = head + dst + _TCP_MSS.pack(
            self.sport, dport, isn, ack, 6 << 4, flags, _TCP_WINDOW, checksum, 0,
            _MSS_OPTION[0], _MSS_OPTION[1],
        )  # fmt: skip
        return new_tuple(Outgoing, ((KIND_TCP, dst, word, isn), packet, (), True))  # type: ignore[no-any-return]


class EchoProbes(_Builder):
    """Echo requests (ident fixed, seq = attempt) carrying the cookie of their key:
    every echo reply of the run comes back on one route, ``(KIND_ECHO, ident)``."""

    def __init__(
        self, space: TargetSpace, sources: Sequence[str], cookies: Cookies, ident: int
    ) -> None:
        self.ident = ident
        self._cookie = cookies.cookie
        self._words = [struct.pack("!HH", ident, seq) for seq in range(CANARY_ATTEMPT + 1)]
        self._templates = _per_block(space, sources, self._template)

    def _template(self, family: int, source: bytes) -> tuple[bytes, bytes, int, bool]:
        """The IP header up to the destination, type and code, the checksum's fixed
        part (type/code, ident and, ICMPv6, the pseudo-header: the sequence, the cookie
        and, ICMPv6, the destination are added per probe), ICMPv6 or not."""
        v6 = family == _V6
        icmp_type = 128 if v6 else 8
        fixed = (icmp_type << 8) + self.ident
        if v6:
            fixed += ones_complement_sum(source) + 58 + 16
        return _ip_head(family, 58 if v6 else 1, 16, 64, source), bytes((icmp_type, 0)), fixed, v6

    def make(
        self, position: int, dst: bytes, value: int, port_index: int, attempt: int
    ) -> Outgoing:
        key = (KIND_ECHO, dst, self.ident, attempt)
        cookie = self._cookie(key)
        head, type_code, fixed, v6 = self._templates[position]
        total = fixed + attempt + int.from_bytes(cookie, "big")
        if v6:
            total += value
        checksum = (0xFFFF - total % 0xFFFF) % 0xFFFF
        packet = b"".join(
            (head, dst, type_code, checksum.to_bytes(2, "big"), self._words[attempt], cookie)
        )
        return new_tuple(Outgoing, (key, packet, (), True))  # type: ignore[no-any-return]


class UdpProbes(_PortProbes):
    """UDP datagrams from one source port; ``payload(port_index, secret)`` gives each
    probe's bytes (``secret``: a 32-bit cookie of the probe; a subclass may override).
    An ICMP error quoting a probe is matched by its checksum (the key), a datagram
    back by its ports (the extra key)."""

    def _template(self, family: int, source: bytes) -> tuple[int, bytes, int]:
        return family, source, ones_complement_sum(source) + PROTO_UDP + self.sport

    def payload(self, port_index: int, secret: int) -> bytes:
        """The datagram's bytes to the port: by default 8 bytes of ``secret`` (a cookie
        of the probe), which the checksum, the key an ICMP error is matched by, carries."""
        return secret.to_bytes(4, "big") * 2

    def make(
        self, position: int, dst: bytes, value: int, port_index: int, attempt: int
    ) -> Outgoing:
        word = self._words[port_index]
        secret = int.from_bytes(self._cookie((KIND_TCP, dst, word, attempt))[:4], "big")
        payload = self.payload(port_index, secret)
        family, source, fixed = self._templates[position]
        dport, length = self._ports[port_index], 8 + len(payload)
        total = fixed + value + dport + 2 * length + ones_complement_sum(payload)
        checksum = (0xFFFF - total % 0xFFFF) % 0xFFFF or 0xFFFF
        head = _ip_head(family, PROTO_UDP, length, self.ttl, source)
        packet = head + dst + _UDP.pack(self.sport, dport, length, checksum) + payload
        extra = ((KIND_UDP_DATA, dst, word, 0),)
        return new_tuple(Outgoing, ((KIND_UDP, dst, word, checksum), packet, extra, True))  # type: ignore[no-any-return]


# -- the engine ------------------------------------------------------------------------

# An item's record (a list, see the module docstring):
_ITEM = 0  # the item (index of hosts x ports)
_TRIES = 1  # sends so far; -1 once decided
_BASE = 2  # sends before the current budget of retries (an outage's)
_SENT_S = 3  # last send, event-loop time
_FIRST_S = 4  # first send
_STAMP = 5  # the last send's Sent (None before it left)
_FLYING = 6  # counted in the window
_KEY = 7  # the latest try's key
_KEYS = 8  # further keys of the item (earlier tries', extra keys), or None
_WITNESS = 9  # witnesses of its tries (Pace.limit_gap_s): one of the states below
# (ordered: a state only rises, except by an answered witness)
_UNWITNESSED, _PARKED, _WITNESS_SENT, _WITNESS_ANSWERED = 0, 1, 2, 3


def _mono(record: list[Any]) -> float:
    """The last try's send stamp on the transport's clock (the outage guard's)."""
    stamp: Sent | None = record[_STAMP]
    return stamp.monotonic_s if stamp is not None else -math.inf


class BulkEngine(MachineOutbox[EventT], Generic[EventT]):
    """The machine of a bulk probe: every item of ``order`` (indices of ``space`` x
    ``port_count`` ports) probed by ``strategy``, paced by ``pace``; pure, time
    injected. Subclasses keep the tallies (``_tally``)."""

    def __init__(
        self,
        space: TargetSpace,
        port_count: int,
        order: Iterator[int],
        strategy: Strategy,
        pace: Pace,
    ) -> None:
        super().__init__()
        self.space = space
        self.pace = pace
        self.strategy = strategy
        self._make = _maker(strategy)
        self._port_count = port_count
        self._order = order
        self._exhausted = False
        self._firsts = [block.first for block in space.blocks]
        self._widths = [block.width for block in space.blocks]
        self._single = len(space.blocks) == 1
        self._flights: dict[MatchKey, list[Any]] = {}
        self._expiry: deque[tuple[float, list[Any], int]] = deque()
        self._resend: deque[list[Any]] = deque()
        self._gapped: deque[tuple[float, list[Any]]] = deque()  # (gap over at, record)
        self._flying = 0
        self._retire = True  # False when the keys are routed as a whole (``routes``)
        # Items decided from_host go here instead of to ``_tally`` (a machine that
        # needs nothing else of them, e.g. a sweep without events, sets an array).
        self._up: array[int] | None = None
        # Silence verdicts wait for proof of life (probes/outage.py); None: off.
        budget_s = pace.outage_budget_s
        self._guard = OutageGuard[MatchKey, int](budget_s) if budget_s else None
        self._canary_keys = CanarySends[MatchKey]()  # canaries in flight -> their sends
        self._canary_alias: dict[MatchKey, MatchKey] = {}  # extra key -> canary key
        self._rtt = RttEstimator(pace.initial_timeout_s, pace.min_timeout_s, pace.max_timeout_s)
        self._timeout = self._rtt.timeout_s
        self._cwnd = float(pace.initial_cwnd if pace.adaptive else pace.max_cwnd)
        self._ssthresh = math.inf
        self._peak_cwnd = self._cwnd
        self._backoff_s = -math.inf  # probes first sent before this cannot back off again
        self._backoffs = 0
        self._delay_backoffs = 0
        self._base_rtt: dict[bytes, float] = {}  # least RTT per host
        self._queue_delay = 0.0  # smoothed RTT above each host's least RTT
        self._delay_target = pace.min_timeout_s / 4
        self._allowed_retries = pace.retries
        self._max_answered_try = 0
        self._min_tokens = 0.0
        self._token_s = 0.0
        self._limited = False  # one item at a time (``Pace.limit_gap_s``)
        self._hold_s = -math.inf  # limited: no send before this
        # Witnesses (``Pace.limit_gap_s``): host -> items it answered rate-limited (a
        # few), the next one's index; a witness in flight's key -> the record it follows.
        self._witness_of: dict[int, list[int]] = {}
        self._witness_turn: dict[int, int] = {}
        self._witness_sends: dict[MatchKey, list[Any]] = {}
        self.sent_count = 0
        self.retransmissions = 0
        self.decided = 0
        self._started: float | None = None
        self._finished: float | None = None

    # -- what subclasses supply ------------------------------------------------------

    def _tally(self, decided: Decided) -> None:
        """Record a decision."""
        raise NotImplementedError

    def _finish(self, now: float) -> None:
        """Called once, when the run is done."""

    # -- machine interface -----------------------------------------------------------

    @property
    def done(self) -> bool:
        return (self._exhausted and not self._flights) or self.gave_up is not None

    @property
    def cwnd(self) -> float:
        return self._cwnd

    def sent(self, key: MatchKey, sent: Sent, now: float) -> None:
        """One send (for tests driving the machine by hand)."""
        self.sent_batch((key,), (sent,), now)

    def receive(self, reply: Reply, now: float) -> None:
        """One answer (for tests driving the machine by hand)."""
        self.receive_batch((reply,), now)

    def poll(self, now: float) -> list[Outgoing]:
        if self._started is None:
            self._started = self._token_s = now
        self._expire(now)
        out: list[Outgoing] = []
        guard = self._guard
        if guard is not None and (guard.pending or guard.ended):
            self._guard_step(guard, now, out)
            if guard.outage_s is not None or guard.gave_up is not None:
                self._spend(len(out))  # nothing new into an outage
                self._check_done(now)
                return out
        budget = self._budget(now)
        resend, build = self._resend, self._build
        while budget > 0 and resend:
            record = resend.popleft()
            if record[_TRIES] < 0 or record[_FLYING]:
                continue  # decided, or sent again already
            out.append(build(record, record[_TRIES]))
            if self._witness_of and not self._limited:
                self._witness(record, out)
            budget -= 1
        if budget > 0 and not self._exhausted:
            self._new_probes(budget, out)
        if out and guard is not None:
            guard.sending(now)
            if guard.quiet(now, self._timeout):
                self._canaries(guard, now, out)
        self._spend(len(out))
        self._check_done(now)
        return out

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        flights, expiry, inf = self._flights, self._expiry, math.inf
        sent = retransmitted = 0
        for key, stamp in zip(keys, stamps, strict=True):
            record = flights.get(key)
            if record is None:
                if self._canary_keys and self._canary_keys.left(key, stamp[1]):
                    sent += 1
                    assert self._guard is not None  # (the guard's clock, then the loop's)
                    self._guard.round_left(now)  # a round is timed from when it left
                elif key in self._witness_sends:
                    sent += 1
                continue
            tries = record[_TRIES]
            if tries < 0:
                continue  # decided meanwhile
            sent += 1
            if tries:
                retransmitted += 1
            record[_TRIES] = tries = tries + 1
            if stamp[2] is not None:  # the network refused the send (Sent.error)
                self._decide(record, self.strategy.refused(stamp[2]))
                continue
            record[_SENT_S] = now
            record[_STAMP] = stamp
            if record[_FIRST_S] == inf:
                record[_FIRST_S] = now
            expiry.append((now, record, tries))
        self.sent_count += sent
        self.retransmissions += retransmitted
        self._check_done(now)

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        flights, classify, fixed = self._flights, self.strategy.classify, self.strategy.fixed.get
        guard, sample_rtt, base_rtt = self._guard, self._rtt.sample, self._base_rtt
        adaptive, kernel_rtt, inf = self.pace.adaptive, self.pace.kernel_rtt, math.inf
        proof_s = -math.inf  # the latest send an answer of this batch proves delivered
        heard = False
        for reply in replies:
            record = flights.get(reply[0])  # (Reply.key)
            if record is None or record[_STAMP] is None:
                if self._canary_keys:
                    canary_s = self._canary(reply)
                    if canary_s is not None:
                        heard = True
                        proof_s = max(proof_s, canary_s)
                if self._witness_sends:
                    self._witnessed(reply)  # (a witness's key is never an item's)
                continue  # a duplicate, or an answer to an item already decided
            verdict = fixed(type(reply)) or classify(reply)
            if verdict is None:
                continue  # matched our key but says nothing about the item
            heard = True
            stamp = record[_STAMP]
            first_try = record[_TRIES] - record[_BASE] <= 1
            if first_try and stamp[1] > proof_s:
                proof_s = stamp[1]  # (Sent.monotonic_s: the guard's clock)
            if verdict[3]:  # (Verdict.canary)
                if guard is not None:
                    guard.recent.append(record[_ITEM])
            elif verdict[2] and self.pace.limit_gap_s:  # the host's rate-limited kind
                self._hold_s = now + self.pace.limit_gap_s  # (binds once limited)
                witnesses = self._witness_of.setdefault(record[_ITEM] // self._port_count, [])
                if len(witnesses) < _WITNESSES:
                    witnesses.append(record[_ITEM])
            rtt = measured_rtt(stamp, reply)[0]  # (rtt_s without its call layer)
            if not first_try:
                self._loss(record)
            elif adaptive:
                sample = now - record[_SENT_S]
                sample_rtt(sample)
                remote = reply[0][1]  # queueing delay: this RTT above the host's least
                least = base_rtt.get(remote, inf)
                if sample < least:
                    if len(base_rtt) >= _BASE_RTT_CACHE:
                        base_rtt.clear()
                    base_rtt[remote] = least = sample
                self._queue_delay += 0.125 * (sample - least - self._queue_delay)
                self._open_window(record)
            else:
                sample_rtt(rtt if kernel_rtt else now - record[_SENT_S])
            self._decide(record, verdict, reply, rtt)
        if heard:
            self._timeout = self._rtt.timeout_s
            if guard is not None:
                guard.answered(proof_s, now, None)
        self._check_done(now)

    def next_deadline(self) -> float:
        if self.done:
            return math.inf
        candidates = [math.inf]
        if self._expiry:
            candidates.append(self._expiry[0][0] + self._timeout)
        guard = self._guard
        if guard is not None:
            candidates.append(guard.next_deadline(self._timeout))
            if guard.outage_s is not None:
                return min(candidates)  # nothing is sent but canaries
        if self._gapped:
            candidates.append(self._gapped[0][0])
        if self._resend or not self._exhausted:
            candidates.append(self._send_time())
        return min(candidates)

    # -- results ---------------------------------------------------------------------

    @property
    def elapsed_span(self) -> tuple[float, float | None]:
        """(started, finished or None) on the event-loop clock."""
        return (self._started if self._started is not None else 0.0), self._finished

    @property
    def gave_up(self) -> str | None:
        """The outage guard's reason for ending the run early (None: it did not)."""
        guard = self._guard
        return guard.gave_up if guard is not None else None

    @property
    def outages(self) -> tuple[int, float]:
        """(outages, seconds in them)."""
        guard = self._guard
        return (guard.outages, guard.outage_total_s) if guard is not None else (0, 0.0)

    # -- probes ----------------------------------------------------------------------

    def _where(self, host: int) -> tuple[int, bytes, int]:
        """The Target's fields of ``host`` (the hot loop has this inline)."""
        if self._single:
            position, value = 0, self._firsts[0] + host
        else:
            position, offset = self.space.locate(host)
            value = self._firsts[position] + offset
        return position, value.to_bytes(self._widths[position], "big"), value

    def _new_probes(self, count: int, out: list[Outgoing]) -> None:
        """Up to ``count`` probes of the next items of the order (the hot loop)."""
        order, flights, make = self._order, self._flights, self._make
        nports, firsts, widths = self._port_count, self._firsts, self._widths
        locate = None if self._single else self.space.locate
        inf = math.inf
        before = len(out)
        for item in islice(order, count):
            host, port_index = divmod(item, nports) if nports > 1 else (item, 0)
            if locate is None:
                position, value = 0, firsts[0] + host
            else:
                position, offset = locate(host)
                value = firsts[position] + offset
            outgoing = make(position, value.to_bytes(widths[position], "big"), value, port_index, 0)
            key = outgoing[0]
            record: list[Any] = [item, 0, 0, 0.0, inf, None, True, key, None, 0]  # (0: unwitnessed)
            flights[key] = record
            if outgoing[2]:  # (Outgoing.extra_keys)
                record[_KEYS] = list(outgoing[2])
                for extra in outgoing[2]:
                    flights[extra] = record
            out.append(outgoing)
        made = len(out) - before
        self._flying += made
        self._exhausted = made < count

    def _build(self, record: list[Any], attempt: int) -> Outgoing:
        """The next try of ``record`` (its key changes if the strategy's keys name
        the attempt: the earlier keys stay awaited, retired with the item)."""
        host, port_index = divmod(record[_ITEM], self._port_count)
        outgoing = self._make(*self._where(host), port_index, attempt)
        record[_FLYING] = True
        self._flying += 1
        key = outgoing.key
        if key != record[_KEY]:
            keys = record[_KEYS] or []
            keys.append(record[_KEY])
            record[_KEY], record[_KEYS] = key, keys
            self._flights[key] = record
        return outgoing

    # -- decisions -------------------------------------------------------------------

    def _decide(
        self,
        record: list[Any],
        verdict: Verdict,
        reply: Reply | None = None,
        rtt: float | None = None,
    ) -> None:
        flights, key, keys = self._flights, record[_KEY], record[_KEYS]
        del flights[key]
        if self._retire:
            self._retired.append(key)
            if keys:
                self._retired += [k for k in keys if flights.pop(k, None) is not None]
        elif keys:
            for k in keys:
                flights.pop(k, None)
        if record[_FLYING]:
            record[_FLYING] = False
            self._flying -= 1
        tries = record[_TRIES]
        record[_TRIES] = -1
        self.decided += 1
        if verdict[2] and self._up is not None:  # (Verdict.from_host) the hot path
            self._up.append(record[_ITEM])
            return
        self._tally(new_tuple(Decided, (record[_ITEM], key, verdict, tries, reply, rtt)))

    def _check_done(self, now: float) -> None:
        if self._finished is None and self.done:
            self._finished = now
            self._finish(now)

    def _expire(self, now: float) -> None:
        gapped = self._gapped
        while gapped and gapped[0][0] <= now:
            self._resend.append(gapped.popleft()[1])
        timeout = self._timeout
        expiry, guard = self._expiry, self._guard
        allowed, gap_s = self._allowed_retries, self.pace.retry_gap_s
        while expiry and expiry[0][0] + timeout <= now:
            _sent_s, record, tries = expiry.popleft()
            if record[_TRIES] != tries or not record[_FLYING]:
                continue  # answered, decided, or sent again since
            record[_FLYING] = False
            self._flying -= 1
            if guard is not None and guard.outage_s is not None:
                guard.hold(_mono(record), now, record[_KEY])  # probed again after it
                continue
            self._open_window()  # a probe left the network without a sign of congestion
            if tries - record[_BASE] <= allowed and tries < MAX_TRIES:
                if gap_s and tries >= 2 and now - record[_SENT_S] < gap_s:
                    gapped.append((record[_SENT_S] + gap_s, record))
                else:
                    self._resend.append(record)
            elif self.pace.limit_gap_s and not self._limited and self._questioned(record, now):
                continue  # probed again: with a witness, later, or one item at a time
            elif guard is not None and guard.recent:
                guard.hold(_mono(record), now, record[_KEY])  # decided once proven up
            else:
                self._decide(record, self.strategy.silence)

    # -- outages ---------------------------------------------------------------------

    def _guard_step(
        self, guard: OutageGuard[MatchKey, int], now: float, out: list[Outgoing]
    ) -> None:
        """Give the silence verdicts proven, probe again what an outage held, send a
        round of canaries (the items that answered last) when proof is overdue."""
        given, again, canaries = guard.poll(now, self._timeout)
        flights = self._flights
        for key in given:
            record = flights.get(key)
            if record is not None and not record[_FLYING]:
                self._decide(record, self.strategy.silence)
        for key in again:
            record = flights.get(key)
            if record is None or record[_FLYING]:
                continue
            if record[_TRIES] >= MAX_TRIES:
                self._decide(record, self.strategy.silence)
                continue
            record[_BASE] = record[_TRIES]  # a whole new budget of retries
            self._resend.append(record)
        if canaries and guard.gave_up is None:
            self._canaries(guard, now, out)

    def _canaries(self, guard: OutageGuard[MatchKey, int], now: float, out: list[Outgoing]) -> None:
        """A round of canaries: the items that answered last, probed again under the
        canary attempt (a key no try uses, where the strategy's keys name attempts)."""
        sent, alias = self._canary_keys, self._canary_alias
        round_keys = set()
        for item in guard.recent:
            host, port_index = divmod(item, self._port_count)
            outgoing = self._make(*self._where(host), port_index, CANARY_ATTEMPT)
            round_keys.add(outgoing.key)
            sent.expect(outgoing.key)  # (an earlier round's send stays awaited)
            for extra_key in outgoing.extra_keys:
                alias[extra_key] = outgoing.key
            out.append(outgoing)
        stale = [k for k in sent if k not in round_keys]
        stale += [k for k, main in alias.items() if main not in round_keys]
        for key in stale:
            if key in sent:
                sent.drop(key)
            alias.pop(key, None)
            if self._retire:
                self._retired.append(key)
        guard.sent_round(now)

    def _canary(self, reply: Reply) -> float | None:
        """The send an answer to a canary proves (-inf: none recorded), or None."""
        key = reply[0]
        key = self._canary_alias.get(key, key)
        if key not in self._canary_keys or self.strategy.classify(reply) is None:
            return None
        return self._canary_keys.answer(key)

    # -- timing and congestion -------------------------------------------------------

    def _witness(self, record: list[Any], out: list[Outgoing]) -> None:
        """Send a witness right after ``record``'s try: the probe of an item its host
        answered rate-limited, one whose key no other witness in flight has (an
        answer then names its witness). None when the host has no witness free."""
        host = record[_ITEM] // self._port_count
        witnesses = self._witness_of.get(host)
        if not witnesses:
            return
        turn = self._witness_turn.get(host, 0)
        for step in range(len(witnesses)):
            item = witnesses[(turn + step) % len(witnesses)]
            outgoing = self._make(*self._where(host), item % self._port_count, WITNESS_ATTEMPT)
            pending = self._witness_sends.get(outgoing.key)
            # (free once the try it followed was answered, decided or timed out)
            if pending is None or pending[_TRIES] < 0 or not pending[_FLYING]:
                self._witness_turn[host] = turn + step + 1
                self._witness_sends[outgoing.key] = record
                record[_WITNESS] = max(record[_WITNESS], _WITNESS_SENT)
                out.append(outgoing._replace(extra_keys=()))
                return

    def _witnessed(self, reply: Reply) -> None:
        """An answer to a witness: the host could answer the try it followed."""
        record = self._witness_sends.pop(reply[0], None)
        if record is None:
            return
        record[_WITNESS] = _WITNESS_ANSWERED
        if self._retire:
            self._retired.append(reply[0])

    def _questioned(self, record: list[Any], now: float) -> bool:
        """Whether the silence of an item whose tries all went unanswered may be the
        target's rate limit (``Pace.limit_gap_s``), in which case it is probed again
        (True): once more with a witness when none followed its tries; one item at a
        time from now on when its witnesses went unanswered too; and, while its host
        has answered nothing rate-limited yet, once more a gap and a half after the
        start (a limit that bit from the first probe: Linux empties a peer's bucket
        while the limit is off, and the first token comes a gap later). False:
        believe the silence."""
        state = record[_WITNESS]
        if state == _WITNESS_ANSWERED or record[_TRIES] >= MAX_TRIES:
            return False
        if record[_ITEM] // self._port_count not in self._witness_of:
            wake_s = (self._started or 0.0) + 1.5 * self.pace.limit_gap_s
            if state == _PARKED or now >= wake_s:
                return False
            record[_WITNESS] = _PARKED
            record[_BASE] += 1
            self._gapped.append((wake_s, record))  # (one wake time: the deque stays sorted)
        elif state == _WITNESS_SENT:
            self._limit(record)
        else:
            record[_BASE] += 1  # one try more, which a witness follows
            self._resend.append(record)
        return True

    def _limit(self, record: list[Any]) -> None:
        """The target's rate limit found: from now on one item at a time, and every
        undecided item probed again with a fresh budget of retries."""
        self._limited = True
        self._cwnd = 1.0
        # The first try a gap after the last rate-limited answer, and after the start
        # (a limit that bit from the first probe on leaves no answer to go by).
        started = self._started if self._started is not None else -math.inf
        self._hold_s = max(self._hold_s, started + self.pace.limit_gap_s)
        for each in {id(r): r for r in self._flights.values()}.values():
            each[_BASE] = each[_TRIES]
        self._resend.append(record)

    def _loss(self, record: list[Any]) -> None:
        """An answer to a retransmission: the first try or its answer was lost. Allow
        one retry more than answered tries took (up to ``max_retries``), and halve the
        window once per window of probes (those sent before the last backoff do not
        count again)."""
        answered_try = record[_TRIES] - 1
        if answered_try > self._max_answered_try:
            self._max_answered_try = answered_try
            allowed = max(self.pace.retries, self.pace.max_retries)
            self._allowed_retries = min(allowed, max(self._allowed_retries, answered_try + 1))
        if not self.pace.adaptive or self._limited or record[_FIRST_S] <= self._backoff_s:
            return
        self._backoffs += 1
        self._ssthresh = max(float(self.pace.initial_cwnd) / 4, self._cwnd / 2)
        self._cwnd = self._ssthresh
        self._backoff_s = record[_SENT_S]

    def _open_window(self, record: list[Any] | None = None) -> None:
        """One probe completed: grow the window, unless answers queue up (ours or the
        network's): hold it above the delay target, shrink it by a quarter (once per
        window) above twice the target, so replies never wait long enough to time out."""
        if not self.pace.adaptive or self._limited:
            return
        if self._queue_delay > self._delay_target:
            if (
                record is not None
                and self._queue_delay > 2 * self._delay_target
                and record[_FIRST_S] > self._backoff_s
            ):
                self._delay_backoffs += 1
                self._cwnd = max(float(self.pace.initial_cwnd) / 4, self._cwnd * 0.75)
                self._ssthresh = self._cwnd
                self._backoff_s = record[_SENT_S]
            return
        cwnd = self._cwnd
        cwnd += 1.0 if cwnd < self._ssthresh else 0.125  # ~1/8 more per window after
        self._cwnd = min(cwnd, float(self.pace.max_cwnd))
        if self._cwnd > self._peak_cwnd:
            self._peak_cwnd = self._cwnd

    def _budget(self, now: float) -> int:
        """Probes that may go now: the window's free slots, or the min-rate floor's
        tokens if more, at most one batch."""
        pace = self.pace
        if pace.min_rate_pps:
            elapsed = now - self._token_s
            if elapsed > 0:
                burst = max(1.0, pace.min_rate_pps / 100)  # 10 ms worth, at least one
                self._min_tokens = min(burst, self._min_tokens + elapsed * pace.min_rate_pps)
        if now > self._token_s:
            self._token_s = now
        # (1e-9: the token due at _send_time counts despite rounding.)
        budget = max(int(self._cwnd) - self._flying, int(self._min_tokens + 1e-9))
        if self._limited:  # one at a time, after the hold
            budget = 0 if self._flying or now < self._hold_s else 1
        return max(0, min(budget, pace.batch))

    def _spend(self, count: int) -> None:
        if count and self.pace.min_rate_pps:
            self._min_tokens = max(0.0, self._min_tokens - count)

    def _send_time(self) -> float:
        """When the next probe may go, given the window and the floor."""
        if self._limited:
            return math.inf if self._flying else max(self._token_s, self._hold_s)
        if int(self._cwnd) > self._flying:
            return self._token_s
        rate = self.pace.min_rate_pps
        if rate:
            return self._token_s + max(0.0, 1.0 - self._min_tokens) / rate
        return math.inf  # an answer or a timeout opens the window
