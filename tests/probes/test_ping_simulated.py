"""Ping over the simulated network, on asyncio and trio, through the real demux."""

import anyio
import pytest
import trio
import trio.testing

from rawprobe.probes.ping import PingOptions, ping_many_with, ping_with
from rawprobe.probes.ping_models import PingReply
from rawprobe.transport.keys import Cookies, key_of_sent
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport
from rawprobe.transport.wire.icmp import build_echo
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4

pytestmark = pytest.mark.anyio

FAST = PingOptions(count=3, interval_s=0.01, timeout_s=0.2)


async def test_ping_v4_and_v6_hosts_reply_with_ttl_and_rtt() -> None:
    network = MemoryNetwork()
    network.add("198.19.0.5", delay_s=0.005)
    network.add("2001:db8:ff::5", delay_s=0.005)
    async with open_memory_transport(network) as transport:
        v4, v6 = await ping_many_with(transport, ["198.19.0.5", "2001:db8:ff::5"], FAST)
    for result in (v4, v6):
        assert (result.transmitted, result.received, result.packet_loss) == (3, 3, 0.0)
        assert all(0.004 < rtt < 0.1 for rtt in result.rtts)
        assert {reply.ttl for reply in result.replies} == {61}
        assert {reply.size for reply in result.replies} == {64}
    assert transport.counters.forged == 0 and transport.counters.malformed == 0


async def test_silent_host_is_all_loss_not_an_error() -> None:
    network = MemoryNetwork()
    network.add("198.19.0.9", alive=False)
    async with open_memory_transport(network) as transport:
        result = await ping_with(transport, "198.19.0.9", FAST)
    assert (result.transmitted, result.received, result.is_alive) == (3, 0, False)


async def test_forged_replies_are_never_counted() -> None:
    network = MemoryNetwork(forge_replies=True)
    network.add("198.19.0.5")
    network.add("2001:db8:ff::5")
    async with open_memory_transport(network) as transport:
        results = await ping_many_with(transport, ["198.19.0.5", "2001:db8:ff::5"], FAST)
    assert [r.received for r in results] == [3, 3]
    assert all(not reply.duplicate for r in results for reply in r.replies)
    assert transport.counters.forged == 6


async def test_reply_for_another_transports_probe_is_unmatched() -> None:
    network = MemoryNetwork()
    async with open_memory_transport(network) as transport:
        # Another process's echo reply to the same host: unknown ident -> unmatched.
        echo = build_echo(0xBEEF, 1, bytes(56), reply=True)
        header = IPv4Header(src="198.19.0.5", dst="198.18.1.2", protocol=1)
        transport.inject(build_ipv4(header, echo))
        transport.inject(b"\x45\x00")  # truncated: malformed, counted, no exception
    assert transport.counters.unmatched == 1
    assert transport.counters.malformed == 1


async def test_loss_duplicates_and_errors() -> None:
    network = MemoryNetwork(seed=3)
    network.add("198.19.0.1", loss=0.5)
    network.add("198.19.0.2", duplicates=1)
    network.add("198.19.0.3", error=(3, 1))
    options = PingOptions(count=20, interval_s=0.001, timeout_s=0.2)
    async with open_memory_transport(network) as transport:
        lossy, dup, unreachable = await ping_many_with(
            transport, ["198.19.0.1", "198.19.0.2", "198.19.0.3"], options
        )
    assert 0 < lossy.received < 20
    # The last duplicate may arrive after the ping has ended (as with iputils).
    assert dup.received == 20 and dup.duplicates in (19, 20)
    assert unreachable.received == 0 and len(unreachable.errors) == 20
    assert unreachable.errors[0].reason == "Destination Host Unreachable"
    assert unreachable.errors[0].source == "198.18.3.2"


async def test_ttl_exceeded_names_the_router_of_that_hop() -> None:
    network = MemoryNetwork()
    network.add("2001:db8:ff::5", hops=3)
    options = PingOptions(count=1, ttl=2, timeout_s=0.2)
    async with open_memory_transport(network) as transport:
        result = await ping_with(transport, "2001:db8:ff::5", options)
    [error] = result.errors
    assert error.source == "2001:db8:2::2"
    assert error.reason == "Time exceeded: Hop limit"


async def test_error_quoting_only_8_bytes_still_matches() -> None:
    network = MemoryNetwork()
    network.add("198.19.0.5", hops=3, quote_bytes=8)
    options = PingOptions(count=1, ttl=1, timeout_s=0.2)
    async with open_memory_transport(network) as transport:
        result = await ping_with(transport, "198.19.0.5", options)
    assert [e.source for e in result.errors] == ["198.18.1.1"]


async def test_events_arrive_while_the_ping_runs() -> None:
    network = MemoryNetwork()
    network.add("198.19.0.5")
    seen: list[object] = []
    async with open_memory_transport(network) as transport:
        await ping_with(transport, "198.19.0.5", FAST, on_event=seen.append)
    assert [e.seq for e in seen if isinstance(e, PingReply)] == [1, 2, 3]


async def test_cancellation_unregisters_every_key() -> None:
    network = MemoryNetwork()
    network.add("198.19.0.5", delay_s=10)
    async with open_memory_transport(network) as transport:
        with anyio.move_on_after(0.05):
            await ping_with(transport, "198.19.0.5", PingOptions(count=None, interval_s=0.01))
        assert transport.registered == 0


async def test_many_hosts_share_the_transport() -> None:
    network = MemoryNetwork()
    hosts = [f"198.19.{i // 250}.{i % 250 + 1}" for i in range(500)]
    for host in hosts:
        network.add(host, delay_s=0.01)
    # A generous timeout: this runs in real time, and a loaded machine delays the replies.
    options = PingOptions(count=2, interval_s=0.05, timeout_s=10.0)
    async with open_memory_transport(network, cookies=Cookies()) as transport:
        results = await ping_many_with(transport, hosts, options)
    assert sum(r.received for r in results) == 1000
    assert transport.socket_count == 2
    assert len({key_of_sent(p) for p in transport.sent_packets}) == 1000


def test_virtual_time_makes_a_long_ping_instant() -> None:
    """With trio's autojump clock, 100 probes at 1 s intervals take no real time."""

    async def main() -> None:
        network = MemoryNetwork()
        network.add("198.19.0.5", delay_s=0.25)
        options = PingOptions(count=100, interval_s=1.0, timeout_s=2.0)
        async with open_memory_transport(network) as transport:
            start = trio.current_time()
            result = await ping_with(transport, "198.19.0.5", options)
            elapsed = trio.current_time() - start
        assert result.received == 100
        assert result.rtts == pytest.approx((0.25,) * 100, abs=1e-6)
        assert elapsed == pytest.approx(99.25, abs=0.01)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_forged_empty_echo_reply_is_refused() -> None:
    """Right ident and seq, no payload: refused (it used to pass the cookie check)."""
    network = MemoryNetwork()
    network.add("198.19.0.5", alive=False)
    async with open_memory_transport(network) as transport:
        machine_result: list[object] = []

        async def forge_while_pinging() -> None:
            await anyio.sleep(0.01)
            [packet] = transport.sent_packets
            ident, seq = int.from_bytes(packet[24:26]), int.from_bytes(packet[26:28])
            echo = build_echo(ident, seq, b"", reply=True)
            transport.inject(
                build_ipv4(IPv4Header(src="198.19.0.5", dst="198.18.1.2", protocol=1), echo)
            )

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(forge_while_pinging)
            machine_result.append(
                await ping_with(transport, "198.19.0.5", PingOptions(count=1, timeout_s=0.1))
            )
    [result] = machine_result
    assert result.received == 0  # type: ignore[attr-defined]
    assert transport.counters.forged == 1


async def test_small_payloads_still_match_by_key() -> None:
    network = MemoryNetwork()
    network.add("198.19.0.5")
    async with open_memory_transport(network) as transport:
        result = await ping_with(transport, "198.19.0.5", PingOptions(count=2, payload_size=0))
    assert result.received == 2 and transport.counters.forged == 0
