"""Which send stamp an RTT used (``rtt_source``), through the ping and trace machines.

Pure: sends are stamped by hand, with or without the kernel's transmit stamp the raw
transport fills in (transport/txstamps.py), and replies come at plain times.
"""

from __future__ import annotations

import socket

import pytest

from rawprobe.probes.ping import PingMachine, PingOptions
from rawprobe.probes.ping_models import PingStats
from rawprobe.probes.traceroute import TraceMachine, TraceOptions
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies, key_of_reply_v4, key_of_sent
from rawprobe.transport.txstamps import TxStamp
from rawprobe.transport.wire.icmp import build_echo, build_icmp
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4

SOURCE, TARGET, ROUTER = "198.18.1.2", "198.19.0.5", "198.18.1.1"


def sent_at(t: float, kernel_after_s: float | None = None) -> Sent:
    """A send at ``t``; the kernel stamped it ``kernel_after_s`` later (None: no stamp)."""
    tx = None
    if kernel_after_s is not None:
        tx = TxStamp(int(t * 1e9))
        tx.kernel_ns = int((t + kernel_after_s) * 1e9)
    return Sent(int(t * 1e9), t, None, tx)


def reply(packet: bytes, key: object, at: float) -> Reply:
    return Reply(key, socket.AF_INET, packet[12:16], packet, packet[8], int(at * 1e9), at, 1)  # type: ignore[arg-type]


def test_a_ping_says_kernel_only_when_every_reply_was_stamped_by_the_kernel() -> None:
    ping = PingMachine(
        TARGET, source=SOURCE, ident=0x1234, cookies=Cookies(bytes(32)),
        options=PingOptions(count=2, interval_s=1.0, timeout_s=0.5, keep_records=None),
    )  # fmt: skip
    rtts = []
    for t, kernel_after_s in ((0.0, 20e-6), (1.0, None)):
        [out] = ping.poll(t)
        ping.sent_batch([out.key], [sent_at(t, kernel_after_s)], t)
        icmp = build_echo(0x1234, int.from_bytes(out.packet[26:28]), out.packet[28:], reply=True)
        answer = build_ipv4(IPv4Header(src=TARGET, dst=SOURCE, protocol=1, ttl=61), icmp)
        ping.receive_batch([reply(answer, key_of_sent(out.packet), t + 100e-6)], t + 100e-6)
        rtts.append(ping.result().replies[-1])
        if t == 0.0:
            assert ping.result().rtt_source == "kernel"
    assert [(r.rtt_s, r.rtt_source) for r in rtts] == [
        (pytest.approx(80e-6), "kernel"),  # the host's 20 µs before the driver left out
        (pytest.approx(100e-6), "user"),
    ]
    result = ping.result()
    assert result.rtt_source == "user" and result.stats.kernel_stamped == 1
    assert PingStats.of(result.replies) == result.stats  # the records say the same
    assert PingStats().rtt_source is None  # no reply: no RTT to speak of


def test_a_trace_hop_says_which_stamps_its_answers_used() -> None:
    trace = TraceMachine(
        TARGET, source=SOURCE, flow_id=0x1234, cookies=Cookies(b"k" * 32),
        options=TraceOptions(first_ttl=1, max_ttl=2, queries=2, retries=0, wait_s=0.5),
    )  # fmt: skip
    now, hop1 = 0.0, []
    while not trace.done and now < 5:
        for out in trace.poll(now):
            kernel_after_s = None if len(hop1) == 1 else 10e-6  # hop 1's second query: none
            trace.sent_batch([out.key], [sent_at(now, kernel_after_s)], now)
            if out.packet[8] == 1:  # hop 1 answers at once, hop 2 never
                hop1.append(out.packet)
                quote = out.packet[:8] + b"\x01" + out.packet[9:28]
                message = build_icmp(11, 0, 0, quote)
                error = build_ipv4(IPv4Header(src=ROUTER, dst=SOURCE, protocol=1, ttl=64), message)
                trace.receive_batch([reply(error, key_of_reply_v4(error), now + 50e-6)], now)
        now += 0.25
    hops = trace.result().hops
    assert [p.rtt_source for p in hops[0].responses] == ["kernel", "user"]
    assert [p.rtt_s for p in hops[0].responses] == [pytest.approx(40e-6), pytest.approx(50e-6)]
    assert (hops[0].rtt_source, hops[1].rtt_source) == ("user", None)
