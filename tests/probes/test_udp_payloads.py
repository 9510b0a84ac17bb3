"""UDP scan payloads, checked field by field against their RFC layouts (and parsed back
with dnspython for the DNS-shaped ones, with a tiny BER reader for SNMP)."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype
import pytest

from rawprobe.probes.udp_payloads import (
    PAYLOAD_PORTS,
    ber,
    ber_int,
    ber_oid,
    netbios_name,
    payload_for,
)


def read_ber(data: bytes) -> list[tuple[int, object]]:
    """Every TLV of ``data`` as (tag, value): constructed types (bit 0x20) recursively,
    INTEGER as int, OID as dotted text, the rest as bytes. Raises on any leftover."""
    items: list[tuple[int, object]] = []
    i = 0
    while i < len(data):
        tag, length = data[i], data[i + 1]
        i += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[i : i + count], "big")
            i += count
        body = data[i : i + length]
        assert len(body) == length, "truncated TLV"
        i += length
        value: object = body
        if tag & 0x20:
            value = read_ber(body)
        elif tag == 0x02:
            value = int.from_bytes(body, "big", signed=True)
        elif tag == 0x06:
            arcs, arc = [body[0] // 40, body[0] % 40], 0
            for byte in body[1:]:
                arc = arc << 7 | byte & 0x7F
                if not byte & 0x80:
                    arcs.append(arc)
                    arc = 0
            value = ".".join(map(str, arcs))
        items.append((tag, value))
    return items


def test_dns_asks_for_the_root_ns_records_without_recursion() -> None:
    query = dns.message.from_wire(payload_for(53))
    assert query.flags == 0 and not query.flags & dns.flags.RD  # a standard query
    (question,) = query.question
    assert question.name.to_text() == "."
    assert (question.rdtype, question.rdclass) == (dns.rdatatype.NS, dns.rdataclass.IN)
    assert payload_for(53)[2:] == bytes.fromhex("0000 0001 0000 0000 0000 00 0002 0001")


def test_mdns_enumerates_services_by_legacy_unicast() -> None:
    query = dns.message.from_wire(payload_for(5353))
    assert query.id != 0  # legacy unicast: the responder echoes it back to our port
    (question,) = query.question
    assert question.name.to_text() == "_services._dns-sd._udp.local."
    assert (question.rdtype, question.rdclass) == (dns.rdatatype.PTR, dns.rdataclass.IN)


def test_netbios_node_status_request_for_the_wildcard_name() -> None:
    data = payload_for(137)
    _ident, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
    assert (flags, qd, an, ns, ar) == (0, 1, 0, 0, 0)
    assert data[12] == 32 and data[13:45] == b"CK" + b"A" * 30 and data[45] == 0
    assert struct.unpack_from("!HH", data, 46) == (0x21, 1) and len(data) == 50
    assert netbios_name(b"FRED") == b"EGFCEFEE" + b"AA" * 12  # RFC 1001 14.1's example


def test_ntp_is_a_version_4_client_packet_with_a_transmit_timestamp() -> None:
    data = payload_for(123)
    assert len(data) == 48
    assert (data[0] >> 6, data[0] >> 3 & 7, data[0] & 7) == (0, 4, 3)  # LI, VN, mode
    assert data[1:40] == bytes(39)  # stratum .. receive timestamp
    assert int.from_bytes(data[40:48], "big") != 0


def test_snmp_v1_get_request_for_sys_descr_with_community_public() -> None:
    data = payload_for(161)
    ((tag, message),) = read_ber(data)
    assert tag == 0x30
    assert isinstance(message, list)
    (_, version), (_, community), (pdu_tag, pdu) = message
    assert (version, community, pdu_tag) == (0, b"public", 0xA0)  # v1, GetRequest
    assert isinstance(pdu, list)
    (_, _request_id), (_, error_status), (_, error_index), (_, bindings) = pdu
    assert (error_status, error_index) == (0, 0)
    assert bindings == [(0x30, [(0x06, "1.3.6.1.2.1.1.1.0"), (0x05, b"")])]
    # Worked out by hand from RFC 1157 4.1.2 and X.690: SEQUENCE, version, "public",
    # GetRequest [0] {request-id 0x7270, 0, 0, {{sysDescr.0, NULL}}}.
    assert data.hex() == (
        "3027" "020100" "04067075626c6963"
        "a01a" "02027270" "020100" "020100" "300e" "300c" "06082b06010201010100" "0500"
    )  # fmt: skip


def test_ber_lengths_integers_and_oid_arcs() -> None:
    assert ber(0x04, b"x" * 200)[:3] == bytes([0x04, 0x81, 200])
    assert ber(0x04, b"x" * 300)[:4] == bytes([0x04, 0x82, 0x01, 0x2C])
    assert [ber_int(v).hex() for v in (0, 127, 128, 255, -1, -128, -129)] == [
        "020100", "02017f", "02020080", "020200ff", "0201ff", "020180", "0202ff7f",
    ]  # fmt: skip
    assert ber_oid("1.3.6.1.4.1.2021").hex() == "06072b060104018f65"


def test_rpc_portmapper_null_call() -> None:
    words = struct.unpack("!10I", payload_for(111))
    # xid, CALL, RPC version 2, portmapper 100000 v2, NULL, AUTH_NONE cred and verifier
    assert words[1:] == (0, 2, 100000, 2, 0, 0, 0, 0, 0)


def test_ssdp_search_is_a_complete_http_request() -> None:
    lines = payload_for(1900).decode("ascii").split("\r\n")
    assert lines[0] == "M-SEARCH * HTTP/1.1" and lines[-2:] == ["", ""]
    assert 'MAN: "ssdp:discover"' in lines and "ST: ssdp:all" in lines


@pytest.mark.parametrize("port", [1, 7, 80, 33434, 65535])
def test_ports_without_a_payload_get_an_empty_datagram(port: int) -> None:
    assert port not in PAYLOAD_PORTS and payload_for(port) == b""
    assert {53, 123, 161} <= PAYLOAD_PORTS
