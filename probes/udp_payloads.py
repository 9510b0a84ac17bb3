"""Protocol payloads for a UDP scan, so that real services answer (pure).

A UDP service is silent to a datagram it does not understand, so an empty probe finds
only "open|filtered" where a well-formed request would find "open". ``payload_for(port)``
gives the request a scan sends to a well-known port, or ``b""`` for the others (as nmap
does for ports it has no payload for). Every payload is written here from its
protocol's RFC, byte by byte, not copied from nmap-payloads (which is under nmap's own
licence). Each is a fixed, harmless read-only request that any implementation answers:

- 53 DNS (RFC 1035 4.1): a standard query, recursion not desired, for the NS records of
  the root: a recursive resolver answers from its hints, an authoritative-only server
  with a referral or REFUSED; every one of those is a reply.
- 111 ONC RPC portmapper (RFC 5531 9, RFC 1833 3): a CALL of procedure 0 (NULL) of
  program 100000 version 2 with AUTH_NONE; it does nothing and is always answered.
- 123 NTP (RFC 5905 7.3): a 48-byte client-mode (3) version 4 packet with a fixed,
  non-zero transmit timestamp (servers copy it into the origin field; some drop a
  request whose transmit timestamp is zero).
- 137 NetBIOS name service (RFC 1002 4.2.17): a NODE STATUS request for the wildcard
  name ``*``, which a Windows or Samba host answers with its name table.
- 161 SNMP (RFC 1157 4.1.2, BER per X.690): an SNMPv1 GetRequest for sysDescr.0
  (1.3.6.1.2.1.1.1.0) with community "public". Version 1 because every v2c agent also
  speaks v1 (RFC 3584), not the reverse.
- 1900 SSDP (UPnP Device Architecture 1.1, 1.3.2): an M-SEARCH for ``ssdp:all``.
- 5353 mDNS (RFC 6762 6.7, legacy unicast; RFC 6763 9): a DNS query for the service
  enumeration name ``_services._dns-sd._udp.local`` PTR, answered by unicast to our port.

Payloads carry no per-probe data: a scan matches answers by address and ports. The
fixed identifiers (DNS ID, RPC XID, SNMP request-id) are arbitrary constants.
"""

from __future__ import annotations

import struct

_DNS_HEADER = struct.Struct("!HHHHHH")
_QUESTION_TAIL = struct.Struct("!HH")
_DNS_ID = 0x7270  # "rp"
_QTYPE_NS, _QTYPE_PTR, _QTYPE_NBSTAT, _QCLASS_IN = 2, 12, 0x21, 1


def dns_query(ident: int, labels: tuple[bytes, ...], qtype: int, qclass: int = 1) -> bytes:
    """One-question DNS query (RFC 1035 4.1.1-4.1.2), flags all zero (RD clear)."""
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return _DNS_HEADER.pack(ident, 0, 1, 0, 0, 0) + name + _QUESTION_TAIL.pack(qtype, qclass)


def netbios_name(name: bytes) -> bytes:
    """RFC 1001 14.1 first-level encoding: padded to 16 bytes with NULs, each half byte
    becomes a letter ``'A' + nibble``; 32 characters."""
    raw = name.ljust(16, b"\0")
    return bytes(ord("A") + (b >> shift & 0xF) for b in raw for shift in (4, 0))


def ber(tag: int, body: bytes) -> bytes:
    """One BER TLV with a definite length (short form below 128, else long form)."""
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def ber_int(value: int) -> bytes:
    """BER INTEGER (tag 2), two's complement in the fewest bytes."""
    size = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return ber(0x02, value.to_bytes(size, "big", signed=True))


def ber_oid(dotted: str) -> bytes:
    """BER OBJECT IDENTIFIER (tag 6): 40 * first + second, then base-128 arcs."""
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | arc & 0x7F)
        body += bytes(reversed(chunk))
    return ber(0x06, bytes(body))


def snmp_get(community: bytes, oid: str, request_id: int, version: int = 0) -> bytes:
    """SNMP GetRequest-PDU ([0], RFC 1157 4.1.2) for one variable, value NULL."""
    binding = ber(0x30, ber_oid(oid) + b"\x05\x00")
    pdu = ber(0xA0, ber_int(request_id) + ber_int(0) + ber_int(0) + ber(0x30, binding))
    return ber(0x30, ber_int(version) + ber(0x04, community) + pdu)


def _ntp_request() -> bytes:
    # LI 0, VN 4, mode 3 (client); stratum, poll, precision, root delay/dispersion,
    # reference id and the reference/origin/receive timestamps zero; transmit non-zero.
    return bytes([0 << 6 | 4 << 3 | 3]) + bytes(39) + struct.pack("!II", 0xE9A5C000, 0x7270)


def _rpc_null_call(xid: int) -> bytes:
    # xid, CALL(0), rpcvers 2, prog 100000, vers 2, proc 0, cred and verf AUTH_NONE.
    return struct.pack("!10I", xid, 0, 2, 100000, 2, 0, 0, 0, 0, 0)


_SSDP_SEARCH = (
    b"M-SEARCH * HTTP/1.1\r\n"
    b"HOST: 239.255.255.250:1900\r\n"
    b'MAN: "ssdp:discover"\r\n'
    b"MX: 1\r\n"
    b"ST: ssdp:all\r\n"
    b"\r\n"
)

_PAYLOADS: dict[int, bytes] = {
    53: dns_query(_DNS_ID, (), _QTYPE_NS),
    111: _rpc_null_call(0x72700001),
    123: _ntp_request(),
    137: dns_query(_DNS_ID, (netbios_name(b"*"),), _QTYPE_NBSTAT),
    161: snmp_get(b"public", "1.3.6.1.2.1.1.1.0", 0x7270),
    1900: _SSDP_SEARCH,
    5353: dns_query(_DNS_ID, (b"_services", b"_dns-sd", b"_udp", b"local"), _QTYPE_PTR),
}
#: Ports that have a protocol payload (the others are probed with an empty datagram).
PAYLOAD_PORTS: frozenset[int] = frozenset(_PAYLOADS)


def payload_for(port: int) -> bytes:
    """The request a UDP scan sends to ``port``: a protocol payload, or ``b""``."""
    return _PAYLOADS.get(port, b"")
