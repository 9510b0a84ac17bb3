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

from rawprobe.probes.models import HostPorts, PortResult, ScanResult, ScanTiming
from rawprobe.probes.permute import Permutation
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.connect import probe_port


async def connect_scan(
    space: TargetSpace,
    ports: Sequence[int],
    *,
    concurrency: int = 512,
    timeout_s: float = 1.0,
    seed: int | None = None,
    keep_closed: bool = False,
    on_event: Callable[[object], None] | None = None,
) -> ScanResult:
    """Scan every (host, port) of ``space`` x ``ports`` with connect(); open, closed and
    filtered ports as in a SYN scan (reasons: syn-ack, conn-refused, no-response,
    host-unreachable, admin-prohibited...)."""
    total = space.size * len(ports)
    order = iter(Permutation(total, seed))
    listed: dict[int, list[PortResult]] = collections.defaultdict(list)
    counts: dict[int, collections.Counter[tuple[str, str]]] = collections.defaultdict(
        collections.Counter
    )
    rtts: dict[int, float] = {}
    started = time.monotonic()

    async def worker() -> None:
        for index in order:  # shared iterator: each index goes to one worker
            host, port_index = divmod(index, len(ports))
            address, port = space.address(host), ports[port_index]
            state, reason, rtt = await probe_port(address, port, timeout_s)
            counts[host][(state, reason)] += 1
            if state == "open" and rtt is not None:
                rtts[host] = min(rtt, rtts.get(host, rtt))
            if state != "closed" or keep_closed:
                result = PortResult(address, port, state, reason, rtt_s=rtt, source=address)
                listed[host].append(result)
                if on_event is not None:
                    on_event(result)

    async with anyio.create_task_group() as workers:
        for _ in range(min(concurrency, total)):
            workers.start_soon(worker)
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
        ports_per_host=len(ports),
        host_count=space.size,
        decided=sum(totals.values()),
        probes_sent=sum(totals.values()),
        retransmissions=0,
        elapsed_s=time.monotonic() - started,
        timing=ScanTiming(
            srtt_s=None,
            rttvar_s=None,
            timeout_s=timeout_s,
            cwnd=float(concurrency),
            peak_cwnd=float(concurrency),
            backoffs=0,
            delay_backoffs=0,
            peak_rate_pps=0.0,
            last_rate_pps=0.0,
            max_retries_used=0,
        ),
        state_totals=tuple(sorted(totals.items())),
    )
