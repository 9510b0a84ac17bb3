"""Target rules, pure: host bits, special addresses, exclusions as block arithmetic,
streamed target files, literals that are not addresses."""

from __future__ import annotations

import ipaddress
import itertools
import random
import socket
import tracemalloc
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe.errors import UsageError
from rawprobe.probes.targets import (
    AddressBlock,
    BlockSet,
    TargetSpace,
    parse_block,
    special_kind,
    special_refusal,
    subtract,
    without_special,
)
from rawprobe.targets import (
    TargetReader,
    literal_address,
    refuse_network,
    resolve,
    resolve_targets,
    split_exclusions,
)

V4 = socket.AF_INET


def addresses(space: TargetSpace) -> list[str]:
    return [space.address(i) for i in range(space.size)]


def run(texts: list[str], **kwargs: object) -> TargetSpace:
    async def main() -> TargetSpace:
        return await resolve_targets(texts, **kwargs)  # type: ignore[arg-type]

    return anyio.run(main)


# -- host bits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("198.19.0.0/8", "did you mean 198.19.0.0/16, or 198.0.0.0/8 (16,777,216 addresses)?"),
        ("10.1.2.3/8", "did you mean 10.1.2.0/24, or 10.0.0.0/8 (16,777,216 addresses)?"),
        ("198.19.1.0/20", "did you mean 198.19.1.0/24, or 198.19.0.0/20 (4,096 addresses)?"),
        ("2001:db8:ff::/16", "did you mean 2001:db8:ff::/48, or 2001::/16 (2^112 addresses)?"),
        ("2001:db8::1/64", "did you mean 2001:db8::/120, or 2001:db8::/64 (2^64 addresses)?"),
    ],
)
def test_host_bits_below_24_are_refused_with_the_network_meant(spec: str, hint: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_block(spec)
    assert str(caught.value) == f"{spec} has host bits set: {hint}"


@pytest.mark.parametrize(
    ("spec", "network"),
    [
        ("198.19.0.5/24", "198.19.0.0/24"),  # nmap's reading where the prefix is long
        ("198.19.0.77/25", "198.19.0.0/25"),
        ("198.19.0.5/32", "198.19.0.5/32"),
        ("2001:db8::77/120", "2001:db8::/120"),
        ("2001:db8::77/126", "2001:db8::74/126"),
        ("198.19.0.0/16", "198.19.0.0/16"),  # no host bits: any prefix
    ],
)
def test_long_prefixes_keep_the_whole_network(spec: str, network: str) -> None:
    block = parse_block(spec)
    net = ipaddress.ip_network(network)
    trimmed = net.version == 4 and net.prefixlen <= 30  # fping -g: no network/broadcast
    assert block.first == int(net.network_address) + trimmed
    assert block.count == net.num_addresses - 2 * trimmed


def test_a_names_block_takes_the_whole_network() -> None:
    # name/16: the host bits of a resolved address are not the user's typo.
    block = parse_block("198.19.7.9/16", whole_network=True)
    assert (block.first, block.count) == (int(ipaddress.ip_address("198.19.0.1")), 65534)


# -- special addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("224.0.0.1", "multicast"),
        ("224.0.0.0/28", "multicast"),
        ("224.0.0.0/3", "multicast"),  # multicast, then reserved, then broadcast: all special
        ("255.255.255.255", "broadcast"),
        ("240.0.0.0/30", "reserved (240.0.0.0/4)"),
        ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
        ("0.0.0.0/31", "'this network' (0.0.0.0/8)"),
        ("0.0.0.0", "unspecified"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("223.255.255.255-224.0.0.5", None),  # partly: trimmed, not refused
        ("198.19.0.0/16", None),
        ("::1", None),
    ],
)
def test_special_kind(spec: str, kind: str | None) -> None:
    assert special_kind(parse_block(spec)) == kind


def test_the_unspecified_address_is_refused_even_with_broadcast() -> None:
    assert special_refusal("0.0.0.0", parse_block("0.0.0.0"), True) is not None
    assert special_refusal("224.0.0.1", parse_block("224.0.0.1"), True) is None
    refusal = special_refusal("224.0.0.1", parse_block("224.0.0.1"), False)
    assert refusal == "224.0.0.1 is a multicast destination: add --broadcast to probe it"


def test_networks_never_yield_special_addresses_without_broadcast() -> None:
    everything = [parse_block("0.0.0.0/0")]
    left = without_special(everything, allow=False)
    assert [(b.first, b.count) for b in left] == [(0x01000000, 0xE0000000 - 0x01000000)]
    with_flag = without_special(everything, allow=True)  # less only 0.0.0.0
    assert [(b.first, b.count) for b in with_flag] == [(1, 0xFFFFFFFE)]
    space = run(["223.255.255.250-224.0.0.5"])
    assert addresses(space)[-1] == "223.255.255.255" and space.size == 6
    assert run(["223.255.255.250-224.0.0.5"], broadcast=True).size == 12
    assert run(["198.19.0.1", "ff00::/120"], broadcast=True).size == 257


def test_a_target_made_only_of_special_addresses_is_refused() -> None:
    for spec in ("224.0.0.0/30", "240.0.0.1", "255.255.255.255", "ff02::1"):
        with pytest.raises(UsageError, match="add --broadcast"):
            run(["198.19.0.1", spec])


# -- block arithmetic -------------------------------------------------------------------

_runs = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12)), max_size=8)


def _disjoint(runs: list[tuple[int, int]]) -> list[AddressBlock]:
    blocks, position = [], 0
    for gap, count in runs:
        position += gap
        blocks.append(AddressBlock(V4, position, count))
        position += count + 1
    return blocks


def _set(blocks: list[AddressBlock]) -> set[int]:
    return {a for b in blocks for a in range(b.first, b.first + b.count)}


@settings(max_examples=300)
@given(_runs, _runs)
def test_subtract_is_set_difference(
    blocks_runs: list[tuple[int, int]], holes_runs: list[tuple[int, int]]
) -> None:
    blocks, holes = _disjoint(blocks_runs), _disjoint(holes_runs)
    result = subtract(blocks, holes)
    assert _set(result) == _set(blocks) - _set(holes)
    assert all(a.first + a.count <= b.first for a, b in itertools.pairwise(result))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 9)), max_size=40), st.randoms())
def test_block_set_merges_to_sorted_disjoint_blocks(
    runs: list[tuple[int, int]], rng: random.Random
) -> None:
    collected = BlockSet()
    collected.CHUNK = 3  # merge often: the chunked path is the one big files take
    blocks = [AddressBlock(V4, first, count) for first, count in runs]
    rng.shuffle(blocks)
    for block in blocks:
        collected.add(block)
    merged = collected.blocks()
    assert _set(merged) == _set(blocks)
    assert all(a.first + a.count < b.first for a, b in itertools.pairwise(merged))  # gaps


def test_exclusions_are_subtracted_before_the_permutation() -> None:
    space = run(
        ["198.19.0.0/24", "2001:db8::/120"],
        exclude=split_exclusions(
            ["198.19.0.5,198.19.0.10-20", "198.19.0.128/25", "2001:db8::/121"]
        ),
    )
    kept = addresses(space)
    assert space.size == (254 - 1 - 11 - 127) + 128  # the excluded /25 takes .255 too
    assert "198.19.0.5" not in kept and "198.19.0.15" not in kept
    assert "198.19.0.4" in kept and "198.19.0.21" in kept and "198.19.0.127" in kept
    assert kept[-128:] == [f"2001:db8::{n:x}" for n in range(128, 256)]


def test_an_exclusion_takes_the_whole_block_and_may_empty_the_space() -> None:
    with pytest.raises(UsageError, match="no targets left"):
        run(["198.19.0.1-3"], exclude=["198.19.0.0/30"])  # .3 is in the /30 too


def test_exclusions_of_a_huge_space_are_arithmetic() -> None:
    # 2**40 addresses less a few blocks: nothing is expanded.
    space = run(["2001:db8::/88"], exclude=["2001:db8::/96", "2001:db8::ff:0:0/96"])
    assert space.size == 2**40 - 2 * 2**32
    assert len(space.blocks) == 1


# -- literals ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[::1", "::1]", "0x7f.1", "0x7f000001", "2130706433", "1.2.3",
                                  "999.1.1.1", "[198.19.0.1]", "0177.0.0.1"])  # fmt: skip
def test_text_that_meant_an_address_is_never_resolved(text: str) -> None:
    with pytest.raises(UsageError):
        literal_address(text)
    with pytest.raises(UsageError):
        anyio.run(resolve, text)  # refused before any resolver query


@pytest.mark.parametrize("text", ["[::1]", "::1", "198.19.0.1"])
def test_literals(text: str) -> None:
    assert literal_address(text) == text.strip("[]")


@pytest.mark.parametrize(
    "text", ["198.19.0.0/24", "198.19.0.1-9", "2001:db8::1-2001:db8::5", "x/24"]
)
def test_a_network_where_a_host_is_wanted_gets_a_hint(text: str) -> None:
    with pytest.raises(UsageError, match=r"take hosts \(sweep and scan take networks\)"):
        refuse_network(text)


@pytest.mark.parametrize("text", ["my-host", "cafe-1.example", "localhost"])
def test_names_with_dashes_are_names(text: str) -> None:
    refuse_network(text)  # no error: the resolver decides


# -- target files ------------------------------------------------------------------------


def test_target_files_skip_a_bom_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "targets"
    path.write_bytes(b"\xef\xbb\xbf198.19.0.1\n# a comment\n\n198.19.0.2 198.19.0.3 # two\n")
    assert list(TargetReader(["198.19.0.9"], [str(path)])) == [
        "198.19.0.9", "198.19.0.1", "198.19.0.2", "198.19.0.3",
    ]  # fmt: skip


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "targets"
    path.write_text("198.19.0.1\n\n198.19.0.0/8\n")
    reader = TargetReader([], [str(path)])
    with pytest.raises(UsageError, match="host bits"):
        run(reader)  # type: ignore[arg-type]
    assert reader.where == f"{path}:3"


def test_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"198.19.0.1\n" * 5000 + bytes(range(256)))
    with pytest.raises(UsageError, match="not UTF-8 text"):
        list(TargetReader([], [str(path)]))


def _peak_reading(path: Path) -> tuple[TargetSpace, int]:
    tracemalloc.start()
    try:
        space = run(TargetReader([], [str(path)]))  # type: ignore[arg-type]
        return space, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_big_target_file_is_streamed_into_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shuffled lines of a /20, read into one block: peak memory does not grow with
    the lines (the old reader kept a list of them, and a block each: 540 MB for two
    million lines)."""
    monkeypatch.setattr(BlockSet, "CHUNK", 1 << 12)  # merges as often as a big file's
    rng = random.Random(7)
    peaks = []
    for count in (12_000, 48_000):
        path = tmp_path / f"lines{count}"
        lines = (f"198.19.{rng.randrange(16)}.{rng.randrange(256)}\n" for _ in range(count))
        path.write_text("198.19.0.0\n198.19.15.255\n" + "".join(lines) + "198.19.0.0/20\n")
        space, peak = _peak_reading(path)
        assert space.size == 4096 and len(space.blocks) == 1  # .0 and .255 listed too
        peaks.append(peak)
    print(f"peak {peaks[0] / 1e6:.2f} MB for 12,000 lines, {peaks[1] / 1e6:.2f} MB for 48,000")
    assert peaks[1] < 1.5 * peaks[0]
