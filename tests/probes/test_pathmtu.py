"""Path MTU discovery in plain numbers: the step-down rule, the black-hole size search,
and the machine over a small pure network (link MTUs, a black hole, a local MTU,
silence and rate limiting that must not look like a black hole)."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from rawprobe.errors import UsageError
from rawprobe.probes.pathmtu import MIN_WAIT_S, MtuMachine, SizeSearch, smaller_size
from rawprobe.probes.trace_models import BlackHole, TraceResult
from rawprobe.probes.traceroute import TraceOptions
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies, key_of_reply_v4, key_of_reply_v6
from rawprobe.transport.wire.addr import pton
from rawprobe.transport.wire.icmp import build_icmp
from rawprobe.transport.wire.icmpv6 import build_icmpv6
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4

V4, V6 = socket.AF_INET, socket.AF_INET6
SOURCE = {V4: "198.18.1.2", V6: "2001:db8:1::2"}
TARGET = {V4: "198.19.0.5", V6: "2001:db8:ff::5"}
ROUTERS = {
    V4: ("198.18.1.1", "198.18.2.2", "198.18.3.2"),
    V6: ("2001:db8:1::1", "2001:db8:2::2", "2001:db8:3::2"),
}

# -- the step-down rule ----------------------------------------------------------------


def test_a_reported_mtu_is_the_next_size() -> None:
    assert smaller_size(V4, 1500, 1400) == 1400
    assert smaller_size(V6, 1500, 1400) == 1400
    assert smaller_size(V4, 9000, 1500) == 1500


def test_no_mtu_or_a_bogus_one_steps_down_the_plateaus() -> None:
    """RFC 1191's table when the error (or the local stack's EMSGSIZE) gives no MTU,
    or one that is not smaller than the size refused."""
    assert smaller_size(V4, 1500) == 1492
    assert smaller_size(V4, 1492) == 1280
    assert smaller_size(V4, 9000) == 8166
    assert smaller_size(V4, 1500, 1500) == 1492
    assert smaller_size(V4, 1500, 9000) == 1492
    assert smaller_size(V4, 65535) == 32000


def test_never_below_the_smallest_mtu_of_the_family() -> None:
    assert smaller_size(V6, 1500, 1000) == 1280  # RFC 8200: every link carries 1280
    assert smaller_size(V6, 1300) == 1280
    assert smaller_size(V6, 1280) is None
    assert smaller_size(V4, 100, 40) == 68
    assert smaller_size(V4, 296) == 68
    assert smaller_size(V4, 68) is None


# -- the size search --------------------------------------------------------------------


def search(passes_up_to: int, start: SizeSearch) -> tuple[SizeSearch, list[int]]:
    """Run a search against a hole passing sizes up to ``passes_up_to``."""
    tried = []
    while (size := start.next_size()) is not None:
        tried.append(size)
        if size <= passes_up_to:
            start.passed(size)
        else:
            start.dropped(size)
    return start, tried


def test_the_search_finds_the_largest_size_that_passes_and_the_smallest_dropped() -> None:
    found, tried = search(1400, SizeSearch(passes=60, drops=1500))
    assert (found.passes, found.drops, found.black_hole) == (1400, 1401, True)
    assert len(tried) <= math.ceil(math.log2(1500 - 60))  # a binary search: 11 sizes
    assert tried[0] == 780


@pytest.mark.parametrize("hole", [60, 61, 1000, 1498, 1499])
def test_the_search_ends_adjacent_wherever_the_hole_is(hole: int) -> None:
    found, _ = search(hole, SizeSearch(passes=60, drops=1500))
    assert (found.passes, found.drops) == (hole, hole + 1)


def test_a_size_refused_with_an_error_is_not_a_silent_drop() -> None:
    """A "fragmentation needed" during the search caps it: the bound is then the
    error's MTU, and no black hole is claimed there."""
    start = SizeSearch(passes=60, drops=1500)
    start.refused(1300)
    found, tried = search(1450, start)
    assert max(tried) <= 1300
    assert (found.passes, found.black_hole) == (1300, False)


# -- the machine over a pure network ------------------------------------------------------


@dataclass
class Net:
    """A line of three routers and the target (TTL 4), answering what the machine sends:
    ``mtus`` maps a router to the MTU of the link it forwards onto (a "too big" error
    above it, reporting ``reported`` or the MTU); ``hole`` = (router, size) drops bigger
    packets it forwards; ``silent`` routers never answer; ``answers`` decides per
    answering router whether it answers now (rate limiting, loss)."""

    family: int = V4
    mtus: dict[int, int] = field(default_factory=dict)
    reported: int | None = None
    hole: tuple[int, int] | None = None
    silent: set[int] = field(default_factory=set)
    local_mtu: int = 65535
    answers: Callable[[int, int, float], bool] = lambda hop, size, now: True
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (ttl, size) sent

    def send(self, packet: bytes, now: float) -> tuple[Sent, Reply | None]:
        ttl = packet[8] if self.family == V4 else packet[7]
        size = len(packet)
        if size > self.local_mtu:
            return Sent(int(now * 1e9), now, "EMSGSIZE"), None
        self.sizes.append((ttl, size))
        sent = Sent(int(now * 1e9), now)
        for router in range(1, min(ttl - 1, 3) + 1):  # the routers that forward it
            if self.hole is not None and self.hole[0] == router and size > self.hole[1]:
                return sent, None
            mtu = self.mtus.get(router)
            if mtu is not None and size > mtu:
                assert self.family == V6 or packet[6] & 0x40, "DF must be set"
                reported = mtu if self.reported is None else self.reported
                too_big = (3, 4) if self.family == V4 else (2, 0)
                return sent, self.error(router, packet, too_big, reported, now)
        hop = min(ttl, 4)
        if hop in self.silent or not self.answers(hop, size, now):
            return sent, None
        if ttl <= 3:
            return sent, self.error(ttl, packet, (11, 0) if self.family == V4 else (3, 0), 0, now)
        unreachable = (3, 3) if self.family == V4 else (1, 4)
        return sent, self.error(4, packet, unreachable, 0, now)

    def error(self, hop: int, probe: bytes, icmp: tuple[int, int], rest: int, now: float) -> Reply:
        sender = TARGET[self.family] if hop == 4 else ROUTERS[self.family][hop - 1]
        header = 20 if self.family == V4 else 40
        quote = probe[: header + 8]  # RFC 792's minimum: the header and 8 bytes
        received = (int((now + 0.0001) * 1e9), now + 0.0001)
        if self.family == V4:
            message = build_icmp(icmp[0], icmp[1], rest, quote)
            header4 = IPv4Header(src=sender, dst=SOURCE[V4], protocol=1, ttl=65 - hop)
            ip = build_ipv4(header4, message)
            key = key_of_reply_v4(ip)
            assert key is not None
            return Reply(key, V4, ip[12:16], ip, ip[8], *received, 1)
        message = build_icmpv6(icmp[0], icmp[1], rest, quote, src=sender, dst=SOURCE[V6])
        key = key_of_reply_v6(message, pton(sender))
        assert key is not None
        return Reply(key, V6, pton(sender), message, 65 - hop, *received, 58)


def run(
    net: Net, start_size: int = 1500, method: str = "udp", limit_s: float = 600.0, **options: object
) -> TraceResult:
    """Drive the machine with plain numbers: replies come back 0.1 ms after their probe,
    and time jumps to each deadline."""
    settings: dict[str, object] = {"wait_s": 1.0, "here": 3.0, "retries": 2, **options}
    machine = MtuMachine(
        TARGET[net.family], source=SOURCE[net.family], flow_id=7, cookies=Cookies(b"k" * 32),
        options=TraceOptions(method=method, **settings),  # type: ignore[arg-type]
        start_size=start_size,
    )  # fmt: skip
    now = 0.0
    while not machine.done:
        assert now < limit_s, "the machine never finished"
        for out in machine.poll(now):
            sent, reply = net.send(out.packet, now)
            machine.sent_batch([out.key], [sent], now)
            if reply is not None:
                machine.receive_batch([reply], now + 0.0001)
        if not machine.done:
            now = max(now, machine.next_deadline())
    return machine.result()


def hop_mtus(result: TraceResult) -> dict[int, int]:
    return {hop.ttl: hop.mtu for hop in result.hops if hop.mtu is not None}


@pytest.mark.parametrize("family", [V4, V6])
def test_a_narrow_link_steps_the_size_down_at_the_hop_behind_it(family: int) -> None:
    net = Net(family, mtus={2: 1400})
    result = run(net)
    assert result.reached and result.destination_ttl == 4
    assert (result.interface_mtu, result.path_mtu, result.black_hole) == (1500, 1400, None)
    assert hop_mtus(result) == {3: 1400}  # where tracepath prints "pmtu 1400"
    too_big = result.hops[2].probes[0]
    assert too_big is not None and too_big.address == ROUTERS[family][1]
    assert too_big.mtu == 1400 and not too_big.terminal
    bigs = [size for _, size in net.sizes if size > 80]
    assert bigs == [1500, 1500, 1500, 1400, 1400]  # TTL 1, 2, 3 (refused), 3, 4


def test_an_old_router_that_reports_no_mtu_is_stepped_down_by_plateaus() -> None:
    result = run(Net(V4, mtus={2: 1400}, reported=0))
    assert result.path_mtu == 1280  # 1500 -> 1492 (refused again) -> 1280
    assert hop_mtus(result) == {3: 1280}


def test_every_probe_of_the_trace_is_one_flow_with_df() -> None:
    net = Net(V4, mtus={2: 1400})
    run(net)  # (Net.send asserts DF on every probe a link refuses)
    result = run(Net(V4, mtus={1: 1400, 2: 1300}))
    assert hop_mtus(result) == {2: 1400, 3: 1300} and result.path_mtu == 1300


def test_a_local_refusal_steps_down_before_the_first_hop() -> None:
    """EMSGSIZE (an interface MTU below the first size): plateaus, and the interface's
    MTU is what the local stack took, not a hop's."""
    result = run(Net(V4, local_mtu=1500), start_size=9000)
    assert result.interface_mtu == 1492 and result.path_mtu == 1492
    assert hop_mtus(result) == {} and result.reached


@pytest.mark.parametrize("family", [V4, V6])
def test_a_black_hole_is_found_with_its_bounds(family: int) -> None:
    net = Net(family, hole=(2, 1400))
    result = run(net)
    assert result.black_hole == BlackHole(ttl=3, passes=1400, drops=1401)
    assert result.path_mtu == 1400 and hop_mtus(result) == {3: 1400}
    assert result.reached and result.hops[3].responses[0].reached
    assert [size for ttl, size in net.sizes if ttl == 4 and size > 80] == [1400]


def test_a_black_hole_at_the_destination() -> None:
    """The target itself drops big packets (a firewall): found at its own TTL."""
    net = Net(V4, answers=lambda hop, size, now: hop != 4 or size <= 1300)
    result = run(net)
    assert result.black_hole == BlackHole(ttl=4, passes=1300, drops=1301)
    assert result.reached


def test_a_silent_hop_is_no_black_hole() -> None:
    net = Net(V4, silent={2})
    result = run(net)
    assert result.black_hole is None and result.path_mtu == 1500
    assert result.hops[1].probes == (None,) and result.reached


def test_rate_limited_errors_are_not_mistaken_for_a_black_hole() -> None:
    """Router 3 answers one probe in 5 s, its bucket empty when the trace comes (a
    router's ICMP rate limit after someone else's burst): the big probe and its witness
    go unanswered together, never the big one alone while its witness answers, so no
    size is taken for dropped and no black hole is claimed."""
    allowed = {3: 3.5}

    def one_in_five_seconds(hop: int, size: int, now: float) -> bool:
        if hop not in allowed or now < allowed[hop]:
            return hop not in allowed
        allowed[hop] = now + 5.0
        return True

    result = run(Net(V4, answers=one_in_five_seconds))
    assert result.black_hole is None and result.path_mtu == 1500 and result.reached
    assert result.hops[2].probes == (None,)  # silent while the bucket was empty


def test_random_loss_of_a_big_probe_is_retried_not_taken_for_a_drop() -> None:
    lost = {"count": 0}

    def lose_two_big_ones(hop: int, size: int, now: float) -> bool:
        if hop == 3 and size > 80 and lost["count"] < 2:
            lost["count"] += 1
            return False
        return True

    net = Net(V4, answers=lose_two_big_ones)
    result = run(net)
    assert result.black_hole is None and result.path_mtu == 1500
    assert [size for ttl, size in net.sizes if ttl == 3 and size > 80] == [1500] * 3


def test_a_dropped_try_waits_a_few_rtts_a_silent_one_the_whole_wait() -> None:
    """The witness answered: the big probe is given ``here`` x RTT (at least
    MIN_WAIT_S); nothing answered: ``wait_s``."""
    hole = run(Net(V4, hole=(2, 1400)), wait_s=2.0)
    assert hole.elapsed_s < 40 * MIN_WAIT_S
    silent = run(Net(V4, silent={2}), wait_s=2.0)
    assert silent.elapsed_s == pytest.approx(3 * 2.0, abs=0.01)


def test_tcp_is_refused() -> None:
    with pytest.raises(UsageError, match="UDP or ICMP"):
        run(Net(V4), method="tcp")


def test_icmp_probes_step_down_too() -> None:
    result = run(Net(V4, mtus={2: 1400}), method="icmp")
    assert hop_mtus(result) == {3: 1400}


def test_max_ttl_ends_a_trace_that_never_arrives() -> None:
    result = run(Net(V4, mtus={1: 1400}, silent={4}), max_ttl=5)
    assert not result.reached and [h.ttl for h in result.hops] == [1, 2, 3, 4, 5]
    assert result.path_mtu == 1400 and result.finished


def test_an_unfinished_trace_shows_the_hop_in_progress() -> None:
    machine = MtuMachine(
        TARGET[V4], source=SOURCE[V4], flow_id=7, cookies=Cookies(b"k" * 32),
        options=TraceOptions(method="udp"), start_size=1500,
    )  # fmt: skip
    outs = machine.poll(0.0)
    machine.sent_batch([o.key for o in outs], [Sent(0, 0.0)] * len(outs), 0.0)
    partial = machine.result(0.5)
    assert not partial.finished and partial.hops[0].pending == (0,)
    assert partial.hops[0].sent == 2  # the big probe and its witness
