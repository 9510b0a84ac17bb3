"""Shared helpers for the wire tests: golden vectors and a full strict dissector."""

from __future__ import annotations

from pathlib import Path

from rawprobe.transport.wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    find_fragment_header,
    parse_icmp,
    parse_icmpv6,
    parse_ipv4,
    parse_ipv6,
    parse_ports_seq,
    parse_tcp,
    parse_udp,
)

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"


def vector_names() -> list[str]:
    return sorted(path.stem for path in VECTORS_DIR.glob("*.hex"))


def load_vector(name: str) -> bytes:
    lines = (VECTORS_DIR / f"{name}.hex").read_text().splitlines()
    return bytes.fromhex("".join(line for line in lines if not line.startswith("#")))


def parse_ip(packet: bytes, *, quoted: bool = False) -> tuple[object, int, bytes, str, str]:
    """(header, upper protocol, upper bytes, src, dst) for IPv4 or IPv6."""
    if packet and packet[0] >> 4 == 6:
        header6, protocol, upper = parse_ipv6(packet, quoted=quoted)
        return header6, protocol, upper, header6.src, header6.dst
    header4, upper = parse_ipv4(packet, quoted=quoted)
    return header4, header4.protocol, upper, header4.src, header4.dst


def is_fragment(packet: bytes) -> bool:
    """Any fragment (first included): its transport checksum covers the whole datagram."""
    if packet[0] >> 4 == 4:
        header, _ = parse_ipv4(packet, quoted=True)
        return header.is_fragment
    return find_fragment_header(packet, 40, packet[6]) is not None


def is_later_fragment(packet: bytes) -> bool:
    if packet[0] >> 4 == 4:
        header, _ = parse_ipv4(packet, quoted=True)
        return header.fragment_offset != 0
    fragment = find_fragment_header(packet, 40, packet[6])
    return fragment is not None and fragment.offset != 0


def dissect(packet: bytes) -> list[object]:
    """Parse every layer of ``packet`` strictly, the way a receive path would.

    ICMP errors: the quoted datagram is parsed in quoted mode and its first transport
    bytes with ``parse_ports_seq`` (TCP) / ``parse_udp(quoted=True)`` (UDP).
    """
    header, protocol, upper, _, _ = parse_ip(packet)
    layers: list[object] = [header]
    if is_later_fragment(packet):
        return layers
    if protocol == PROTO_TCP:
        layers.append(parse_tcp(upper))
    elif protocol == PROTO_UDP:
        layers.append(parse_udp(upper))
    elif protocol in (PROTO_ICMP, PROTO_ICMPV6):
        message = parse_icmp(upper) if protocol == PROTO_ICMP else parse_icmpv6(upper)
        layers.append(message)
        if message.is_error:
            inner, inner_protocol, inner_upper, _, _ = parse_ip(message.quoted, quoted=True)
            layers.append(inner)
            if inner_protocol == PROTO_TCP:
                layers.append(parse_ports_seq(inner_upper))
            elif inner_protocol == PROTO_UDP:
                layers.append(parse_udp(inner_upper, quoted=True))
            elif inner_protocol == PROTO_ICMP:
                layers.append(parse_icmp(inner_upper))
            elif inner_protocol == PROTO_ICMPV6:
                layers.append(parse_icmpv6(inner_upper))
    return layers
