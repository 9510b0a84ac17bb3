"""Traceroute's result values (probes/traceroute.py, multipath.py, pathmtu.py,
trace_stats.py): one trace, its hops and responses, MDA's links, mtr-style hop and path
statistics, NAT and black-hole findings. Frozen, slotted, seconds inside."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rawprobe.transport.wire.icmpext import MplsLabel

if TYPE_CHECKING:
    from rawprobe.transport.base import RttSource


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
    #: The answered probes (``probes`` without the Nones): made once, read often.
    responses: tuple[TraceResponse, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "responses", tuple(filter(None, self.probes)))

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
