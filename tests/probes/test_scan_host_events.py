"""A scan's host events (``ScanOptions.host_events``, behind ``scan --ndjson``): each
host once, as soon as its ports in the scan's order are decided, equal to the host in
the result; shards of one seed cover every host's ports once between them."""

from __future__ import annotations

import dataclasses

import pytest

from rawprobe.probes.scan import ScanOptions, merge_hosts, syn_scan_with
from rawprobe.probes.scan_models import HostPorts, PortResult
from rawprobe.targets import resolve_targets
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport

pytestmark = pytest.mark.anyio

HOSTS = [f"198.19.0.{i}" for i in range(1, 7)]
FAST = ScanOptions(max_rate_pps=0, min_rtt_timeout_s=0.05, initial_rtt_timeout_s=0.2)


def network() -> MemoryNetwork:
    net = MemoryNetwork(seed=3)
    for i, address in enumerate(HOSTS[:-1]):  # the last one never answers
        net.add(address, open_ports=frozenset({22, 30 + i}), dropped_ports=frozenset({40}))
    return net


async def scan(options: ScanOptions, ports: range) -> tuple[list[object], list[HostPorts]]:
    events: list[object] = []
    async with open_memory_transport(network()) as transport:
        space = await resolve_targets(["198.19.0.1-6"])
        result = await syn_scan_with(transport, space, ports, options, on_event=events.append)
    return events, list(result.hosts)


def host_events(events: list[object]) -> list[HostPorts]:
    return [event for event in events if isinstance(event, HostPorts)]


@pytest.mark.parametrize("randomize", [True, False])
async def test_each_host_once_and_as_the_result_has_it(randomize: bool) -> None:
    options = dataclasses.replace(FAST, host_events=True, randomize=randomize)
    events, hosts = await scan(options, range(20, 45))
    reported = host_events(events)
    assert sorted(reported, key=lambda h: h.address) == sorted(hosts, key=lambda h: h.address)
    assert len(hosts) == len(HOSTS) and all(h.scanned == 25 for h in reported)
    assert [h.is_up for h in sorted(reported, key=lambda h: h.address)] == [True] * 5 + [False]


async def test_in_port_order_a_host_is_reported_before_the_next_hosts_are_done() -> None:
    """-r: hosts come one after the other, and each is printed while the scan goes on."""
    options = dataclasses.replace(FAST, host_events=True, randomize=False)
    events, _hosts = await scan(options, range(20, 45))
    first = next(i for i, e in enumerate(events) if isinstance(e, HostPorts))
    later = [e for e in events[first:] if isinstance(e, PortResult)]
    assert {p.address for p in later} >= set(HOSTS[2:])  # most of the scan still to come


async def test_with_one_port_per_host_each_host_comes_with_its_port() -> None:
    """A random order of one port per host: every host is decided by its one port."""
    options = dataclasses.replace(FAST, host_events=True)
    events, _hosts = await scan(options, range(22, 23))
    decided = [e.address for e in events if isinstance(e, PortResult | HostPorts)]
    assert decided == [address for address in decided[::2] for _ in (0, 1)]  # port, host, ...


async def test_shards_report_their_part_of_each_host_and_merge_to_the_whole() -> None:
    whole = {h.address: h for h in (await scan(FAST, range(20, 45)))[1]}
    parts: dict[str, list[HostPorts]] = {}
    for shard in range(3):
        options = dataclasses.replace(FAST, host_events=True, seed=11, shard=shard, shards=3)
        events, hosts = await scan(options, range(20, 45))
        reported = host_events(events)
        assert len({h.address for h in reported}) == len(reported) == len(hosts)  # once each
        assert sorted(reported, key=lambda h: h.address) == sorted(hosts, key=lambda h: h.address)
        for host in reported:
            parts.setdefault(host.address, []).append(host)
    merged = {address: merge_hosts(hosts) for address, hosts in parts.items()}
    assert merged.keys() == whole.keys()
    for address, host in merged.items():
        assert host.scanned == 25  # every port once between the shards
        assert host.counts == whole[address].counts
        assert [(p.port, p.state) for p in host.ports] == [
            (p.port, p.state) for p in whole[address].ports
        ]
