"""What a trace's answers really say: loss that is a router limiting its ICMP errors
rather than lost traffic, and a NAT that rewrote the probes on the way. Pure.

**Rate limiting.** A probe that expires at hop *t* crossed hops 1..*t*-1 and died at
*t*; a probe for a later hop crossed *t* as well. So forwarding loss at or before *t*
shows at every later hop of the same flows (the same path): a hop whose loss does not
carry on is a router that drops (rate-limits, or filters) its own ICMP errors while
the traffic passes — mtr's most common misreading. The test is one-sided and exact
(Fisher): the hop's lost/sent against the pooled lost/sent of the later hops of the
same flows, marked when the hop loses more, with p < ``ALPHA``. Pooling every later hop
(instead of picking the best one) keeps the test honest; a later hop that rate-limits
too only makes it more cautious.

**NAT.** An ICMP error quotes the probe as the erring router received it. A NAT on
the way rewrites the source address (and port, and the checksums that cover them); a
NAT that translates the quote back on the return path (Linux conntrack does, for
addresses, ports and both checksums) is invisible here. Compared with what was sent:
the addresses, the ports, the transport checksum (Dublin traceroute's "NAT id": it
covers the addresses through the pseudo-header), and over IPv4 whether the quoted IP
header's checksum still fits the header (a NAT that restored the address but not the
checksum). The NAT is reported at the first hop whose quotes differ.
"""

from __future__ import annotations

import math
import socket

from rawprobe.probes.trace_models import NatHop, PathStats, QuoteRewrite, TraceHop, TraceResult
from rawprobe.transport.base import IcmpError
from rawprobe.transport.wire.checksum import ones_complement_sum

__all__ = [
    "ALPHA",
    "excess_loss_p",
    "nat_hop",
    "path_nat",
    "quote_rewrites",
    "rate_limited",
    "rate_limited_ttls",
]

#: Significance of the rate-limit mark: the chance of marking a hop whose loss is real.
ALPHA = 0.01

_PROTO_TCP, _PROTO_UDP = 6, 17
#: Where the transport checksum sits (UDP and ICMP within the 8 bytes every quote holds).
_CHECKSUM_AT = {_PROTO_TCP: 16, _PROTO_UDP: 6, 1: 2, 58: 2}


# -- rate limiting -----------------------------------------------------------------------


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def excess_loss_p(lost: int, sent: int, lost_later: int, sent_later: int) -> float:
    """One-sided Fisher exact p-value of "this hop loses no more than the later hops":
    the chance, if every probe had the same loss rate, that the hop's ``sent`` probes
    would hold ``lost`` or more of the ``lost + lost_later`` losses."""
    total, losses = sent + sent_later, lost + lost_later
    if sent == 0 or losses == 0:
        return 1.0
    base = _log_comb(total, sent)
    top = min(losses, sent)
    return min(1.0, sum(
        math.exp(_log_comb(losses, k) + _log_comb(total - losses, sent - k) - base)
        for k in range(lost, top + 1)
        if sent - k <= total - losses
    ))  # fmt: skip


def rate_limited(lost: int, sent: int, lost_later: int, sent_later: int) -> bool:
    """True when a hop's loss does not carry on: it loses more than the later hops of
    the same flows, beyond chance (p < ALPHA)."""
    if lost <= 0 or sent_later <= 0 or lost * sent_later <= lost_later * sent:
        return False
    return excess_loss_p(lost, sent, lost_later, sent_later) < ALPHA


def _hop_counts(hop: TraceHop) -> tuple[int, int]:
    """(lost, sent) probes of a Paris trace's hop, every try counted (a retry is a probe
    whose predecessor went unanswered)."""
    answered = len(hop.responses)
    return max(0, hop.sent - answered), max(hop.sent, answered)


def rate_limited_ttls(result: TraceResult) -> dict[int, tuple[int, int, int, int]]:
    """The hops of a trace (one flow, so one path) whose loss does not carry on to the
    hops after them, with the evidence: ``{ttl: (lost, sent, lost after, sent after)}``.
    Hops still awaited (an interrupted trace) are not judged."""
    marked = {}
    lost_later = sent_later = 0
    for hop in reversed(result.hops):
        lost, sent = _hop_counts(hop)
        if not hop.pending and rate_limited(lost, sent, lost_later, sent_later):
            marked[hop.ttl] = (lost, sent, lost_later, sent_later)
        lost_later += lost
        sent_later += sent
    return dict(sorted(marked.items()))


# -- NAT ---------------------------------------------------------------------------------


def quote_rewrites(sent: bytes, reply: IcmpError) -> tuple[QuoteRewrite, ...]:
    """What ``reply``'s quote shows changed from the probe ``sent`` (its whole IP
    packet): addresses, ports, the transport checksum, the IPv4 header checksum."""
    quote = reply.quote
    try:
        if sent[0] >> 4 == 4:
            sent_ihl, quote_ihl = (sent[0] & 0x0F) * 4, (quote[0] & 0x0F) * 4
            if (
                sent[12:20] == quote[12:20]
                and _same_transport(sent, quote, sent_ihl, quote_ihl, sent[9])
                and ones_complement_sum(quote[:quote_ihl]) == 0xFFFF
            ):
                return ()  # the common case, cheaply (every answer of a trace is checked)
            return _rewrites(sent, quote, socket.AF_INET, sent_ihl, quote_ihl, 12, sent[9])
        if sent[8:40] == quote[8:40] and _same_transport(sent, quote, 40, 40, sent[6]):
            return ()
        return _rewrites(sent, quote, socket.AF_INET6, 40, 40, 8, sent[6])
    except IndexError:
        return ()


def _same_transport(sent: bytes, quote: bytes, sent_ihl: int, quote_ihl: int, proto: int) -> bool:
    """The quote's first 8 transport bytes (and a quoted TCP checksum) are as sent."""
    if sent[sent_ihl : sent_ihl + 8] != quote[quote_ihl : quote_ihl + 8]:
        return False
    return proto != _PROTO_TCP or (
        sent[sent_ihl + 16 : sent_ihl + 18] == quote[quote_ihl + 16 : quote_ihl + 18]
        or len(quote) < quote_ihl + 18
    )


def _rewrites(
    sent: bytes, quote: bytes, family: int, sent_ihl: int, quote_ihl: int, at: int, proto: int
) -> tuple[QuoteRewrite, ...]:
    size = 4 if family == socket.AF_INET else 16
    found: list[QuoteRewrite] = []
    for name, offset in (("source", at), ("destination", at + size)):
        mine, theirs = sent[offset : offset + size], quote[offset : offset + size]
        if len(theirs) == size and mine != theirs:
            found.append(QuoteRewrite(name, socket.inet_ntop(family, mine),
                                      socket.inet_ntop(family, theirs)))  # fmt: skip
    words = []
    if proto in (_PROTO_TCP, _PROTO_UDP):
        words += [("source-port", 0), ("destination-port", 2)]
    if proto in _CHECKSUM_AT:
        words.append(("checksum", _CHECKSUM_AT[proto]))
    for name, offset in words:
        mine_at, theirs_at = sent_ihl + offset, quote_ihl + offset
        if theirs_at + 2 > len(quote):
            continue  # not quoted (a TCP checksum past the 8 bytes)
        mine_word = int.from_bytes(sent[mine_at : mine_at + 2], "big")
        theirs_word = int.from_bytes(quote[theirs_at : theirs_at + 2], "big")
        if mine_word != theirs_word:
            found.append(QuoteRewrite(name, mine_word, theirs_word))
    if family == socket.AF_INET and not _ip_checksum_fits(quote[:quote_ihl]):
        header = bytearray(quote[:quote_ihl])
        header[10:12] = b"\x00\x00"
        fitting = 0xFFFF - ones_complement_sum(bytes(header))
        found.append(QuoteRewrite("ip-checksum", fitting, int.from_bytes(quote[10:12], "big")))
    return tuple(found)


def _ip_checksum_fits(header: bytes) -> bool:
    """The quoted IPv4 header's checksum fits it with some TTL: routers that quote the
    header with the TTL changed and the checksum not (or the other way round) are not
    NATs; a rewritten address left in the checksum is (1 chance in 256 to hide)."""
    rest = bytearray(header)
    rest[8] = 0
    need = (0xFFFF - ones_complement_sum(bytes(rest))) % 0xFFFF  # = TTL << 8, if any
    return need & 0xFF == 0


def nat_hop(result: TraceResult) -> NatHop | None:
    """The first hop of a trace whose quotes show the probe rewritten (None: no NAT
    that the quotes show)."""
    for hop in result.hops:
        for response in hop.responses:
            if response.rewrites:
                return NatHop(hop.ttl, response.address, response.rewrites)
    return None


def path_nat(path: PathStats) -> NatHop | None:
    """The first hop of a live path whose quotes show the probes rewritten."""
    for hop in path.hops:
        if hop.rewrites and hop.addresses:
            return NatHop(hop.ttl, hop.addresses[0], hop.rewrites)
    return None
