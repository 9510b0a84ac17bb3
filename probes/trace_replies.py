"""What an answer to a trace probe says: a pure parser from the transport's typed
answer (already matched to its probe) to a :class:`TraceResponse`.

The RTT is measured by the caller (it owns the send stamp) and passed in; this module
reads no clock. An ICMP error is a hop (time exceeded) or the end of the path
(unreachable: terminal; port unreachable, or any unreachable from the target itself,
means the target was reached); an echo reply, a SYN-ACK or a RST come from the target.
"""

from __future__ import annotations

from rawprobe.errors import MalformedPacket
from rawprobe.probes.models import TraceResponse
from rawprobe.probes.path_truth import quote_rewrites
from rawprobe.transport.base import EchoAnswer, IcmpError, Reply, RttSource, TcpAnswer
from rawprobe.transport.wire.icmp_table import PORT_UNREACHABLE, annotation
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
        icmp_type, code, kind = reply.icmp_type, reply.code, reply.kind
        unreach = kind == "unreachable"
        port_unreach = (icmp_type, code) == PORT_UNREACHABLE[family]
        return TraceResponse(
            address=reply.source,
            rtt_s=rtt_s,
            kind=kind,
            icmp_type=icmp_type,
            icmp_code=code,
            reply_ttl=reply.ttl,
            quoted_ttl=reply.quoted_ttl,
            annotation=annotation(family, icmp_type, code, reply.mtu) or None,
            terminal=unreach,
            reached=port_unreach or (unreach and reply.from_target),
            mpls=mpls_labels(reply.extensions),
            attempt=attempt,
            rewrites=quote_rewrites(sent, reply) if sent is not None else (),
            mtu=reply.mtu,
            rtt_source=rtt_source,
        )
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
