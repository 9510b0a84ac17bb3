"""Traceroute over the simulated network through the real demux, on asyncio and trio."""

from __future__ import annotations

import pytest

from rawprobe.probes.trace_models import TraceHop, TraceResult
from rawprobe.probes.traceroute import (
    TraceOptions,
    probe_numbering,
    trace_many_with,
    traceroute_with,
)
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
    # A wait long enough for a loaded machine (it costs nothing: every probe is answered).
    async with open_memory_transport(net) as transport:
        paris = [
            await traceroute_with(transport, "198.19.0.7", TraceOptions(method="udp", wait_s=3.0))
            for _ in range(16)  # all on one path with p = 2**-15
        ]
        # 10 probes per hop with varying ports: all on one path with p = 2**-9.
        classic_options = TraceOptions(method="udp", wait_s=3.0, paris=False, queries=10)
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


#: What ``rawprobe trace -w MAX`` (default 5,3,10) asks for: MAX shared by the tries.
def cli_wait(wait_max: float, retries: int = 2) -> TraceOptions:
    return TraceOptions(wait_s=wait_max / (1 + retries), here=3.0, near=10.0, retries=retries)


async def test_a_last_router_answering_host_unreachable_late_is_shown() -> None:
    """Its ARP gives up after a while; the !H comes after the first try's own wait."""
    net = MemoryNetwork()
    net.add("198.18.200.5", hops=3, error=(3, 1), delay_s=0.8)  # !H after 0.6 s
    async with open_memory_transport(net) as transport:
        result = await traceroute_with(transport, "198.18.200.5", cli_wait(1.0))
    assert result.destination_ttl == 4, [hop.addresses for hop in result.hops]
    assert {p.annotation for p in result.hops[3].responses} == {"!H"}
    assert result.hops[3].addresses == (net.routers_v4[2],)
    assert result.elapsed_s < 1.5


async def test_a_silent_hop_on_a_normal_path_expires_after_near_times_the_rtt() -> None:
    net = MemoryNetwork()
    net.add("198.19.0.5", hops=3, silent_hops=frozenset({2}), delay_s=0.004)
    async with open_memory_transport(net) as transport:
        result = await traceroute_with(transport, "198.19.0.5", cli_wait(5.0))
    assert result.reached and result.hops[1].is_silent
    # 3 tries of 10 x (3 ms + 1 ms) each (a fixed 5 s wait: 5 s); generous for CI.
    assert result.elapsed_s < 1.0, result.elapsed_s


@pytest.mark.parametrize("method", ["icmp", "udp", "tcp"])
async def test_one_batch_traces_every_target_even_the_same_one_twice(method: str) -> None:
    """trace_many_with runs one TraceBatch: ICMP probes share one identifier (its
    route), so traces to one address must get probes of their own."""
    net = network()
    targets = ["198.19.0.5", "2001:db8:ff::5", "198.19.0.5"]
    async with (
        open_memory_transport(net) as transport,
        trace_many_with(transport, targets, TraceOptions(method=method, wait_s=0.5)) as results,
    ):
        got = [result async for result in results]
    assert sorted(r.address for r in got) == sorted(targets)
    for result in got:
        routers = net.routers_v6 if ":" in result.address else net.routers_v4
        assert result.complete and result.path == (*routers, result.address)
    assert transport.counters.forged == 0 and transport.registered == 0


def test_traces_to_one_address_never_share_a_probe_number_of_one_identifier() -> None:
    """255 TTLs x 10 queries x 11 tries: 28050 probes a trace, so two traces to one
    address fit one identifier's 16-bit sequence and the third takes another (band
    1); within a band the ranges are disjoint and never wrap."""
    per_trace = 255 * 10 * 11
    numbering = probe_numbering(["198.19.0.5", "198.19.0.6", "198.19.0.5", "198.19.0.5"], per_trace)
    assert numbering == [(0, 0), (0, 0), (0, per_trace), (1, 0)]
    assert all(base + per_trace <= 0x10000 for _band, base in numbering)
    assert probe_numbering(["198.19.0.5"] * 3, 90) == [(0, 0), (0, 90), (0, 180)]
