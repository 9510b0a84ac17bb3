"""The library's error contract and reach (issue 11, item 10), on simulated networks.

Public functions raise one RawProbeError, never an ExceptionGroup; a closed transport
raises TransportClosed; a transport without the sockets a probe needs raises UsageError
naming them; broadcast, multicast and 0.0.0.0 are refused as the CLI refuses them;
``privileged=`` climbs the CLI's ladder; ``rawprobe.sweep()`` exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

import rawprobe
from rawprobe.errors import sole_error
from rawprobe.transport import dgram, ladder, udp_dgram
from rawprobe.transport.memory import MemoryNetwork, MemoryTransport, open_memory_transport
from rawprobe.transport.sockets import raw_sockets_allowed

pytestmark = pytest.mark.anyio

ICMP_ONLY = frozenset(((socket.AF_INET, socket.IPPROTO_ICMP), (socket.AF_INET6, 58)))


def _network() -> MemoryNetwork:
    network = MemoryNetwork()
    for host in (1, 2, 5):
        network.add(f"198.19.0.{host}", open_ports=frozenset({22, 80}))
    network.add("2001:db8:ff::5")
    return network


class _RefusingTransport(MemoryTransport):
    """As the kernel refuses a directed broadcast: the route lookup fails (EACCES)."""

    def source_for(self, destination: str) -> str:
        if destination == "198.19.0.255":
            raise rawprobe.ResolutionError(f"{destination}: a broadcast destination (EACCES)")
        return super().source_for(destination)


@contextlib.asynccontextmanager
async def _own_transport(*_args: Any, **_kwargs: Any) -> AsyncIterator[MemoryTransport]:
    """What the patched ladder opens in place of raw sockets."""
    async with anyio.create_task_group() as task_group:
        transport = _RefusingTransport(_network(), task_group)
        try:
            yield transport
        finally:
            transport.close()
            task_group.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def _refused(*_args: Any, **_kwargs: Any) -> AsyncIterator[MemoryTransport]:
    raise rawprobe.PrivilegeError("raw sockets need root or CAP_NET_RAW")
    yield  # pragma: no cover


@pytest.fixture
def simulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Functions without ``transport=`` get simulated raw sockets; the list records
    which rung each call opened."""
    opened: list[str] = []

    def rung(name: str) -> Any:
        def open_it(*args: Any, **kwargs: Any) -> Any:
            opened.append(name)
            return _own_transport()

        return open_it

    monkeypatch.setattr(ladder, "open_transport", rung("raw"))
    monkeypatch.setattr(dgram, "open_datagram_transport", rung("icmp-datagram"))
    monkeypatch.setattr(udp_dgram, "open_udp_transport", rung("udp"))
    monkeypatch.setattr(ladder, "raw_sockets_allowed", lambda family: True)
    yield opened


# -- one error, never a group ------------------------------------------------------------


def test_sole_error_unwraps_nested_groups_and_ignores_cancellations() -> None:
    error = rawprobe.ResolutionError("x: EACCES")
    group = BaseExceptionGroup("", [asyncio.CancelledError(), ExceptionGroup("", [error])])
    assert sole_error(group) is error
    assert sole_error(ExceptionGroup("", [error, ValueError("bug")])) is None
    assert sole_error(BaseExceptionGroup("", [error, KeyboardInterrupt()])) is None


async def test_errors_under_the_transports_task_group_are_not_groups(
    simulated: list[str],
) -> None:
    with pytest.raises(rawprobe.ResolutionError, match="EACCES") as caught:
        await rawprobe.ping("198.19.0.255", count=1)
    assert isinstance(caught.value.__context__, BaseExceptionGroup)  # chained
    with pytest.raises(rawprobe.ResolutionError, match="EACCES"):
        await rawprobe.traceroute("198.19.0.255", max_ttl=2)
    with pytest.raises(rawprobe.ResolutionError, match="EACCES"):
        await rawprobe.syn_scan("198.19.0.255", [80])
    with pytest.raises(rawprobe.ResolutionError, match="EACCES"):
        await rawprobe.sweep("198.19.0.255")


async def test_an_error_inside_a_shared_transport_block_is_not_a_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rawprobe import api

    monkeypatch.setattr(api, "_open_raw_transport", _own_transport)
    with pytest.raises(rawprobe.UsageError, match="broadcast"):
        async with rawprobe.open_transport() as transport:
            await rawprobe.ping("255.255.255.255", transport=transport)


# -- closed transports and missing sockets ---------------------------------------------


async def test_a_closed_transport_raises_transport_closed() -> None:
    async with open_memory_transport(_network()) as transport:
        pass
    for call in (
        rawprobe.ping("198.19.0.5", count=1, transport=transport),
        rawprobe.traceroute("198.19.0.5", transport=transport),
        rawprobe.syn_scan("198.19.0.5", [80], transport=transport),
        rawprobe.sweep("198.19.0.0/30", transport=transport),
    ):
        with pytest.raises(rawprobe.TransportClosed):
            await call
    with pytest.raises(rawprobe.TransportClosed):
        transport.source_for("198.19.0.5")  # what the probes' own layer asks first


@pytest.mark.parametrize(
    ("call", "missing"),
    [
        (lambda t: rawprobe.traceroute("198.19.0.5", method="tcp", transport=t), "TCP/IPv4"),
        (lambda t: rawprobe.syn_scan("198.19.0.5", [80], transport=t), "TCP/IPv4"),
        (lambda t: rawprobe.sweep("198.19.0.0/30", method="udp", port=53, transport=t), "UDP"),
        (lambda t: rawprobe.sweep("2001:db8::/126", method="tcp-syn", port=80, transport=t),
         "TCP/IPv6"),
    ],
)  # fmt: skip
async def test_a_transport_without_the_sockets_needed_is_refused(call: Any, missing: str) -> None:
    async with open_memory_transport(_network()) as transport:
        transport.hears = ICMP_ONLY  # as rawprobe.open_transport() opens: ICMP only
        with pytest.raises(rawprobe.UsageError, match=f"has no {missing}") as caught:
            await call(transport)
        assert "protocols=" in str(caught.value)
        assert transport.counters.sent == 0  # refused before probing, not "not reached"


async def test_a_transport_that_cannot_send_the_probe_is_refused() -> None:
    async with open_memory_transport(_network()) as transport:
        transport.sends = ICMP_ONLY  # ICMP datagram sockets: echo requests only
        with pytest.raises(rawprobe.UsageError, match="cannot send UDP/IPv4"):
            await rawprobe.traceroute("198.19.0.5", method="udp", transport=transport)
        transport.sends = transport.hears = frozenset({(socket.AF_INET, socket.IPPROTO_ICMP)})
        with pytest.raises(rawprobe.UsageError, match="ICMPv6"):
            await rawprobe.ping("2001:db8:ff::5", count=1, transport=transport)
        result = await rawprobe.ping("198.19.0.5", count=1, interval_s=0, transport=transport)
        assert result.is_alive


# -- broadcast, multicast, 0.0.0.0 -----------------------------------------------------


@pytest.mark.parametrize("target", ["255.255.255.255", "224.0.0.1", "ff02::1", "239.1.2.3"])
async def test_broadcast_and_multicast_need_broadcast_true(
    target: str, simulated: list[str]
) -> None:
    for call in (
        rawprobe.ping(target, count=1),
        rawprobe.traceroute(target),
        rawprobe.syn_scan(target, [80]),
        rawprobe.sweep(target),
    ):
        with pytest.raises(rawprobe.UsageError, match="broadcast=True"):
            await call
    assert simulated == []  # refused before any socket was opened
    result = await rawprobe.ping(target, count=1, timeout_s=0.05, broadcast=True)
    assert result.transmitted == 1


@pytest.mark.parametrize("target", ["0.0.0.0", "::"])
async def test_the_unspecified_address_is_never_a_destination(
    target: str, simulated: list[str]
) -> None:
    with pytest.raises(rawprobe.UsageError, match="unspecified"):
        await rawprobe.ping(target, broadcast=True)
    with pytest.raises(rawprobe.UsageError, match="unspecified"):
        await rawprobe.sweep(target, broadcast=True)


@pytest.mark.parametrize(
    "call",
    [
        lambda: rawprobe.ping("198.19.0.5", count=1, source="192.0.2.1"),
        lambda: rawprobe.traceroute("198.19.0.5", source="192.0.2.1"),
        lambda: rawprobe.syn_scan("198.19.0.5", ports="80", source="192.0.2.1"),
    ],
    ids=["ping", "traceroute", "syn_scan"],
)
async def test_a_source_that_is_not_ours_is_refused(call: Any, simulated: list[str]) -> None:
    """As the CLI's -I/-S/-s: probes from another host's address would be spoofed (the
    check binds a UDP socket: nothing is sent)."""
    with pytest.raises(rawprobe.UsageError, match="Cannot assign requested address"):
        await call()
    assert simulated == []  # refused before any socket was opened


# -- privileged= ---------------------------------------------------------------------


async def test_privileged_none_falls_back_as_the_cli_does(
    simulated: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ladder, "open_transport", _refused)
    assert (await rawprobe.ping("198.19.0.5", count=1)).is_alive
    await rawprobe.traceroute("198.19.0.5", method="udp", max_ttl=4, queries=1, wait_s=0.2)
    assert (await rawprobe.sweep("198.19.0.0/29", timeout_s=0.2)).alive_count == 3
    assert simulated == ["icmp-datagram", "udp", "icmp-datagram"]
    with pytest.raises(rawprobe.PrivilegeError):
        await rawprobe.ping("198.19.0.5", count=1, privileged=True)
    with pytest.raises(rawprobe.PrivilegeError):  # TCP has no unprivileged way
        await rawprobe.traceroute("198.19.0.5", method="tcp")
    with pytest.raises(rawprobe.PrivilegeError):
        await rawprobe.sweep("198.19.0.0/29", method="tcp-syn", port=80)


async def test_privileged_false_never_opens_raw_sockets(simulated: list[str]) -> None:
    await rawprobe.ping("198.19.0.5", count=1, privileged=False)
    assert simulated == ["icmp-datagram"]
    with pytest.raises(rawprobe.UsageError, match="needs raw sockets"):
        await rawprobe.traceroute("198.19.0.5", method="tcp", privileged=False)
    with pytest.raises(rawprobe.UsageError, match="needs raw sockets"):
        await rawprobe.sweep("198.19.0.0/29", method="udp", port=53, privileged=False)
    assert simulated == ["icmp-datagram"]
    assert (await rawprobe.ping("198.19.0.5", count=1, privileged=True)).is_alive
    assert simulated == ["icmp-datagram", "raw"]


async def test_unprivileged_scan_is_a_connect_scan_on_loopback(simulated: list[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = await rawprobe.syn_scan("127.0.0.1", [port], privileged=False)
        assert result.technique == "connect"
        assert [(p.port, p.state) for h in result.hosts for p in h.ports] == [(port, "open")]
        async with rawprobe.syn_scan_stream("127.0.0.1", [port], privileged=False) as stream:
            streamed = [(p.port, p.state) async for p in stream]
        assert streamed == [(port, "open")]
        assert stream.result is not None and stream.result.technique == "connect"
    assert simulated == []
    with pytest.raises(rawprobe.UsageError, match="ACK scan needs raw sockets"):
        await rawprobe.syn_scan("127.0.0.1", [port], technique="ack", privileged=False)


async def test_a_scan_stream_takes_the_scans_options(simulated: list[str]) -> None:
    """syn_scan_stream has syn_scan's signature (one in rawprobe/api.py): keep_closed too."""
    with socket.socket() as closed:  # bound, not listening: refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        async with rawprobe.syn_scan_stream(
            "127.0.0.1", [port], privileged=False, keep_closed=True
        ) as stream:
            assert [(p.port, p.state) async for p in stream] == [(port, "closed")]
    assert simulated == []


# -- sweep() and shared transports without transport.sockets ------------------------------


async def test_sweep_finds_the_live_hosts(simulated: list[str]) -> None:
    result = await rawprobe.sweep(
        ["198.19.0.0/29", "2001:db8:ff::4-2001:db8:ff::6"], seed=7, timeout_s=0.2
    )
    assert isinstance(result, rawprobe.SweepResult)
    assert result.alive == ("198.19.0.1", "198.19.0.2", "198.19.0.5", "2001:db8:ff::5")
    assert result.dead_count == result.targets - 4
    async with open_memory_transport(_network()) as transport:
        tcp = await rawprobe.sweep("198.19.0.1-6", method="tcp-syn", port=80, transport=transport)
    assert tcp.alive == ("198.19.0.1", "198.19.0.2", "198.19.0.5")


def test_open_transport_takes_protocol_names() -> None:
    from rawprobe.api import _protocol_pairs

    v4, v6 = socket.AF_INET, socket.AF_INET6
    assert _protocol_pairs(("icmp", "tcp")) == [(v4, 1), (v6, 58), (v4, 6), (v6, 6)]
    assert _protocol_pairs("udp6") == [(v6, 17)]
    assert _protocol_pairs([(v4, 1), "icmp4"]) == [(v4, 1)]
    for bad in ("sctp", "tcp46", "4"):
        with pytest.raises(rawprobe.UsageError, match="bad protocol"):
            _protocol_pairs((bad,))


@pytest.mark.skipif(not raw_sockets_allowed(), reason="needs CAP_NET_RAW (opens, sends nothing)")
async def test_real_transport_named_protocols_and_closed_use() -> None:
    async with rawprobe.open_transport(protocols=("icmp",)) as icmp_only:
        with pytest.raises(rawprobe.UsageError, match="has no TCP/IPv4"):
            await rawprobe.syn_scan("198.19.0.5", [80], transport=icmp_only)
    async with rawprobe.open_transport(protocols=("icmp", "tcp", "udp")) as everything:
        assert {(socket.AF_INET, 6), (socket.AF_INET, 17)} <= everything.hears
    with pytest.raises(rawprobe.TransportClosed):
        await rawprobe.ping("198.19.0.5", transport=everything)
    with pytest.raises(rawprobe.TransportClosed):  # below the front door too
        everything.source_for("198.19.0.5")
