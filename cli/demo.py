"""``rawprobe demo``: build a lab, ping through it, tear it down.

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
from rawprobe.lab import Lab, lab
from rawprobe.probes.ping import PingOptions, ping_many_with, ping_protocols
from rawprobe.transport import privileges
from rawprobe.transport.raw import open_transport


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
    targets = [the_lab.target_v4, the_lab.target_v6, *the_lab.router_v4, the_lab.silent_v4]
    options = PingOptions(count=3, interval_s=0.2, timeout_s=1.0)
    # Sockets opened while the thread is in the client namespace stay there.
    with the_lab.entered("client"):
        async with open_transport(ping_protocols(targets)) as transport:
            for address in (the_lab.target_v4, the_lab.target_v6):
                console.rule(f"ping -c 3 -i 0.2 {address}")
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
            console.rule(f"{len(targets)} hosts at once, over {transport.socket_count} sockets")
            results = await ping_many_with(transport, targets, options)
            console.print(render.ping_table(results))
            counters = transport.counters.as_dict()
    console.print(f"transport counters: {counters}")
    alive = {r.address: r.is_alive for r in results}
    expected = {address: address != the_lab.silent_v4 for address in targets}
    ok = alive == expected
    verdict = "[green]as expected[/]" if ok else "[red]NOT as expected[/]"
    console.print(f"every target answered, the silent address did not: {verdict}")
    return ok


def _print_event(console: Console, event: object) -> None:
    line = render.ping_event_line(event)
    if line is not None:
        console.print(line)
