import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe.errors import UsageError
from rawprobe.probes.permute import Permutation


@given(st.integers(1, 3000), st.integers(0, 2**32))
@settings(max_examples=60)
def test_every_index_exactly_once(size: int, seed: int) -> None:
    order = list(Permutation(size, seed))
    assert sorted(order) == list(range(size))


def test_same_seed_same_order_other_seed_other_order() -> None:
    assert list(Permutation(1000, 1)) == list(Permutation(1000, 1))
    assert list(Permutation(1000, 1)) != list(Permutation(1000, 2))


def test_order_is_not_sequential() -> None:
    order = list(Permutation(65536, 7))
    ascending_steps = sum(1 for a, b in itertools.pairwise(order) if b == a + 1)
    assert ascending_steps < 100


def test_four_shards_cover_a_16_exactly_once() -> None:
    seen: list[int] = []
    for shard in range(4):
        part = list(Permutation(65536, seed=1, shard=shard, shards=4))
        assert 15000 < len(part) < 17800  # roughly a quarter each
        seen += part
    assert len(seen) == 65536 and len(set(seen)) == 65536


@pytest.mark.parametrize("size", [0, 2**41])
def test_space_size_limits(size: int) -> None:
    with pytest.raises(UsageError):
        Permutation(size)


def test_bad_shard() -> None:
    with pytest.raises(UsageError):
        Permutation(10, shard=4, shards=4)
