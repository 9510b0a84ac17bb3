"""The ping state machine driven by hand with plain numbers for ``now``."""

import socket

import pytest

from rawprobe.errors import UsageError
from rawprobe.probes.ping import PingMachine, PingOptions
from rawprobe.probes.ping_models import PingError, PingReply, PingResult
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies, key_of_sent
from rawprobe.transport.wire.addr import pton
from rawprobe.transport.wire.icmp import build_echo, build_icmp
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4

TARGET = "198.19.0.5"
SOURCE = "198.18.1.2"


def machine(**options: object) -> PingMachine:
    return PingMachine(
        TARGET,
        source=SOURCE,
        ident=0x1234,
        cookies=Cookies(secret=bytes(32)),
        options=PingOptions(**options),  # type: ignore[arg-type]
    )


def stamp(t: float) -> Sent:
    return Sent(realtime_ns=int(t * 1e9), monotonic_s=t)


def echo_reply(request: bytes, at: float, ttl: int = 61) -> Reply:
    icmp = build_echo(0x1234, int.from_bytes(request[26:28]), request[28:], reply=True)
    packet = build_ipv4(IPv4Header(src=TARGET, dst=SOURCE, protocol=1, ttl=ttl), icmp)
    return Reply(
        key_of_sent(request), socket.AF_INET, pton(TARGET), packet, ttl, int(at * 1e9), at, 1
    )


def test_sends_count_probes_at_the_interval_then_finishes() -> None:
    m = machine(count=3, interval_s=1.0, timeout_s=0.5)
    sent_at = []
    now = 0.0
    while not m.done and now < 10:
        for out in m.poll(now):
            sent_at.append(now)
            m.sent_batch([out.key], [stamp(now)], now)
            m.receive_batch([echo_reply(out.packet, now + 0.01)], now + 0.01)
        now = round(now + 0.25, 2)
    assert sent_at == [0.0, 1.0, 2.0]
    result = m.result()
    assert (result.transmitted, result.received) == (3, 3)
    assert result.rtts == pytest.approx((0.01, 0.01, 0.01))
    assert result.packet_loss == 0.0


def test_a_reply_that_comes_before_the_last_request_left_does_not_end_the_ping() -> None:
    """The driver hands replies over between the slices of a poll's sends: the reply to
    request 1 can come after poll made request 2 but before request 2 left. The machine
    is not done until request 2 left and was answered (a multiplexer used to drop a
    machine done there, and with it request 2 and its reply)."""
    m = machine(count=2, interval_s=0.05, timeout_s=1.0)
    (first,) = m.poll(0.0)
    m.sent_batch([first.key], [stamp(0.0)], 0.0)
    (second,) = m.poll(0.05)
    m.receive_batch([echo_reply(first.packet, 0.06)], 0.06)
    assert not m.done
    m.sent_batch([second.key], [stamp(0.07)], 0.07)
    m.receive_batch([echo_reply(second.packet, 0.08)], 0.08)
    assert m.done
    assert (m.result().transmitted, m.result().received) == (2, 2)


def test_packets_are_echo_requests_with_the_options_applied() -> None:
    m = machine(count=1, payload_size=100, ttl=7)
    [out] = m.poll(0.0)
    assert out.packet[8] == 7  # TTL
    assert out.packet[9] == 1 and out.packet[20] == 8  # ICMP echo request
    assert len(out.packet) == 20 + 8 + 100
    assert out.packet[16:20] == socket.inet_aton(TARGET)
    assert out.key == key_of_sent(out.packet)


def test_silence_times_out_and_counts_as_loss() -> None:
    m = machine(count=2, interval_s=1.0, timeout_s=2.0)
    [first] = m.poll(0.0)
    m.sent_batch([first.key], [stamp(0.0)], 0.0)
    assert m.next_deadline() == 1.0
    [second] = m.poll(1.0)
    m.sent_batch([second.key], [stamp(1.0)], 1.0)
    assert not m.done
    assert m.next_deadline() == 2.0  # the first probe's timeout
    m.poll(2.0)
    assert not m.done
    assert m.poll(3.0) == []
    assert m.done
    result = m.result()
    assert (result.transmitted, result.received, result.packet_loss) == (2, 0, 1.0)
    assert not result.is_alive and result.min_rtt_s is None


def test_duplicates_are_reported_not_counted() -> None:
    m = machine(count=1)
    [out] = m.poll(0.0)
    m.sent_batch([out.key], [stamp(0.0)], 0.0)
    m.receive_batch([echo_reply(out.packet, 0.001)], 0.001)
    m.receive_batch([echo_reply(out.packet, 0.002)], 0.002)
    events = m.take_events()
    assert [e.duplicate for e in events if isinstance(e, PingReply)] == [False, True]
    result = m.result()
    assert (result.received, result.duplicates) == (1, 1)
    assert result.rtts == pytest.approx((0.001,))


def test_icmp_error_is_a_result_with_the_routers_address() -> None:
    m = machine(count=1, ttl=1)
    [out] = m.poll(0.0)
    m.sent_batch([out.key], [stamp(0.0)], 0.0)
    icmp = build_icmp(11, 0, 0, out.packet)
    packet = build_ipv4(IPv4Header(src="198.18.1.1", dst=SOURCE, protocol=1, ttl=64), icmp)
    reply = Reply(out.key, socket.AF_INET, pton("198.18.1.1"), packet, 64, 1000, 0.001, 1)
    m.receive_batch([reply], 0.001)
    assert m.done
    result = m.result()
    assert result.received == 0
    [error] = result.errors
    assert error == PingError(1, "198.18.1.1", "Time to live exceeded", 11, 0)


def test_send_refused_by_the_network_is_a_result() -> None:
    m = machine(count=1)
    [out] = m.poll(0.0)
    m.sent_batch([out.key], [Sent(0, 0.0, "ENETUNREACH")], 0.0)
    assert m.done
    [error] = m.result().errors
    assert error.reason == "sendto: ENETUNREACH" and error.icmp_type is None


def test_sequence_numbers_wrap_on_the_wire_but_count_on() -> None:
    m = machine(count=None, interval_s=0.0, timeout_s=0.001)
    now = 0.0
    for _ in range(0x10000):
        [out] = m.poll(now)
        m.sent_batch([out.key], [stamp(now)], now)
        now += 0.01
    assert out.key[3] == 0  # 65536th probe: wire seq wrapped to 0
    m.receive_batch([echo_reply(out.packet, now)], now)
    assert m.take_events()[-1].seq == 0x10000


def test_a_stall_does_not_cause_a_burst() -> None:
    m = machine(count=5, interval_s=1.0)
    m.poll(0.0)
    # The caller was away for 10 s: exactly one probe is due, not nine.
    assert len(m.poll(10.0)) == 1
    assert m.poll(10.0) == []


@pytest.mark.parametrize(
    "options",
    [
        {"count": 0},
        {"interval_s": -1},
        {"timeout_s": 0},
        {"payload_size": -1},
        {"payload_size": 70000},
        {"ttl": 0},
        {"ttl": 256},
        {"interval_s": float("nan")},
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        PingOptions(**options)  # type: ignore[arg-type]


def test_statistics_match_iputils_definitions() -> None:
    replies = tuple(
        PingReply(seq=i + 1, source=TARGET, rtt_s=r, ttl=64, size=64)
        for i, r in enumerate([0.001, 0.002, 0.004])
    )
    result = PingResult(TARGET, 4, replies, (), 3.0, 56)
    assert result.packet_loss == 0.25
    assert result.min_rtt_s == 0.001 and result.max_rtt_s == 0.004
    assert result.avg_rtt_s == pytest.approx(0.007 / 3)
    # mdev = sqrt(mean(x^2) - mean(x)^2), as iputils computes it
    assert result.mdev_s == pytest.approx(0.0012472191, rel=1e-6)
    assert result.jitter_s == pytest.approx(0.0015)


def test_a_reply_later_than_the_timeout_is_not_counted() -> None:
    m = machine(count=1, timeout_s=0.5)
    [out] = m.poll(0.0)
    m.sent_batch([out.key], [stamp(0.0)], 0.0)
    m.poll(0.6)  # the probe expires
    m.receive_batch([echo_reply(out.packet, 0.9)], 0.9)
    result = m.result()
    assert (result.transmitted, result.received) == (1, 0)
