"""Simulated load-balanced networks for the MDA tests (``SimHost.routes``), their truth,
and a pure driver that runs a MultipathMachine against one without a transport; and
the truth of the lab's multipath topologies (``lab_truth``, ``answered_from``,
``lab_targets``) for the lab tests and the MDA benches.

The graphs copy the lab's ``ecmp4`` and ``nested`` topologies (rawprobe/topologies/),
IPv4 addresses and ICMPv4's habit of answering from the interface toward the client
(r2 is 198.18.6.2 / 198.18.7.2 whichever branch a probe came by).
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Mapping, Sequence

from rawprobe.probes.multipath import MultipathMachine, MultipathOptions
from rawprobe.probes.trace_models import MultipathResult
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies, key_of_reply_v4
from rawprobe.transport.memory import flow_path
from rawprobe.transport.wire.icmp import build_icmp
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4

Routes = Mapping[str, Sequence[str]]

SOURCE = "198.18.1.2"
TARGET = "198.19.0.5"

#: ecmp4: r1 over four branches of 1, 1, 2 and 3 routers, meeting at r2.
ECMP4: Routes = {
    "": ("198.18.1.1",),
    "198.18.1.1": ("198.18.2.2", "198.18.3.2", "198.18.4.2", "198.18.5.2"),
    "198.18.2.2": ("198.18.6.2",),
    "198.18.3.2": ("198.18.6.2",),
    "198.18.4.2": ("198.18.8.2",),
    "198.18.8.2": ("198.18.6.2",),
    "198.18.5.2": ("198.18.10.2",),
    "198.18.10.2": ("198.18.11.2",),
    "198.18.11.2": ("198.18.6.2",),
    "198.18.6.2": (),
}
#: nested: r1 over a1 and b1; a1 over c1 and d1; b1 to b2; all meet at r2.
NESTED: Routes = {
    "": ("198.18.1.1",),
    "198.18.1.1": ("198.18.2.2", "198.18.3.2"),
    "198.18.2.2": ("198.18.4.2", "198.18.5.2"),
    "198.18.3.2": ("198.18.6.2",),
    "198.18.4.2": ("198.18.7.2",),
    "198.18.5.2": ("198.18.7.2",),
    "198.18.6.2": ("198.18.7.2",),
    "198.18.7.2": (),
}
#: Graphs that break MDA-Lite's assumption (no meshing: no interface with several next
#: hops at a TTL where another is reached from several).
#: mesh: r1 over a1 and b1, each of them over both a2 and b2 (a full mesh), then r2.
MESH: Routes = {
    "": ("198.18.1.1",),
    "198.18.1.1": ("198.18.2.2", "198.18.3.2"),
    "198.18.2.2": ("198.18.4.2", "198.18.5.2"),
    "198.18.3.2": ("198.18.4.2", "198.18.5.2"),
    "198.18.4.2": ("198.18.6.2",),
    "198.18.5.2": ("198.18.6.2",),
    "198.18.6.2": (),
}
#: meshlink: nested with one more link, b1 to d1 (not b2): d1 is reached from a1 and
#: from b1, while a1 splits over c1 and d1.
MESHLINK: Routes = {
    "": ("198.18.1.1",),
    "198.18.1.1": ("198.18.2.2", "198.18.3.2"),
    "198.18.2.2": ("198.18.4.2", "198.18.5.2"),
    "198.18.3.2": ("198.18.5.2",),
    "198.18.4.2": ("198.18.7.2",),
    "198.18.5.2": ("198.18.7.2",),
    "198.18.7.2": (),
}
#: hidden: nested where c1 also splits, over r2 and x: at c1's TTL, r2 is reached from
#: c1, d1 and b2 (it looks convergent), and only c1's flows find x (1 flow in 8).
HIDDEN: Routes = {
    "": ("198.18.1.1",),
    "198.18.1.1": ("198.18.2.2", "198.18.3.2"),
    "198.18.2.2": ("198.18.4.2", "198.18.5.2"),
    "198.18.3.2": ("198.18.6.2",),
    "198.18.4.2": ("198.18.7.2", "198.18.9.2"),
    "198.18.5.2": ("198.18.7.2",),
    "198.18.6.2": ("198.18.7.2",),
    "198.18.9.2": ("198.18.7.2",),
    "198.18.7.2": (),
}
#: a line of three routers.
LINE: Routes = {
    "": ("198.18.1.1",),
    "198.18.1.1": ("198.18.2.2",),
    "198.18.2.2": ("198.18.3.2",),
    "198.18.3.2": (),
}
#: r1, then two branches that are the last routers before the target.
FORK: Routes = {
    "": ("198.18.1.1",),
    "198.18.1.1": ("198.18.2.2", "198.18.3.2"),
    "198.18.2.2": (),
    "198.18.3.2": (),
}


#: The load-balanced graphs by name (benches, honesty tests).
GRAPHS: dict[str, Routes] = {
    "ecmp4": ECMP4, "nested": NESTED, "mesh": MESH, "meshlink": MESHLINK, "hidden": HIDDEN,
}  # fmt: skip


def v6(routes: Routes) -> Routes:
    """The same graph over IPv6: 198.18.X.Y is 2001:db8:X::Y."""

    def six(address: str) -> str:
        if not address:
            return address
        _, _, x, y = address.split(".")
        return f"2001:db8:{x}::{y}"

    return {six(at): tuple(six(n) for n in nexts) for at, nexts in routes.items()}


def truth(routes: Routes, target: str) -> frozenset[tuple[int, str]]:
    """Every (TTL, interface) some flow meets on its way to ``target``."""
    nodes: set[tuple[int, str]] = set()

    def walk(at: str, ttl: int) -> None:
        if not routes[at]:
            nodes.add((ttl, target))
        for after in routes[at]:
            nodes.add((ttl, after))
            walk(after, ttl + 1)

    walk("", 1)
    return frozenset(nodes)


#: Decides whether a probe is answered: (packet, how many packets of its (flow, TTL)
#: were sent before it) -> answer it?
Answering = Callable[[bytes, int], bool]


def _answer(path: Sequence[str], packet: bytes, now: float, silent: Sequence[str]) -> Reply | None:
    """The ICMPv4 error a UDP probe on ``path`` draws: time exceeded from the router
    where its TTL ends, port unreachable from the target beyond the last one."""
    ttl = packet[8]
    if ttl <= len(path):
        sender, icmp_type, code = path[ttl - 1], 11, 0
    else:
        sender, icmp_type, code = socket.inet_ntop(socket.AF_INET, packet[16:20]), 3, 3
    if sender in silent:
        return None
    quote = packet[:8] + b"\x01" + packet[9:28]
    message = build_icmp(icmp_type, code, 0, quote)
    error = build_ipv4(IPv4Header(src=sender, dst=SOURCE, protocol=1, ttl=60), message)
    key = key_of_reply_v4(error)
    assert key is not None
    return Reply(key, socket.AF_INET, error[12:16], error, 60, int(now * 1e9), now, 1)


def run_pure(
    routes: Routes,
    options: MultipathOptions | None = None,
    *,
    seed: int = 0,
    target: str = TARGET,
    answering: Answering | None = None,
    silent: Sequence[str] = (),
    rtt_s: float = 0.001,
) -> tuple[MultipathMachine, list[bytes]]:
    """Run a UDP MultipathMachine to ``target`` through ``routes`` with plain numbers
    for ``now`` (every probe answered ``rtt_s`` after it left, unless ``answering``
    says no or its router is ``silent``); the machine and every packet it sent."""
    options = options or MultipathOptions(flow_base=0)
    machine = MultipathMachine(
        target, source=SOURCE, cookies=Cookies(b"k" * 32), options=options, flow_base=0
    )
    sent: list[bytes] = []
    tries: dict[tuple[bytes, int], int] = {}
    paths: dict[bytes, list[str]] = {}  # (addresses and ports) -> the flow's routers
    now = 0.0
    for _ in range(100_000):
        if machine.done:
            return machine, sent
        batch = machine.poll(now)
        replies = []
        for out in batch:
            machine.sent_batch([out.key], [Sent(int(now * 1e9), now)], now)
            sent.append(out.packet)
            flow = (out.packet[20:22], out.packet[8])  # (source port, TTL)
            before = tries.get(flow, 0)
            tries[flow] = before + 1
            if answering is None or answering(out.packet, before):
                fields = out.packet[12:24]
                path = paths.get(fields)
                if path is None:
                    path = paths[fields] = flow_path(routes, seed, out.packet)
                reply = _answer(path, out.packet, now + rtt_s, silent)
                if reply is not None:
                    replies.append(reply)
        if replies:
            now += rtt_s
            machine.receive_batch(replies, now)
        elif not batch:
            now = max(now, machine.next_deadline())
    raise AssertionError("the machine never finished")


def result_of(routes: Routes, **kw: object) -> MultipathResult:
    return run_pure(routes, **kw)[0].result()  # type: ignore[arg-type]


# -- the lab's topologies ------------------------------------------------------------------


def lab_truth(
    paths: Sequence[Sequence[str]], target: str
) -> tuple[frozenset[tuple[int, str]], frozenset[tuple[int, str, str]]]:
    """The (TTL, interface) pairs and (TTL, from, to) links of a topology's paths
    (``Lab.paths_v4``/``paths_v6``) to ``target``."""
    nodes: set[tuple[int, str]] = set()
    links: set[tuple[int, str, str]] = set()
    for path in paths:
        hops = [*path, target]
        nodes.update((ttl, hop) for ttl, hop in enumerate(hops, 1))
        links.update((ttl, a, b) for ttl, (a, b) in enumerate(itertools.pairwise(hops), 1))
    return frozenset(nodes), frozenset(links)


def answered_from(result: MultipathResult) -> str:
    """The address the destination answered from: the one probed, except over IPv6 for
    the target's AnyIP range, where Linux picks a configured address for the ICMPv6
    error (the target's own link address)."""
    reached = {p.address for hop in result.hops for p in hop.responses if p.reached}
    return reached.pop() if len(reached) == 1 else result.address


def lab_targets(run: int, count: int) -> list[str]:
    """``count`` IPv4 then ``count`` IPv6 addresses of the lab target's ranges, other
    ones for each ``run`` (so each run's flows hash anew)."""
    v4 = [f"198.19.{run + 1}.{i + 1}" for i in range(count)]
    v6 = [f"2001:db8:ff::{run + 1:x}:{i + 1:x}" for i in range(count)]
    return v4 + v6
