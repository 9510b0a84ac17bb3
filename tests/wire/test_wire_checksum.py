"""Internet checksum, pseudo-headers, incremental update, address text."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawprobe.errors import MalformedPacket, UsageError
from rawprobe.transport.wire import (
    checksum_update16,
    internet_checksum,
    ntop4,
    ntop6,
    ones_complement_sum,
    pseudo_header,
    pton,
)


def reference_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 §4.1 spelled out: add 16-bit words, fold carries, invert."""
    if len(data) % 2:
        data += b"\x00"
    total = initial
    for (word,) in struct.iter_unpack("!H", data):
        total += word
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_rfc1071_worked_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with end-around carry).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_odd_length_is_padded_with_a_zero_byte() -> None:
    assert internet_checksum(b"\x12\x34\x56") == internet_checksum(b"\x12\x34\x56\x00")
    assert internet_checksum(b"\xab") == ~0xAB00 & 0xFFFF


def test_zero_and_all_ones_corners() -> None:
    # +0 (no data) inverts to 0xFFFF; a nonzero sum that is a multiple of 0xFFFF is -0.
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\x00" * 10) == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0x0000
    assert internet_checksum(b"\xff\xfe\x00\x01") == 0x0000


@given(st.binary(max_size=1600), st.integers(0, 0xFFFF_FFFF))
def test_matches_the_reference_algorithm(data: bytes, initial: int) -> None:
    assert internet_checksum(data, initial) == reference_checksum(data, initial)
    assert internet_checksum(memoryview(data), initial) == reference_checksum(data, initial)
    assert internet_checksum(bytearray(data), initial) == reference_checksum(data, initial)


@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0))
def test_inserting_the_checksum_makes_the_sum_verify(data: bytes) -> None:
    message = data + internet_checksum(data).to_bytes(2, "big")
    assert internet_checksum(message) == 0


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_initial_sum_equals_concatenation(pseudo: bytes, data: bytes) -> None:
    # How pseudo-headers are used: sum them separately and pass the sum in.
    pseudo = pseudo + b"\x00" * (len(pseudo) % 2)
    assert internet_checksum(data, ones_complement_sum(pseudo)) == reference_checksum(pseudo + data)


def test_pseudo_header_ipv4_layout() -> None:
    assert pseudo_header("198.18.1.2", "198.18.2.2", 17, 25) == bytes(
        [198, 18, 1, 2, 198, 18, 2, 2, 0, 17, 0, 25]
    )


def test_pseudo_header_ipv6_layout() -> None:
    header = pseudo_header("2001:db8::1", "2001:db8::2", 58, 70000)
    assert len(header) == 40
    assert header[:16] == socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    assert header[16:32] == socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    assert header[32:] == (70000).to_bytes(4, "big") + b"\x00\x00\x00\x3a"


@pytest.mark.parametrize(
    ("src", "dst"),
    [("198.18.0.1", "2001:db8::1"), ("not-an-ip", "198.18.0.1"), ("198.18.0.1", "1.2.3")],
)
def test_pseudo_header_rejects_bad_addresses(src: str, dst: str) -> None:
    with pytest.raises(UsageError):
        pseudo_header(src, dst, 6, 20)


def test_incremental_update_rfc1624_example() -> None:
    # RFC 1624 §4: HC 0xDD2F, m 0x5555 -> m' 0x3285 gives 0x0000 (eqn. 2 gave 0xFFFF).
    assert checksum_update16(0xDD2F, 0x5555, 0x3285) == 0x0000


@given(
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40),
    st.data(),
)
def test_incremental_update_matches_recomputation(words: list[int], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(words) - 1))
    new_word = data.draw(st.sampled_from([0x0000, 0xFFFF, 0x0001, 0xFFFE]) | st.integers(0, 0xFFFF))
    before = struct.pack(f"!{len(words)}H", *words)
    changed = list(words)
    changed[index] = new_word
    after = struct.pack(f"!{len(words)}H", *changed)
    updated = checksum_update16(internet_checksum(before), words[index], new_word)
    if any(changed):
        assert updated == internet_checksum(after)
    else:
        # RFC 1624 §3: all-zero data is the one place eqn. 3 yields 0x0000, not 0xFFFF.
        assert updated == 0x0000 and internet_checksum(after) == 0xFFFF


def test_incremental_update_of_a_ttl_decrement() -> None:
    # What a router does: TTL 64 -> 63 in the TTL/protocol word of a real header.
    header = bytearray.fromhex("4500 0054 1ce1 4000 4001 0000 c612 0102 c612 0202")
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    old_word = int.from_bytes(header[8:10], "big")
    header[8] -= 1
    new_word = int.from_bytes(header[8:10], "big")
    stored = int.from_bytes(header[10:12], "big")
    header[10:12] = checksum_update16(stored, old_word, new_word).to_bytes(2, "big")
    assert internet_checksum(header) == 0


@given(st.binary(min_size=16, max_size=16))
def test_ntop6_matches_inet_ntop(packed: bytes) -> None:
    assert ntop6(packed) == socket.inet_ntop(socket.AF_INET6, packed)
    assert pton(ntop6(packed)) == packed


@pytest.mark.parametrize(
    "text",
    [
        "::",
        "::1",
        "::2",
        "::ffff:1.2.3.4",
        "::ffff:0.0.0.0",
        "::1.2.3.4",
        "::0.1.0.0",
        "1::",
        "2001:db8::1:0:0:1",
        "2001:0:0:1::1",
        "2001:db8:0:1:1:1:1:1",
        "fe80::1:2:3:4",
        "0:1:0:1:0:1:0:1",
        "64:ff9b::c000:201",
    ],
)
def test_ntop6_special_forms(text: str) -> None:
    packed = socket.inet_pton(socket.AF_INET6, text)
    assert ntop6(packed) == socket.inet_ntop(socket.AF_INET6, packed)


@given(st.binary(min_size=4, max_size=4))
def test_ntop4_matches_inet_ntop(packed: bytes) -> None:
    assert ntop4(packed) == socket.inet_ntop(socket.AF_INET, packed)
    assert pton(ntop4(packed)) == packed


def test_ntop_rejects_wrong_sizes() -> None:
    with pytest.raises(MalformedPacket):
        ntop4(b"\x01\x02\x03")
    with pytest.raises(MalformedPacket):
        ntop6(b"\x00" * 15)
