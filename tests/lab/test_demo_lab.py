"""The README's first command: the demo builds its own lab, probes it, cleans up."""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lab


def test_demo_passes_every_check_and_leaves_no_namespace(lab_required: None) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-m", "rawprobe", "demo"],
        capture_output=True, text=True, timeout=120, cwd="/", check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    verdicts = [line for line in done.stdout.splitlines() if line.startswith(("ok ", "NOT "))]
    assert len(verdicts) == 7 and all(line.startswith("ok") for line in verdicts)
    prefix = re.search(r"^lab (rp\w+) up in", done.stdout, re.MULTILINE)
    assert prefix is not None, done.stdout[:500]
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{prefix[1]}-" not in left  # the demo tore its lab down
