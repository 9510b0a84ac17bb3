"""mtr-style rounds (probes/trace_live.py) over the simulated network, both backends:
a count of rounds on one flow, one path, every round counted in the statistics."""

from __future__ import annotations

import anyio
import pytest

from rawprobe.probes.trace_live import trace_rounds
from rawprobe.probes.trace_stats import LiveTrace
from rawprobe.probes.traceroute import TraceOptions
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport

pytestmark = pytest.mark.anyio

OPTIONS = TraceOptions(method="udp", queries=1, retries=0, wait_s=0.3)


async def test_rounds_keep_one_flow_and_count_every_probe() -> None:
    net = MemoryNetwork()
    net.add("198.19.0.7", hops=4, paths=4, delay_s=0.002)
    stats = LiveTrace("lab-target", "198.19.0.7")
    seen: list[int] = []
    async with open_memory_transport(net) as transport:
        start = anyio.current_time()
        await trace_rounds(
            transport, "198.19.0.7", stats, OPTIONS, count=4, interval_s=0.05,
            on_round=lambda live: seen.append(live.rounds),
        )  # fmt: skip
        elapsed = anyio.current_time() - start
    assert seen == [1, 2, 3, 4] and stats.rounds == 4
    rows = stats.rows()
    assert [row.ttl for row in rows] == [1, 2, 3, 4, 5]  # four routers, then the target
    assert all(row.sent == 4 and row.received == 4 for row in rows)
    assert all(len(row.addresses) == 1 for row in rows)  # one flow: one path of the four
    assert elapsed >= 3 * 0.05  # the interval separates the rounds' starts


async def test_rounds_of_two_flows_may_take_two_paths() -> None:
    net = MemoryNetwork()
    net.add("198.19.0.7", hops=4, paths=2, delay_s=0.002)
    paths = set()
    async with open_memory_transport(net) as transport:
        for flow_id in range(12):  # all 12 on one path with p = 2**-11
            stats = LiveTrace("198.19.0.7", "198.19.0.7")
            await trace_rounds(
                transport, "198.19.0.7", stats, OPTIONS, count=2, interval_s=0, flow_id=flow_id
            )
            (row,) = [r for r in stats.rows() if r.ttl == 3]
            assert len(row.addresses) == 1
            paths.add(row.addresses)
    assert len(paths) == 2


@pytest.mark.parametrize(("address", "method"), [("198.19.0.7", "udp"), ("2001:db8:ff::7", "icmp")])
async def test_rounds_over_several_flows_measure_every_path(address: str, method: str) -> None:
    """16 flows a round, each at every TTL: both paths found, every probe counted once
    on the interface its flow reaches (ICMP: one identifier, flows by checksum/label)."""
    net = MemoryNetwork()
    net.add(address, hops=4, paths=2, delay_s=0.002)
    stats = LiveTrace(address, address)
    options = TraceOptions(method=method, queries=1, retries=0, wait_s=0.3)
    async with open_memory_transport(net) as transport:
        await trace_rounds(
            transport, address, stats, options, count=3, interval_s=0, flows=range(16)
        )
    paths = stats.paths()
    assert len(paths) == 2 and sorted(f for p in paths for f in p.flows) == list(range(16))
    assert all(hop.sent == 3 * len(p.flows) and hop.loss == 0 for p in paths for hop in p.hops)
    rows = stats.rows()
    assert [r.ttl for r in rows] == [1, 2, 3, 3, 4, 5]  # the branch: two interfaces at TTL 3
    assert sum(r.sent for r in rows if r.ttl == 3) == 48 and stats.flows == tuple(range(16))
