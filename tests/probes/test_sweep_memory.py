"""A sweep's memory follows the hosts that answer, not the size of the space.

IndexSet holds the alive indices: offsets while few, a bitmap once that is smaller.
The machine keeps no per-space record (a /88 is 2**40 addresses: its bitmaps were
137 GB and the sweep died of a MemoryError), nor does the permutation.
"""

from __future__ import annotations

import functools
import pickle
import socket
import tracemalloc
from array import array

from hypothesis import given
from hypothesis import strategies as st

from rawprobe.probes.permute import Permutation
from rawprobe.probes.sweep import IndexSet, SweepMachine, SweepOptions, merge_outcomes
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import Cookies


@given(st.integers(1, 5000), st.lists(st.integers(0, 10**6), max_size=300))
def test_index_set_is_a_set(size: int, values: list[int]) -> None:
    members = [value % size for value in values]
    indices = IndexSet(size, members)
    assert list(indices) == sorted(set(members))
    assert len(indices) == len(set(members))
    assert all(member in indices for member in members)
    assert size not in indices and -1 not in indices
    clone = pickle.loads(pickle.dumps(indices))
    assert list(clone) == list(indices) and clone.is_dense == indices.is_dense


@given(
    st.integers(1, 3000),
    st.lists(st.integers(0, 10**6), max_size=200),
    st.lists(st.integers(0, 10**6), max_size=200),
)
def test_index_set_union(size: int, left: list[int], right: list[int]) -> None:
    a = IndexSet(size, (value % size for value in left))
    b = IndexSet(size, (value % size for value in right))
    a.update(b)
    assert list(a) == sorted({value % size for value in left + right})


def test_index_set_takes_the_smaller_representation() -> None:
    sparse = IndexSet(1 << 40, range(0, 1 << 40, 1 << 24))  # 65,536 members of a /88
    assert not sparse.is_dense and sparse.nbytes == 8 * 65536
    dense = IndexSet(65534, range(0, 65534, 2))  # half of a /16
    assert dense.is_dense and dense.nbytes == 8192 and len(dense) == 32767
    assert list(dense)[:3] == [0, 2, 4]


def _echo_reply(key: tuple[object, ...], now: float) -> Reply:
    destination = key[1]
    assert isinstance(destination, bytes)
    return Reply(key, socket.AF_INET6, destination, b"\x81\x00" + bytes(14), 64, 0, now, 58)


def _sweep_rounds(space: TargetSpace, rounds: int) -> tuple[SweepMachine, int]:
    """Drive a machine by hand: every other probe is answered, the rest time out."""
    options = SweepOptions(retries=0, timeout_s=0.5, outage_budget_s=0)
    machine = SweepMachine(
        space, iter(Permutation(space.size, 1)), options,
        source_for=lambda _address: "2001:db8:1::2", ident=1, cookies=Cookies(),
    )  # fmt: skip
    now, answered = 0.0, 0
    for _ in range(rounds):
        batch = machine.poll(now)
        keys = [outgoing.key for outgoing in batch]
        machine.sent_batch(keys, [Sent(0, now)] * len(keys), now)
        replies = [_echo_reply(key, now) for key in keys[::2]]
        machine.receive_batch(replies, now)
        answered += len(replies)
        now += 1.0  # the others expire at the next poll
    machine.poll(now)
    return machine, answered


def test_a_88_sweep_keeps_memory_per_answer_not_per_address() -> None:
    """The old machine allocated two bitmaps of 2**40 bits (MemoryError)."""
    space = TargetSpace.parse(["2001:db8:ff::/88"])
    assert space.size == 1 << 40
    tracemalloc.start()
    try:
        machine, answered = _sweep_rounds(space, 40)
        result = merge_outcomes(space, [machine.outcome(100.0), machine.outcome(100.0)])
        alive = list(result.iter_alive())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answered == 40 * 128 and machine.alive_count == answered
    assert machine.decided_count == 40 * 256
    assert result.alive_count == answered and len(alive) == answered
    assert alive == sorted(alive, key=functools.partial(socket.inet_pton, socket.AF_INET6))
    # 5,120 answers (8 bytes each), the addresses' text and the probes in flight.
    assert peak < 4 << 20, f"peak {peak / 1e6:.1f} MB"
    outcome = pickle.dumps(machine.outcome(100.0))
    assert len(outcome) < 100_000  # what a worker sends back through its pipe


def test_the_88_and_a_million_address_sweep_cost_the_same() -> None:
    peaks = []
    for network in ("2001:db8:ff::/88", "2001:db8:ff::/108"):
        tracemalloc.start()
        try:
            _sweep_rounds(TargetSpace.parse([network]), 20)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    huge, million = peaks
    assert huge < million * 1.5 + (256 << 10), peaks


def test_the_permutation_of_a_88_is_a_few_integers() -> None:
    tracemalloc.start()
    try:
        order = Permutation(1 << 40, seed=3, shard=1, shards=2)
        walk = iter(order)
        first = [next(walk) for _ in range(1000)]
        hint = order.size_hint()  # never walks 2**39 steps
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(set(first)) == 1000 and all(0 <= i < 1 << 40 for i in first)
    assert abs(hint - (1 << 39)) < 1 << 20
    assert peak < 200_000


def test_size_hint_is_exact_for_walkable_shards() -> None:
    for shards in (1, 3):
        for shard in range(shards):
            order = Permutation(70_000, seed=5, shard=shard, shards=shards)
            assert order.size_hint() == len(order) == len(list(order))


@given(st.integers(1, 3000), st.lists(st.integers(0, 10**6), max_size=300), st.booleans())
def test_index_set_extend(size: int, values: list[int], dense_first: bool) -> None:
    indices = IndexSet(size, range(0, size, 2) if dense_first else ())
    indices.extend(array("Q", (value % size for value in values)))
    expected = {value % size for value in values} | (
        set(range(0, size, 2)) if dense_first else set()
    )
    assert list(indices) == sorted(expected) and len(indices) == len(expected)
