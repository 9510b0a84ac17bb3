"""The flow-probe factory: a flow id moves exactly the fields Linux's multipath hash
reads (ports, the IPv6 flow label), a probe number moves only fields it does not read,
and every probe is a valid packet whose key the demultiplexer will find."""

from __future__ import annotations

import socket

import pytest

from rawprobe.probes.flowprobes import FlowProbes, source_port
from rawprobe.transport.keys import Cookies, key_of_sent
from rawprobe.transport.wire.icmp import verify_icmp_checksum
from rawprobe.transport.wire.icmpv6 import verify_icmpv6_checksum
from rawprobe.transport.wire.ipv4 import verify_ipv4_checksum
from rawprobe.transport.wire.tcp import verify_tcp_checksum
from rawprobe.transport.wire.udp import verify_udp_checksum

SOURCES = {"198.19.0.5": "198.18.1.2", "2001:db8:ff::5": "2001:db8:1::2"}
PORTS = {"icmp": 0, "udp": 33434, "tcp": 80}


def factory(address: str, method: str, *, paris: bool = True) -> FlowProbes:
    return FlowProbes(
        source=SOURCES[address], address=address, method=method, cookies=Cookies(b"f" * 32),
        port=PORTS[method], ident=0x5A01, paris=paris,
    )  # fmt: skip


def hashed(packet: bytes) -> tuple[bytes, ...]:
    """What Linux's multipath hash may read: addresses, protocol, ports (the first four
    transport bytes of UDP/TCP), and over IPv6 the flow label."""
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 0xF) * 4
        ports = packet[ihl : ihl + 4] if packet[9] in (6, 17) else b""
        return (packet[12:20], packet[9:10], ports)
    label = bytes((packet[1] & 0x0F,)) + packet[2:4]
    ports = packet[40:44] if packet[6] in (6, 17) else b""
    return (packet[8:40], packet[6:7], ports, label)


def valid(packet: bytes, address: str) -> bool:
    """Every checksum of the packet is right."""
    src = SOURCES[address]
    if ":" not in address:
        body, proto = packet[20:], packet[9]
        if not verify_ipv4_checksum(packet):
            return False
        if proto == 1:
            return verify_icmp_checksum(body)
    else:
        body, proto = packet[40:], packet[6]
    verify = {58: verify_icmpv6_checksum, 17: verify_udp_checksum, 6: verify_tcp_checksum}
    return verify[proto](body, src=src, dst=address)


@pytest.mark.parametrize("method", ["icmp", "udp", "tcp"])
@pytest.mark.parametrize("address", list(SOURCES))
def test_one_flow_keeps_the_hashed_fields_and_probes_stay_apart(method: str, address: str) -> None:
    probes = factory(address, method)
    out = [probes.packet(ttl, 7, number) for number, ttl in enumerate((1, 2, 3, 1, 2, 3))]
    assert len({hashed(o.packet) for o in out}) == 1  # one path for the whole flow
    assert len({o.key for o in out}) == len(out)  # each probe its own identity
    assert all(o.key == key_of_sent(o.packet) and valid(o.packet, address) for o in out)
    if method != "tcp":  # TCP probes are bare SYNs
        assert all(len(o.packet) == probes.packet_size for o in out)


@pytest.mark.parametrize("method", ["udp", "tcp"])
@pytest.mark.parametrize("address", list(SOURCES))
def test_flow_ids_move_the_source_port_and_the_ipv6_flow_label(method: str, address: str) -> None:
    probes = factory(address, method)
    flows = range(0, 64)
    packets = [probes.packet(5, flow, 0).packet for flow in flows]
    assert len({hashed(p) for p in packets}) == len(flows)
    offset = 20 if ":" not in address else 40
    assert [int.from_bytes(p[offset : offset + 2], "big") for p in packets] == [
        source_port(f) for f in flows
    ]
    assert {probes.flow(f) for f in flows} == {(source_port(f), PORTS[method]) for f in flows}
    if ":" in address:
        labels = [int.from_bytes(p[1:4], "big") & 0xFFFFF for p in packets]
        assert labels == list(flows)


def test_icmpv6_flows_differ_in_the_label_and_icmpv4_flows_only_where_linux_does_not_look() -> None:
    v6 = factory("2001:db8:ff::5", "icmp")
    assert len({hashed(v6.packet(3, f, 0).packet) for f in range(32)}) == 32
    v4 = factory("198.19.0.5", "icmp")
    assert len({hashed(v4.packet(3, f, 0).packet) for f in range(32)}) == 1
    assert len({v4.flow(f) for f in range(32)}) == 32  # (identifier, checksum) differ


@pytest.mark.parametrize("method", ["icmp", "udp", "tcp"])
def test_classic_probes_vary_the_hashed_fields(method: str) -> None:
    probes = factory("198.19.0.5", method, paris=False)
    packets = [probes.packet(2, 7, number).packet for number in range(8)]
    if method == "icmp":  # the checksum varies: per-packet balancers may split them
        assert len({p[22:24] for p in packets}) == 8
    else:
        assert len({hashed(p) for p in packets}) == 8


def test_the_family_comes_from_the_address() -> None:
    assert factory("198.19.0.5", "udp").family == socket.AF_INET
    assert factory("2001:db8:ff::5", "udp").family == socket.AF_INET6
