"""``rawprobe demo``: build a lab, ping, trace, scan and sweep it, tear it down.

The probes run in this process with their sockets opened inside the lab's client
namespace, so every packet stays inside namespaces this run created.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from rich.console import Console

from rawprobe.cli import render
from rawprobe.cli.args import add_backend_option
from rawprobe.cli.render_scan import scan_report
from rawprobe.cli.render_trace import trace_table
from rawprobe.lab import Lab, lab
from rawprobe.probes.ping import PingOptions, ping_many_with
from rawprobe.probes.portspec import parse_ports
from rawprobe.probes.scan import ScanOptions, syn_scan_with
from rawprobe.probes.sweep import SweepOptions, sweep_with
from rawprobe.probes.targets import TargetSpace
from rawprobe.probes.traceroute import TraceOptions, traceroute_with
from rawprobe.transport import privileges
from rawprobe.transport.base import Transport
from rawprobe.transport.raw import open_transport
from rawprobe.transport.sockets import TCP_SOCKETS


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="build a lab, probe it, tear it down")
    add_backend_option(demo)
    demo.set_defaults(handler=lambda args: run_demo(args.backend))


def run_demo(backend: str) -> int:
    """Run the demo on ``backend``; returns 0 when the lab behaved as expected."""
    privileges.drop_after_open(False)  # it must stay root to tear the lab down
    console = Console(highlight=False)
    started = time.monotonic()
    console.rule("rawprobe demo")
    console.print("building the lab: client -> r1 -> r2 -> r3 -> target (network namespaces)")
    with lab() as the_lab:
        console.print(f"lab {the_lab.prefix} up in {time.monotonic() - started:.2f} s")
        ok: bool = anyio.run(_probe_lab, the_lab, console, backend=backend)
    console.print(f"lab torn down; demo took {time.monotonic() - started:.2f} s")
    return 0 if ok else 1


async def _probe_lab(the_lab: Lab, console: Console) -> bool:
    """Ping, trace, scan and sweep the lab; True when every answer is the expected one."""
    checks: list[tuple[str, bool]] = []
    # Sockets opened while the thread is in the client namespace stay there.
    with the_lab.entered("client"):
        async with open_transport(TCP_SOCKETS) as transport:
            checks += await _ping(the_lab, console, transport)
            checks += await _trace(the_lab, console, transport)
            checks += await _scan(the_lab, console, transport)
            checks += await _sweep(the_lab, console, transport)
            counters = transport.counters.as_dict()
    console.rule("verdict")
    console.print(f"one transport, {len(TCP_SOCKETS)} raw sockets; counters: {counters}")
    for what, ok in checks:
        console.print(f"{'[green]ok[/]' if ok else '[red]NOT as expected[/]'}  {what}")
    return all(ok for _what, ok in checks)


async def _ping(the_lab: Lab, console: Console, transport: Transport) -> list[tuple[str, bool]]:
    options = PingOptions(count=3, interval_s=0.2, timeout_s=1.0)
    for address in (the_lab.target_v4, the_lab.target_v6):
        console.rule(f"rawprobe ping -c 3 -i 0.2 {address}")
        console.print(render.ping_banner(address, address, options.payload_size))
        [result] = await ping_many_with(
            transport,
            [address],
            options,
            on_event=lambda _address, event: _print_event(console, event),
        )
        console.print()
        for line in render.ping_summary(result):
            console.print(line)
    targets = [the_lab.target_v4, the_lab.target_v6, *the_lab.router_v4, the_lab.silent_v4]
    console.rule(f"rawprobe ping: {len(targets)} hosts at once")
    results = await ping_many_with(transport, targets, options)
    console.print(render.ping_table(results))
    alive = {r.address: r.is_alive for r in results}
    expected = {address: address != the_lab.silent_v4 for address in targets}
    return [("ping: every host answered, the silent address did not", alive == expected)]


async def _trace(the_lab: Lab, console: Console, transport: Transport) -> list[tuple[str, bool]]:
    checks = []
    for address, routers in ((the_lab.target_v4, the_lab.router_v4),
                             (the_lab.target_v6, the_lab.router_v6)):  # fmt: skip
        for method in ("icmp", "tcp"):
            options = TraceOptions(method=method, wait_s=1.0)
            result = await traceroute_with(transport, address, options)
            console.rule(f"rawprobe trace -M {method} {address} (Paris)")
            console.print(trace_table(result))
            path = [hop.addresses[0] if hop.addresses else "*" for hop in result.hops]
            checks.append((f"trace -M {method} {address}: {' > '.join(path)}",
                           result.reached and path == [*routers, address]))  # fmt: skip
    return checks


async def _scan(the_lab: Lab, console: Console, transport: Transport) -> list[tuple[str, bool]]:
    console.rule(f"rawprobe scan -p 1-3000,8080,8443 {the_lab.target_v4}")
    ports = parse_ports("1-3000,8080,8443")
    space = TargetSpace.parse([the_lab.target_v4])
    result = await syn_scan_with(transport, space, ports, ScanOptions(max_rate_pps=0))
    for line in scan_report(result, reason=True):
        console.print(line)
    [host] = result.hosts
    expected_open = sorted(p for p in the_lab.open_ports if p in set(ports))
    return [(f"scan: open {host.open_ports}, 1000-1999 filtered, 2000-2999 prohibited",
             sorted(host.open_ports) == expected_open)]  # fmt: skip


async def _sweep(the_lab: Lab, console: Console, transport: Transport) -> list[tuple[str, bool]]:
    console.rule("rawprobe sweep 198.19.0.0/20 2001:db8:ff::/116 198.18.200.0/29")
    space = TargetSpace.parse(["198.19.0.0/20", "2001:db8:ff::/116", "198.18.200.0/29"])
    result = await sweep_with(transport, space, SweepOptions(timeout_s=0.5))
    console.print(
        f"{result.alive_count} of {space.size} hosts up in {result.elapsed_s:.2f} s"
        f" ({result.rate_pps:,.0f} probes/s)"
    )
    return [("sweep: every lab address up, the silent /29 down",
             result.alive_count == 4094 + 4096 and result.dead_count == 6)]  # fmt: skip


def _print_event(console: Console, event: object) -> None:
    line = render.ping_event_line(event)
    if line is not None:
        console.print(line)
