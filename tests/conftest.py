"""Shared pytest fixtures; the lab fixtures live in tests/lab_fixture.py."""

import pytest
from lab_fixture import lab, lab_required  # noqa: F401


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every anyio test runs on both backends."""
    return str(request.param)
