"""The library guide's examples (docs/examples/, shown on the site as they are) run
against the lab and print what the guide says they find: asyncio and trio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def run_example(lab: Lab, name: str) -> list[str]:
    # -I: the installed package, not the repository's rawprobe/ folder.
    done = lab.run("client", sys.executable, "-I", str(EXAMPLES / name), check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    lines: list[str] = done.stdout.splitlines()
    return lines


def test_the_asyncio_example(lab: Lab) -> None:
    ping, path, scan = run_example(lab, "library_asyncio.py")
    assert ping == "ping: 3 of 3 replies"
    assert path == "path: " + " ".join([*lab.router_v4, lab.target_v4])
    assert scan == f"open on {lab.target_v4}: 22,80,443"


def test_the_trio_example(lab: Lab) -> None:
    sweep, pinged, *traces = run_example(lab, "library_trio.py")
    assert sweep == "sweep: 14 of 14 up"  # (a /28 less its network and broadcast addresses)
    assert pinged == "pinged: " + " ".join(f"198.19.0.{i}=2" for i in range(1, 5))
    assert sorted(traces) == sorted(
        f"trace {target}: 4 hops, reached True" for target in (lab.target_v4, lab.target_v6)
    )
