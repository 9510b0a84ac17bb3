"""Echo-identifier routes: one route for every echo reply of a sweep, still authenticated."""

import socket

from rawprobe.transport.base import Counters, Inbox
from rawprobe.transport.demux import Demux
from rawprobe.transport.keys import KIND_ECHO, Cookies, MatchKey
from rawprobe.transport.wire.icmp import build_echo
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4

ME, HOST = "198.18.1.2", "198.19.0.7"
COOKIES = Cookies(b"k" * 32)


def echo_reply(ident: int, seq: int, payload: bytes, source: str = HOST) -> bytes:
    icmp = build_echo(ident, seq, payload, reply=True)
    return build_ipv4(IPv4Header(src=source, dst=ME, protocol=1, ttl=61), icmp)


def key(ident: int, seq: int, host: str = HOST) -> MatchKey:
    return (KIND_ECHO, socket.inet_aton(host), ident, seq)


def demux() -> tuple[Demux, Counters]:
    counters = Counters()
    return Demux(COOKIES, counters), counters


def test_any_sequence_of_the_identifier_reaches_the_inbox_with_its_cookie() -> None:
    routes, counters = demux()
    inbox = Inbox(16)
    routes.register_route(KIND_ECHO, 0x4201, inbox)
    for seq in (0, 1, 7):
        routes.dispatch_v4(echo_reply(0x4201, seq, COOKIES.cookie(key(0x4201, seq))), 1, 0.0)
    assert [reply.key[3] for reply in inbox.take_all()] == [0, 1, 7]
    assert counters.delivered == 3 and routes.registered == 1


def test_a_wrong_cookie_is_forged_and_another_identifier_unmatched() -> None:
    routes, counters = demux()
    inbox = Inbox(16)
    routes.register_route(KIND_ECHO, 0x4201, inbox)
    routes.dispatch_v4(echo_reply(0x4201, 3, COOKIES.cookie(key(0x4201, 4))), 1, 0.0)
    routes.dispatch_v4(echo_reply(0x4202, 3, COOKIES.cookie(key(0x4202, 3))), 1, 0.0)
    assert len(inbox) == 0
    assert (counters.forged, counters.unmatched) == (1, 1)


def test_a_key_of_its_own_wins_and_unregistering_stops_delivery() -> None:
    routes, counters = demux()
    sweep, ping = Inbox(16), Inbox(16)
    routes.register_route(KIND_ECHO, 0x4201, sweep)
    routes.register(key(0x4201, 9), ping)
    routes.dispatch_v4(echo_reply(0x4201, 9, COOKIES.cookie(key(0x4201, 9))), 1, 0.0)
    assert (len(ping), len(sweep)) == (1, 0)
    routes.unregister_route(KIND_ECHO, 0x4201)
    routes.unregister(key(0x4201, 9))
    routes.dispatch_v4(echo_reply(0x4201, 2, COOKIES.cookie(key(0x4201, 2))), 1, 0.0)
    assert counters.unmatched == 1 and routes.registered == 0


def test_the_source_is_kept_packed_and_given_as_text() -> None:
    routes, _ = demux()
    inbox = Inbox(4)
    routes.register_route(KIND_ECHO, 0x4201, inbox)
    routes.dispatch_v4(echo_reply(0x4201, 0, COOKIES.cookie(key(0x4201, 0))), 1, 0.0)
    (reply,) = inbox.take_all()
    assert reply.source_packed == socket.inet_aton(HOST) and reply.source == HOST
