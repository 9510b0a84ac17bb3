"""What an answer to a trace probe says: a pure parser from the transport's typed
answer (already matched to its probe) to a :class:`TraceResponse`.

The RTT is measured by the caller (it owns the send stamp) and passed in; this module
reads no clock. An ICMP error is a hop (time exceeded) or the end of the path
(unreachable: terminal; port unreachable, or any unreachable from the target itself,
means the target was reached); an echo reply, a SYN-ACK or a RST come from the target.
"""

from __future__ import annotations

from rawprobe.errors import MalformedPacket
from rawprobe.probes.path_truth import quote_rewrites
from rawprobe.probes.trace_models import TraceResponse
from rawprobe.transport.base import EchoAnswer, IcmpError, Reply, RttSource, TcpAnswer
from rawprobe.transport.wire.icmp_table import PORT_UNREACHABLE, annotation
from rawprobe.transport.wire.icmp_table import kind as icmp_kind
from rawprobe.transport.wire.icmpext import MplsLabel, parse_extensions
from rawprobe.transport.wire.tcp import ACK, RST, SYN

__all__ = ["mpls_labels", "parse_reply"]


def parse_reply(
    reply: Reply,
    family: int,
    rtt_s: float,
    attempt: int,
    sent: bytes | None = None,
    rtt_source: RttSource = "user",
) -> TraceResponse | None:
    """The response a typed answer makes to a probe of ``family`` sent on try
    ``attempt``; None for a TCP segment that is neither SYN-ACK nor RST. With the probe
    as ``sent`` (its IP packet), an ICMP error's quote is compared with it (a NAT).
    ``rtt_source``: which send stamp ``rtt_s`` used."""
    if isinstance(reply, IcmpError):
        icmp_type, code, mtu = reply.icmp_type, reply.code, reply.mtu
        facts = _FACTS.get((family, icmp_type, code)) if not mtu else None
        if facts is None:
            facts = _facts(family, icmp_type, code, mtu)
        kind, mark, unreach, port_unreach = facts
        extensions = reply.extensions
        return TraceResponse(
            reply.source, rtt_s, kind, icmp_type, code, reply.ttl, reply.quoted_ttl, mark,
            unreach, port_unreach or (unreach and reply.from_target),
            mpls_labels(extensions) if extensions else (), attempt,
            quote_rewrites(sent, reply) if sent is not None else (), mtu, rtt_source,
        )  # fmt: skip
    icmp_type_echo: int | None = None
    code_echo: int | None = None
    if isinstance(reply, EchoAnswer):
        kind, icmp_type_echo, code_echo = "echo-reply", reply.icmp_type, reply.code
    elif isinstance(reply, TcpAnswer) and reply.flags & SYN and reply.flags & ACK:
        kind = "tcp-syn-ack"
    elif isinstance(reply, TcpAnswer) and reply.flags & RST:
        kind = "tcp-rst"
    else:
        return None
    return TraceResponse(
        reply.source, rtt_s, kind, icmp_type_echo, code_echo, reply.ttl,
        terminal=True, reached=True, attempt=attempt, rtt_source=rtt_source,
    )  # fmt: skip


#: (family, type, code) -> what ``_facts`` says of an error without an MTU, once read.
_FACTS: dict[tuple[int, int, int], tuple[str, str | None, bool, bool]] = {}


def _facts(family: int, icmp_type: int, code: int, mtu: int) -> tuple[str, str | None, bool, bool]:
    """(kind, traceroute's mark or None, unreachable, port unreachable) of an ICMP error;
    remembered for errors without an MTU (the mark of one with an MTU names it)."""
    kind = icmp_kind(family, icmp_type)
    facts = (
        kind,
        annotation(family, icmp_type, code, mtu) or None,
        kind == "unreachable",
        (icmp_type, code) == PORT_UNREACHABLE[family],
    )
    if not mtu:
        _FACTS[family, icmp_type, code] = facts
    return facts


def mpls_labels(extensions: bytes) -> tuple[MplsLabel, ...]:
    """The MPLS label stack of an error's RFC 4884 extensions (the transport also finds
    the pre-RFC 4884 layout, after a 128-byte quote, by its checksum)."""
    if not extensions:
        return ()
    try:
        return tuple(
            label for obj in parse_extensions(extensions) for label in obj.mpls_labels or ()
        )
    except MalformedPacket:
        return ()
