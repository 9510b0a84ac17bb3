"""An endless ping (no count) runs in constant memory: the result keeps running
statistics, not one record per reply (it kept every reply, 0.8 KB each), and the
statistics are exactly those the list of replies gives."""

from __future__ import annotations

import itertools
import math
import random
import socket
import tracemalloc
from array import array

import pytest

from rawprobe.errors import UsageError
from rawprobe.probes import ping
from rawprobe.probes.ping import PingMachine, PingOptions
from rawprobe.probes.ping_models import PingReply, PingResult, PingStats
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies, MatchKey

TARGET = "198.19.0.5"
SOURCE = "198.18.1.2"
_TARGET_PACKED = socket.inet_aton(TARGET)


def stamp(t: float) -> Sent:
    return Sent(realtime_ns=int(t * 1e9), monotonic_s=t)


#: An echo reply as the machine reads it: IPv4 header (protocol 1), then type 0 (the
#: transport matched the key and checked the cookie already).
_REPLY_DATA = b"\x45" + bytes(8) + b"\x01" + bytes(10) + b"\x00\x00" + bytes(62)


def echo_reply(key: MatchKey, at: float) -> Reply:
    return Reply(key, socket.AF_INET, _TARGET_PACKED, _REPLY_DATA, 61, int(at * 1e9), at, 1)


def _machine(**options: object) -> PingMachine:
    return PingMachine(
        TARGET, source=SOURCE, ident=0x1234, cookies=Cookies(secret=bytes(32)),
        options=PingOptions(interval_s=0.001, timeout_s=1.0, **options),  # type: ignore[arg-type]
    )  # fmt: skip


def _run(machine: PingMachine, replies: int, seed: int = 1) -> array[float]:
    """Answer ``replies`` probes with random RTTs (every 50th twice); the RTTs seen."""
    rng = random.Random(seed)
    now, seen = 0.0, array("d")
    while len(seen) < replies:
        for out in machine.poll(now):
            machine.sent_batch([out.key], [stamp(now)], now)
            rtt = round(rng.uniform(0.0001, 0.05), 6)
            reply = echo_reply(out.key, now + rtt)
            machine.receive_batch([reply], now + rtt)
            if len(seen) % 50 == 0:
                machine.receive_batch([reply], now + rtt)  # a duplicate
        for event in machine.take_events():
            if isinstance(event, PingReply) and not event.duplicate:
                seen.append(event.rtt_s)
        now = round(now + 0.001, 6)
    return seen


def _list_statistics(rtts: list[float]) -> tuple[float, float, float, float, float]:
    """The statistics as PingResult computed them from the list of replies."""
    mean = sum(rtts) / len(rtts)
    mean_sq = sum(r * r for r in rtts) / len(rtts)
    mdev = math.sqrt(max(0.0, mean_sq - mean * mean))
    jitter = sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (len(rtts) - 1)
    return min(rtts), mean, max(rtts), mdev, jitter


def test_an_endless_ping_keeps_no_per_reply_records_and_exact_statistics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The state kept for duplicates is bounded (2,048 probes); a smaller window here
    # reaches the steady state sooner.
    monkeypatch.setattr(ping, "_DUPLICATE_WINDOW", 256)
    machine = _machine(count=None)
    everything = array("d")
    tracemalloc.start()
    try:
        everything += _run(machine, 1000)  # past the window
        early = tracemalloc.get_traced_memory()[0]
        everything += _run(machine, 5000)
        late = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The old machine grew by about 0.4 KB a reply (2 MB here); now it stays flat
    # (the 40 KB of RTTs this test keeps aside, and a few table resizes).
    assert late - early < 100_000, (early, late)
    result = machine.result(100.0)
    assert result.replies == () and result.errors == ()
    assert result.received == 6000 and result.duplicates == 1000 // 50 + 5000 // 50
    assert result.replies_omitted == result.received + result.duplicates
    assert len(everything) == result.received
    got = (result.min_rtt_s, result.avg_rtt_s, result.max_rtt_s, result.mdev_s, result.jitter_s)
    assert got == pytest.approx(_list_statistics(list(everything)), rel=1e-12)
    assert (result.min_rtt_s, result.max_rtt_s) == (min(everything), max(everything))


def test_running_statistics_are_the_list_statistics_bit_for_bit() -> None:
    """The same sums in the same order: identical floats, not merely close ones."""
    rng = random.Random(7)
    rtts = [rng.uniform(0.0001, 0.2) for _ in range(5000)]
    replies = tuple(PingReply(i + 1, TARGET, rtt, 64, 64) for i, rtt in enumerate(rtts))
    stats = PingStats.of(replies)
    got = (stats.min_rtt_s, stats.avg_rtt_s, stats.max_rtt_s, stats.mdev_s, stats.jitter_s)
    assert got == _list_statistics(rtts)
    kept = PingResult(TARGET, 5000, replies, (), 5.0, 56)  # statistics from the records
    assert kept.stats == stats and kept.rtts == tuple(rtts)


def test_a_counted_ping_keeps_its_records_and_a_limit_keeps_the_latest() -> None:
    counted = _machine(count=300)
    _run(counted, 300)
    result = counted.result()
    assert len(result.replies) == 300 + 6 and result.replies_omitted == 0  # 6 duplicates
    assert result.rtts == tuple(reply.rtt_s for reply in result.replies if not reply.duplicate)
    limited = _machine(count=None, keep_records=100)
    _run(limited, 1000)
    kept = limited.result(10.0)
    assert len(kept.replies) == 100 and kept.replies[-1].seq == kept.transmitted
    assert kept.replies_omitted == kept.received + kept.duplicates - 100


def test_errors_are_counted_without_records() -> None:
    machine = _machine(count=None)
    for now in (0.0, 0.001, 0.002):
        for out in machine.poll(now):
            machine.sent_batch([out.key], [Sent(int(now * 1e9), now, "ENETUNREACH")], now)
    result = machine.result(1.0)
    assert result.error_count == 3 and result.errors == () and result.errors_omitted == 3


def test_keep_records_must_not_be_negative() -> None:
    with pytest.raises(UsageError):
        PingOptions(keep_records=-1)
