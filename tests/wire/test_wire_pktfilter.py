"""Capture filters read from bytes: protocol, host, port, direction, family."""

from __future__ import annotations

import pytest
from wire_vectors import load_vector, vector_names

from rawprobe.errors import UsageError
from rawprobe.transport.wire.pktfilter import PacketFilter


def kept(packet_filter: PacketFilter, outgoing: bool | None = None) -> set[str]:
    return {n for n in vector_names() if packet_filter.matches(load_vector(n), outgoing)}


def test_protocols() -> None:
    assert kept(PacketFilter.build(protocols=("tcp",))) == {
        "tcp4_rst", "tcp4_syn", "tcp4_synack", "tcp6_rst", "tcp6_syn", "tcp6_synack",
    }  # fmt: skip
    assert kept(PacketFilter.build(protocols=("udp",))) == {"udp4_datagram", "udp6_datagram"}
    icmp6 = kept(PacketFilter.build(protocols=("icmp6",)))
    assert "ipv6_hbh_mld_report" in icmp6  # found behind the hop-by-hop header
    assert all(name.startswith(("icmp6", "ipv6")) for name in icmp6)


def test_ports_hosts_and_family() -> None:
    assert kept(PacketFilter.build(ports=(33434,))) == {"udp4_datagram", "udp6_datagram"}
    assert kept(PacketFilter.build(ports=(8080,), version=6)) == {"tcp6_syn", "tcp6_synack"}
    hosts = kept(PacketFilter.build(hosts=("198.18.1.1",)))
    assert hosts == {"icmp4_time_exceeded"}
    assert not kept(PacketFilter.build(hosts=("192.0.2.1",)))


def test_direction_uses_what_the_capture_knows() -> None:
    outbound = PacketFilter.build(direction="out")
    assert outbound.matches(load_vector("tcp4_syn"), True)
    assert not outbound.matches(load_vector("tcp4_syn"), False)
    assert outbound.matches(load_vector("tcp4_syn"), None)  # unknown: not filtered out


def test_truncated_packets_never_raise() -> None:
    packet_filter = PacketFilter.build(protocols=("tcp",), ports=(80,), hosts=("::1",))
    for name in vector_names():
        packet = load_vector(name)
        for cut in range(0, len(packet), 3):
            packet_filter.matches(packet[:cut])


@pytest.mark.parametrize(
    "kwargs",
    [{"protocols": ("sctp",)}, {"hosts": ("nowhere",)}, {"ports": (70000,)},
     {"direction": "up"}, {"version": 5}],
)  # fmt: skip
def test_bad_words_are_usage_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        PacketFilter.build(**kwargs)  # type: ignore[arg-type]
