"""The one ICMP table (transport/wire/icmp_table.py) against what the tables it replaced
answered.

``icmp_table_old.json`` was captured from the code before the table existed: for each
(family, type, code) of a grid covering every row of the old tables and unknown values
around them, what ping's ``describe_icmp``, traceroute's ``annotation``, the scan's
classifier, the sweep's ``_reason``/``_error_reason`` and ``dissect`` said; which ICMP
types the match-key functions accepted; and the kernel filters (the ICMP_FILTER masks
and the BPF programs of both families). The same answers must come from the table now.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from rawprobe.errors import MalformedPacket
from rawprobe.transport import keys, sockets, wire
from rawprobe.transport.answers import IcmpError, Reply
from rawprobe.transport.wire import icmp_table as table
from rawprobe.transport.wire.dissect import dissect

OLD: dict[str, Any] = json.loads((Path(__file__).parent / "icmp_table_old.json").read_text())
ROWS = [dict(zip(OLD["fields"], row, strict=True)) for row in OLD["rows"]]
V4, V6 = socket.AF_INET, socket.AF_INET6
FAMILY = {4: V4, 6: V6}
ME = {V4: "192.0.2.1", V6: "2001:db8::1"}
TARGET = {V4: "198.51.100.7", V6: "2001:db8:7::7"}
ROUTER = {V4: "203.0.113.9", V6: "2001:db8:9::9"}
UDP = wire.UdpHeader(40000, 33434)


def _packet(family: int, icmp_type: int, code: int, echo: bool = False) -> tuple[bytes, bytes]:
    """(whole packet, ICMP message) from ROUTER, quoting a UDP probe to TARGET (or an
    echo request: a quote without ports)."""
    me, target, router = ME[family], TARGET[family], ROUTER[family]
    udp = wire.build_udp(UDP, bytes(8), src=me, dst=target)
    if family == V4:
        probe = wire.build_echo(7, 9, bytes(8)) if echo else udp
        quote = wire.build_ipv4(wire.IPv4Header(me, target, 1 if echo else 17, ttl=3), probe)
        message = wire.build_icmp(icmp_type, code, 0x12340005, quote)
        return wire.build_ipv4(wire.IPv4Header(router, me, 1, ttl=60), message), message
    probe = wire.build_echo6(7, 9, bytes(8), src=me, dst=target) if echo else udp
    quote = wire.build_ipv6(wire.IPv6Header(me, target, 58 if echo else 17, hop_limit=3), probe)
    message = wire.build_icmpv6(icmp_type, code, 0x12340005, quote, src=router, dst=me)
    return wire.build_ipv6(wire.IPv6Header(router, me, 58, hop_limit=60), message), message


def _id(row: dict[str, Any]) -> str:
    return f"v{row['family']}-{row['type']}-{row['code']}"


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_every_old_answer_comes_from_the_table(row: dict[str, Any]) -> None:
    family, icmp_type, code = FAMILY[row["family"]], row["type"], row["code"]
    assert table.describe(family, icmp_type, code) == row["describe"]
    assert table.annotation(family, icmp_type, code, 1400) == row["mark"]
    assert table.annotation(family, icmp_type, code) == row["mark_mtu0"]
    assert table.reason(family, icmp_type, code) == row["scan_reason"]
    assert table.alive_reason(family, icmp_type, code, True) == row["sweep_up_target"]
    assert table.alive_reason(family, icmp_type, code, False) == row["sweep_up_router"]
    assert table.dead_reason(family, icmp_type, code, ROUTER[family]) == row["sweep_down"]
    dissection = dissect(_packet(family, icmp_type, code)[0])
    layer = dissection.layer("ICMPv6" if family == V6 else "ICMP")
    assert layer is not None
    assert (dissection.summary, layer.value("type"), layer.value("code")) == (
        row["dissect_summary"],
        icmp_type,
        code,
    )
    type_field, code_field = layer.field("type"), layer.field("code")
    assert type_field is not None and code_field is not None
    assert (type_field.text, code_field.text) == (row["dissect_type"], row["dissect_code"])
    if row["dissect_echo_quote"] is not None:  # an error: tcpdump's wording without ports
        echo_quote = dissect(_packet(family, icmp_type, code, echo=True)[0]).summary
        assert echo_quote == row["dissect_echo_quote"]


def _key_kind(family: int, icmp_type: int, *, sent: bool) -> str:
    whole, message = _packet(family, icmp_type, 0)
    try:
        if sent:
            key: keys.MatchKey | None = keys.key_of_sent(whole)
        elif family == V4:
            key = keys.key_of_reply_v4(whole)
        else:
            key = keys.key_of_reply_v6(message, socket.inet_pton(V6, ROUTER[V6]))
    except MalformedPacket:
        return "malformed"
    return str(None if key is None else key[0])


@pytest.mark.parametrize("family", [4, 6])
def test_the_match_keys_accept_the_same_icmp_types(family: int) -> None:
    for side in ("reply", "sent"):
        got: dict[str, list[int]] = {}
        for icmp_type in range(256):
            outcome = _key_kind(FAMILY[family], icmp_type, sent=side == "sent")
            got.setdefault(outcome, []).append(icmp_type)
        assert got == OLD["keys"][str(family)][side], side


def _program_bytes(program: list[Any]) -> bytes:
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def test_the_kernel_filters_are_byte_identical() -> None:
    old = OLD["filters"]
    assert sockets._icmp_type_filter(V4).hex() == old["icmp4_filter"]
    assert sockets._icmp_type_filter(V6).hex() == old["icmp6_filter"]
    assert _program_bytes(sockets.icmp_filter_program(V4, 0xAB)) == _program_bytes(old["program4"])
    assert _program_bytes(sockets.icmp_filter_program(V6, 0x3C)) == _program_bytes(old["program6"])
    for family, ports, program in old["tcp_programs"]:
        assert _program_bytes(sockets.tcp_filter_program(FAMILY[family], ports)).hex() == program


def test_the_type_sets() -> None:
    assert (table.AF_INET, table.AF_INET6) == (V4, V6)
    assert {V4: {3, 4, 5, 11, 12}, V6: {1, 2, 3, 4}} == table.ERROR_TYPES
    assert {V4: {0, 14, 16, 18}, V6: {129}} == table.REPLY_TYPES
    assert {V4: {13, 15, 17}, V6: set()} == table.QUERY_TYPES
    assert table.ECHO_REQUEST == {V4: 8, V6: 128} and table.ECHO_REPLY == {V4: 0, V6: 129}
    assert table.PORT_UNREACHABLE == {V4: (3, 3), V6: (1, 4)}


def test_kinds() -> None:
    expected = {
        "time-exceeded": {(V4, 11), (V6, 3)},
        "unreachable": {(V4, 3), (V6, 1)},
        "packet-too-big": {(V6, 2)},
        "parameter-problem": {(V4, 12), (V6, 4)},
    }
    for family in (V4, V6):
        for icmp_type in range(256):
            want = [k for k, where in expected.items() if (family, icmp_type) in where]
            assert table.kind(family, icmp_type) == (want or ["other"])[0]


def test_names_of_unknown_values() -> None:
    assert table.type_name(V4, 3) == "destination unreachable"
    assert table.type_name(V4, 200) is None and table.type_name(V6, 0) is None
    assert table.code_name(V6, 1, 4) == "port unreachable"
    assert table.code_name(V6, 2, 0) is None and table.code_name(V4, 3, 16) is None


@pytest.mark.parametrize(
    ("family", "icmp_type", "code", "kind"),
    [(V4, 11, 0, "time-exceeded"), (V4, 3, 13, "unreachable"), (V4, 12, 0, "parameter-problem"),
     (V4, 5, 1, "other"), (V6, 2, 0, "packet-too-big"), (V6, 1, 4, "unreachable")],
)  # fmt: skip
def test_an_icmp_error_answer_says_its_kind(
    family: int, icmp_type: int, code: int, kind: str
) -> None:
    whole, message = _packet(family, icmp_type, code)
    source = socket.inet_pton(family, ROUTER[family])
    data = whole if family == V4 else message
    key = keys.key_of_reply_v4(whole) if family == V4 else keys.key_of_reply_v6(message, source)
    assert key is not None
    answer = Reply(key, family, source, data, 60, 0, 0.0, 1 if family == V4 else 58)
    assert isinstance(answer, IcmpError) and answer.kind == kind
