"""Lazy random permutations of a target space, shardable without coordination.

Like zmap's cyclic.c: the multiplicative group of integers modulo a prime ``p`` just
above the space size is cyclic; walking it from a random start by a random generator
visits every element of 1..p-1 exactly once in an order that looks random, keeping
one integer of state. Elements above the space size are skipped. Shard ``i`` of ``n``
takes the walk's steps ``i, i+n, i+2n, ...`` (step ``g**n``), so ``n`` machines with
the same seed cover the space exactly once between them, without talking.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from rawprobe.errors import UsageError

#: Spaces up to this size (2**40 addresses: a /24 of IPv6 /64s' worth of hosts is
#: far beyond any sweep) keep p - 1 factorable by trial division (``_prime_factors``).
MAX_SPACE = 1 << 40

#: A shard's exact length is counted by walking its part of the cycle up to this many
#: steps (about 0.1 s, with no checkpoint for Ctrl-C); beyond, ``size_hint`` gives the
#: expected length.
EXACT_COUNT_STEPS = 1 << 20


def check_space(size: int, what: str = "target space", unit: str = "addresses") -> None:
    """Raise UsageError unless a permutation of ``size`` elements can be made (for
    callers that must refuse a space before work starts, e.g. before forking)."""
    if not 0 < size <= MAX_SPACE:
        raise UsageError(f"{what} of {size:,} {unit}: the limit is {MAX_SPACE:,} (2**40)")


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for q in small:
        if n % q == 0:
            return n == q
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime_factors(n: int) -> set[int]:
    """Distinct prime factors, by trial division: ``n`` is at most MAX_SPACE, so at most
    2**19 odd divisors are tried (~60 ms in the worst case, once per permutation)."""
    factors: set[int] = set()
    divisor = 2
    while divisor * divisor <= n:
        while n % divisor == 0:
            factors.add(divisor)
            n //= divisor
        divisor += 1 if divisor == 2 else 2
    if n > 1:
        factors.add(n)
    return factors


class Permutation:
    """A random order of ``range(size)``, reproducible from ``seed``, optionally one
    shard of it. Iterating yields each index of the shard exactly once."""

    def __init__(self, size: int, seed: int | None = None, shard: int = 0, shards: int = 1) -> None:
        check_space(size)
        if not 0 <= shard < shards:
            raise UsageError(f"bad shard {shard}/{shards}: need 0 <= I < N")
        self.size = size
        self.shard = shard
        self.shards = shards
        rng = random.Random(seed)
        prime = size + 1 if size > 1 else 2
        while not _is_prime(prime) or prime < 3:
            prime += 1
        self.prime = prime
        order = prime - 1
        factors = _prime_factors(order)
        while True:  # a random primitive root
            candidate = rng.randrange(2, prime) if prime > 3 else 2
            if all(pow(candidate, order // q, prime) != 1 for q in factors):
                break
        self.generator = candidate
        self.start = rng.randrange(1, prime)

    def __iter__(self) -> Iterator[int]:
        prime, size = self.prime, self.size
        step = pow(self.generator, self.shards, prime)
        element = self.start * pow(self.generator, self.shard, prime) % prime
        steps = len(range(self.shard, prime - 1, self.shards))
        for _ in range(steps):
            if element <= size:
                yield element - 1
            element = element * step % prime

    def __len__(self) -> int:
        """How many indices this shard yields (exact for one shard; counted otherwise,
        which walks the shard's part of the cycle: see ``size_hint`` for huge spaces)."""
        if self.shards == 1:
            return self.size
        return sum(1 for _ in self)

    def size_hint(self) -> int:
        """``len(self)`` when it is cheap (one shard, or a walk of at most
        EXACT_COUNT_STEPS steps), else the expected length of the shard: progress bars
        and totals of huge sharded spaces never walk 2**40 steps first."""
        steps = len(range(self.shard, self.prime - 1, self.shards))
        if self.shards == 1 or steps <= EXACT_COUNT_STEPS:
            return len(self)
        return self.size * steps // (self.prime - 1)
