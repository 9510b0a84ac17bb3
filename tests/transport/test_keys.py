"""Match keys: the sent and reply sides agree, foreign and forged packets do not match."""

import contextlib
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawprobe.errors import MalformedPacket
from rawprobe.transport.keys import (
    KIND_ECHO,
    Cookies,
    echo_payload_v4,
    echo_payload_v6,
    key_of_reply_v4,
    key_of_reply_v6,
    key_of_sent,
)
from rawprobe.transport.wire.icmp import build_echo, build_icmp
from rawprobe.transport.wire.icmpv6 import build_echo6, build_icmpv6
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.ipv6 import IPv6Header, build_ipv6

US4, THEM4, ROUTER4 = "198.18.1.2", "198.19.0.5", "198.18.2.2"
US6, THEM6, ROUTER6 = "2001:db8:1::2", "2001:db8:ff::5", "2001:db8:2::2"


def echo4(ident: int, seq: int, payload: bytes, ttl: int = 64) -> bytes:
    header = IPv4Header(src=US4, dst=THEM4, protocol=1, ttl=ttl)
    return build_ipv4(header, build_echo(ident, seq, payload))


def reply4(request: bytes) -> bytes:
    ihl = (request[0] & 0xF) * 4
    ident, seq = (
        int.from_bytes(request[ihl + 4 : ihl + 6]),
        int.from_bytes(request[ihl + 6 : ihl + 8]),
    )
    icmp = build_echo(ident, seq, request[ihl + 8 :], reply=True)
    return build_ipv4(IPv4Header(src=THEM4, dst=US4, protocol=1, ttl=61), icmp)


def error4(request: bytes, quote_transport_bytes: int | None = None, icmp_type: int = 11) -> bytes:
    ihl = (request[0] & 0xF) * 4
    quote = request if quote_transport_bytes is None else request[: ihl + quote_transport_bytes]
    icmp = build_icmp(icmp_type, 0, 0, quote)
    return build_ipv4(IPv4Header(src=ROUTER4, dst=US4, protocol=1, ttl=63), icmp)


def echo6(ident: int, seq: int, payload: bytes) -> bytes:
    icmp = build_echo6(ident, seq, payload, src=US6, dst=THEM6)
    return build_ipv6(IPv6Header(src=US6, dst=THEM6, next_header=58), icmp)


idents = st.integers(0, 0xFFFF)


@given(idents, idents, st.binary(max_size=64))
def test_v4_echo_reply_key_equals_sent_key(ident: int, seq: int, payload: bytes) -> None:
    request = echo4(ident, seq, payload)
    key = key_of_sent(request)
    assert key == (KIND_ECHO, socket.inet_aton(THEM4), ident, seq)
    assert key_of_reply_v4(reply4(request)) == key


@given(idents, idents, st.binary(max_size=64), st.sampled_from([None, 8, 16]))
def test_v4_icmp_error_key_read_through_the_quote(
    ident: int, seq: int, payload: bytes, quoted: int | None
) -> None:
    request = echo4(ident, seq, payload)
    assert key_of_reply_v4(error4(request, quoted)) == key_of_sent(request)


@given(idents, idents, st.binary(max_size=64))
def test_v6_echo_reply_and_error_keys_equal_sent_key(ident: int, seq: int, payload: bytes) -> None:
    request = echo6(ident, seq, payload)
    key = key_of_sent(request)
    assert key == (KIND_ECHO, socket.inet_pton(socket.AF_INET6, THEM6), ident, seq)
    reply = build_echo6(ident, seq, payload, src=THEM6, dst=US6, reply=True)
    assert key_of_reply_v6(reply, socket.inet_pton(socket.AF_INET6, THEM6)) == key
    error = build_icmpv6(3, 0, 0, request, src=ROUTER6, dst=US6)
    assert key_of_reply_v6(error, socket.inet_pton(socket.AF_INET6, ROUTER6)) == key


def test_reply_from_another_host_has_another_key() -> None:
    request = echo4(7, 1, b"x" * 8)
    spoofed = bytearray(reply4(request))
    spoofed[12:16] = socket.inet_aton("198.19.0.6")  # same ident/seq, other source
    assert key_of_reply_v4(bytes(spoofed)) != key_of_sent(request)


def test_foreign_icmp_types_have_no_key() -> None:
    request = echo4(7, 1, b"")
    # An echo *request* arriving (e.g. someone pinging us) is not a reply.
    assert key_of_reply_v4(request) is None
    assert key_of_reply_v6(bytes([128, 0, 0, 0, 0, 7, 0, 1]), bytes(16)) is None
    # Router advertisement (134): not ours.
    assert key_of_reply_v6(bytes([134, 0]) + bytes(14), bytes(16)) is None


def test_every_prefix_of_replies_and_errors_is_a_key_none_or_malformed() -> None:
    request = echo4(7, 1, b"abcdefgh")
    for packet in (reply4(request), error4(request), error4(request, 8)):
        for cut in range(len(packet) + 1):
            with contextlib.suppress(MalformedPacket):
                key_of_reply_v4(packet[:cut])


def test_error_quoting_bad_ihl_is_malformed() -> None:
    packet = bytearray(error4(echo4(7, 1, b"")))
    packet[20 + 8] = 0x42  # quoted version 4, IHL 2
    with pytest.raises(MalformedPacket):
        key_of_reply_v4(bytes(packet))


def test_cookie_authenticates_echo_payload() -> None:
    cookies = Cookies(secret=b"k" * 32)
    key = key_of_sent(echo4(7, 1, b""))
    payload = cookies.echo_payload(key, 56)
    assert len(payload) == 56
    assert cookies.verify_echo(key, payload)
    assert not cookies.verify_echo(key, bytes(56))  # right ident and seq, wrong cookie
    assert not Cookies(secret=b"j" * 32).verify_echo(key, payload)  # another transport
    other_seq = (key[0], key[1], key[2], key[3] + 1)
    assert not cookies.verify_echo(other_seq, payload)


def test_cookie_checks_only_the_bytes_a_quote_carries() -> None:
    cookies = Cookies()
    key = key_of_sent(echo4(7, 1, b""))
    payload = cookies.echo_payload(key, 56)
    assert cookies.verify_echo(key, payload[:3], quoted=True)
    assert not cookies.verify_echo(key, bytes([payload[0] ^ 1]) + payload[1:3], quoted=True)


def test_an_echo_reply_must_carry_the_whole_cookie() -> None:
    """A reply echoes the whole payload: a short or empty one is a forgery (found in
    review: an empty payload used to compare b"" with b"" and pass)."""
    cookies = Cookies()
    key = key_of_sent(echo4(7, 1, b""))
    payload = cookies.echo_payload(key, 56)
    assert not cookies.verify_echo(key, b"")
    assert not cookies.verify_echo(key, payload[:7])
    assert cookies.verify_echo(key, payload[:8])


def test_echo_payload_offsets() -> None:
    request = echo4(7, 1, b"PAYLOAD!")
    assert echo_payload_v4(reply4(request)) == (b"PAYLOAD!", False)
    assert echo_payload_v4(error4(request)) == (b"PAYLOAD!", True)
    assert echo_payload_v4(error4(request, 8)) == (b"", True)
    req6 = echo6(7, 1, b"PAYLOAD6")
    reply6 = build_echo6(7, 1, b"PAYLOAD6", src=THEM6, dst=US6, reply=True)
    assert echo_payload_v6(reply6) == (b"PAYLOAD6", False)
    assert echo_payload_v6(build_icmpv6(1, 3, 0, req6, src=ROUTER6, dst=US6)) == (
        b"PAYLOAD6",
        True,
    )
