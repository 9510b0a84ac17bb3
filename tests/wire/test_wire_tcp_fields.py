"""TCP flags text and option helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawprobe.errors import UsageError
from rawprobe.transport.wire import (
    ACK,
    AE,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    TcpHeader,
    TcpOption,
    build_tcp,
    encode_options,
    eol,
    flags_text,
    mss,
    nop,
    parse_flags,
    parse_options,
    parse_tcp,
    sack_permitted,
    timestamps,
    window_scale,
)


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        (SYN, "S"),
        (SYN | ACK, "S."),
        (RST | ACK, "R."),
        (RST, "R"),
        (ACK, "."),
        (FIN | PSH | URG, "FPU"),
        (PSH | ACK, "P."),
        (SYN | ECE | CWR, "SEW"),
        (ACK | AE, ".e"),
        (0, "none"),
    ],
)
def test_flags_text_like_tcpdump(flags: int, text: str) -> None:
    assert flags_text(flags) == text
    assert parse_flags(text) == flags


def test_parse_flags_accepts_a_for_ack_in_any_order() -> None:
    assert parse_flags("SA") == parse_flags("AS") == SYN | ACK
    assert parse_flags("") == 0


@pytest.mark.parametrize("junk", ["X", "s", "S A", "SYN", "S,A", "1"])
def test_parse_flags_rejects_junk(junk: str) -> None:
    with pytest.raises(UsageError, match="flag"):
        parse_flags(junk)


@given(st.integers(0, 0x1FF))
def test_flags_text_round_trips(flags: int) -> None:
    assert parse_flags(flags_text(flags)) == flags


def test_option_constructors_decode_back() -> None:
    options = (mss(1460), sack_permitted(), timestamps(7, 9), nop(), window_scale(7))
    assert encode_options(options) == bytes.fromhex("020405b4 0402 080a0000000700000009 01 030307")
    decoded = parse_options(encode_options(options))
    assert decoded == options
    assert decoded[0].mss == 1460 and decoded[2].timestamps == (7, 9)
    assert decoded[4].window_scale == 7
    assert decoded[0].window_scale is None and decoded[4].mss is None


def test_sack_blocks_and_unknown_kinds() -> None:
    sack = TcpOption(5, bytes.fromhex("0000000a000000140000001e00000028"))
    assert sack.sack_blocks == ((10, 20), (30, 40))
    unknown = TcpOption(254, b"\xf9\x89exp")
    assert parse_options(encode_options([unknown])) == (unknown,)
    assert unknown.name == "opt-254" and unknown.mss is None


def test_odd_length_options_are_padded_with_eol() -> None:
    segment = build_tcp(
        TcpHeader(1, 2, options=(mss(536), window_scale(2))), b"hi", src="::1", dst="::1"
    )
    assert segment[12] >> 4 == 7 and segment[20:28] == bytes.fromhex("02040218 03030200")
    header, payload = parse_tcp(segment)
    assert header.options == (mss(536), window_scale(2)) and payload == b"hi"


@pytest.mark.parametrize(
    "make",
    [
        lambda: mss(70000),
        lambda: window_scale(-1),
        lambda: timestamps(1 << 32, 0),
        lambda: encode_options([TcpOption(1, b"x")]),
        lambda: encode_options([TcpOption(2, b"x" * 254)]),
        lambda: build_tcp(
            TcpHeader(1, 2, options=(TcpOption(99, b"x" * 40),)), b"", src="::1", dst="::1"
        ),
    ],
)
def test_option_values_out_of_range(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        make()


def test_eol_is_a_single_zero_byte() -> None:
    assert encode_options([nop(), eol()]) == b"\x01\x00"
