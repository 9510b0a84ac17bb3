"""mtr-style rounds: trace one target again and again with one flow, feeding each
round's result to the statistics (``LiveTrace``), until a count or forever."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from rawprobe.probes.drive import drive
from rawprobe.probes.trace_stats import LiveTrace
from rawprobe.probes.traceroute import TraceOptions, new_machine
from rawprobe.transport.base import Transport

__all__ = ["trace_rounds"]

#: Probe numbers each round owns (rounds differ in the identities of their probes, so a
#: late answer to one round is never taken for the next one's).
_ROUND_PROBES = 1024


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
    on_round: Callable[[LiveTrace], None] | None = None,
) -> None:
    """Trace ``address`` once per ``interval_s`` with one flow (Paris: one path; a fresh
    one unless ``flow_id`` is given) until ``count`` rounds are done (None: until
    cancelled). Each round's result goes to ``stats.add``, then ``on_round(stats)``."""
    options = options or TraceOptions()
    flow = transport.cookies.new_ident() if flow_id is None else flow_id
    number = 0
    while count is None or number < count:
        start = anyio.current_time()
        machine = new_machine(
            transport,
            address,
            options,
            source=source,
            target=target,
            flow_id=flow,
            probe_base=(number * _ROUND_PROBES) & 0xFFFF,
        )
        await drive(machine, transport)
        stats.add(machine.result())
        number += 1
        if on_round is not None:
            on_round(stats)
        if count is not None and number >= count:
            return
        await anyio.sleep(max(0.0, start + interval_s - anyio.current_time()))
