"""mtr-style rounds: trace one target again and again, each round with every flow of a
set (each flow at every TTL, all at once in one driver loop), feeding the round's
results to the statistics (``LiveTrace``), until a count or forever.

The flows come from the caller: one fresh flow (mtr, Paris: one path), ``n`` fresh
ones (``--flows N``), or the flow ids a multipath discovery saw on each link, so that
every path it found is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from rawprobe.probes.multiplex import run_all
from rawprobe.probes.trace_stats import LiveTrace
from rawprobe.probes.traceroute import TraceOptions, new_machine
from rawprobe.transport.base import Transport

__all__ = ["fresh_flows", "trace_rounds"]


def fresh_flows(transport: Transport, count: int) -> list[int]:
    """``count`` flow ids no other trace of this transport uses at the moment (the
    transport's ICMP identifiers: 256 before they wrap)."""
    return [transport.cookies.new_ident() for _ in range(count)]


async def trace_rounds(
    transport: Transport,
    address: str,
    stats: LiveTrace,
    options: TraceOptions | None = None,
    *,
    count: int | None = None,
    interval_s: float = 1.0,
    source: str | None = None,
    target: str | None = None,
    flow_id: int | None = None,
    flows: Sequence[int] | None = None,
    on_round: Callable[[LiveTrace], None] | None = None,
) -> None:
    """Trace ``address`` once per ``interval_s`` until ``count`` rounds are done (None:
    until cancelled). A round traces every flow of ``flows`` (Paris: each keeps its
    path) at once; without ``flows``, one flow: ``flow_id``, or a fresh one. Each
    round's results go to ``stats.add_round``, then ``on_round(stats)``."""
    options = options or TraceOptions()
    if flows:
        chosen = list(dict.fromkeys(flows))
    else:
        chosen = fresh_flows(transport, 1) if flow_id is None else [flow_id]
    # ICMP: one identifier (the transport admits echo replies to its own only); flows
    # differ by checksum and flow label, probes by number, so every machine of a round
    # (and of the rounds just before) gets its own range of numbers.
    ident = transport.cookies.new_ident() if options.method == "icmp" else None
    per_machine = (options.max_ttl - options.first_ttl + 1) * options.queries
    per_machine *= 1 + options.retries
    number = 0
    while count is None or number < count:
        start = anyio.current_time()
        machines = [
            new_machine(
                transport,
                address,
                options,
                source=source,
                target=target,
                flow_id=flow,
                probe_base=((number * len(chosen) + index) * per_machine) & 0xFFFF,
                ident=ident,
                events=False,  # (no one reads a round's hops as they come)
            )
            for index, flow in enumerate(chosen)
        ]
        await run_all(transport, machines)
        stats.add_round(
            {flow: machine.result() for flow, machine in zip(chosen, machines, strict=True)}
        )
        number += 1
        if on_round is not None:
            on_round(stats)
        if count is not None and number >= count:
            return
        await anyio.sleep(max(0.0, start + interval_s - anyio.current_time()))
