"""Shared pytest fixtures; the lab fixtures live in tests/lab_fixture.py."""

import functools
from collections.abc import Iterator

import pytest
from hypothesis import settings
from lab_fixture import lab, lab_required, lossy_branch, topology_lab  # noqa: F401

# No per-example deadline: on shared CI machines a slow example is noise, not a bug
# (the project asserts no timings in tests; performance is measured in bench/).
settings.register_profile("rawprobe", deadline=None)
settings.load_profile("rawprobe")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every anyio test runs on both backends."""
    return str(request.param)


async def _no_name(_address: str) -> None:
    return None


@pytest.fixture(autouse=True)
def _no_reverse_dns_outside(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Traffic rule: a CLI trace run in-process without -n would ask the host's resolver
    (its names are for addresses of simulated networks anyway). Here every lookup says
    "no name" at once; tests of names pass their own lookup or a resolver in the lab
    (subprocesses started with ``ip netns exec`` read the lab's resolv.conf)."""
    from rawprobe import rdns
    from rawprobe.cli import trace_cmd

    quiet = functools.partial(rdns.ReverseNames, lookup=_no_name, hosts=None)
    monkeypatch.setattr(trace_cmd, "ReverseNames", quiet, raising=False)
    yield
