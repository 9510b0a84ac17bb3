"""Outages: silence is a verdict only once the network proves alive (probes/outage.py).

The rule alone with plain numbers, then scans and sweeps over the simulated network
with outage windows: a short outage changes no result, a long one ends the run with
``complete`` False and a reason, and a space that seldom answers is not an outage.
Virtual time (trio's autojump clock) keeps the multi-second outages instant; one
short outage runs on both backends in real time.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import pytest
import trio
import trio.testing

from rawprobe.probes.outage import CanarySends, OutageGuard
from rawprobe.probes.permute import Permutation
from rawprobe.probes.scan import ScanOptions, syn_scan_with
from rawprobe.probes.sweep import (
    HostUp,
    SweepMachine,
    SweepOptions,
    SweepResult,
    batch_for_rate,
    sweep_with,
)
from rawprobe.probes.targets import TargetSpace
from rawprobe.targets import resolve_targets
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies, MatchKey
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport

T = TypeVar("T")
OPEN = frozenset({22, 80, 443, 1150})
DROPPED = frozenset(range(1000, 1100))
# The lab's scan, scaled down: 1,000 probes/s, 1 ms RTT, 0.1 s least timeout.
SCAN = ScanOptions(max_rate_pps=1000, min_rtt_timeout_s=0.1, seed=1)


def virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on trio with a clock that jumps whenever every task waits."""
    results: list[T] = []

    async def run() -> None:
        results.append(await main())

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    return results[0]


# -- the rule ----------------------------------------------------------------------


def test_with_nothing_ever_answered_silence_decides_at_once() -> None:
    guard = OutageGuard[str, str](5.0)
    guard.hold(1.0, 1.1, "a")
    assert guard.poll(1.1, 0.1) == (["a"], [], False)


def test_answers_sent_around_the_last_try_prove_a_silence() -> None:
    guard = OutageGuard[str, str](5.0)
    guard.answered(0.9, 0.91, "x")
    guard.hold(1.0, 1.1, "a")  # its last try left at 1.0, expired at 1.1
    guard.hold(1.2, 1.3, "b")
    assert guard.poll(1.1, 0.1) == ([], [], False)  # no proof yet, not overdue either
    guard.answered(1.1, 1.15, "y")  # a probe sent after a's last try was answered
    assert guard.poll(1.15, 0.1) == (["a"], [], False)
    assert guard.pending and not guard.in_outage


def test_a_try_sent_in_a_dark_stretch_is_probed_again_not_decided() -> None:
    """Answers stopped at 1.0 and came back for probes sent from 1.8: a try sent in
    between went out in the dark (an outage too short to be declared)."""
    guard = OutageGuard[str, str](5.0)
    guard.answered(1.0, 1.01, "x")
    guard.hold(1.7, 1.8, "a")
    guard.answered(1.8, 1.81, "y")
    assert guard.poll(1.81, 0.1) == ([], ["a"], False)


def test_a_try_expired_late_is_judged_by_the_first_answered_send_after_it() -> None:
    """A try held 0.6 s after it left (its expiry waited behind a long sliced batch)
    has answered sends close on both sides: a verdict, not a dark stretch, however
    far the latest answered send has moved on."""
    guard = OutageGuard[str, str](5.0)
    for step in range(0, 80):
        guard.answered(1.0 + step * 0.01, 1.0 + step * 0.01 + 0.002, "x")
    guard.hold(1.005, 1.8, "a")  # answered sends at 1.0 and 1.01 around it
    assert guard.poll(1.8, 0.05) == (["a"], [], False)


def test_overdue_proof_sends_canaries_and_an_unanswered_round_is_an_outage() -> None:
    guard = OutageGuard[str, str](5.0)
    guard.answered(0.5, 0.51, "x")
    guard.hold(1.0, 1.1, "a")
    assert guard.poll(1.15, 0.1)[2] is False
    assert guard.poll(1.25, 0.1) == ([], [], True)  # a timeout more without proof: canaries
    guard.sent_round(1.25)
    assert list(guard.recent) == ["x"]
    assert guard.poll(1.35, 0.1) == ([], [], False)  # the round is still out
    assert guard.poll(1.45, 0.1) == ([], [], True) and guard.in_outage  # unanswered
    guard.sent_round(1.45)
    guard.hold(1.05, 1.45, "b")  # expired in the outage: held, never a verdict
    guard.answered(1.45, 2.5, None)  # a canary came back: the outage is over
    assert guard.poll(2.5, 0.1) == ([], ["a", "b"], False)  # both probed again
    assert not guard.in_outage and guard.outages == 1
    assert guard.outage_total_s == pytest.approx(1.25)  # from the unanswered round


def test_a_silence_longer_than_the_budget_gives_up_with_a_reason() -> None:
    guard = OutageGuard[str, str](2.0)
    guard.answered(0.5, 0.5, "x")
    guard.hold(1.0, 1.1, "a")
    assert guard.poll(1.25, 0.1)[2]
    guard.sent_round(1.25)
    assert guard.poll(1.45, 0.1)[2] and guard.in_outage
    guard.sent_round(1.45)
    assert guard.gave_up is None
    given, again, _ = guard.poll(2.6, 0.1)
    assert (given, again) == ([], [])
    assert guard.gave_up == "outage: no answer for 2.1 s (limit 2 s)"


# -- scans ---------------------------------------------------------------------------


def scan_network() -> MemoryNetwork:
    net = MemoryNetwork(seed=2)
    net.add("198.19.0.5", open_ports=OPEN, dropped_ports=DROPPED, delay_s=0.001)
    return net


async def scan_with_outage(start_s: float, length_s: float, **options: object) -> object:
    net = scan_network()
    rate_pps = options.get("max_rate_pps", SCAN.max_rate_pps)  # (the transport paces)
    async with open_memory_transport(net, rate_pps=rate_pps) as transport:  # type: ignore[arg-type]
        net.cut(anyio.current_time() + start_s, length_s)
        space = await resolve_targets(["198.19.0.5"])
        scan = ScanOptions(**{**_fields(SCAN), **options})  # type: ignore[arg-type]
        return await syn_scan_with(transport, space, range(1, 1201), scan)


def _fields(options: ScanOptions) -> dict[str, object]:
    return {name: getattr(options, name) for name in options.__slots__}


def test_a_scan_outlasts_a_1_5_s_outage_with_exactly_the_right_result() -> None:
    result = virtual(lambda: scan_with_outage(0.3, 1.5))
    (host,) = result.hosts  # type: ignore[attr-defined]
    assert host.open_ports == tuple(sorted(OPEN))
    assert set(host.filtered_ports) == DROPPED
    assert host.closed == 1200 - len(OPEN) - len(DROPPED)
    assert result.complete and result.incomplete_reason is None  # type: ignore[attr-defined]
    assert result.timing.outages == 1  # type: ignore[attr-defined]


def test_without_the_guard_the_same_outage_gives_wrong_answers() -> None:
    """What the guard prevents (the issue's 3 of 24 open ports reported filtered)."""
    result = virtual(lambda: scan_with_outage(0.3, 1.5, outage_budget_s=0))
    (host,) = result.hosts  # type: ignore[attr-defined]
    assert len(host.filtered_ports) > len(DROPPED)
    assert result.complete  # type: ignore[attr-defined]  # and it says nothing


def test_a_10_s_outage_ends_the_scan_incomplete_with_a_reason() -> None:
    result = virtual(lambda: scan_with_outage(0.3, 10.0))
    assert not result.complete  # type: ignore[attr-defined]
    reason = result.incomplete_reason  # type: ignore[attr-defined]
    assert reason.startswith("outage: no answer for 5.0 s (limit 5 s); ")
    assert reason.endswith(" of 1200 ports undecided")
    (host,) = result.hosts  # type: ignore[attr-defined]
    # Nothing the outage silenced was called filtered: only the dropped ports are.
    assert set(host.filtered_ports) <= DROPPED
    assert set(host.open_ports) <= OPEN


def test_a_host_with_every_port_silent_is_no_outage() -> None:
    async def main() -> object:
        net = MemoryNetwork()
        net.add("198.19.0.5", dropped_ports=frozenset(range(1, 501)))
        async with open_memory_transport(net) as transport:
            space = await resolve_targets(["198.19.0.5"])
            return await syn_scan_with(transport, space, range(1, 501), SCAN)

    result = virtual(main)
    assert result.complete and result.total("filtered") == 500  # type: ignore[attr-defined]
    assert result.timing.outages == 0  # type: ignore[attr-defined]


# -- sweeps --------------------------------------------------------------------------


def sweep_network(alive: range) -> MemoryNetwork:
    net = MemoryNetwork(seed=3)
    for host in alive:
        net.add(f"198.19.{host >> 8}.{host & 0xFF}", delay_s=0.001)
    return net


async def sweep_with_outage(
    net: MemoryNetwork, spec: str, start_s: float, length_s: float, rate_pps: float = 2000
) -> SweepResult:
    async with open_memory_transport(net, rate_pps=rate_pps) as transport:
        net.cut(anyio.current_time() + start_s, length_s)
        space = TargetSpace.parse([spec])
        return await sweep_with(transport, space, SweepOptions(timeout_s=1.0), seed=5)


def test_a_sweep_outlasts_a_1_s_link_outage_and_finds_every_host() -> None:
    net = sweep_network(range(0, 2048))
    result = virtual(lambda: sweep_with_outage(net, "198.19.0.0/21", 0.4, 1.0))
    assert result.alive_count == result.targets == 2046  # (no network, no broadcast)
    assert result.dead_count == 0 and result.complete


def test_a_10_s_outage_ends_the_sweep_incomplete_and_calls_nobody_down() -> None:
    net = sweep_network(range(0, 2048))
    result = virtual(lambda: sweep_with_outage(net, "198.19.0.0/21", 0.4, 10.0))
    assert not result.complete and result.dead_count == 0
    assert result.incomplete_reason is not None
    assert result.incomplete_reason.startswith("outage: no answer for 5.0 s (limit 5 s)")
    assert 0 < result.alive_count < 2046


@pytest.mark.parametrize("rate_pps", [5000, 2000])
def test_a_sparse_space_is_no_outage_and_takes_no_longer(rate_pps: int) -> None:
    """A /20 with 9 live hosts: long silences between answers are the space, not an
    outage: every host decided, complete, nothing waits out an outage budget. (At
    2,000 packets/s a batch of 256 takes 0.13 s, longer than a canary round waits:
    the round is timed from when its canary left.)"""
    alive = range(400, 4096, 400)
    net = sweep_network(alive)

    async def timed(budget_s: float) -> tuple[SweepResult, float]:
        started = anyio.current_time()
        async with open_memory_transport(net, rate_pps=rate_pps) as transport:
            options = SweepOptions(timeout_s=1.0, outage_budget_s=budget_s)
            space = TargetSpace.parse(["198.19.0.0/20"])
            result = await sweep_with(transport, space, options, seed=5)
        return result, anyio.current_time() - started

    guarded, guarded_s = virtual(lambda: timed(5.0))
    plain, plain_s = virtual(lambda: timed(0))
    assert guarded.alive_count == plain.alive_count == len(alive) and guarded.complete
    assert guarded.dead_count == guarded.targets - len(alive)
    # Virtual seconds (no wall clock): proof of life adds at most a canary round trip.
    assert guarded_s < plain_s + 0.5, (guarded_s, plain_s)


@pytest.mark.parametrize(("rate_pps", "batch"), [(1000, 256), (50, batch_for_rate(50))])
def test_a_sparse_space_at_a_low_rate_is_no_outage(rate_pps: int, batch: int) -> None:
    """At a low rate the answered sends of a sparse space (canaries) are as far apart
    as the batches: no dark stretch, no outage. (Before the guard knew the pace of the
    batches: 12.6 times the probes at 1,000 packets/s with 256 a batch, 26 times the
    wall time at 50 packets/s.)"""
    alive = range(400, 4096, 400)
    net = sweep_network(alive)

    async def probes_sent(budget_s: float) -> SweepResult:
        async with open_memory_transport(net, rate_pps=rate_pps) as transport:
            options = SweepOptions(timeout_s=1.0, outage_budget_s=budget_s, batch=batch)
            space = TargetSpace.parse(["198.19.0.0/20"])
            return await sweep_with(transport, space, options, seed=5)

    guarded = virtual(lambda: probes_sent(5.0))
    plain = virtual(lambda: probes_sent(0))
    assert guarded.alive_count == plain.alive_count == len(alive) and guarded.complete
    # Canary rounds (4 probes each, once per quiet batch) are the only extra probes.
    assert guarded.probes_sent < 1.15 * plain.probes_sent, (guarded, plain)


@pytest.mark.anyio
async def test_a_short_outage_on_both_backends() -> None:
    """Real time: the link goes down for 0.4 s once 200 hosts have answered."""
    net = sweep_network(range(0, 1024))
    ups = 0

    def on_event(event: object) -> None:
        nonlocal ups
        ups += isinstance(event, HostUp)
        if ups == 200:
            net.cut(anyio.current_time(), 0.4)

    async with open_memory_transport(net, rate_pps=4000) as transport:
        space = TargetSpace.parse(["198.19.0.0/22"])
        options = SweepOptions(timeout_s=1.0)
        result = await sweep_with(transport, space, options, seed=5, on_event=on_event)
    assert net.outages and result.alive_count == result.targets == 1022
    assert result.dead_count == 0 and result.complete


# -- canary answers: which send they prove --------------------------------------------


def test_a_canary_answer_proves_the_oldest_send_of_its_key() -> None:
    """A target's canary has one key in every round: an answer is taken for the
    oldest send still awaited, and an answer before the next send is recorded (the
    previous round's, drained between the slices of a batch) is still an answer."""
    sends = CanarySends[str]()
    assert sends.answer("k") is None and not sends.left("k", 1.0)  # not a canary key
    sends.expect("k")
    assert sends.answer("k") == -math.inf  # built, not yet sent: life, no proof
    sends.left("k", 1.0)
    sends.expect("k")  # the next round is built before round 1's answer comes in
    assert sends.answer("k") == 1.0  # round 1's send, not a send yet to be made
    sends.left("k", 2.0)
    sends.left("k", 3.0)  # round 2 unanswered; round 3 sent
    assert sends.answer("k") == 2.0  # (the older: what an answer proves at most)
    assert sends.answer("k") == 3.0 and sends.answer("k") == -math.inf
    sends.drop("k")
    assert "k" not in sends and not sends


def test_a_round_waits_for_its_answer_from_when_it_left() -> None:
    """A canary goes out behind the probes of its batch (0.26 s for 256 at 1,000
    packets/s): timed from when it was built, it was unanswered before it left."""
    guard = OutageGuard[str, str](5.0)
    guard.answered(1.0, 1.01, "x")
    guard.hold(1.05, 1.15, "a")
    guard.sent_round(1.2)  # built into a batch that ends at 1.45
    guard.round_left(1.45)
    guard.round_left(1.46)  # (its later canaries change nothing)
    assert guard.poll(1.5, 0.1) == ([], [], False) and not guard.in_outage
    guard.answered(1.45, 1.5, None)
    assert guard.poll(1.5, 0.1) == (["a"], [], False)
    guard.hold(1.6, 1.7, "b")
    guard.sent_round(1.8)
    guard.round_left(1.9)
    assert guard.poll(2.05, 0.1) == ([], [], False)  # 0.15 s after it left: still out
    assert guard.poll(2.1, 0.1) == ([], [], True) and guard.in_outage  # unanswered
    assert guard.outage_s == 1.9


def _echo_reply(key: MatchKey, now: float) -> Reply:
    destination = key[1]
    assert isinstance(destination, bytes)
    return Reply(key, socket.AF_INET6, destination, b"\x81\x00" + bytes(14), 64, 0, now, 58)


def test_an_answer_to_the_last_round_arriving_after_the_next_is_built_is_no_outage() -> None:
    """The cause of a sparse sweep's false outages: the drive hands replies to the
    machine between the slices of a batch, so round 1's canary answer can come in
    after round 2 (the same key) was built and before it left. It was dropped (the
    key's send reset to "no proof"): round 1 looked unanswered, an outage was
    declared, and every held host was probed again."""
    space = TargetSpace.parse(["2001:db8:1::/112"])
    options = SweepOptions(retries=0, timeout_s=0.5, min_timeout_s=0.05, batch=4)
    machine = SweepMachine(
        space, iter(Permutation(space.size, 1)), options,
        source_for=lambda _address: "2001:db8:1::2", ident=1, cookies=Cookies(),
    )  # fmt: skip
    guard = machine._guard
    assert guard is not None

    def send(now: float) -> list[MatchKey]:
        keys = [outgoing.key for outgoing in machine.poll(now)]
        machine.sent_batch(keys, [Sent(int(now * 1e9), now)] * len(keys), now)
        return keys

    live = send(0.0)[0]
    machine.receive_batch([_echo_reply(live, 0.001)], 0.001)  # one host up: a canary
    round_1 = send(0.1)  # 3 hosts decided down, 4 new probes and a canary round
    canary = round_1[-1]
    assert canary in machine._canary_keys and guard.last_round_s == 0.1
    keys = [outgoing.key for outgoing in machine.poll(0.16)]  # quiet: round 2 built
    assert keys[-1] == canary and guard.last_round_s == 0.16
    machine.receive_batch([_echo_reply(canary, 0.165)], 0.165)  # round 1's answer
    assert guard.last_answer_s == 0.165 and guard.alive_s == 0.1  # life, and its proof
    machine.sent_batch(keys, [Sent(0, 0.17)] * len(keys), 0.17)  # round 2 leaves
    assert guard.last_round_s == 0.17
    machine.poll(0.21)
    assert not guard.in_outage and guard.outages == 0
    assert machine.decided_count == 1 + 3 + 4  # proven by round 1: down, not probed again


def test_a_scan_of_a_mostly_silent_host_is_no_outage_and_takes_no_longer() -> None:
    """The scan's form of the sparse space: 3 open ports among 3,000 silent ones, so
    answers are rare and canaries prove the silence; the drive sends in slices."""
    open_ports = frozenset({500, 1500, 2500})

    async def timed(budget_s: float) -> tuple[object, float]:
        net = MemoryNetwork(seed=2)
        silent = frozenset(range(1, 3001)) - open_ports
        net.add("198.19.0.5", open_ports=open_ports, dropped_ports=silent, delay_s=0.001)
        started = anyio.current_time()
        async with open_memory_transport(net, rate_pps=5000) as transport:
            space = await resolve_targets(["198.19.0.5"])
            options = {**_fields(SCAN), "max_rate_pps": 5000, "outage_budget_s": budget_s}
            scan = ScanOptions(**options)  # type: ignore[arg-type]
            result = await syn_scan_with(transport, space, range(1, 3001), scan)
        return result, anyio.current_time() - started

    guarded, guarded_s = virtual(lambda: timed(5.0))
    _plain, plain_s = virtual(lambda: timed(0))
    (host,) = guarded.hosts  # type: ignore[attr-defined]
    assert host.open_ports == tuple(sorted(open_ports)) and len(host.filtered_ports) == 2997
    assert guarded.complete and guarded.timing.outages == 0  # type: ignore[attr-defined]
    assert guarded_s < plain_s + 0.5, (guarded_s, plain_s)
