"""The scan machine with plain numbers: port specs, packets, states, timing, pacing."""

from __future__ import annotations

import itertools
import socket

import pytest

from rawprobe.errors import UsageError
from rawprobe.probes.machine import Outgoing
from rawprobe.probes.portspec import parse_ports, top_ports
from rawprobe.probes.scan import ScanMachine, ScanOptions, scan_ports
from rawprobe.probes.targets import TargetSpace, parse_block
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import KIND_TCP, Cookies, key_of_reply_v4, key_of_sent
from rawprobe.transport.wire.icmp import build_icmp
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.tcp import (
    ACK,
    RST,
    SYN,
    TcpHeader,
    build_tcp,
    parse_tcp,
    verify_tcp_checksum,
)

SRC, DST = "198.18.1.2", "198.19.0.5"
COOKIES = Cookies(b"s" * 32)


def machine(
    ports: range | tuple[int, ...] = range(1, 101), hosts: str = DST, **kw: object
) -> ScanMachine:
    options = ScanOptions(**{"max_rate_pps": 0, **kw})  # type: ignore[arg-type]
    space = TargetSpace([parse_block(hosts)])
    return ScanMachine(
        space, tuple(ports), cookies=COOKIES, source_for=lambda a: SRC, options=options
    )


def send_all(m: ScanMachine, now: float) -> list[Outgoing]:
    out = m.poll(now)
    for o in out:
        m.sent(o.key, Sent(int(now * 1e9), now), now)
    return out


def answer(o: Outgoing, flags: int, ack_delta: int = 1) -> bytes:
    """The target's TCP answer to probe ``o`` (whole IPv4 packet)."""
    segment = parse_tcp(o.packet[20:])[0]
    header = TcpHeader(
        segment.dst_port, segment.src_port, seq=7, ack=segment.seq + ack_delta, flags=flags
    )
    tcp = build_tcp(header, b"", src=DST, dst=SRC)
    return build_ipv4(IPv4Header(src=DST, dst=SRC, protocol=6, ttl=61), tcp)


def reply(packet: bytes, now: float) -> Reply:
    key = key_of_reply_v4(packet)
    assert key is not None
    return Reply(key, socket.AF_INET, packet[12:16], packet,
                 packet[8], int(now * 1e9), now, packet[9])  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "ports"),
    [
        ("22,80,443", (22, 80, 443)),
        ("1-5", (1, 2, 3, 4, 5)),
        ("80,1-3,80", (1, 2, 3, 80)),
        ("-3", (1, 2, 3)),
        ("65534-", (65534, 65535)),
        ("T:22", (22,)),
    ],
)
def test_port_specs_in_nmap_syntax(spec: str, ports: tuple[int, ...]) -> None:
    assert parse_ports(spec) == ports


def test_all_ports_and_top_ports() -> None:
    assert parse_ports("-") == tuple(range(1, 65536))
    assert len(top_ports(1000)) == 1000 and {22, 80, 443} <= set(top_ports(10))
    assert scan_ports(None) == top_ports(1000)


@pytest.mark.parametrize("spec", ["0", "65536", "100-10", "http", "", "1,,2", "1-2-3", "-1-"])
def test_invalid_port_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_ports(spec)


def test_probes_are_syns_with_cookie_isn_and_valid_checksums() -> None:
    m = machine(range(1, 101))
    out = send_all(m, 0.0)
    assert len(out) == 64  # the initial window
    for o in out:
        segment, _ = parse_tcp(o.packet[20:])
        assert segment.flags == SYN
        assert verify_tcp_checksum(o.packet[20:], src=SRC, dst=DST)
        assert key_of_sent(o.packet) == o.key
        ports = segment.src_port << 16 | segment.dst_port
        expected = int.from_bytes(COOKIES.cookie((KIND_TCP, o.key[1], ports, 0))[:4], "big")
        assert segment.seq == expected
    assert sorted(parse_tcp(o.packet[20:])[0].dst_port for o in out) != list(range(1, 65))


def test_answers_decide_states_and_a_silent_port_is_retried_then_filtered() -> None:
    m = machine((22, 23, 24, 25), retries=1, randomize=False)
    out = send_all(m, 0.0)
    by_port = {parse_tcp(o.packet[20:])[0].dst_port: o for o in out}
    m.receive(reply(answer(by_port[22], SYN | ACK), 0.01), 0.01)
    m.receive(reply(answer(by_port[23], RST | ACK), 0.01), 0.01)
    quote = by_port[24].packet[:28]
    error = build_ipv4(
        IPv4Header(src=DST, dst=SRC, protocol=1, ttl=61), build_icmp(3, 13, 0, quote)
    )
    m.receive(reply(error, 0.01), 0.01)
    assert m.poll(0.05) == []  # port 25: not yet timed out
    # Port 25 sent again at 1.5 s, after 1.5 s without any answer: canaries (the ports
    # that answered by TCP) go along, so an answered send stands beside its last try
    # and its silence becomes a verdict (probes/outage.py).
    canary_keys = {by_port[22].key, by_port[23].key}
    again = send_all(m, 1.5)  # initial timeout (1 s) passed: sent again, same key
    assert [o.key for o in again if o.key not in canary_keys] == [by_port[25].key]
    assert {o.key for o in again} - {by_port[25].key} == canary_keys
    assert m.retransmissions == 1 and not m.done
    for o in again:
        if o.key in canary_keys:
            m.receive(reply(answer(o, RST | ACK), 1.51), 1.51)
    assert send_all(m, 3.0) == [] and m.done
    host = m.result().hosts[0]
    states = {p.port: (p.state, p.reason) for p in host.ports}
    assert states == {22: ("open", "syn-ack"), 24: ("filtered", "admin-prohibited"),
                      25: ("filtered", "no-response")}  # fmt: skip
    assert host.closed == 1 and host.is_up and host.ports[0].ttl == 61
    assert len(m.take_retired()) == 4


def test_ack_scan_reports_unfiltered_on_rst() -> None:
    m = machine((80,), technique="ack")
    (probe,) = send_all(m, 0.0)
    segment = parse_tcp(probe.packet[20:])[0]
    assert segment.flags == ACK and segment.ack == segment.seq
    rst = TcpHeader(80, segment.src_port, seq=segment.ack, ack=0, flags=RST)
    packet = build_ipv4(
        IPv4Header(src=DST, dst=SRC, protocol=6), build_tcp(rst, b"", src=DST, dst=SRC)
    )
    m.receive(reply(packet, 0.001), 0.001)
    assert m.result().hosts[0].ports[0].state == "unfiltered"


def test_window_bounds_probes_in_flight_and_answers_open_it() -> None:
    m = machine(range(1, 1001), initial_cwnd=10)
    first = send_all(m, 0.0)
    assert len(first) == 10 and m.poll(0.001) == []
    for o in first:
        m.receive(reply(answer(o, RST | ACK), 0.001), 0.001)
    assert len(send_all(m, 0.002)) == 20  # slow start: one more per answer


def test_answers_to_retransmissions_back_off_and_raise_retries() -> None:
    m = machine(range(1, 201), initial_cwnd=100)
    first = send_all(m, 0.0)
    resent = send_all(m, 1.5)  # all timed out: sent again (and new ones: timeouts
    assert {o.key for o in first} <= {o.key for o in resent}  # are no sign of congestion)
    resent = [o for o in resent if o.key in {f.key for f in first}]
    before = m.cwnd
    for o in resent:
        m.receive(reply(answer(o, RST | ACK), 1.51), 1.51)
    timing = m.result().timing
    assert timing.backoffs == 1 and m.cwnd < before
    assert timing.max_retries_used == 2  # answers came on retry 1: allow one more


def test_rate_cap_paces_the_sends() -> None:
    m = machine(range(1, 1001), max_rate_pps=1000.0, initial_cwnd=500)
    assert len(send_all(m, 0.0)) == 10  # 10 ms worth a poll
    # (The transport's token bucket paces them: the one rate limiter. The machine's
    # next poll is due at once; the transport's send is what waits.)
    assert m.next_deadline() <= 0.0
    assert len(send_all(m, 0.1)) == 10  # the burst is capped, never a catch-up flood


def test_min_rate_sends_past_a_full_window() -> None:
    m = machine(range(1, 1001), min_rate_pps=1000.0, initial_cwnd=1)
    assert len(send_all(m, 0.0)) == 1
    assert len(send_all(m, 0.01)) == 10  # window full, the floor's tokens send anyway


def test_permutation_covers_every_host_and_port_once() -> None:
    m = machine(range(1, 11), hosts="198.19.0.0/29", initial_cwnd=1000)
    out = send_all(m, 0.0)
    pairs = {(o.key[1], o.key[2] & 0xFFFF) for o in out}
    assert len(out) == len(pairs) == 6 * 10  # /29 without network and broadcast


def test_bad_options_are_usage_errors() -> None:
    for kw in ({"technique": "fin"}, {"retries": -1}, {"max_rate_pps": -1.0},
               {"min_rate_pps": 10.0, "max_rate_pps": 5.0}, {"ttl": 0}):  # fmt: skip
        with pytest.raises(UsageError):
            ScanOptions(**kw)  # type: ignore[arg-type]


def test_third_and_later_tries_wait_out_the_targets_syn_rate_limit() -> None:
    """A host ignores repeated SYNs for ~500 ms after answering one: tries 3+ of a port
    are spaced by more than that (found in the lab: an open port looked filtered)."""
    from rawprobe.probes.scan import _SYN_RETRY_GAP_S, ScanMachine, ScanOptions
    from rawprobe.probes.targets import TargetSpace
    from rawprobe.transport.base import Sent
    from rawprobe.transport.keys import Cookies

    options = ScanOptions(max_rate_pps=0, retries=4, max_retries=4, min_rtt_timeout_s=0.1,
                          initial_rtt_timeout_s=0.1)  # fmt: skip
    machine = ScanMachine(
        TargetSpace.parse(["198.19.0.5"]), [80], cookies=Cookies(),
        source_for=lambda _a: "198.18.1.2", options=options,
    )  # fmt: skip
    sends: list[float] = []
    now = 0.0
    while not machine.done and now < 10:
        for out in machine.poll(now):
            sends.append(now)
            machine.sent(out.key, Sent(0, now), now)
        now = round(now + 0.01, 2)
    assert len(sends) == 5
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert gaps[0] < _SYN_RETRY_GAP_S  # the second try goes after one timeout
    assert all(gap >= _SYN_RETRY_GAP_S for gap in gaps[1:])


def test_routing_is_asked_once_per_target_block_not_per_host() -> None:
    """Found measuring a /16 x 1 port scan: a source lookup (a connect() syscall) per
    host cost more than the probes. Each block's hosts share its lookup."""
    asked: list[str] = []

    def source_for(address: str) -> str:
        asked.append(address)
        return "198.18.1.2" if address.startswith("198.19.") else "192.0.2.7"

    space = TargetSpace([parse_block("198.19.0.0/24"), parse_block("203.0.113.0/30")])
    m = ScanMachine(
        space, (80, 443), cookies=COOKIES, source_for=source_for,
        options=ScanOptions(max_rate_pps=0, initial_cwnd=1000, max_cwnd=1000),
    )  # fmt: skip
    sources = {
        socket.inet_ntoa(o.packet[16:20]): socket.inet_ntoa(o.packet[12:16]) for o in m.poll(0.0)
    }
    assert len(sources) == 254 + 2
    assert sorted(asked) == ["198.19.0.1", "203.0.113.1"]
    assert {s for d, s in sources.items() if d.startswith("203.")} == {"192.0.2.7"}
    assert {s for d, s in sources.items() if d.startswith("198.")} == {"198.18.1.2"}
