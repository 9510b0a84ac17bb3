"""Faults in the lab: each ends in results with reasons or a clean error, never a hang,
with no socket or task left behind. Every test runs on asyncio and trio.

- a transport closed while probes wait on it: TransportClosed, promptly;
- cancellation by the caller (``anyio.move_on_after``): no fd, no task left;
- sends the local stack refuses (unreachable, prohibit and throw routes): results;
- random loss on a router (iptables statistic): counts stay consistent, a sweep with
  retries still finds every host;
- the client's interface taken down mid-run: the ping ends with errors, no hang.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from rawprobe.errors import ResolutionError, TransportClosed
from rawprobe.lab import Lab, _ip_batch
from rawprobe.probes.ping import PingOptions, ping_protocols, ping_with
from rawprobe.probes.sweep import SweepOptions, sweep_with
from rawprobe.probes.targets import TargetSpace
from rawprobe.probes.traceroute import TraceOptions, trace_protocols, traceroute_with
from rawprobe.transport.raw import open_transport
from rawprobe.transport.sockets import ICMP_SOCKETS

pytestmark = [pytest.mark.lab, pytest.mark.anyio]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_transport_closed_while_probes_wait(lab: Lab) -> None:
    started = anyio.current_time()
    with pytest.raises(BaseExceptionGroup) as caught:
        async with anyio.create_task_group() as outer:
            with lab.entered("client"):
                async with open_transport(ping_protocols([lab.silent_v4])) as transport:
                    options = PingOptions(count=50, interval_s=0.1, timeout_s=1.0)
                    outer.start_soon(ping_with, transport, lab.silent_v4, options)
                    await anyio.sleep(0.25)
            # The block is left: the transport is closed under the waiting ping.
    leaves = list(caught.value.exceptions)
    assert all(isinstance(e, TransportClosed) for e in leaves), leaves
    assert anyio.current_time() - started < 1.0


@pytest.mark.parametrize("probe", ["ping", "trace", "sweep"])
async def test_cancellation_leaks_no_fd_and_no_task(lab: Lab, probe: str) -> None:
    fds_before = _fds()
    tasks_before = len(anyio.get_running_tasks())
    with anyio.move_on_after(0.3) as scope:
        with lab.entered("client"):
            if probe == "ping":
                async with open_transport(ping_protocols([lab.silent_v4])) as transport:
                    await ping_with(transport, lab.silent_v4, PingOptions(count=None))
            elif probe == "trace":
                protocols = trace_protocols([lab.silent_v4], "udp")
                async with open_transport(protocols) as transport:
                    options = TraceOptions(method="udp", wait_s=5.0, max_ttl=10)
                    await traceroute_with(transport, lab.silent_v4, options)
            else:
                space = TargetSpace.parse(["198.18.9.0/24"])  # silent: waits for timeouts
                options_sweep = SweepOptions(timeout_s=5.0, retries=3)
                async with open_transport(ICMP_SOCKETS, rate_pps=100) as transport:
                    await sweep_with(transport, space, options_sweep)
    assert scope.cancelled_caught
    await anyio.sleep(0)
    assert _fds() == fds_before
    assert len(anyio.get_running_tasks()) == tasks_before


@contextmanager
def _routes(lab: Lab, *routes: str) -> Iterator[None]:
    for route in routes:
        lab.run("client", "ip", "route", "add", *route.split())
    try:
        yield
    finally:
        for route in routes:
            lab.run("client", "ip", "route", "del", *route.split(), check=False)


async def test_refused_sends_are_results(lab: Lab) -> None:
    cases = {
        "198.19.7.1": ("EHOSTUNREACH", lab.client_v4),  # unreachable route
        "198.19.8.1": ("EACCES", lab.client_v4),  # prohibit route
        "2001:db8:ff::7:1": ("EHOSTUNREACH", lab.client_v6),
    }
    routes = (
        "unreachable 198.19.7.0/24",
        "prohibit 198.19.8.0/24",
        "unreachable 2001:db8:ff::7:0/112",
    )
    options = PingOptions(count=2, interval_s=0.05, timeout_s=0.5)
    with _routes(lab, *routes), lab.entered("client"):
        async with open_transport(ping_protocols(list(cases))) as transport:
            for address, (reason, source) in cases.items():
                # Without a source address, choosing one already fails: a clean error
                # naming the address (iputils: "connect: No route to host", exit 2).
                with pytest.raises(ResolutionError, match=address):
                    await ping_with(transport, address, options)
                # With one, every send is refused by the local stack: results.
                with anyio.fail_after(3):
                    result = await ping_with(transport, address, options, source=source)
                assert result.transmitted == 2 and result.received == 0
                assert [e.reason for e in result.errors] == [f"sendto: {reason}"] * 2, result
            space = TargetSpace.parse(["198.19.0.1-2", "198.19.7.0/30"])
            with anyio.fail_after(5):
                swept = await sweep_with(transport, space, SweepOptions(timeout_s=0.3))
            assert swept.alive == ("198.19.0.1", "198.19.0.2")
            assert swept.dead_count == 2


@contextmanager
def _loss(lab: Lab, role: str, probability: float) -> Iterator[None]:
    rule = ["FORWARD", "-m", "statistic", "--mode", "random", "--probability",
            str(probability), "-j", "DROP"]  # fmt: skip
    for tool in ("iptables", "ip6tables"):
        lab.run(role, tool, "-I", *rule)
    try:
        yield
    finally:
        for tool in ("iptables", "ip6tables"):
            lab.run(role, tool, "-D", *rule, check=False)


async def test_random_loss_leaves_results_consistent(lab: Lab) -> None:
    with _loss(lab, "r2", 0.1), lab.entered("client"):
        async with open_transport(ping_protocols([lab.target_v4])) as transport:
            options = PingOptions(count=40, interval_s=0.01, timeout_s=0.5)
            result = await ping_with(transport, lab.target_v4, options)
            assert result.transmitted == 40
            assert 10 <= result.received < 40  # ~81% expected; some loss for sure
            assert len({r.seq for r in result.replies}) == result.received  # no duplicate
            space = TargetSpace.parse(["198.19.3.0/26"])
            swept = await sweep_with(transport, space, SweepOptions(timeout_s=0.2, retries=8))
            assert len(swept.alive) == 62  # every host found despite the loss


def _restore_client(lab: Lab) -> None:
    """Bring the client's link back with its addresses and routes (a link going down
    flushes the routes through it, and IPv6 addresses)."""
    script = _ip_batch("client").replace(" add ", " replace ")
    lab.run("client", "ip", "-batch", "-", input=script)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done = lab.run("client", "ping", "-c", "1", "-W", "1", lab.target_v6, check=False)
        if done.returncode == 0:
            return
    raise AssertionError("the client link did not come back")


async def test_interface_down_mid_run_ends_in_results(lab: Lab) -> None:
    try:
        with lab.entered("client"):
            async with open_transport(ping_protocols([lab.target_v4])) as transport:
                options = PingOptions(count=10, interval_s=0.1, timeout_s=0.5)
                async with anyio.create_task_group() as group:

                    async def take_down() -> None:
                        await anyio.sleep(0.35)
                        await anyio.run_process(
                            ["ip", "netns", "exec", lab.ns("client"), "ip", "link", "set",
                             "eth0", "down"]
                        )  # fmt: skip

                    group.start_soon(take_down)
                    with anyio.fail_after(5):
                        result = await ping_with(transport, lab.target_v4, options)
        assert result.transmitted == 10
        assert 2 <= result.received <= 5
        assert result.errors, "sends after the link went down must report an error"
        assert all(e.reason.startswith("sendto: ") for e in result.errors)
        assert result.received + len(result.errors) <= 10
    finally:
        _restore_client(lab)
