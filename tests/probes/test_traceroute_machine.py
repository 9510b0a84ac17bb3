"""The traceroute machine driven with plain numbers: Paris invariants, matching through
quotes, retries, silent hops, stopping at the destination, MPLS, annotations, stats."""

from __future__ import annotations

import socket

import pytest

from rawprobe.errors import UsageError
from rawprobe.probes.multiplex import Finished, Multiplex
from rawprobe.probes.traceroute import (
    LiveTrace,
    TraceMachine,
    TraceOptions,
    annotation,
)
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies, key_of_reply_v4, key_of_reply_v6
from rawprobe.transport.wire.addr import pton
from rawprobe.transport.wire.checksum import compensating_word, internet_checksum
from rawprobe.transport.wire.icmp import build_icmp, verify_icmp_checksum
from rawprobe.transport.wire.icmpext import MplsLabel, build_extensions, build_mpls_object
from rawprobe.transport.wire.icmpv6 import build_icmpv6, verify_icmpv6_checksum
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4, verify_ipv4_checksum
from rawprobe.transport.wire.tcp import verify_tcp_checksum
from rawprobe.transport.wire.udp import verify_udp_checksum

SRC4, DST4 = "198.18.1.2", "198.19.0.5"
SRC6, DST6 = "2001:db8:1::2", "2001:db8:ff::5"
ROUTERS4 = ("198.18.1.1", "198.18.2.2", "198.18.3.2")


def machine(address: str = DST4, **options: object) -> TraceMachine:
    source = SRC6 if ":" in address else SRC4
    return TraceMachine(
        address,
        source=source,
        flow_id=0x1234,
        cookies=Cookies(b"k" * 32),
        options=TraceOptions(**options),  # type: ignore[arg-type]
    )


def send_all(m: TraceMachine, now: float) -> list[bytes]:
    """Poll until nothing more is due at ``now``; every packet is 'sent' at once."""
    packets = []
    while True:
        batch = m.poll(now)
        if not batch:
            return packets
        for out in batch:
            m.sent_batch([out.key], [Sent(int(now * 1e9), now)], now)
            packets.append(out.packet)


def error_v4(router: str, probe: bytes, icmp_type: int = 11, code: int = 0, **kw: int) -> bytes:
    quote = probe[:20] + probe[20:28]  # RFC 792: IP header + 8 bytes
    quote = quote[:8] + b"\x01" + quote[9:]  # the router saw TTL 1
    message = build_icmp(icmp_type, code, kw.get("rest", 0), quote)
    return build_ipv4(IPv4Header(src=router, dst=SRC4, protocol=1, ttl=64), message)


def reply_v4(packet: bytes, now: float) -> Reply:
    key = key_of_reply_v4(packet)
    assert key is not None
    return Reply(
        key, socket.AF_INET, packet[12:16], packet, packet[8], int(now * 1e9), now, packet[9]
    )


def ttl_of(packet: bytes) -> int:
    return packet[8] if packet[0] >> 4 == 4 else packet[7]


def answer_path(m: TraceMachine, packets: list[bytes], now: float, hops: int = 3) -> None:
    """Routers answer TTL <= hops with time exceeded; the target answers the rest."""
    for packet in packets:
        ttl = ttl_of(packet)
        if ttl <= hops:
            m.receive_batch([reply_v4(error_v4(ROUTERS4[ttl - 1], packet), now)], now)
        else:
            echo = bytearray(packet[20:])
            echo[0] = 0
            echo[2:4] = b"\0\0"
            echo[2:4] = internet_checksum(bytes(echo)).to_bytes(2, "big")
            ip = build_ipv4(IPv4Header(src=DST4, dst=SRC4, protocol=1, ttl=61), bytes(echo))
            m.receive_batch([reply_v4(ip, now)], now)


def test_compensating_word_sets_any_checksum() -> None:
    for zero_sum, wanted in [(0x1234, 0xBEEF), (0xFFFE, 1), (1, 0xFFFE), (0x8000, 0x7FFF)]:
        word = compensating_word(zero_sum, wanted)
        assert internet_checksum(b"\x00\x00", ~zero_sum & 0xFFFF) == zero_sum
        assert internet_checksum(word.to_bytes(2, "big"), ~zero_sum & 0xFFFF) == wanted


@pytest.mark.parametrize("address", [DST4, DST6])
def test_paris_icmp_keeps_ident_and_checksum_constant_and_valid(address: str) -> None:
    m = machine(address, method="icmp")
    packets = send_all(m, 0.0)
    assert len(packets) == 30 * 3
    offset = 20 if address == DST4 else 40
    flows = {p[offset + 2 : offset + 6] for p in packets}  # checksum + identifier
    assert len(flows) == 1
    assert len({p[offset + 6 : offset + 8] for p in packets}) == 90  # seq = identity
    for p in packets:
        if address == DST4:
            assert verify_ipv4_checksum(p) and verify_icmp_checksum(p[20:])
        else:
            assert verify_icmpv6_checksum(p[40:], src=SRC6, dst=DST6)


@pytest.mark.parametrize("address", [DST4, DST6])
def test_paris_udp_keeps_ports_and_carries_identity_in_a_valid_checksum(address: str) -> None:
    m = machine(address, method="udp")
    packets = send_all(m, 0.0)
    offset = 20 if address == DST4 else 40
    src = SRC4 if address == DST4 else SRC6
    assert len({p[offset : offset + 4] for p in packets}) == 1  # ports
    assert len({p[offset + 6 : offset + 8] for p in packets}) == 90  # checksum = identity
    assert all(verify_udp_checksum(p[offset:], src=src, dst=address) for p in packets)
    assert {int.from_bytes(p[offset + 2 : offset + 4], "big") for p in packets} == {33434}
    if address == DST4:  # IP ID carries the identity too
        assert all(p[4:6] == p[26:28] for p in packets)


def test_paris_tcp_keeps_ports_and_varies_sequence() -> None:
    packets = send_all(machine(method="tcp"), 0.0)
    assert len({p[20:24] for p in packets}) == 1
    assert {int.from_bytes(p[22:24], "big") for p in packets} == {80}
    assert len({p[24:28] for p in packets}) == 90
    assert all(verify_tcp_checksum(p[20:], src=SRC4, dst=DST4) for p in packets)
    assert all(p[33] == 0x02 for p in packets)  # SYN


@pytest.mark.parametrize("method", ["udp", "tcp"])
def test_classic_mode_varies_the_ports(method: str) -> None:
    packets = send_all(machine(method=method, paris=False), 0.0)
    assert len({p[20:24] for p in packets}) == 90


def test_classic_icmp_lets_the_checksum_vary() -> None:
    packets = send_all(machine(paris=False), 0.0)
    assert len({p[22:24] for p in packets}) > 1


def test_reaches_destination_and_drops_rows_beyond_it() -> None:
    m = machine(in_flight=5)
    packets = send_all(m, 0.0)
    assert {ttl_of(p) for p in packets} == {1, 2, 3, 4, 5}
    answer_path(m, packets, 0.001)
    assert send_all(m, 0.002) == []  # nothing beyond the destination
    assert m.done
    result = m.result()
    assert result.reached and result.complete and result.destination_ttl == 4
    assert result.path == (*ROUTERS4, DST4)
    assert [hop.ttl for hop in result.hops] == [1, 2, 3, 4]
    assert result.hops[0].responses[0].quoted_ttl == 1
    assert result.hops[3].responses[0].kind == "echo-reply"


def test_matching_works_from_an_8_byte_quote_and_a_whole_packet_quote() -> None:
    m = machine(in_flight=1, queries=2)
    first, second = send_all(m, 0.0)
    m.receive_batch([reply_v4(error_v4(ROUTERS4[0], first), 0.001)], 0.001)
    whole = build_ipv4(
        IPv4Header(src=ROUTERS4[0], dst=SRC4, protocol=1), build_icmp(11, 0, 0, second)
    )
    m.receive_batch([reply_v4(whole, 0.002)], 0.002)
    hop = m.result(0.002).hops[0]
    assert hop.addresses == (ROUTERS4[0],) and len(hop.responses) == 2


def test_unanswered_probe_is_retried_and_a_late_answer_completes_the_hop() -> None:
    m = machine(in_flight=1, queries=1, wait_s=1.0, retries=2, max_ttl=1)
    (first,) = send_all(m, 0.0)
    assert send_all(m, 0.5) == []
    (retry,) = send_all(m, 1.0)  # a rate-limiting router dropped the first answer
    assert retry[26:28] != first[26:28]  # a new identity
    m.receive_batch([reply_v4(error_v4(ROUTERS4[0], retry), 1.01)], 1.01)
    result = m.result()
    assert m.done and result.hops[0].responses[0].attempt == 1
    assert result.hops[0].sent == 2


def test_silent_hop_shows_as_star_without_holding_the_others() -> None:
    m = machine(in_flight=None, wait_s=0.5, retries=1)
    packets = send_all(m, 0.0)
    answer_path(m, [p for p in packets if ttl_of(p) != 2], 0.001)
    assert not m.done
    send_all(m, 0.5)  # retries for hop 2 only
    assert send_all(m, 1.0) == [] and m.done
    result = m.result()
    assert result.reached and not result.complete
    assert result.hops[1].is_silent and result.hops[1].probes == (None, None, None)
    assert result.elapsed_s == pytest.approx(1.0)


def test_unreachable_error_ends_the_trace_with_its_annotation() -> None:
    m = machine(in_flight=3)
    packets = send_all(m, 0.0)
    for packet in packets:
        if ttl_of(packet) == 2:
            m.receive_batch([reply_v4(error_v4(ROUTERS4[1], packet, 3, 13), 0.001)], 0.001)
    result = m.result()
    assert result.destination_ttl == 2 and not result.reached
    assert {p.annotation for p in result.hops[1].responses} == {"!X"}


def test_mpls_extension_is_decoded() -> None:
    m = machine(in_flight=1, queries=1, max_ttl=1)
    (probe,) = send_all(m, 0.0)
    quote = probe + bytes(128 - len(probe))  # RFC 4884: padded to 128 bytes
    labels = (MplsLabel(16005, 0, True, 1),)
    extensions = build_extensions([build_mpls_object(labels)])
    message = build_icmp(11, 0, (128 // 4) << 16, quote + extensions)
    packet = build_ipv4(IPv4Header(src=ROUTERS4[0], dst=SRC4, protocol=1), message)
    m.receive_batch([reply_v4(packet, 0.001)], 0.001)
    assert m.result().hops[0].responses[0].mpls == labels


def test_icmpv6_port_unreachable_reaches_and_quotes_hop_limit() -> None:
    m = machine(DST6, method="udp", in_flight=1, queries=1, first_ttl=4, max_ttl=4)
    (probe,) = send_all(m, 0.0)
    message = build_icmpv6(1, 4, 0, probe, src=DST6, dst=SRC6)
    key = key_of_reply_v6(message, socket.inet_pton(socket.AF_INET6, DST6))
    assert key is not None
    m.receive_batch(
        [Reply(key, socket.AF_INET6, pton(DST6), message, 61, 1_000_000, 0.001, 58)], 0.001
    )
    response = m.result().hops[0].responses[0]
    assert m.done and response.reached and response.quoted_ttl == 4 and response.annotation is None


def test_annotations_follow_traceroute() -> None:
    v4, v6 = socket.AF_INET, socket.AF_INET6
    assert [annotation(v4, 3, c) for c in (0, 1, 2, 3, 5, 13)] == ["!N", "!H", "!P", "", "!S", "!X"]
    assert annotation(v4, 3, 4, 1400) == "!F-1400" and annotation(v4, 11, 0) == ""
    assert [annotation(v6, 1, c) for c in (0, 1, 3, 4)] == ["!N", "!X", "!H", ""]


def test_ip_header_template_matches_the_codec() -> None:
    m = machine(method="udp")
    packet = send_all(m, 0.0)[7]
    ident = packet[4] << 8 | packet[5]
    header = IPv4Header(src=SRC4, dst=DST4, protocol=17, ttl=packet[8], ident=ident)
    assert build_ipv4(header, packet[20:]) == packet


def test_options_are_validated() -> None:
    for bad in ({"method": "gre"}, {"first_ttl": 0}, {"max_ttl": 300}, {"queries": 0},
                {"wait_s": 0}, {"first_ttl": 9, "max_ttl": 5}, {"port": 70000},
                {"near": -1.0}, {"here": float("nan")}):  # fmt: skip
        with pytest.raises(UsageError):
            TraceOptions(**bad)  # type: ignore[arg-type]


def test_many_machine_finishes_each_trace_and_routes_replies() -> None:
    options = TraceOptions(in_flight=1, queries=1, max_ttl=1)
    cookies = Cookies(b"k" * 32)
    machines = [
        TraceMachine(f"198.19.0.{i}", source=SRC4, flow_id=i, cookies=cookies, options=options)
        for i in (5, 6)
    ]
    many = Multiplex(machines)
    batch = many.poll(0.0)
    assert len(batch) == 2
    for out in batch:
        many.sent_batch([out.key], [Sent(0, 0.0)], 0.0)
        many.receive_batch([reply_v4(error_v4(ROUTERS4[0], out.packet), 0.001)], 0.001)
    finished = [e for e in many.take_events() if isinstance(e, Finished)]
    assert many.done and len(finished) == 2


def test_live_trace_statistics() -> None:
    stats = LiveTrace(DST4, DST4)
    for rtt in (0.001, 0.003):
        m = machine(in_flight=5, queries=1)
        packets = send_all(m, 0.0)
        answer_path(m, packets, rtt)
        stats.add(m.result())
    rows = stats.rows()
    assert [r.ttl for r in rows] == [1, 2, 3, 4]
    assert rows[0].sent == 2 and rows[0].received == 2 and rows[0].loss == 0.0
    assert rows[0].best_s == pytest.approx(0.001) and rows[0].worst_s == pytest.approx(0.003)
    assert rows[0].avg_s == pytest.approx(0.002) and rows[0].stdev_s == pytest.approx(0.001)
    assert rows[0].last_s == pytest.approx(0.003)


def test_an_answer_to_an_earlier_try_counts_until_the_last_try_is_over() -> None:
    """A router that answers only after ARP gave up (~3 s) answers the first try late."""
    m = machine(in_flight=1, queries=1, wait_s=1.0, retries=2, max_ttl=1)
    (first,) = send_all(m, 0.0)
    assert len(send_all(m, 1.0)) == 1 and len(send_all(m, 2.0)) == 1  # tries 2 and 3
    m.receive_batch([reply_v4(error_v4(ROUTERS4[0], first, 3, 1), 2.5)], 2.5)  # try 1's !H
    result = m.result()
    assert m.done and result.hops[0].responses[0].annotation == "!H"
    assert result.hops[0].responses[0].attempt == 0
    assert send_all(m, 3.0) == []


def test_later_hops_answering_shorten_the_wait_of_silent_ones() -> None:
    """traceroute's NEAR: a silent hop below an answering one waits NEAR x (RTT + 1 ms)."""
    m = machine(in_flight=None, queries=1, wait_s=5.0, here=3.0, near=10.0, retries=0, max_ttl=3)
    packets = send_all(m, 0.0)
    assert m.next_deadline() == pytest.approx(5.0)
    third = next(p for p in packets if ttl_of(p) == 3)
    m.receive_batch([reply_v4(error_v4(ROUTERS4[2], third), 0.004)], 0.004)
    assert m.next_deadline() == pytest.approx(10 * 0.005)  # rescheduled, not 5 s
    assert send_all(m, 0.05) == [] and m.done
    result = m.result()
    assert [hop.is_silent for hop in result.hops] == [True, True, False]
    assert result.elapsed_s == pytest.approx(0.05)


def test_an_answer_from_the_same_hop_bounds_its_other_queries() -> None:
    """traceroute's HERE: the hop's other queries wait HERE x (RTT + 1 ms)."""
    m = machine(in_flight=None, queries=2, wait_s=5.0, here=3.0, near=0.0, retries=0, max_ttl=1)
    first, _second = send_all(m, 0.0)
    m.receive_batch([reply_v4(error_v4(ROUTERS4[0], first), 0.009)], 0.009)
    assert m.next_deadline() == pytest.approx(3 * 0.010)
    send_all(m, 0.03)
    assert m.done and m.result().hops[0].probes[1] is None


def test_without_factors_the_wait_is_fixed() -> None:
    m = machine(in_flight=None, queries=1, wait_s=2.0, retries=0, max_ttl=3)
    packets = send_all(m, 0.0)
    third = next(p for p in packets if ttl_of(p) == 3)
    m.receive_batch([reply_v4(error_v4(ROUTERS4[2], third), 0.004)], 0.004)
    assert m.next_deadline() == pytest.approx(2.0)
