"""What loss and quotes really say (probes/path_truth.py), pure: the rate-limit test,
and NAT detection on quotes captured in the lab (tests/vectors/nat/: a stateless NAT
that leaves the quotes as rewritten, and Linux's MASQUERADE, which restores them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawprobe.probes.path_truth import (
    excess_loss_p,
    nat_hop,
    quote_rewrites,
    rate_limited,
    rate_limited_ttls,
)
from rawprobe.probes.trace_models import QuoteRewrite, TraceHop, TraceResponse, TraceResult
from rawprobe.transport.answers import IcmpError, answer_v4, answer_v6
from rawprobe.transport.base import Counters, Inbox
from rawprobe.transport.demux import Demux
from rawprobe.transport.keys import Cookies, key_of_reply_v4, key_of_reply_v6, key_of_sent
from rawprobe.transport.wire.checksum import ones_complement_sum

NAT_VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "nat"


def vector(name: str) -> bytes:
    lines = (NAT_VECTORS / f"{name}.hex").read_text().splitlines()
    return bytes.fromhex("".join(line for line in lines if not line.startswith("#")))


def error_answer(reply: bytes) -> IcmpError:
    """The typed answer of a captured ICMP error (IPv6: as a raw socket gives it)."""
    if reply[0] >> 4 == 4:
        key = key_of_reply_v4(reply)
        assert key is not None
        answer = answer_v4(key, reply, 0, 0.0)
    else:
        key = key_of_reply_v6(reply[40:], reply[8:24])
        assert key is not None
        answer = answer_v6(key, reply[8:24], reply[40:], reply[7], 0, 0.0)
    assert isinstance(answer, IcmpError)
    return answer


def rewrites(name: str) -> dict[str, tuple[str | int, str | int]]:
    probe, reply = vector(f"{name}_probe"), vector(f"{name}_reply")
    return {r.field: (r.sent, r.quoted) for r in quote_rewrites(probe, error_answer(reply))}


# -- NAT -----------------------------------------------------------------------------------


def test_quotes_a_nat_left_rewritten_show_the_source_and_the_checksums_it_covers() -> None:
    assert rewrites("udp4") == {
        "source": ("198.18.1.2", "198.18.3.1"),
        "checksum": (0x3667, 0x3468),  # Dublin traceroute's NAT id: the pseudo-header moved
    }
    assert rewrites("tcp4") == {
        "source": ("198.18.1.2", "198.18.3.1"),
        "checksum": (0x4869, 0x466A),
    }
    assert rewrites("icmp4") == {"source": ("198.18.1.2", "198.18.3.1")}  # ICMPv4: no pseudo-header
    assert rewrites("tcp6") == {
        "source": ("2001:db8:1::2", "2001:db8:3::1"),
        "checksum": (0x3C72, 0x3C71),
    }


def test_linux_masquerade_restores_the_quote_so_no_nat_shows() -> None:
    assert rewrites("masq_udp4") == {}
    assert rewrites("masq_icmp6") == {}


def test_a_restored_address_with_the_checksum_left_rewritten_shows_as_ip_checksum() -> None:
    probe, reply = bytearray(vector("udp4_probe")), bytearray(vector("udp4_reply"))
    reply[28 + 12 : 28 + 16] = probe[12:16]  # the quote's source back, its checksum not
    found = quote_rewrites(bytes(probe), error_answer(bytes(reply)))
    assert [r.field for r in found] == ["checksum", "ip-checksum"]
    header = bytearray(reply[28:48])
    header[10:12] = found[1].sent.to_bytes(2, "big")  # type: ignore[union-attr]
    assert ones_complement_sum(bytes(header)) == 0xFFFF  # "sent": the checksum that fits


def test_a_router_quoting_another_ttl_without_the_checksum_is_no_nat() -> None:
    probe, reply = vector("masq_udp4_probe"), bytearray(vector("masq_udp4_reply"))
    reply[28 + 8] = 0  # quoted TTL 0, checksum still that of TTL 1
    assert quote_rewrites(probe, error_answer(bytes(reply))) == ()
    reply[28 + 20 : 28 + 22] = (12345).to_bytes(2, "big")  # and a port rewritten
    (port,) = quote_rewrites(probe, error_answer(bytes(reply)))
    assert port == QuoteRewrite("source-port", int.from_bytes(probe[20:22], "big"), 12345)


def test_a_udp_error_whose_checksum_a_nat_rewrote_reaches_its_probe_by_the_ip_id() -> None:
    """Dublin traceroute's match: Paris UDP probes carry their identity in the IPv4 ID
    too. The rewritten checksum is made to name another probe: the ID still wins."""
    probe, reply = vector("udp4_probe"), vector("udp4_reply")
    mine = key_of_sent(probe)
    quoted = key_of_reply_v4(reply)
    assert quoted is not None and quoted != mine
    demux = Demux(Cookies(), Counters())
    demux.verify_ip_header = False
    inbox, decoy = Inbox(4), Inbox(4)
    demux.register(mine, inbox)
    demux.register(quoted, decoy)  # a probe whose checksum is the rewritten one
    demux.dispatch_v4(reply, 0, 0.0)
    (answer,) = inbox.take_all()
    assert answer.key == mine and not decoy.take_all()
    demux.unregister(mine)
    demux.dispatch_v4(reply, 0, 0.0)  # no probe by the ID: the checksum's key as before
    assert [a.key for a in decoy.take_all()] == [quoted]


def test_the_nat_is_reported_at_the_first_hop_whose_quotes_differ() -> None:
    rewritten = (QuoteRewrite("source", "198.18.1.2", "198.18.3.1"),)
    result = trace_of(
        [response("198.18.1.1")],
        [response("198.18.2.2")],
        [response("198.18.3.2", rewritten)],
        [response("198.19.0.5", rewritten, terminal=True)],
    )
    nat = nat_hop(result)
    assert nat is not None and (nat.ttl, nat.address, nat.rewrites) == (3, "198.18.3.2", rewritten)
    assert str(nat.rewrites[0]) == "source 198.18.1.2 -> 198.18.3.1"
    assert nat_hop(trace_of([response("198.18.1.1")], [response("198.19.0.5")])) is None


# -- rate limiting ---------------------------------------------------------------------------


def test_fisher_p_values() -> None:
    assert excess_loss_p(3, 3, 0, 6) == pytest.approx(1 / 84)  # 1 / C(9, 3)
    assert excess_loss_p(2, 10, 0, 20) == pytest.approx(45 / 435)  # C(10,2) / C(30,2)
    assert excess_loss_p(0, 10, 5, 10) == pytest.approx(1.0)
    assert excess_loss_p(5, 10, 5, 10) > 0.5


def test_rate_limited_needs_loss_that_does_not_carry_on_beyond_chance() -> None:
    assert rate_limited(28, 40, 0, 80)  # a router answering one probe in four
    assert not rate_limited(2, 10, 0, 20)  # could be chance
    assert not rate_limited(8, 40, 16, 80)  # 20% here and after: real loss
    assert not rate_limited(8, 40, 40, 80)  # more loss after: real, and more of it
    assert not rate_limited(0, 40, 0, 80) and not rate_limited(5, 10, 0, 0)


def response(
    address: str, rewrites: tuple[QuoteRewrite, ...] = (), *, terminal: bool = False
) -> TraceResponse:
    kind = "unreachable" if terminal else "time-exceeded"
    return TraceResponse(address, 0.001, kind, 11, 0, 64, 1, terminal=terminal, reached=terminal,
                         rewrites=rewrites)  # fmt: skip


def trace_of(*hops: list[TraceResponse | None], sent: list[int] | None = None) -> TraceResult:
    """A finished trace with these hops (one query per entry)."""
    built = tuple(
        TraceHop(ttl, tuple(probes), (sent or [len(probes)] * len(hops))[ttl - 1])
        for ttl, probes in enumerate(hops, start=1)
    )
    reached = any(p is not None and p.reached for hop in hops for p in hop)
    return TraceResult("198.19.0.5", "198.19.0.5", "udp", "198.18.1.2", True, (1, 2), 1, 30,
                       built, reached, 0.01, sum(h.sent for h in built), 60)  # fmt: skip


def test_a_paris_hop_whose_loss_does_not_carry_on_is_marked() -> None:
    r = [response(f"198.18.{i}.1") for i in range(1, 4)]
    end = response("198.19.0.5", terminal=True)
    limited = trace_of([r[0]] * 10, [r[1], r[1]] + [None] * 8, [r[2]] * 10, [end] * 10)
    assert rate_limited_ttls(limited) == {2: (8, 10, 0, 20)}
    # Loss from hop 2 on (a lossy link): real, not marked.
    lossy = trace_of([r[0]] * 10, [r[1]] * 5 + [None] * 5, [r[2]] * 6 + [None] * 4,
                     [end] * 5 + [None] * 5)  # fmt: skip
    assert rate_limited_ttls(lossy) == {}
    # A silent router (no ICMP at all) whose later hops answer every try: marked.
    silent = trace_of([r[0]] * 3, [None] * 3, [r[2]] * 3, [end] * 3, sent=[3, 9, 3, 3])
    assert rate_limited_ttls(silent) == {2: (9, 9, 0, 6)}
