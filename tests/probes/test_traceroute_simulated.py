"""Traceroute over the simulated network through the real demux, on asyncio and trio."""

from __future__ import annotations

import pytest

from rawprobe.probes.models import TraceHop, TraceResult
from rawprobe.probes.traceroute import TraceOptions, trace_many_with, traceroute_with
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport

pytestmark = pytest.mark.anyio


def network() -> MemoryNetwork:
    net = MemoryNetwork()
    for address in ("198.19.0.5", "2001:db8:ff::5"):
        net.add(address, delay_s=0.004, open_ports=frozenset({80}))
    return net


@pytest.mark.parametrize("method", ["icmp", "udp", "tcp"])
@pytest.mark.parametrize("address", ["198.19.0.5", "2001:db8:ff::5"])
async def test_each_method_reaches_the_target_through_the_routers(
    method: str, address: str
) -> None:
    net = network()
    family = 6 if ":" in address else 4
    routers = net.routers_v6 if family == 6 else net.routers_v4
    hops: list[TraceHop] = []
    async with open_memory_transport(net) as transport:
        result = await traceroute_with(
            transport, address, TraceOptions(method=method, wait_s=0.5), on_event=hops.append
        )
    assert result.reached and result.complete
    assert result.path == (*routers, address)
    assert [hop.ttl for hop in hops] == [1, 2, 3, 4]  # streamed in order
    assert transport.counters.forged == 0


async def test_paris_traces_follow_one_path_and_classic_ones_several() -> None:
    net = MemoryNetwork()
    net.add("198.19.0.7", hops=4, paths=2, delay_s=0.002)
    async with open_memory_transport(net) as transport:
        paris = [
            await traceroute_with(transport, "198.19.0.7", TraceOptions(method="udp", wait_s=0.3))
            for _ in range(16)  # all on one path with p = 2**-15
        ]
        # 10 probes per hop with varying ports: all on one path with p = 2**-9.
        classic_options = TraceOptions(method="udp", wait_s=0.3, paris=False, queries=10)
        classic = await traceroute_with(transport, "198.19.0.7", classic_options)
    for result in paris:
        assert all(len(hop.addresses) == 1 for hop in result.hops)
    assert len({r.hops[2].addresses for r in paris}) == 2  # other flows, other paths
    assert len(classic.hops[2].addresses) == 2  # one trace mixing both paths


async def test_many_targets_yield_results_as_they_complete() -> None:
    net = MemoryNetwork()
    net.add("198.19.0.5", delay_s=0.001)
    net.add("198.19.0.6", delay_s=0.05)
    net.add("198.18.200.1", alive=False)
    seen: list[tuple[str, object]] = []
    got: list[TraceResult] = []
    options = TraceOptions(wait_s=0.2, retries=0, max_ttl=6)
    async with (
        open_memory_transport(net) as transport,
        trace_many_with(
            transport,
            ["198.18.200.1", "198.19.0.6", "198.19.0.5"],
            options,
            on_event=lambda target, event: seen.append((target, event)),
        ) as results,
    ):
        async for result in results:
            got.append(result)
    assert [r.address for r in got] == ["198.19.0.5", "198.19.0.6", "198.18.200.1"]
    silent = got[2]
    assert not silent.reached and len(silent.hops) == 6
    assert [h.is_silent for h in silent.hops] == [False, False, False, True, True, True]
    assert {target for target, _ in seen} == {"198.19.0.5", "198.19.0.6", "198.18.200.1"}
    assert transport.registered == 0  # every key released
