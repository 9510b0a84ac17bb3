"""The ICMP and ICMPv6 table: everything rawprobe knows about a (family, type, code).

One row per type (its tcpdump name, its kind, its role: an error that quotes a probe,
an echo or query reply, a request) and one per known code (its tcpdump name, the
iputils wording, traceroute's mark, nmap's reason word). Everyone asks these functions
instead of keeping a table of their own: ping's error text (``describe``), traceroute's
marks (``annotation``), the scans' and the sweep's reason words (``reason``,
``alive_reason``, ``dead_reason``; ``PORT_UNREACHABLE`` for a closed UDP port), the
answers' kinds (``kind``), the dissector's names and wording (``type_name``,
``code_name``, ``tcpdump_text``), the match keys' type sets and the kernel filters
(``ERROR_TYPES``, ``REPLY_TYPES``...).

Design choices:

- Families are ``socket.AF_INET``/``AF_INET6``, as everywhere in the package (wire/ may
  not import ``socket``: Linux's values are written here, and a test pins them).
- The rows are literal dicts; the type sets are derived from them once, at import, as
  frozensets (``transport/keys.py`` tests membership for every packet the host
  receives). The kernel filters list them in ascending order.
- A code without a row takes its type's fallbacks, as the old per-module tables did:
  traceroute marks an unknown unreachable code ``!<code>``, the scan calls it
  ``unreachable-code-N``, and iputils names it after code 0 with the numbers appended
  (``Destination Net Unreachable (type 3, code 16)``: kept byte for byte, oddity and all;
  ``tests/wire/test_icmp_table.py`` holds every old table's outputs).
- Mark and reason templates take ``{code}`` and ``{mtu}`` (the next-hop MTU of
  fragmentation needed / packet too big).
"""

from __future__ import annotations

from typing import NamedTuple

AF_INET = _V4 = 2  # socket.AF_INET
AF_INET6 = _V6 = 10  # socket.AF_INET6 on Linux


class _Type(NamedTuple):
    name: str  # tcpdump's
    role: str = ""  # error | echo | echo-reply | query | query-reply | ""
    kind: str = "other"
    mark: str = ""  # traceroute's mark for a code without a row
    reason: str | None = None  # nmap's reason word for a code without a row
    lead: str = ""  # iputils' words before the code's


class _Code(NamedTuple):
    name: str | None  # tcpdump's
    text: str | None  # iputils ping's and traceroute's wording
    mark: str | None = None  # traceroute's mark; None: the type's
    reason: str | None = None  # nmap's reason word (scan states); None: the type's


_UNREACH = ("error", "unreachable", "!<{code}>", "unreachable-code-{code}")

_TYPES: dict[tuple[int, int], _Type] = {
    (_V4, 0): _Type("echo reply", "echo-reply"),
    (_V4, 3): _Type("destination unreachable", *_UNREACH),
    (_V4, 4): _Type("source quench", "error"),
    (_V4, 5): _Type("redirect", "error"),
    (_V4, 8): _Type("echo request", "echo"),
    (_V4, 9): _Type("router advertisement"),
    (_V4, 10): _Type("router solicitation"),
    (_V4, 11): _Type("time exceeded", "error", "time-exceeded"),
    (_V4, 12): _Type("parameter problem", "error", "parameter-problem"),
    (_V4, 13): _Type("timestamp request", "query"),
    (_V4, 14): _Type("timestamp reply", "query-reply"),
    (_V4, 15): _Type("information request", "query"),
    (_V4, 16): _Type("information reply", "query-reply"),
    (_V4, 17): _Type("address mask request", "query"),
    (_V4, 18): _Type("address mask reply", "query-reply"),
    (_V6, 1): _Type("destination unreachable", *_UNREACH, "Destination unreachable: "),
    (_V6, 2): _Type("packet too big", "error", "packet-too-big", "!F-{mtu}"),
    (_V6, 3): _Type("time exceeded", "error", "time-exceeded", lead="Time exceeded: "),
    (_V6, 4): _Type("parameter problem", "error", "parameter-problem", lead="Parameter problem: "),
    (_V6, 128): _Type("echo request", "echo"),
    (_V6, 129): _Type("echo reply", "echo-reply"),
    (_V6, 130): _Type("multicast listener query"),
    (_V6, 131): _Type("multicast listener report"),
    (_V6, 132): _Type("multicast listener done"),
    (_V6, 133): _Type("router solicitation"),
    (_V6, 134): _Type("router advertisement"),
    (_V6, 135): _Type("neighbor solicitation"),
    (_V6, 136): _Type("neighbor advertisement"),
    (_V6, 137): _Type("redirect"),
    (_V6, 143): _Type("multicast listener report v2"),
}

#: Each type's codes, by code: (tcpdump's name, iputils' words after the type's ``lead``,
#: traceroute's mark, nmap's reason word); a missing or None mark or reason is the type's.
_CODE_ROWS: dict[tuple[int, int], tuple[tuple[str | None, ...], ...]] = {
    (_V4, 3): (
        ("net unreachable", "Destination Net Unreachable", "!N", "net-unreachable"),
        ("host unreachable", "Destination Host Unreachable", "!H", "host-unreachable"),
        ("protocol unreachable", "Destination Protocol Unreachable", "!P", "proto-unreachable"),
        ("port unreachable", "Destination Port Unreachable", "", "port-unreachable"),
        ("fragmentation needed", "Frag needed and DF set", "!F-{mtu}"),
        ("source route failed", "Source Route Failed", "!S"),
        ("net unknown", "Destination Net Unknown", "!N"),
        ("host unknown", "Destination Host Unknown", "!H"),
        ("source host isolated", "Source Host Isolated", "!N"),
        ("net prohibited", "Destination Net Prohibited", "!X", "net-prohibited"),
        ("host prohibited", "Destination Host Prohibited", "!X", "host-prohibited"),
        ("net unreachable for TOS", "Destination Net Unreachable for Type of Service", "!N"),
        ("host unreachable for TOS", "Destination Host Unreachable for Type of Service", "!H"),
        ("admin prohibited filter", "Packet filtered", "!X", "admin-prohibited"),
        ("precedence violation", "Precedence Violation", "!V"),
        ("precedence cutoff", "Precedence Cutoff", "!C"),
    ),
    (_V4, 4): ((None, "Source Quench"),),
    (_V4, 5): (
        ("net", "Redirect Network"), ("host", "Redirect Host"),
        ("TOS net", None), ("TOS host", None),
    ),
    (_V4, 11): (
        ("in-transit", "Time to live exceeded", None, "time-exceeded"),
        ("reassembly", "Frag reassembly time exceeded", None, "time-exceeded"),
    ),
    (_V4, 12): (
        ("pointer indicates the error", "Parameter problem"),
        ("missing option", None),
        ("bad length", None),
    ),
    (_V6, 1): (
        ("no route", "No route", "!N", "net-unreachable"),
        ("admin prohibited", "Administratively prohibited", "!X", "admin-prohibited"),
        ("beyond scope", "Beyond scope", "!N", "beyond-scope"),
        ("address unreachable", "Address unreachable", "!H", "host-unreachable"),
        ("port unreachable", "Port unreachable", "", "port-unreachable"),
        ("source address failed policy", "Source address failed ingress/egress policy", "!X",
            "policy-prohibited"),
        ("reject route", "Reject route to destination", "!X", "reject-route"),
        ("header chain incomplete", None),
    ),
    (_V6, 2): ((None, "Packet too big"),),
    (_V6, 3): (
        ("in-transit", "Hop limit", None, "time-exceeded"),
        ("reassembly", "Defrag", None, "time-exceeded"),
    ),
    (_V6, 4): (
        ("erroneous header field", "Wrong header field"),
        ("unrecognized next header", "Unknown header"),
        ("unrecognized option", "Unknown option"),
    ),
}  # fmt: skip
_CODES = {
    (f, t, c): _Code(*row) for (f, t), rows in _CODE_ROWS.items() for c, row in enumerate(rows)
}
_NO_TYPE, _NO_CODE = _Type(""), _Code(None, None)

#: tcpdump -nn's wording of the common errors (code -1: any code of the type); one that
#: names a port only when the quoted probe has ports. Else: ``{type}, {code} for {dst}``.
_TCPDUMP = {
    (_V4, 3, 0): "net {dst} unreachable",
    (_V4, 3, 1): "host {dst} unreachable",
    (_V4, 3, 3): "{dst} {proto} port {port} unreachable",
    (_V4, 3, 13): "host {dst} unreachable - admin prohibited filter",
    (_V4, 11, -1): "time exceeded {code}",
    (_V6, 1, 0): "destination unreachable, unreachable route {dst}",
    (_V6, 1, 1): "destination unreachable,  unreachable prohibited {dst}",
    (_V6, 1, 3): "destination unreachable, unreachable address {dst}",
    (_V6, 1, 4): "destination unreachable, unreachable port, {dst} {proto} port {port}",
    (_V6, 3, -1): "time exceeded {code} for {dst}",
}


def _types(role: str) -> dict[int, frozenset[int]]:
    return {
        family: frozenset(t for (f, t), row in _TYPES.items() if f == family and row.role == role)
        for family in (_V4, _V6)
    }


#: Types whose body quotes the packet that caused them (the match key is read there).
ERROR_TYPES = _types("error")
#: IPv4's timestamp, information and address mask requests, and their replies.
QUERY_TYPES, QUERY_REPLY_TYPES = _types("query"), _types("query-reply")
#: The echo request and the echo reply type of each family.
ECHO_REQUEST = {family: min(types) for family, types in _types("echo").items()}
ECHO_REPLY = {family: min(types) for family, types in _types("echo-reply").items()}
#: Types that answer a probe directly: the echo reply and the query replies.
REPLY_TYPES = {f: QUERY_REPLY_TYPES[f] | {ECHO_REPLY[f]} for f in (_V4, _V6)}
#: (type, code) of port unreachable: a closed UDP port, said by the host itself.
PORT_UNREACHABLE = {
    f: (t, c) for (f, t, c), row in _CODES.items() if row.reason == "port-unreachable"
}


def _rows(f: int, t: int, c: int) -> tuple[_Type, _Code]:
    return _TYPES.get((f, t), _NO_TYPE), _CODES.get((f, t, c), _NO_CODE)


def type_name(family: int, icmp_type: int) -> str | None:
    """tcpdump's name of the type (``destination unreachable``), None if unknown."""
    return _TYPES.get((family, icmp_type), _NO_TYPE).name or None


def code_name(family: int, icmp_type: int, code: int) -> str | None:
    """tcpdump's name of the code (``port unreachable``, ``in-transit``), None if none."""
    return _CODES.get((family, icmp_type, code), _NO_CODE).name


def kind(family: int, icmp_type: int) -> str:
    """What an ICMP error says: ``time-exceeded``, ``unreachable``, ``packet-too-big``,
    ``parameter-problem``, or ``other`` (for anything else too); ``IcmpError.kind``."""
    return _TYPES.get((family, icmp_type), _NO_TYPE).kind


def describe(family: int, icmp_type: int, code: int) -> str:
    """iputils-style text for an ICMP error; unknown values are named by number."""
    type_row, row = _rows(family, icmp_type, code)
    if row.text is not None:
        return type_row.lead + row.text
    base = _CODES.get((family, icmp_type, 0), _NO_CODE).text
    text = "ICMP error" if base is None else type_row.lead + base
    return f"{text} (type {icmp_type}, code {code})"


def annotation(family: int, icmp_type: int, code: int, mtu: int = 0) -> str:
    """traceroute's mark for an ICMP error (empty for TTL exceeded and port unreachable)."""
    type_row, row = _rows(family, icmp_type, code)
    return (type_row.mark if row.mark is None else row.mark).format(code=code, mtu=mtu)


def reason(family: int, icmp_type: int, code: int) -> str | None:
    """nmap's reason word for an ICMP error quoting a port probe (``port-unreachable``,
    ``admin-prohibited``, ``time-exceeded``...), None when it says nothing about the
    port (packet too big, parameter problem, redirect...)."""
    type_row, row = _rows(family, icmp_type, code)
    word = row.reason or type_row.reason
    return None if word is None else word.format(code=code)


def tcpdump_text(
    family: int, icmp_type: int, code: int, dst: str, proto: str = "", port: int | None = None
) -> str:
    """tcpdump's one-line wording of an ICMP error quoting a packet to ``dst`` (``proto``
    ``udp``/``tcp`` and its destination ``port``, or "" when the quote has no ports)."""
    text = _TCPDUMP.get((family, icmp_type, code)) or _TCPDUMP.get((family, icmp_type, -1))
    if text is None or ("{port}" in text and not proto):
        text = "{type}, {code} for {dst}"
    name = type_name(family, icmp_type) or f"type {icmp_type}"
    words = code_name(family, icmp_type, code) or f"code {code}"
    return text.format(type=name, code=words, dst=dst, proto=proto, port=port)


def alive_reason(family: int, icmp_type: int, code: int, from_target: bool) -> str | None:
    """The sweep's word for an ICMP answer that proves the probed host up, or None when
    it does not (an error from a router): its echo reply, a port unreachable (only the
    host says so, from any of its addresses), any error sent by the host itself."""
    if icmp_type == ECHO_REPLY[family]:
        return "echo-reply"
    if (icmp_type, code) == PORT_UNREACHABLE[family]:
        return "port-unreachable"
    return "icmp-error" if from_target else None


def dead_reason(family: int, icmp_type: int, code: int, source: str) -> str:
    """The sweep's word for a router's error that proves the host unreachable."""
    if kind(family, icmp_type) == "time-exceeded":
        return "ttl-exceeded"
    return f"unreachable-from-{source}-code-{code}"
