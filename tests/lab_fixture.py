"""The session-wide network-namespace lab (see rawprobe/lab.py and DESIGN.md section 5).

``lab`` builds one lab for the whole session and tears it down at the end, whatever
happens in between. ``lab_required`` applies the skip policy alone, for tests that
build labs of their own: when no lab can be built the test is skipped, unless
``RAWPROBE_LAB=required`` (CI), where it fails.

Tests that use these fixtures are marked ``@pytest.mark.lab``. Tests must leave the
shared lab as they found it (e.g. restore ICMP rate limits, ping_group_range).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from rawprobe.lab import Lab, check_lab_possible
from rawprobe.lab import lab as build_lab


@pytest.fixture(scope="session")
def lab_required() -> None:
    """Skip (or, with RAWPROBE_LAB=required, fail) when a lab cannot be built here."""
    reason = check_lab_possible()
    if reason is None:
        return
    if os.environ.get("RAWPROBE_LAB") == "required":
        pytest.fail(f"RAWPROBE_LAB=required but no lab can be built: {reason}")
    pytest.skip(f"lab unavailable: {reason}")


@pytest.fixture(scope="session")
def lab(lab_required: None) -> Iterator[Lab]:
    """One lab shared by the session; torn down at session end even on failure."""
    with build_lab() as built:
        yield built
