"""Connect scan: port states without privilege, through the kernel's own handshake.

The fall-back of ``rawprobe scan`` when raw sockets are not allowed, like nmap's -sT
and labelled ``connect`` in its results. Ports are taken from the same lazily permuted
(host, port) order as the SYN scan and probed by at most ``concurrency`` connections
at a time; results have the shape of a SYN scan's (ScanResult).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence

import anyio

from rawprobe.probes.permute import Permutation
from rawprobe.probes.scan_models import HostPorts, PortResult, ScanResult, ScanTiming
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.connect import probe_port
from rawprobe.transport.sockets import NamespacePin


class ConnectScan:
    """A connect() scan of every (host, port) of ``space`` x ``ports``: open, closed and
    filtered as in a SYN scan (reasons: syn-ack, conn-refused, no-response,
    host-unreachable, admin-prohibited...). ``run()`` returns the result; ``result()``
    can be taken at any time, after a cancelled run (Ctrl-C) too: the ports decided.
    Its sockets are opened in the network namespace it was made in."""

    def __init__(
        self,
        space: TargetSpace,
        ports: Sequence[int],
        *,
        concurrency: int = 512,
        timeout_s: float = 1.0,
        seed: int | None = None,
        shard: tuple[int, int] = (0, 1),
        keep_closed: bool = False,
        on_event: Callable[[PortResult], None] | None = None,
    ) -> None:
        self.space, self.ports, self.timeout_s = space, ports, timeout_s
        self.concurrency = concurrency
        # (shard I of N of the SYN scan's order: the same items for the same seed)
        self._order = iter(Permutation(space.size * len(ports), seed, *shard))
        self._keep_closed, self._on_event = keep_closed, on_event
        self._listed: dict[int, list[PortResult]] = collections.defaultdict(list)
        self._counts: dict[int, collections.Counter[tuple[str, str]]] = collections.defaultdict(
            collections.Counter
        )
        self._rtts: dict[int, float] = {}
        self._started = time.monotonic()
        self._netns = NamespacePin()

    async def run(self) -> ScanResult:
        try:
            async with anyio.create_task_group() as workers:
                for _ in range(min(self.concurrency, self.space.size * len(self.ports))):
                    workers.start_soon(self._worker)
        finally:
            self._netns.close()
        return self.result()

    async def _worker(self) -> None:
        space, ports, counts, rtts = self.space, self.ports, self._counts, self._rtts
        for index in self._order:  # shared iterator: each index goes to one worker
            host, port_index = divmod(index, len(ports))
            address, port = space.address(host), ports[port_index]
            state, reason, rtt = await probe_port(address, port, self.timeout_s, self._netns)
            counts[host][(state, reason)] += 1
            if state == "open" and rtt is not None:
                rtts[host] = min(rtt, rtts.get(host, rtt))
            if state != "closed" or self._keep_closed:
                result = PortResult(address, port, state, reason, rtt_s=rtt, source=address)
                self._listed[host].append(result)
                if self._on_event is not None:
                    self._on_event(result)

    def result(self) -> ScanResult:
        """The ports decided so far (every port once ``run()`` has returned)."""
        space, counts, listed, rtts = self.space, self._counts, self._listed, self._rtts
        hosts = tuple(
            HostPorts(
                space.address(host),
                tuple(sorted(listed[host], key=lambda p: p.port)),
                tuple((state, reason, n) for (state, reason), n in sorted(counts[host].items())),
                any(state != "filtered" for state, _reason in counts[host]),
                rtts.get(host),
            )
            for host in sorted(counts)
        )
        totals: collections.Counter[str] = collections.Counter()
        for tally in counts.values():
            for (state, _reason), n in tally.items():
                totals[state] += n
        return ScanResult(
            technique="connect",
            hosts=hosts,
            ports_per_host=len(self.ports),
            host_count=space.size,
            decided=sum(totals.values()),
            probes_sent=sum(totals.values()),
            retransmissions=0,
            elapsed_s=time.monotonic() - self._started,
            timing=ScanTiming(
                srtt_s=None,
                rttvar_s=None,
                timeout_s=self.timeout_s,
                cwnd=float(self.concurrency),
                peak_cwnd=float(self.concurrency),
                backoffs=0,
                delay_backoffs=0,
                peak_rate_pps=0.0,
                last_rate_pps=0.0,
                max_retries_used=0,
            ),
            state_totals=tuple(sorted(totals.items())),
        )
