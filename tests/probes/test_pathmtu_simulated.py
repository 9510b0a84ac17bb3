"""Path MTU traces over the simulated network (link MTUs, a black hole, the local
interface's MTU) through the real send path and demux, on asyncio and trio; the library
function ``rawprobe.path_mtu``."""

from __future__ import annotations

import pytest

import rawprobe
from rawprobe.probes.pathmtu import path_mtu_many_with
from rawprobe.probes.trace_models import BlackHole, TraceHop, TraceResult
from rawprobe.probes.traceroute import TraceOptions
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport

pytestmark = pytest.mark.anyio

NARROW = {4: "198.19.0.5", 6: "2001:db8:ff::5"}  # a 1400-byte link behind router 2
HOLE = {4: "198.19.0.6", 6: "2001:db8:ff::6"}  # router 2 drops what is over 1400 bytes
PLAIN = "198.19.0.7"


def network() -> MemoryNetwork:
    net = MemoryNetwork()
    for family in (4, 6):
        net.add(NARROW[family], mtu_links=((2, 1400),))
        net.add(HOLE[family], black_hole=(2, 1400))
    net.add(PLAIN)
    return net


OPTIONS = TraceOptions(method="udp", wait_s=0.5, here=3.0, retries=2)


async def test_many_traces_at_once_find_the_narrow_links_and_the_black_holes() -> None:
    addresses = [*NARROW.values(), *HOLE.values(), PLAIN]
    hops: list[tuple[str, TraceHop]] = []
    results: dict[str, TraceResult] = {}
    async with open_memory_transport(network()) as transport:
        on_event = lambda target, hop: hops.append((target, hop))  # noqa: E731
        async with path_mtu_many_with(transport, addresses, OPTIONS, on_event=on_event) as many:
            async for result in many:
                results[result.target] = result
    assert set(results) == set(addresses)
    for family in (4, 6):
        narrow, hole = results[NARROW[family]], results[HOLE[family]]
        assert narrow.reached and hole.reached
        assert (narrow.path_mtu, narrow.black_hole) == (1400, None)
        assert [h.mtu for h in narrow.hops] == [None, None, 1400, None]
        assert hole.black_hole == BlackHole(ttl=3, passes=1400, drops=1401)
        assert hole.path_mtu == 1400 and [h.mtu for h in hole.hops] == [None, None, 1400, None]
    plain = results[PLAIN]
    assert (plain.interface_mtu, plain.path_mtu, plain.black_hole) == (1500, 1500, None)
    assert [h.mtu for h in plain.hops] == [None] * 4
    streamed = [hop.ttl for target, hop in hops if target == HOLE[4]]
    assert streamed == [1, 2, 3, 4]  # each hop once final, in order
    assert transport.registered == 0


async def test_the_local_stack_refusing_a_size_steps_it_down() -> None:
    """A first size over the interface's MTU: the send path maps EMSGSIZE into the
    stamp, and the trace goes on at the next plateau below."""
    net = network()
    async with open_memory_transport(net) as transport:
        result = await rawprobe.path_mtu(NARROW[4], start_size=9000, transport=transport)
    assert result.interface_mtu == 1492  # 9000 -> 8166 -> 4352 -> 2002 -> 1492 (local)
    assert result.path_mtu == 1400 and result.hops[2].mtu == 1400
    assert transport.counters.send_errors >= 4
    assert max(len(p) for p in transport.sent_packets) == 1492


async def test_the_library_function_gives_a_trace_result() -> None:
    async with open_memory_transport(network()) as transport:
        result = await rawprobe.path_mtu(HOLE[6], transport=transport, wait_s=0.5)
        icmp = await rawprobe.path_mtu(NARROW[4], method="icmp", transport=transport)
    assert result.black_hole == BlackHole(3, 1400, 1401) and result.method == "udp"
    assert icmp.path_mtu == 1400 and icmp.method == "icmp" and icmp.reached


async def test_the_library_refuses_tcp() -> None:
    async with open_memory_transport(network()) as transport:
        with pytest.raises(rawprobe.UsageError, match="udp or icmp"):
            await rawprobe.path_mtu(NARROW[4], method="tcp", transport=transport)
