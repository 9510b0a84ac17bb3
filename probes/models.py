"""Result values of the probes: frozen, slotted, seconds inside; statistics derived."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rawprobe.transport.base import RttSource


@dataclass(frozen=True, slots=True)
class PingReply:
    """One echo reply. ``duplicate`` replies are reported but not counted as received.
    ``rtt_source``: which send stamp the RTT used (transport/base.py, ``measured_rtt``)."""

    seq: int
    source: str
    rtt_s: float
    ttl: int | None
    size: int
    duplicate: bool = False
    rtt_source: RttSource = "user"


@dataclass(frozen=True, slots=True)
class PingError:
    """A probe answered by an ICMP error, or refused by the local stack at send time
    (then ``icmp_type`` is None and ``reason`` names the errno)."""

    seq: int
    source: str
    reason: str
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True, slots=True)
class PingStats:
    """Running statistics of one host's ping: O(1) memory however long it runs.

    Exactly what the list of replies would give (the same sums in the same order):
    counts, min and max, the sum and sum of squares for the mean and iputils' mdev,
    the last RTT and the sum of the differences between consecutive RTTs for the
    jitter. Duplicates count apart and do not enter the RTT statistics.
    ``kernel_stamped`` counts the received replies whose RTT the kernel stamped at both
    ends (``rtt_source``).
    """

    received: int = 0
    duplicates: int = 0
    errors: int = 0
    min_s: float = math.inf
    max_s: float = -math.inf
    total_s: float = 0.0
    total_sq_s2: float = 0.0
    last_s: float | None = None
    jitter_total_s: float = 0.0
    kernel_stamped: int = 0

    def with_reply(
        self, rtt_s: float, duplicate: bool = False, rtt_source: RttSource = "user"
    ) -> PingStats:
        if duplicate:
            return dataclasses.replace(self, duplicates=self.duplicates + 1)
        last = self.last_s
        return PingStats(
            self.received + 1,
            self.duplicates,
            self.errors,
            min(self.min_s, rtt_s),
            max(self.max_s, rtt_s),
            self.total_s + rtt_s,
            self.total_sq_s2 + rtt_s * rtt_s,
            rtt_s,
            self.jitter_total_s + (abs(rtt_s - last) if last is not None else 0.0),
            self.kernel_stamped + (rtt_source == "kernel"),
        )

    def with_error(self) -> PingStats:
        return dataclasses.replace(self, errors=self.errors + 1)

    @classmethod
    def of(cls, replies: Iterable[PingReply], errors: int = 0) -> PingStats:
        stats = cls(errors=errors)
        for reply in replies:
            stats = stats.with_reply(reply.rtt_s, reply.duplicate, reply.rtt_source)
        return stats

    @property
    def rtt_source(self) -> RttSource | None:
        """Which send stamp the RTTs used: ``kernel`` when the kernel stamped every
        received reply's probe as it left, ``user`` when any RTT started from the
        user-space stamp (see transport/txstamps.py); None without replies."""
        if not self.received:
            return None
        return "kernel" if self.kernel_stamped == self.received else "user"

    @property
    def min_rtt_s(self) -> float | None:
        return self.min_s if self.received else None

    @property
    def max_rtt_s(self) -> float | None:
        return self.max_s if self.received else None

    @property
    def avg_rtt_s(self) -> float | None:
        return self.total_s / self.received if self.received else None

    @property
    def mdev_s(self) -> float | None:
        """iputils' mdev: the standard deviation sqrt(E[x²] - E[x]²)."""
        if not self.received:
            return None
        mean = self.total_s / self.received
        mean_sq = self.total_sq_s2 / self.received
        return math.sqrt(max(0.0, mean_sq - mean * mean))

    @property
    def jitter_s(self) -> float | None:
        """Mean absolute difference between consecutive RTTs (RFC 3550 style, unsmoothed)."""
        if self.received < 2:
            return None
        return self.jitter_total_s / (self.received - 1)


@dataclass(frozen=True, slots=True)
class PingResult:
    """Everything one host's ping produced.

    ``stats`` covers every reply and error; ``replies`` and ``errors`` are the records
    kept (PingOptions.keep_records: all of a ping with a count, none of an endless
    one, unless asked), so ``rtts`` may be fewer than ``received``. Made without
    ``stats``, the statistics are computed from ``replies`` and ``errors``.
    """

    address: str
    transmitted: int
    replies: tuple[PingReply, ...]
    errors: tuple[PingError, ...]
    elapsed_s: float
    payload_size: int
    stats: PingStats = None  # type: ignore[assignment]  # None: from the records

    def __post_init__(self) -> None:
        if self.stats is None:
            object.__setattr__(self, "stats", PingStats.of(self.replies, len(self.errors)))

    @property
    def received(self) -> int:
        return self.stats.received

    @property
    def duplicates(self) -> int:
        return self.stats.duplicates

    @property
    def error_count(self) -> int:
        return self.stats.errors

    @property
    def replies_omitted(self) -> int:
        """Replies (duplicates included) the result counts but keeps no record of."""
        return self.stats.received + self.stats.duplicates - len(self.replies)

    @property
    def errors_omitted(self) -> int:
        return self.stats.errors - len(self.errors)

    @property
    def rtts(self) -> tuple[float, ...]:
        """RTTs in seconds of the first reply to each probe, in arrival order (of the
        replies kept: see ``replies_omitted``)."""
        return tuple(reply.rtt_s for reply in self.replies if not reply.duplicate)

    @property
    def packet_loss(self) -> float:
        """Fraction of probes without a reply, 0.0 to 1.0 (0.0 when none was sent)."""
        if self.transmitted == 0:
            return 0.0
        return max(0.0, (self.transmitted - self.received) / self.transmitted)

    @property
    def is_alive(self) -> bool:
        return self.received > 0

    @property
    def min_rtt_s(self) -> float | None:
        return self.stats.min_rtt_s

    @property
    def max_rtt_s(self) -> float | None:
        return self.stats.max_rtt_s

    @property
    def avg_rtt_s(self) -> float | None:
        return self.stats.avg_rtt_s

    @property
    def mdev_s(self) -> float | None:
        """iputils' mdev: the standard deviation sqrt(E[x²] - E[x]²)."""
        return self.stats.mdev_s

    @property
    def jitter_s(self) -> float | None:
        """Mean absolute difference between consecutive RTTs (RFC 3550 style, unsmoothed)."""
        return self.stats.jitter_s

    @property
    def rtt_source(self) -> RttSource | None:
        """``kernel`` or ``user``: which send stamp the RTTs used (PingStats)."""
        return self.stats.rtt_source


# ======================================================================================
# Traceroute (probes/traceroute.py) — results of one trace, and mtr-style hop statistics.
# ======================================================================================

from rawprobe.transport.wire.icmpext import MplsLabel  # noqa: E402


@dataclass(frozen=True, slots=True)
class QuoteRewrite:
    """A field of a probe that the ICMP error's quote shows changed on the way (a NAT):
    ``field`` is ``source``, ``destination``, ``source-port``, ``destination-port``,
    ``checksum`` (the transport checksum: Dublin traceroute's NAT id) or ``ip-checksum``
    (the quoted IPv4 header's checksum fits it with no TTL: a field rewritten and
    restored without it); ``sent`` and ``quoted`` are the values (addresses as text;
    for ``ip-checksum``, ``sent`` is the checksum that would fit the quoted header)."""

    field: str
    sent: str | int
    quoted: str | int

    def __str__(self) -> str:
        if self.field in ("checksum", "ip-checksum"):
            return f"{self.field} {self.sent:#06x} -> {self.quoted:#06x}"
        return f"{self.field} {self.sent} -> {self.quoted}"


@dataclass(frozen=True, slots=True)
class TraceResponse:
    """The answer to one traceroute probe.

    ``kind`` is ``time-exceeded``, ``unreachable``, ``echo-reply``, ``tcp-syn-ack``,
    ``tcp-rst``, ``packet-too-big``, ``parameter-problem`` or ``other``; ``annotation``
    is traceroute's mark (``!H !N !P !X !S !F-<mtu> !V !C !<code>``; None for none).
    ``terminal`` replies end the trace at their hop (the destination answered, or an
    unreachable error).
    ``quoted_ttl`` is the TTL of our probe as the ICMP error quotes it (1 normally);
    ``mpls`` the label stack of an RFC 4950 extension. ``attempt`` counts retries
    (0: the first probe of this query answered). ``mtu`` is the next-hop MTU a
    "fragmentation needed" / "packet too big" error reported (0 for any other answer).
    ``rtt_source``: which send stamp the RTT used (transport/base.py, ``measured_rtt``).
    """

    address: str
    rtt_s: float
    kind: str
    icmp_type: int | None
    icmp_code: int | None
    reply_ttl: int | None
    quoted_ttl: int | None = None
    annotation: str | None = None
    terminal: bool = False
    reached: bool = False
    mpls: tuple[MplsLabel, ...] = ()
    attempt: int = 0
    #: What the error's quote shows rewritten from the probe as sent (a NAT on the way);
    #: empty when it matches, or for answers that quote nothing.
    rewrites: tuple[QuoteRewrite, ...] = ()
    mtu: int = 0
    rtt_source: RttSource = "user"


@dataclass(frozen=True, slots=True)
class TraceHop:
    """One TTL: ``probes`` holds one entry per query, None where nothing answered (``*``)
    even after retries; ``sent`` counts every probe sent for this TTL, retries included."""

    ttl: int
    probes: tuple[TraceResponse | None, ...]
    sent: int
    #: Queries (indices into ``probes``) still awaited when the trace was cut short:
    #: None there means "not decided", not "no answer". Empty in a finished trace.
    pending: tuple[int, ...] = ()
    #: Path MTU traces (``trace --mtu``): the path MTU up to this hop where it is less
    #: than up to the hop before (the interface MTU before the first), else None.
    mtu: int | None = None

    @property
    def responses(self) -> tuple[TraceResponse, ...]:
        return tuple(p for p in self.probes if p is not None)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Distinct responding addresses, in the order they first answered a query."""
        return tuple(dict.fromkeys(p.address for p in self.responses))

    @property
    def is_silent(self) -> bool:
        return not self.responses

    @property
    def terminal(self) -> bool:
        return any(p.terminal for p in self.responses)

    @property
    def rtts(self) -> tuple[float, ...]:
        return tuple(p.rtt_s for p in self.responses)

    @property
    def min_rtt_s(self) -> float | None:
        return min(self.rtts) if self.rtts else None

    @property
    def avg_rtt_s(self) -> float | None:
        rtts = self.rtts
        return sum(rtts) / len(rtts) if rtts else None

    @property
    def max_rtt_s(self) -> float | None:
        return max(self.rtts) if self.rtts else None

    @property
    def rtt_source(self) -> RttSource | None:
        """``kernel`` when the kernel stamped both ends of every answered probe's RTT,
        ``user`` when any RTT used the user-space send stamp; None when silent."""
        sources = {p.rtt_source for p in self.responses}
        if not sources:
            return None
        return "user" if "user" in sources else "kernel"


@dataclass(frozen=True, slots=True)
class BlackHole:
    """An MTU black hole: from TTL ``ttl`` on, packets of ``drops`` bytes vanish without
    an ICMP error, while ``passes`` bytes (the largest that does) are answered."""

    ttl: int
    passes: int
    drops: int


@dataclass(frozen=True, slots=True)
class TraceResult:
    """One trace. ``hops`` runs from ``first_ttl`` to the destination's hop inclusive
    (to ``max_ttl`` when the destination never answered). ``flow`` is what stays
    constant in Paris mode: (source port, destination port) for UDP/TCP, (identifier,
    checksum) for ICMP; in classic mode the varying field shows its first value."""

    target: str
    address: str
    method: str
    source: str
    paris: bool
    flow: tuple[int, int]
    first_ttl: int
    max_ttl: int
    hops: tuple[TraceHop, ...]
    reached: bool
    elapsed_s: float
    probes_sent: int
    packet_size: int
    send_error: str | None = None
    #: False for a trace cut short (Ctrl-C, a timeout): ``hops`` ends at the highest
    #: TTL probed, and queries still awaited show as unanswered.
    finished: bool = True
    #: Path MTU traces only (None otherwise): the MTU of the interface the probes left
    #: by, the path MTU found (the largest packet that reaches the last hop probed), and
    #: the first MTU black hole on the way.
    interface_mtu: int | None = None
    path_mtu: int | None = None
    black_hole: BlackHole | None = None

    @property
    def destination_ttl(self) -> int | None:
        """TTL at which the trace ended with a terminal reply (None: it never did)."""
        for hop in self.hops:
            if hop.terminal:
                return hop.ttl
        return None

    @property
    def complete(self) -> bool:
        """Reached, and every hop on the way answered at least once (no ``* * *`` row)."""
        return self.reached and all(not hop.is_silent for hop in self.hops)

    @property
    def path(self) -> tuple[str | None, ...]:
        """First responding address per hop (None for a silent hop)."""
        return tuple(hop.addresses[0] if hop.addresses else None for hop in self.hops)


@dataclass(frozen=True, slots=True)
class MultipathLink:
    """Flows seen at ``source`` at ``ttl`` and at ``to`` at ``ttl + 1``: a link between
    interfaces of consecutive hops. None is a hop that did not answer (``*``)."""

    ttl: int
    source: str | None
    to: str | None
    flows: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MultipathResult:
    """One MDA trace (``probes/multipath.py``): every interface at each TTL and the
    links between them.

    ``hops`` has one TraceHop a TTL, from ``first_ttl`` to the deepest TTL probed; its
    ``probes`` hold one answer a flow probed at that TTL (None: silent after retries),
    in the order the flows were first probed, and ``flows[i]`` the flow ids in the same
    order (``hops[i].probes[j]`` answered flow ``flows[i][j]``). ``confidence`` (95 or
    99) is what the stopping rule bounds: the chance that the trace misses an
    interface. ``rule_met``: the rule was met at every interface (the trace was not cut
    short by ``max_probes``, ``max_ttl`` or the gap limit); ``complete``: that, and the
    destination answered.
    """

    target: str
    address: str
    method: str
    source: str
    confidence: int
    first_ttl: int
    max_ttl: int
    hops: tuple[TraceHop, ...]
    flows: tuple[tuple[int, ...], ...]
    links: tuple[MultipathLink, ...]
    reached: bool
    rule_met: bool
    elapsed_s: float
    probes_sent: int
    packet_size: int
    send_error: str | None = None
    finished: bool = True

    @property
    def complete(self) -> bool:
        return self.finished and self.reached and self.rule_met

    @property
    def destination_ttl(self) -> int | None:
        """The first TTL at which some flow reached the end of its path."""
        return next((hop.ttl for hop in self.hops if hop.terminal), None)

    def interfaces(self, ttl: int) -> dict[str | None, tuple[int, ...]]:
        """The interfaces seen at ``ttl`` (None: silent flows), each with the flow ids
        that met it there, in the order they were first seen."""
        for hop, flows in zip(self.hops, self.flows, strict=True):
            if hop.ttl == ttl:
                seen: dict[str | None, list[int]] = {}
                for probe, flow in zip(hop.probes, flows, strict=True):
                    seen.setdefault(probe.address if probe else None, []).append(flow)
                return {address: tuple(ids) for address, ids in seen.items()}
        return {}

    @property
    def nodes(self) -> frozenset[tuple[int, str]]:
        """Every (TTL, address) that answered: the interfaces of the graph."""
        return frozenset((hop.ttl, a) for hop in self.hops for a in hop.addresses)


@dataclass(frozen=True, slots=True)
class HopStats:
    """mtr's per-hop row over rounds: ``sent``/``received`` probes, RTTs in seconds;
    ``annotation``: the hop's latest traceroute mark (None: none)."""

    ttl: int
    addresses: tuple[str, ...]
    sent: int
    received: int
    last_s: float | None
    avg_s: float | None
    best_s: float | None
    worst_s: float | None
    stdev_s: float | None
    annotation: str | None = None
    #: The flows whose probes this row counts (live mode over several flows).
    flows: tuple[int, ...] = ()
    #: The row's loss does not carry on to the later hops of the same flows: the router
    #: limits (or filters) its ICMP errors; the traffic passes (probes/path_truth.py).
    rate_limited: bool = False
    #: What the quotes of this row's answers show rewritten (a NAT before this hop).
    rewrites: tuple[QuoteRewrite, ...] = ()

    @property
    def loss(self) -> float:
        """Fraction of probes without an answer, 0.0 to 1.0."""
        return 0.0 if self.sent == 0 else (self.sent - self.received) / self.sent

    @property
    def lost(self) -> int:
        return self.sent - self.received


@dataclass(frozen=True, slots=True)
class PathStats:
    """One path of a target over live rounds: the flows that take the same interface at
    every TTL, and a HopStats per TTL over those flows only (``addresses`` empty where
    they never answered)."""

    flows: tuple[int, ...]
    hops: tuple[HopStats, ...]

    @property
    def addresses(self) -> tuple[str | None, ...]:
        return tuple(hop.addresses[0] if hop.addresses else None for hop in self.hops)


@dataclass(frozen=True, slots=True)
class NatHop:
    """Where a NAT shows: the first hop whose quotes differ from the probes as sent
    (the NAT is this hop's router's predecessor, or a box between them)."""

    ttl: int
    address: str
    rewrites: tuple[QuoteRewrite, ...]


# ======================================================================================
# Port scan (probes/scan.py) — one decided port, one host's ports, the whole scan.
# ======================================================================================


@dataclass(frozen=True, slots=True)
class PortResult:
    """What one (host, port) turned out to be, and the evidence, like nmap's --reason.

    ``state``: ``open`` (SYN-ACK), ``closed`` (RST), ``filtered`` (no answer after
    every retry, or an ICMP error) or ``unfiltered`` (an ACK scan's RST). ``reason``:
    ``syn-ack``, ``reset``, ``no-response``, ``admin-prohibited``, ``host-unreachable``,
    ``net-unreachable``, ``port-unreachable``, ``time-exceeded``... ``source`` is who
    answered (a router for some ICMP errors), ``ttl`` the answer's TTL / hop limit,
    ``rtt_s`` its round trip, ``tries`` how many probes the port took.
    """

    address: str
    port: int
    state: str
    reason: str
    ttl: int | None = None
    rtt_s: float | None = None
    source: str | None = None
    tries: int = 1


@dataclass(frozen=True, slots=True)
class HostPorts:
    """One scanned host: the ports worth listing, and a count of every (state, reason).

    ``ports`` holds every open, filtered and unfiltered port (and the closed ones when
    the scan kept them), sorted by port; ``counts`` has (state, reason, count) for all
    decided ports, so closed ports are summarised without one object each.
    """

    address: str
    ports: tuple[PortResult, ...]
    counts: tuple[tuple[str, str, int], ...]
    is_up: bool
    min_rtt_s: float | None = None

    def count(self, state: str) -> int:
        """How many ports ended in ``state``."""
        return sum(n for s, _reason, n in self.counts if s == state)

    @property
    def open_ports(self) -> tuple[int, ...]:
        return tuple(p.port for p in self.ports if p.state == "open")

    @property
    def filtered_ports(self) -> tuple[int, ...]:
        return tuple(p.port for p in self.ports if p.state == "filtered")

    @property
    def closed(self) -> int:
        return self.count("closed")

    @property
    def scanned(self) -> int:
        return sum(n for _s, _r, n in self.counts)


@dataclass(frozen=True, slots=True)
class ScanTiming:
    """How the scan paced itself: final RTT estimate and timeout, congestion window,
    the rates it reached (send rate over ~0.2 s windows), how often it backed off on
    loss (answers to retransmissions) and on delay (answers queueing up)."""

    srtt_s: float | None
    rttvar_s: float | None
    timeout_s: float
    cwnd: float
    peak_cwnd: float
    backoffs: int
    delay_backoffs: int
    peak_rate_pps: float
    last_rate_pps: float
    max_retries_used: int
    #: Outages seen (a round of canaries unanswered) and their total length.
    outages: int = 0
    outage_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A whole scan. ``hosts`` is sorted by address (empty when the scan ran with
    ``collect=False``: then only the totals and the streamed PortResults exist)."""

    technique: str
    hosts: tuple[HostPorts, ...]
    ports_per_host: int
    host_count: int
    decided: int
    probes_sent: int
    retransmissions: int
    elapsed_s: float
    timing: ScanTiming
    state_totals: tuple[tuple[str, int], ...] = ()
    #: Why the scan stopped before deciding every port (an outage outlasting its
    #: limit: probes/outage.py); None when it did not give up.
    incomplete_reason: str | None = None

    @property
    def open_ports(self) -> tuple[tuple[str, int], ...]:
        """(address, port) of every open port."""
        return tuple((h.address, p) for h in self.hosts for p in h.open_ports)

    @property
    def complete(self) -> bool:
        """True when every (host, port) was decided (False after an interruption)."""
        return self.decided == self.ports_per_host * self.host_count

    @property
    def rate_pps(self) -> float:
        """Average probes per second over the whole scan."""
        return self.probes_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def total(self, state: str) -> int:
        return dict(self.state_totals).get(state, 0)
