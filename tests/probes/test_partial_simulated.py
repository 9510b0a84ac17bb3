"""Interrupted probes report what was decided and count only what was sent; decisions
stream out while a paced batch is still being sent (simulated network, both backends).

The simulated transport is paced here by a sleep before each packet, as the token
bucket of a real transport at a low ``--rate`` makes ``send_batch`` wait.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import anyio
import output_check
import pytest

from rawprobe.cli import render, render_scan, render_trace
from rawprobe.probes.drive import drive
from rawprobe.probes.ping import PingOptions
from rawprobe.probes.ping import new_machine as new_ping
from rawprobe.probes.scan import ScanOptions
from rawprobe.probes.scan import new_machine as new_scan
from rawprobe.probes.sweep import HostDown, HostUp, SweepOptions
from rawprobe.probes.sweep import new_machine as new_sweep
from rawprobe.probes.trace_models import TraceResult
from rawprobe.probes.traceroute import TraceOptions, trace_many_with
from rawprobe.targets import resolve_targets
from rawprobe.transport.base import Inbox, Sent
from rawprobe.transport.memory import MemoryNetwork, MemoryTransport, open_memory_transport

pytestmark = pytest.mark.anyio

GAP_S = 0.005  # pacing: one packet per 5 ms (200 packets/s)


def pace(transport: MemoryTransport) -> None:
    """Make every send wait ``GAP_S`` first, as a rate cap does."""
    send = transport.send

    async def paced(packet: bytes) -> Sent:
        await anyio.sleep(GAP_S)
        return await send(packet)

    transport.send = paced  # type: ignore[method-assign]


def live_network(count: int, silent: Sequence[int] = ()) -> MemoryNetwork:
    net = MemoryNetwork(seed=1)
    for host in range(1, count + 1):
        if host not in silent:
            net.add(f"198.19.5.{host}", delay_s=0.001)
    return net


async def test_a_sweep_streams_hosts_while_a_paced_batch_is_sent() -> None:
    """All 200 targets fit one batch of the machine; their answers must not wait for
    the whole batch (1 s) to be sent."""
    async with open_memory_transport(live_network(200)) as transport:
        pace(transport)
        space = await resolve_targets(["198.19.5.1-200"])
        machine = new_sweep(transport, space, iter(range(space.size)), SweepOptions(),
                            emit_events=True)  # fmt: skip
        start = anyio.current_time()
        seen: list[float] = []
        await drive(machine, transport, on_event=lambda _e: seen.append(anyio.current_time()))
        end = anyio.current_time()
    assert len(seen) == 200
    # The first host is reported within the first tenth of the run, not at its end.
    assert seen[0] - start < (end - start) / 10, (seen[0] - start, end - start)


async def test_an_interrupted_sweep_counts_only_what_was_sent_and_decided() -> None:
    silent = range(1, 201, 4)  # every fourth host never answers
    async with open_memory_transport(live_network(200, silent)) as transport:
        pace(transport)
        space = await resolve_targets(["198.19.5.1-200"])
        machine = new_sweep(transport, space, iter(range(space.size)),
                            SweepOptions(timeout_s=0.05), emit_events=True)  # fmt: skip
        events: list[object] = []
        with anyio.move_on_after(0.4):  # about 80 of 200 probes
            await drive(machine, transport, on_event=events.append)
        outcome = machine.outcome(anyio.current_time())
        sent = len(transport.sent_packets)
    assert 10 < sent < 200
    assert outcome.probes_sent == sent  # never the undrawn or unsent targets
    up = [e for e in events if isinstance(e, HostUp)]
    down = [e for e in events if isinstance(e, HostDown)]
    alive = len(outcome.alive)
    assert alive == len(up) > 0 and outcome.dead_count == len(down)
    # Hosts never probed (or still awaited) are neither up nor down.
    assert alive + outcome.dead_count <= sent < space.size
    assert all(int(e.address.rsplit(".", 1)[1]) % 4 == 1 for e in down)


async def test_an_interrupted_drive_counts_the_replies_already_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replies queued in the inbox when the signal comes are part of the partial
    result: here the loop is never woken by a reply, so only that last hand-over
    can count them."""

    async def never_woken(_inbox: Inbox) -> None:
        await anyio.sleep_forever()

    monkeypatch.setattr(Inbox, "wait", never_woken)
    async with open_memory_transport(live_network(4)) as transport:
        space = await resolve_targets(["198.19.5.1-4"])
        machine = new_sweep(transport, space, iter(range(space.size)), SweepOptions())
        with anyio.move_on_after(0.1):  # the answers (1 ms) wait in the inbox
            await drive(machine, transport)
        outcome = machine.outcome(anyio.current_time())
    assert len(outcome.alive) == 4
    assert outcome.probes_sent == 4


def silent_after_three() -> MemoryNetwork:
    net = MemoryNetwork(seed=2)
    net.add("198.19.0.9", alive=False, hops=3)  # routers answer, the host never does
    return net


async def test_an_interrupted_trace_yields_its_hops_so_far() -> None:
    async with open_memory_transport(silent_after_three()) as transport:
        options = TraceOptions(queries=1, wait_s=5.0, max_ttl=10)
        traces = trace_many_with(transport, ["198.19.0.9"], options)
        finished = None
        with anyio.move_on_after(0.3):
            async with traces as finished:
                async for _result in finished:
                    raise AssertionError("the trace cannot finish within 0.3 s")
        assert finished is not None
        (partial,) = finished.remaining()
        sent = len(transport.sent_packets)
    assert isinstance(partial, TraceResult) and not partial.finished
    assert [hop.addresses for hop in partial.hops[:3]] == [
        ("198.18.1.1",),
        ("198.18.2.2",),
        ("198.18.3.2",),
    ]
    assert partial.probes_sent == sent == sum(hop.sent for hop in partial.hops)
    assert all(hop.pending == (0,) for hop in partial.hops[3:])  # awaited, not lost
    document = json.dumps(render_trace.trace_document([partial], interrupted=True))
    data = output_check.document(document, "trace")
    assert data["summary"]["interrupted"] and data["traces"][0]["finished"] is False
    hops = data["traces"][0]["hops"]
    assert [h["lost"] for h in hops] == [0] * len(hops)
    assert [h["pending"] for h in hops[3:]] == [1] * (len(hops) - 3)
    assert render_trace.trace_lines(partial)[-1].startswith("(interrupted after hop 10")


async def test_an_interrupted_scan_reports_decided_ports_only() -> None:
    net = MemoryNetwork(seed=3)
    net.add("198.19.0.5", open_ports=frozenset({22, 80}), dropped_ports=frozenset(range(100, 200)))
    async with open_memory_transport(net) as transport:
        pace(transport)
        space = await resolve_targets(["198.19.0.5"])
        options = ScanOptions(max_rate_pps=0, min_rtt_timeout_s=0.05, initial_rtt_timeout_s=0.2)
        machine = new_scan(transport, space, range(1, 301), options)
        with anyio.move_on_after(0.4):
            await drive(machine, transport, inbox_size=1 << 12)
        result = machine.result(anyio.current_time())
        sent = len(transport.sent_packets)
    assert not result.complete and 0 < result.decided < 300
    assert result.probes_sent == sent
    (host,) = result.hosts
    assert host.scanned == result.decided  # an undecided port is never called filtered
    lines = render_scan.scan_report(result, interrupted=True)
    assert f"rawprobe interrupted: {result.decided} of 300 ports decided" in lines[-2]
    grepable = render_scan.grepable(result, "rawprobe scan", "s", "f", interrupted=True)
    assert grepable[-2].startswith("# rawprobe interrupted:")
    document = json.dumps(render_scan.scan_document(result, interrupted=True, counters=None))
    summary = output_check.document(document, "scan")["summary"]
    assert summary["interrupted"] and not summary["complete"]


async def test_an_interrupted_ping_counts_only_requests_that_left() -> None:
    async with open_memory_transport(live_network(1)) as transport:
        pace(transport)  # each request waits 5 ms for the rate cap
        machine = new_ping(transport, "198.19.5.1", PingOptions(count=5, interval_s=0.02))
        with anyio.move_on_after(0.023):  # seq 2 waits for its send slot from 20 to 25 ms
            await drive(machine, transport)
        result = machine.result(anyio.current_time())
        sent = len(transport.sent_packets)
    assert result.transmitted == sent
    assert result.received <= sent
    document = json.dumps(render.ping_document([result], interrupted=True))
    (host,) = output_check.document(document, "ping")["hosts"]
    assert host["transmitted"] == sent
