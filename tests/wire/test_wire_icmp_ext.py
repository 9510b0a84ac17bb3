"""RFC 4884 multi-part ICMP messages and RFC 4950 MPLS label stacks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_vectors import load_vector

from rawprobe.errors import MalformedPacket
from rawprobe.transport.wire import (
    ExtensionObject,
    MplsLabel,
    build_extensions,
    build_icmp,
    build_icmpv6,
    build_mpls_object,
    parse_extensions,
    parse_icmp,
    parse_icmpv6,
    parse_ipv4,
    verify_extensions_checksum,
)

LABELS = (MplsLabel(16005, 0, False, 1), MplsLabel(24001, 5, True, 1))


def quoted_probe() -> bytes:
    return load_vector("icmp4_echo_request_ttl1")  # 84 bytes


def test_icmp4_time_exceeded_with_mpls_extension() -> None:
    # As an MPLS router sends it: datagram zero-padded to 128 bytes, length = 32 words.
    original = quoted_probe().ljust(128, b"\x00")
    extensions = build_extensions([build_mpls_object(LABELS)])
    message = parse_icmp(build_icmp(11, 0, 32 << 16, original + extensions))
    assert message.rfc4884_length == 128
    assert message.quoted == original and message.extensions == extensions
    inner, payload = parse_ipv4(message.quoted, quoted=True)
    assert inner.total_length == 84 and len(payload) == 64  # padding ignored
    assert verify_extensions_checksum(message.extensions)
    (obj,) = parse_extensions(message.extensions)
    assert obj.mpls_labels == LABELS


def test_icmp6_length_is_in_64_bit_words_in_byte_4() -> None:
    original = load_vector("icmp6_echo_request_hlim1").ljust(128, b"\x00")
    extensions = build_extensions([ExtensionObject(2, 0x0A, b"\x00\x00\x00\x05")])
    raw = build_icmpv6(3, 0, 16 << 24, original + extensions, src="::1", dst="::2")
    message = parse_icmpv6(raw)
    assert (message.rfc4884_length, message.quoted, message.extensions) == (
        128,
        original,
        extensions,
    )
    assert parse_extensions(message.extensions)[0].mpls_labels is None


def test_legacy_message_without_length_keeps_the_whole_body() -> None:
    body = quoted_probe() + b"\x00" * 60
    message = parse_icmp(build_icmp(3, 3, 0, body))
    assert (message.quoted, message.extensions) == (body, b"")


def test_length_beyond_the_body_is_ignored_not_trusted() -> None:
    body = quoted_probe()
    message = parse_icmp(build_icmp(11, 0, 200 << 16, body))
    assert (message.quoted, message.extensions) == (body, b"")


def test_echo_rest_word_is_not_read_as_a_length() -> None:
    message = parse_icmp(build_icmp(0, 0, 0x00200001, b"x" * 200))
    assert (message.quoted, message.extensions, message.rfc4884_length) == (b"", b"", 0)


@given(
    st.lists(
        st.builds(
            ExtensionObject, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40)
        ),
        max_size=5,
    )
)
def test_extension_round_trip(objects: list[ExtensionObject]) -> None:
    data = build_extensions(objects)
    assert parse_extensions(data) == tuple(objects)
    assert verify_extensions_checksum(data)


@given(
    st.lists(
        st.builds(
            MplsLabel,
            st.integers(0, (1 << 20) - 1),
            st.integers(0, 7),
            st.booleans(),
            st.integers(0, 255),
        ),
        max_size=6,
    )
)
def test_mpls_label_round_trip(labels: list[MplsLabel]) -> None:
    assert build_mpls_object(labels).mpls_labels == tuple(labels)


@pytest.mark.parametrize(
    "data",
    [
        b"\x10\x00\x00\x00",  # version 1
        b"\x20\x00",  # header cut
        b"\x20\x00\x00\x00\x00\x03\x01\x01",  # object length 3 < 4
        b"\x20\x00\x00\x00\x00\x10\x01\x01\x00\x00",  # object overruns
        b"\x20\x00\x00\x00\x00\x08",  # object header cut
    ],
)
def test_malformed_extensions(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_extensions(data)


def test_mpls_payload_not_whole_entries() -> None:
    with pytest.raises(MalformedPacket):
        _ = ExtensionObject(1, 1, b"\x00\x01\x02").mpls_labels
