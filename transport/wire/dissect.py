"""Layer-by-layer dissection of an IPv4/IPv6 packet, for people (``send``, ``sniff``).

``dissect(packet)`` returns a small tree of frozen values: the IP header (and IPv6
extension headers), the transport header, the payload; an ICMP error carries the
quoted datagram as a nested layer, and RFC 4884/4950 extensions if present. Every
field has its raw value and a human text (checksums say whether they are correct).

Never raises for bad bytes: what cannot be parsed becomes a ``Malformed`` layer that
says what went wrong, after the layers that did parse. Not for the hot path: it
builds objects for every field; the receive path reads match keys from bytes instead.
``summary`` is a one-line, tcpdump-like description (``tcpdump -nn`` wording for
echo, TCP, UDP and the common ICMP errors).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from rawprobe.errors import MalformedPacket

from . import icmp as icmp4
from . import icmp_table as table
from . import icmpv6 as icmp6
from .addr import ntop4
from .checksum import internet_checksum, ones_complement_sum, pseudo_header
from .icmpext import parse_extensions
from .ipv4 import parse_ipv4
from .ipv6 import MAX_EXTENSION_HEADERS, extension_header, parse_ipv6
from .protocols import (
    PROTO_AH,
    PROTO_DSTOPTS,
    PROTO_FRAGMENT,
    PROTO_HOPOPTS,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_ROUTING,
    PROTO_TCP,
    PROTO_UDP,
)
from .tcp import TcpOption, flags_text, parse_ports_seq, parse_tcp
from .udp import parse_udp

__all__ = ["Dissection", "Field", "Layer", "dissect"]

FieldValue = int | str | bytes | bool | None

#: Layer names (stable: the CLI, JSON and tests use them).
MALFORMED = "Malformed"
PAYLOAD = "Payload"
QUOTED = "Quoted packet"
EXTENSIONS = "ICMP extensions"

_PREVIEW_BYTES = 32
_TIMESTAMPS = struct.Struct("!III")


@dataclass(frozen=True, slots=True)
class Field:
    """One header field: its name, the value found on the wire, and text for people."""

    name: str
    value: FieldValue
    text: str

    def to_data(self) -> dict[str, Any]:
        value = self.value.hex() if isinstance(self.value, bytes) else self.value
        return {"name": self.name, "value": value, "text": self.text}


@dataclass(frozen=True, slots=True)
class Layer:
    """One protocol layer: ordered fields, and nested layers (a quoted packet,
    ICMP extension objects)."""

    name: str
    fields: tuple[Field, ...] = ()
    children: tuple[Layer, ...] = ()

    def field(self, name: str) -> Field | None:
        for field in self.fields:
            if field.name == name:
                return field
        return None

    def value(self, name: str) -> FieldValue:
        """The raw value of field ``name``; KeyError when the layer has no such field."""
        field = self.field(name)
        if field is None:
            raise KeyError(f"{self.name} has no field {name!r}")
        return field.value

    def child(self, name: str) -> Layer | None:
        for child in self.children:
            if child.name == name:
                return child
        return None

    def walk(self) -> tuple[Layer, ...]:
        """This layer and every nested one, depth first."""
        found: list[Layer] = [self]
        for child in self.children:
            found.extend(child.walk())
        return tuple(found)

    def to_data(self) -> dict[str, Any]:
        return {
            "layer": self.name,
            "fields": [field.to_data() for field in self.fields],
            "children": [child.to_data() for child in self.children],
        }


@dataclass(frozen=True, slots=True)
class Dissection:
    """The layers of one packet, outermost first, and a one-line summary."""

    layers: tuple[Layer, ...]
    summary: str
    length: int

    @property
    def malformed(self) -> bool:
        """True when some layer, nested ones included, could not be parsed."""
        return any(layer.name == MALFORMED for top in self.layers for layer in top.walk())

    def layer(self, name: str) -> Layer | None:
        """The first top-level layer called ``name`` (``IPv4``, ``TCP``, ``ICMP`` ...)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        return None

    def to_data(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "length": self.length,
            "malformed": self.malformed,
            "layers": [layer.to_data() for layer in self.layers],
        }


def _f(name: str, value: FieldValue, text: str | None = None) -> Field:
    return Field(name, value, str(value) if text is None else text)


def _malformed(reason: str, data: bytes | memoryview = b"") -> Layer:
    fields = [_f("error", reason)]
    if data:
        fields.append(_f("bytes", bytes(data), _preview(bytes(data))))
    return Layer(MALFORMED, tuple(fields))


def _preview(data: bytes) -> str:
    text = data[:_PREVIEW_BYTES].hex(" ")
    return text + " ..." if len(data) > _PREVIEW_BYTES else text


def _payload(data: bytes, name: str = PAYLOAD) -> Layer:
    printable = "".join(chr(b) if 32 <= b < 127 else "." for b in data[:_PREVIEW_BYTES])
    return Layer(
        name,
        (
            _f("length", len(data), f"{len(data)} bytes"),
            _f("data", data, _preview(data)),
            _f("ascii", printable),
        ),
    )


def _checksum(stored: int, expected: int | None, why_not: str = "") -> Field:
    """A checksum field; ``expected`` None means it could not be verified."""
    if expected is None:
        text = f"0x{stored:04x}" + (f" ({why_not})" if why_not else "")
    elif expected == stored:
        text = f"0x{stored:04x} (correct)"
    else:
        text = f"0x{stored:04x} (incorrect, should be 0x{expected:04x})"
    return _f("checksum", stored, text)


def _expected(data: bytes, offset: int, initial: int = 0) -> int:
    """The checksum ``data`` should carry at ``offset`` (computed with that field zeroed)."""
    zeroed = data[:offset] + b"\x00\x00" + data[offset + 2 :]
    return internet_checksum(zeroed, initial)


def _pseudo_sum(src: str, dst: str, protocol: int, length: int) -> int:
    return ones_complement_sum(pseudo_header(src, dst, protocol, length))


# -- entry point --------------------------------------------------------------------------


def dissect(packet: bytes | bytearray | memoryview) -> Dissection:
    """Dissect an IPv4 or IPv6 packet (no link-layer header). Never raises."""
    data = bytes(packet)
    try:
        layers, summary = _dissect_ip(data, quoted=False, depth=0)
    except (MalformedPacket, ValueError, IndexError, struct.error) as exc:  # pragma: no cover
        # The per-layer handlers catch MalformedPacket; this is the last line of defence.
        layers, summary = [_malformed(f"cannot dissect: {exc}", data)], "malformed packet"
    return Dissection(tuple(layers), summary, len(data))


def _dissect_ip(data: bytes, *, quoted: bool, depth: int) -> tuple[list[Layer], str]:
    if not data:
        return [_malformed("empty packet")], "malformed: empty packet"
    version = data[0] >> 4
    if version == 4:
        return _dissect_ipv4(data, quoted=quoted, depth=depth)
    if version == 6:
        return _dissect_ipv6(data, quoted=quoted, depth=depth)
    return [_malformed(f"not IPv4 or IPv6: version {version}", data)], f"IP version {version}?"


# -- IPv4 ---------------------------------------------------------------------------------

_IPV4_OPTION_NAMES = {
    0: "EOL",
    1: "NOP",
    7: "RR",
    68: "TS",
    130: "SEC",
    131: "LSRR",
    136: "SID",
    137: "SSRR",
    148: "RA",
}


def _ipv4_options_text(options: bytes) -> str:
    parts: list[str] = []
    offset = 0
    while offset < len(options):
        kind = options[offset]
        name = _IPV4_OPTION_NAMES.get(kind, f"opt-{kind}")
        if kind in (0, 1):
            parts.append(name)
            offset += 1
            if kind == 0:
                break
            continue
        if offset + 1 >= len(options) or options[offset + 1] < 2:
            parts.append(f"{name} [bad length]")
            break
        length = options[offset + 1]
        body = options[offset + 2 : offset + length]
        if len(body) != length - 2:
            parts.append(f"{name} [truncated]")
            break
        if kind in (7, 131, 137) and body:
            addresses = [ntop4(body[i : i + 4]) for i in range(1, len(body) - 3, 4)]
            parts.append(f"{name} ptr {body[0]} " + " ".join(addresses))
        else:
            parts.append(f"{name} {body.hex()}" if body else name)
        offset += length
    return ", ".join(parts)


def _ipv4_flags_text(flags: int) -> str:
    names = [name for bit, name in ((4, "evil"), (2, "DF"), (1, "MF")) if flags & bit]
    return "[" + ",".join(names) + "]" if names else "[none]"


def _proto_text(protocol: int) -> str:
    name = {PROTO_ICMP: "ICMP", PROTO_TCP: "TCP", PROTO_UDP: "UDP", PROTO_ICMPV6: "ICMPv6"}
    return f"{name.get(protocol, 'ip-proto')} ({protocol})"


def _dissect_ipv4(data: bytes, *, quoted: bool, depth: int) -> tuple[list[Layer], str]:
    try:
        header, upper = parse_ipv4(data, quoted=quoted)
    except MalformedPacket as exc:
        return [_malformed(str(exc), data)], f"IP malformed: {exc}"
    header_length = (data[0] & 0x0F) * 4
    raw_header = data[:header_length]
    checksum_ok = _expected(raw_header, 10)
    total = header.total_length or 0
    fields = [
        _f("version", 4),
        _f("header_length", header_length, f"{header_length} bytes"),
        _f("tos", header.tos, f"0x{header.tos:02x} (DSCP {header.tos >> 2}, ECN {header.tos & 3})"),
        _f("total_length", total),
        _f("ident", header.ident, f"{header.ident} (0x{header.ident:04x})"),
        _f("flags", header.flags, _ipv4_flags_text(header.flags)),
        _f(
            "fragment_offset",
            header.fragment_offset,
            f"{header.fragment_offset} ({header.fragment_offset_bytes} bytes)",
        ),
        _f("ttl", header.ttl),
        _f("protocol", header.protocol, _proto_text(header.protocol)),
        _checksum(header.checksum or 0, checksum_ok),
        _f("src", header.src),
        _f("dst", header.dst),
    ]
    if header.options:
        fields.append(_f("options", header.options, _ipv4_options_text(header.options)))
    ip_layer = Layer("IPv4", tuple(fields))
    src, dst = header.src, header.dst
    if header.fragment_offset:
        frag = _payload(upper, "Fragment data")
        summary = f"IP {src} > {dst}: ip-proto-{header.protocol}"
        return [ip_layer, frag], summary
    why = "quoted" if quoted else ("fragment" if header.is_fragment else "")
    layers, text = _dissect_upper(
        header.protocol, upper, src, dst, why_not=why, quoted=quoted, depth=depth
    )
    return [ip_layer, *layers], f"IP {text}"


# -- IPv6 ---------------------------------------------------------------------------------

_EXT_NAMES = {
    PROTO_HOPOPTS: "IPv6 Hop-by-Hop Options",
    PROTO_ROUTING: "IPv6 Routing",
    PROTO_FRAGMENT: "IPv6 Fragment",
    PROTO_DSTOPTS: "IPv6 Destination Options",
    PROTO_AH: "IPv6 Authentication Header",
}
_FRAGMENT = struct.Struct("!BxHI")


def _dissect_ipv6(data: bytes, *, quoted: bool, depth: int) -> tuple[list[Layer], str]:
    try:
        header, protocol, _upper = parse_ipv6(data, quoted=quoted)
    except MalformedPacket as exc:
        return [_malformed(str(exc), data)], f"IP6 malformed: {exc}"
    end = min(len(data), 40 + (header.payload_length or 0))
    fields = (
        _f("version", 6),
        _f(
            "traffic_class",
            header.traffic_class,
            f"0x{header.traffic_class:02x} (DSCP {header.traffic_class >> 2}, "
            f"ECN {header.traffic_class & 3})",
        ),
        _f("flow_label", header.flow_label, f"0x{header.flow_label:05x}"),
        _f("payload_length", header.payload_length),
        _f("next_header", header.next_header, _proto_text(header.next_header)),
        _f("hop_limit", header.hop_limit),
        _f("src", header.src),
        _f("dst", header.dst),
    )
    layers = [Layer("IPv6", fields)]
    prefix = ""
    view = data[:end]
    offset, next_header = 40, header.next_header
    later_fragment = False
    fragmented = False
    for _ in range(MAX_EXTENSION_HEADERS):
        found = extension_header(view, offset, next_header)  # validated by parse_ipv6
        if found is None:
            break
        following, length = found
        ext_fields = [_f("next_header", following, _proto_text(following))]
        if next_header == PROTO_FRAGMENT:
            _, offset_flags, ident = _FRAGMENT.unpack_from(view, offset)
            frag_offset, more = offset_flags >> 3, bool(offset_flags & 1)
            fragmented = True
            later_fragment = frag_offset != 0
            prefix += f"frag ({frag_offset * 8}|{end - offset - 8}) "
            ext_fields += [
                _f("fragment_offset", frag_offset, f"{frag_offset} ({frag_offset * 8} bytes)"),
                _f("more_fragments", more),
                _f("ident", ident, f"0x{ident:08x}"),
            ]
        else:
            if next_header == PROTO_HOPOPTS:
                prefix += "HBH "
            ext_fields += [
                _f("length", length, f"{length} bytes"),
                _f(
                    "data",
                    view[offset + 2 : offset + length],
                    view[offset + 2 : offset + length].hex(" "),
                ),
            ]
        layers.append(
            Layer(_EXT_NAMES.get(next_header, f"IPv6 extension {next_header}"), tuple(ext_fields))
        )
        offset += length
        next_header = following
    upper = view[offset:]
    src, dst = header.src, header.dst
    if later_fragment:
        layers.append(_payload(upper, "Fragment data"))
        return layers, f"IP6 {src} > {dst}: {prefix.rstrip()}"
    why = "quoted" if quoted else ("fragment" if fragmented else "")
    upper_layers, text = _dissect_upper(
        protocol, upper, src, dst, why_not=why, quoted=quoted, depth=depth
    )
    if prefix:
        head, colon, tail = text.partition(": ")
        text = f"{head}{colon}{prefix}{tail}"
    return layers + upper_layers, f"IP6 {text}"


# -- transport ----------------------------------------------------------------------------


def _dissect_upper(
    protocol: int, upper: bytes, src: str, dst: str, *, why_not: str, quoted: bool, depth: int
) -> tuple[list[Layer], str]:
    """Layers after the IP header(s) and the summary text after ``IP ``/``IP6 ``;
    ``why_not``: why the checksums cannot be checked (quoted, fragment), or ""."""
    if protocol == PROTO_TCP:
        return _dissect_tcp(upper, src, dst, why_not=why_not, quoted=quoted)
    if protocol == PROTO_UDP:
        return _dissect_udp(upper, src, dst, why_not=why_not, quoted=quoted)
    if protocol == PROTO_ICMP and ":" not in src:
        return _dissect_icmp(upper, src, dst, v6=False, why_not=why_not, depth=depth)
    if protocol == PROTO_ICMPV6 and ":" in src:
        return _dissect_icmp(upper, src, dst, v6=True, why_not=why_not, depth=depth)
    layers = [_payload(upper)] if upper else []
    return layers, f"{src} > {dst}: ip-proto-{protocol} {len(upper)}"


def _tcp_options_text(options: tuple[TcpOption, ...]) -> str:
    parts = []
    for option in options:
        if option.mss is not None:
            parts.append(f"mss {option.mss}")
        elif option.window_scale is not None:
            parts.append(f"wscale {option.window_scale}")
        elif option.timestamps is not None:
            parts.append(f"TS val {option.timestamps[0]} ecr {option.timestamps[1]}")
        elif option.sack_blocks is not None and option.kind == 5:
            parts.append("sack " + " ".join(f"{a}:{b}" for a, b in option.sack_blocks))
        elif option.data:
            parts.append(f"{option.name} {option.data.hex()}")
        else:
            parts.append(option.name)
    return ",".join(parts)


def _dissect_tcp(
    upper: bytes, src: str, dst: str, *, why_not: str, quoted: bool
) -> tuple[list[Layer], str]:
    try:
        header, payload = parse_tcp(upper, quoted=quoted)
    except MalformedPacket as exc:
        if quoted:  # ICMP errors may quote only 8 bytes: ports and sequence number
            try:
                sport, dport, seq = parse_ports_seq(upper)
            except MalformedPacket as short:
                return [_malformed(str(short), upper)], f"{src} > {dst}: tcp (truncated)"
            short_fields = (
                _f("src_port", sport),
                _f("dst_port", dport),
                _f("seq", seq),
                _f("quoted_bytes", len(upper), f"{len(upper)} bytes (header cut by the quote)"),
            )
            return [Layer("TCP", short_fields)], f"{_ports(src, sport, dst, dport)}: tcp"
        return [_malformed(str(exc), upper)], f"{src} > {dst}: tcp (malformed: {exc})"
    expected = None
    if not why_not:  # (neither quoted nor a fragment: the checksum can be checked)
        expected = _expected(upper, 16, _pseudo_sum(src, dst, PROTO_TCP, len(upper)))
    fields = [
        _f("src_port", header.src_port),
        _f("dst_port", header.dst_port),
        _f("seq", header.seq),
        _f("ack", header.ack),
        _f("data_offset", header.data_offset, f"{(header.data_offset or 0) * 4} bytes"),
        _f("flags", header.flags, f"[{flags_text(header.flags)}] (0x{header.flags:03x})"),
        _f("window", header.window),
        _checksum(header.checksum or 0, expected, why_not),
        _f("urgent", header.urgent),
    ]
    if header.options:
        raw = upper[20 : (header.data_offset or 5) * 4]
        fields.append(_f("options", raw, _tcp_options_text(header.options)))
    layers = [Layer("TCP", tuple(fields))]
    if payload:
        layers.append(_payload(payload))
    text = (
        f"{_ports(src, header.src_port, dst, header.dst_port)}: Flags [{flags_text(header.flags)}]"
    )
    seq_text = (
        f"{header.seq}:{(header.seq + len(payload)) & 0xFFFFFFFF}" if payload else f"{header.seq}"
    )
    if payload or not header.flags & 0x10 or header.flags & 0x07:
        text += f", seq {seq_text}"
    if header.flags & 0x10:
        text += f", ack {header.ack}"
    text += f", win {header.window}"
    if header.flags & 0x20:
        text += f", urg {header.urgent}"
    if header.options:
        text += f", options [{_tcp_options_text(header.options)}]"
    return layers, text + f", length {len(payload)}"


def _ports(src: str, sport: int, dst: str, dport: int) -> str:
    return f"{src}.{sport} > {dst}.{dport}"


def _dissect_udp(
    upper: bytes, src: str, dst: str, *, why_not: str, quoted: bool
) -> tuple[list[Layer], str]:
    try:
        header, payload = parse_udp(upper, quoted=quoted or bool(why_not))
    except MalformedPacket as exc:
        return [_malformed(str(exc), upper)], f"{src} > {dst}: udp (malformed: {exc})"
    length = header.length or 0
    stored = header.checksum or 0
    expected: int | None = None
    reason = why_not
    if not why_not:  # (neither quoted nor a fragment: the checksum can be checked)
        if stored == 0 and ":" not in src:
            reason = "none"
        else:
            datagram = upper[:length]
            expected = _expected(datagram, 6, _pseudo_sum(src, dst, PROTO_UDP, length)) or 0xFFFF
    fields = (
        _f("src_port", header.src_port),
        _f("dst_port", header.dst_port),
        _f("length", length),
        _checksum(stored, expected, reason),
    )
    layers = [Layer("UDP", fields)]
    if payload:
        layers.append(_payload(payload))
    text = f"{_ports(src, header.src_port, dst, header.dst_port)}: UDP, length {length - 8}"
    return layers, text


# -- ICMP / ICMPv6 ------------------------------------------------------------------------


def _code_text(family: int, icmp_type: int, code: int) -> str:
    name = table.code_name(family, icmp_type, code)
    return f"{code} ({name})" if name is not None else str(code)


def _dissect_icmp(
    upper: bytes, src: str, dst: str, *, v6: bool, why_not: str, depth: int
) -> tuple[list[Layer], str]:
    name = "ICMPv6" if v6 else "ICMP"
    try:
        message = icmp6.parse_icmpv6(upper) if v6 else icmp4.parse_icmp(upper)
    except MalformedPacket as exc:
        return [_malformed(str(exc), upper)], f"{src} > {dst}: {name} (malformed: {exc})"
    family = table.AF_INET6 if v6 else table.AF_INET
    type_name = table.type_name(family, message.type) or f"type {message.type}"
    expected = None
    if not why_not:  # (neither quoted nor a fragment: the checksum can be checked)
        initial = _pseudo_sum(src, dst, PROTO_ICMPV6, len(upper)) if v6 else 0
        expected = _expected(upper, 2, initial)
    fields = [
        _f("type", message.type, f"{message.type} ({type_name})"),
        _f("code", message.code, _code_text(family, message.type, message.code)),
        _checksum(message.checksum, expected, why_not),
    ]
    children: list[Layer] = []
    after: list[Layer] = []
    echo = (128, 129) if v6 else (0, 8)
    timestamp = () if v6 else (13, 14)
    prefix = f"{src} > {dst}: " + ("ICMP6, " if v6 else "ICMP ")
    length_text = f", length {len(upper)}"
    if message.type in echo or message.type in timestamp:
        fields += [_f("ident", message.ident), _f("seq", message.seq)]
        body = message.body
        if message.type in timestamp:
            if len(body) >= _TIMESTAMPS.size:
                stamps = _TIMESTAMPS.unpack_from(body)
                names = ("originate", "receive", "transmit")
                fields += [_f(n, v, f"{v} ms") for n, v in zip(names, stamps, strict=True)]
                body = body[_TIMESTAMPS.size :]
            else:
                children.append(_malformed(f"timestamp body of {len(body)} of 12 bytes", body))
                body = b""
        if body:
            after.append(_payload(body))
        text = f"{prefix}{type_name}, id {message.ident}, seq {message.seq}{length_text}"
    elif message.is_error:
        fields += _error_fields(message, v6)
        quote = message.quoted
        inner_layers: list[Layer] = []
        if depth == 0:
            inner_layers, _ = _dissect_ip(quote, quoted=True, depth=depth + 1)
            children.append(
                Layer(
                    QUOTED, (_f("length", len(quote), f"{len(quote)} bytes"),), tuple(inner_layers)
                )
            )
        else:
            children.append(_payload(quote, QUOTED))
        if message.extensions:
            children.append(_extensions_layer(message.extensions))
        words = table.tcpdump_text(family, message.type, message.code, *_quoted_facts(inner_layers))
        text = prefix + words + length_text
    else:
        fields.append(_f("rest", message.rest, f"0x{message.rest:08x}"))
        if message.body:
            after.append(_payload(message.body))
        text = f"{prefix}{type_name}{length_text}"
    return [Layer(name, tuple(fields), tuple(children)), *after], text


def _error_fields(message: icmp4.IcmpMessage | icmp6.Icmpv6Message, v6: bool) -> list[Field]:
    fields = []
    if isinstance(message, icmp4.IcmpMessage):
        if message.type == icmp4.DEST_UNREACH and message.code == icmp4.UNREACH_FRAG_NEEDED:
            fields.append(_f("next_hop_mtu", message.next_hop_mtu))
        elif message.type == icmp4.PARAMETER_PROBLEM:
            fields.append(_f("pointer", message.pointer))
        elif message.type == icmp4.REDIRECT:
            fields.append(_f("gateway", message.gateway))
    elif message.type == icmp6.PACKET_TOO_BIG:
        fields.append(_f("mtu", message.mtu))
    elif message.type == icmp6.PARAMETER_PROBLEM:
        fields.append(_f("pointer", message.pointer))
    length = message.rfc4884_length
    if length:
        fields.append(_f("original_length", length, f"{length} bytes (RFC 4884)"))
    return fields


def _quoted_facts(layers: list[Layer]) -> tuple[str, str, int | None]:
    """(destination, transport name, destination port) of a dissected quote."""
    dst, proto, port = "?", "", None
    for layer in layers:
        if layer.name in ("IPv4", "IPv6"):
            dst = str(layer.value("dst"))
        elif layer.name in ("TCP", "UDP"):
            proto = layer.name.lower()
            dport = layer.field("dst_port")
            port = dport.value if dport is not None and isinstance(dport.value, int) else None
    return dst, proto, port


def _extensions_layer(raw: bytes) -> Layer:
    try:
        objects = parse_extensions(raw)
    except MalformedPacket as exc:
        return Layer(EXTENSIONS, (), (_malformed(str(exc), raw),))
    children = []
    for obj in objects:
        fields = [_f("class", obj.class_num), _f("c_type", obj.c_type)]
        try:
            labels = obj.mpls_labels
        except MalformedPacket as exc:
            children.append(Layer("Extension object", tuple(fields), (_malformed(str(exc)),)))
            continue
        if labels is not None:
            names = ("label", "tc", "bottom", "ttl")
            stack = tuple(
                Layer("MPLS label", tuple(_f(name, getattr(label, name)) for name in names))
                for label in labels
            )
            children.append(Layer("MPLS label stack", tuple(fields), stack))
        else:
            fields.append(_f("payload", obj.payload, _preview(obj.payload)))
            children.append(Layer("Extension object", tuple(fields)))
    checksum = int.from_bytes(raw[2:4], "big")
    header = (_f("version", raw[0] >> 4), _checksum(checksum, _expected(raw, 2)))
    return Layer(EXTENSIONS, header, tuple(children))
