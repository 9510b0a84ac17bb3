"""Port scan's result values (probes/scan.py, udp_scan.py, connect_scan.py): one decided
port, one host's ports, the whole scan. Frozen, slotted, seconds inside."""

from __future__ import annotations

from dataclasses import dataclass


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
