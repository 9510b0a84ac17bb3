"""The sweep machine and targets, over the simulated network (asyncio and trio)."""

import socket

import anyio
import pytest

from rawprobe.errors import UsageError
from rawprobe.probes.engine import EchoProbes, Target
from rawprobe.probes.permute import Permutation
from rawprobe.probes.sweep import (
    HostDown,
    HostUp,
    SweepMachine,
    SweepOptions,
    sweep_with,
)
from rawprobe.probes.targets import TargetSpace, parse_block
from rawprobe.transport.keys import KIND_ECHO, Cookies
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport
from rawprobe.transport.wire.icmp import build_echo
from rawprobe.transport.wire.icmpv6 import build_echo6
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.ipv6 import IPv6Header, build_ipv6

pytestmark = pytest.mark.anyio


def test_cidr_blocks_skip_network_and_broadcast_like_fping() -> None:
    space = TargetSpace.parse(["198.19.0.0/30", "198.19.1.7", "2001:db8::/126"])
    assert space.size == 2 + 1 + 4
    addresses = [space.address(i) for i in range(space.size)]
    assert addresses[:3] == ["198.19.0.1", "198.19.0.2", "198.19.1.7"]
    assert addresses[3:] == ["2001:db8::", "2001:db8::1", "2001:db8::2", "2001:db8::3"]


def test_ranges_long_and_short_form() -> None:
    assert parse_block("198.19.0.1-9").count == 9
    assert parse_block("198.19.0.250-198.19.1.4").count == 11
    assert parse_block("2001:db8::1-2001:db8::ff").count == 255


@pytest.mark.parametrize(
    "spec", ["198.19.0.9-1", "198.19.0.1-300", "198.19.0.0/33", "nonsense", "1.2.3.4-::1", ""]
)
def test_bad_target_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        TargetSpace.parse([spec])


@pytest.mark.parametrize(
    "options",
    [{"method": "ping"}, {"method": "udp"}, {"method": "tcp-syn", "port": 0}, {"retries": -1}],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        SweepOptions(**options)  # type: ignore[arg-type]


def lab_like_network(**behaviour: object) -> MemoryNetwork:
    network = MemoryNetwork()
    for last in range(1, 255):
        network.add(f"198.19.0.{last}", open_ports=frozenset({80}), **behaviour)
    for last in range(1, 9):
        network.add(f"2001:db8:ff::{last:x}", open_ports=frozenset({80}), **behaviour)
    return network


@pytest.mark.parametrize(
    ("method", "port", "reason"),
    [("icmp", None, "echo-reply"), ("tcp-syn", 80, "syn-ack"), ("tcp-syn", 81, "reset"),
     ("tcp-ack", 81, "reset"), ("udp", 33434, "port-unreachable")],
)  # fmt: skip
async def test_every_method_finds_every_host(method: str, port: int | None, reason: str) -> None:
    space = TargetSpace.parse(["198.19.0.0/24", "2001:db8:ff::1-2001:db8:ff::8", "198.18.200.1"])
    options = SweepOptions(method=method, port=port, timeout_s=0.2)
    events: list[object] = []
    async with open_memory_transport(lab_like_network()) as transport:
        result = await sweep_with(transport, space, options, seed=3, on_event=events.append)
    assert len(result.alive) == 254 + 8
    assert result.dead_count == 1  # 198.18.200.1 has no host
    assert {e.reason for e in events if isinstance(e, HostUp)} == {reason}
    [down] = [e for e in events if isinstance(e, HostDown)]
    assert down.address == "198.18.200.1" and down.reason == "no-response"
    # The silent host was retried once; its verdict waits for proof that the network
    # was up after its last try: an answer, or at most one round of 4 canaries.
    assert 262 + 2 <= result.probes_sent <= 262 + 2 + 4
    assert transport.registered == 0  # every key, or the echo identifier, released
    assert transport.registered == 0


async def test_retries_recover_lost_probes() -> None:
    network = lab_like_network(loss=0.3)
    space = TargetSpace.parse(["198.19.0.0/24"])
    async with open_memory_transport(network) as transport:
        # (No outage guard here: it may give the lost a further try, which is the point
        # of tests/probes/test_outage.py, not of this one.)
        plain = SweepOptions(retries=0, timeout_s=0.1, outage_budget_s=0)
        once = await sweep_with(transport, space, plain, seed=1)
        thrice = await sweep_with(transport, space, SweepOptions(retries=4, timeout_s=0.1), seed=1)
    assert len(once.alive) < 230
    assert len(thrice.alive) >= 250


async def test_router_errors_mean_down_not_up() -> None:
    network = MemoryNetwork()
    network.add("198.19.0.1", error=(3, 1))  # the last router: host unreachable
    async with open_memory_transport(network) as transport:
        events: list[object] = []
        result = await sweep_with(
            transport, TargetSpace.parse(["198.19.0.1"]), on_event=events.append
        )
    assert result.alive == () and result.dead_count == 1
    assert isinstance(events[0], HostDown) and "unreachable" in events[0].reason


async def test_forged_echo_replies_do_not_make_hosts_up() -> None:
    network = MemoryNetwork(forge_replies=True)
    network.add("198.19.0.1")
    network.add("198.19.0.2", alive=False)
    async with open_memory_transport(network) as transport:
        result = await sweep_with(transport, TargetSpace.parse(["198.19.0.1-2"]))
    assert result.alive == ("198.19.0.1",)
    assert transport.counters.forged >= 1


def test_shards_with_one_seed_cover_the_space_exactly_once() -> None:
    """Four machines fed shard i/4 of one seed probe every address exactly once."""
    space = TargetSpace.parse(["198.19.0.0/16"])
    sent: list[bytes] = []
    for shard in range(4):
        order = iter(Permutation(space.size, seed=1, shard=shard, shards=4))
        machine = SweepMachine(
            space, order, SweepOptions(batch=4096, max_in_flight=1 << 17),
            source_for=lambda _address: "198.18.1.2", ident=1, cookies=Cookies(),
        )  # fmt: skip
        while batch := machine.poll(0.0):
            sent += [outgoing.packet[16:20] for outgoing in batch]
    assert len(sent) == 65534 and len(set(sent)) == 65534


def test_in_flight_state_is_bounded() -> None:
    space = TargetSpace.parse(["2001:db8:ff::/108"])  # a million addresses
    machine = SweepMachine(
        space, iter(Permutation(space.size, 1)), SweepOptions(max_in_flight=5000),
        source_for=lambda _address: "2001:db8:1::2", ident=1, cookies=Cookies(),
    )  # fmt: skip
    sent = 0
    for _ in range(100):
        sent += len(machine.poll(0.0))
    assert sent == 5000  # no reply yet: the window is full and stays full
    assert machine.next_deadline() > 0.0


async def test_udp_answers_decide_the_host_and_the_sweep_ends() -> None:
    """A UDP datagram answers on the extra key; every key of the host must go (found in
    review: the main key stayed in flight and the sweep never ended)."""
    network = MemoryNetwork()
    network.add("198.19.0.1", udp_services=frozenset({53}))
    network.add("198.19.0.2", udp_services=frozenset({53}), loss=0.0)
    options = SweepOptions(method="udp", port=53, timeout_s=0.2)
    async with open_memory_transport(network) as transport:
        with anyio.fail_after(5):
            result = await sweep_with(transport, TargetSpace.parse(["198.19.0.1-2"]), options)
    assert result.alive == ("198.19.0.1", "198.19.0.2")
    assert transport.registered == 0


def test_each_block_gets_the_source_address_routing_picks_for_it() -> None:
    """Found in review: one source per family sent probes for a second network out with
    the first one's source address."""
    space = TargetSpace.parse(["198.19.0.0/30", "203.0.113.0/30"])
    routes = {"198.19.0.1": "198.18.1.2", "203.0.113.1": "192.0.2.7"}
    machine = SweepMachine(
        space, iter(range(space.size)), SweepOptions(),
        source_for=routes.__getitem__, ident=1, cookies=Cookies(),
    )  # fmt: skip
    sources = {
        socket.inet_ntoa(out.packet[16:20]): socket.inet_ntoa(out.packet[12:16])
        for out in machine.poll(0.0)
    }
    assert sources == {
        "198.19.0.1": "198.18.1.2", "198.19.0.2": "198.18.1.2",
        "203.0.113.1": "192.0.2.7", "203.0.113.2": "192.0.2.7",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("family", "source", "spec"),
    [
        (socket.AF_INET, "198.18.1.2", "198.19.0.0/16"),
        (socket.AF_INET6, "2001:db8:1::2", "2001:db8:ff::/112"),
    ],
)
def test_echo_probes_equal_the_generic_encoders_byte_for_byte(
    family: int, source: str, spec: str
) -> None:
    """The sweep patches address, sequence, cookie and checksum into a template; the
    result must be what the wire encoders build from scratch (checksums included)."""
    space = TargetSpace.parse([spec])
    cookies = Cookies(b"s" * 32)
    probes = EchoProbes(space, [source], cookies, 0xBEEF)  # (the engine's echo template)
    for index in range(0, space.size, 997):
        destination = space.address(index)
        packed = space.packed(index)
        for attempt in range(11):
            target = Target(0, packed, int.from_bytes(packed, "big"))
            key, packet = probes.probe(target, 0, attempt)[:2]
            assert key == (KIND_ECHO, space.packed(index), 0xBEEF, attempt)
            if family == socket.AF_INET6:
                icmp = build_echo6(
                    0xBEEF, attempt, cookies.cookie(key), src=source, dst=destination
                )
                header6 = IPv6Header(src=source, dst=destination, next_header=58, hop_limit=64)
                assert packet == build_ipv6(header6, icmp)
            else:
                header = IPv4Header(src=source, dst=destination, protocol=1, ttl=64)
                icmp = build_echo(0xBEEF, attempt, cookies.cookie(key))
                expected = bytearray(build_ipv4(header, icmp))
                expected[10:12] = b"\0\0"  # the IP checksum is the kernel's (IP_HDRINCL)
                assert packet == bytes(expected)


def test_addresses_of_ascending_indices_across_blocks() -> None:
    space = TargetSpace.parse(
        ["198.19.0.0/29", "198.19.9.9", "2001:db8::/126", "10.0.0.1-3", "10.0.0.250-10.0.2.3"]
    )
    indices = [0, 1, 5, 6, 8, 9, 11, 12, 13, *range(14, space.size, 3)]
    assert list(space.addresses(indices)) == [space.address(i) for i in indices]
    everything = range(space.size)
    assert list(space.addresses(everything)) == [space.address(i) for i in everything]
    assert list(space.addresses([])) == []
