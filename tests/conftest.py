"""Shared pytest fixtures; the lab fixtures live in tests/lab_fixture.py."""

import pytest
from hypothesis import settings
from lab_fixture import lab, lab_required  # noqa: F401

# No per-example deadline: on shared CI machines a slow example is noise, not a bug
# (the project asserts no timings in tests; performance is measured in bench/).
settings.register_profile("rawprobe", deadline=None)
settings.load_profile("rawprobe")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every anyio test runs on both backends."""
    return str(request.param)
