"""A sweep of a /88 (2**40 addresses, the limit) against the real kernel: its peak RSS
is that of a million-address sweep of the same /64, and Ctrl-C stops it at once.

It died of a MemoryError (two bitmaps of 2**40 bits); a /96 reached 2.1 GB and ignored
Ctrl-C for 40 s. Neither sweep can finish (a /88 at 20,000 probes/s takes 630 days):
both run the same bounded time at the same rate, then get SIGINT. The lab's target
answers for its whole /64, so every probe finds a host and the alive set grows as
fast as it can.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

RUN_S = 2.5


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")  # pragma: no cover


def _sweep_then_interrupt(lab: Lab, network: str) -> tuple[int, float, int, str]:
    """(peak RSS in kB just before SIGINT, seconds from SIGINT to exit, hosts up,
    stderr) of a one-process sweep of ``network`` at 20,000 probes/s."""
    command = [sys.executable, "-I", "-m", "rawprobe", "sweep", "-q", "-w", "1"]
    proc = lab.popen(
        "client", *command, "--rate", "20000", network,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(RUN_S)
        assert proc.poll() is None, proc.communicate()
        peak = _peak_rss_kb(proc.pid)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        stopped = time.monotonic() - signalled
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    return peak, stopped, len(out.split()), err


def test_a_88_peaks_no_higher_than_a_million_addresses_and_stops_promptly(lab: Lab) -> None:
    huge = _sweep_then_interrupt(lab, "2001:db8:ff::/88")
    million = _sweep_then_interrupt(lab, "2001:db8:ff::/108")
    print(f"/88: peak {huge[0]} kB, stop {huge[1]:.2f} s, {huge[2]} up")
    print(f"/108: peak {million[0]} kB, stop {million[1]:.2f} s, {million[2]} up")
    assert huge[2] > 1000 and million[2] > 1000, (huge, million)  # both really swept
    assert huge[0] <= million[0] + 4096, (huge[0], million[0])  # kB: a 4 MB margin
    assert huge[1] < 3.0 and million[1] < 3.0  # measured: about 0.2 s


def test_a_failing_route_lookup_is_one_line_before_the_workers(lab_required: None) -> None:
    """In a namespace with no route at all, the lookup fails in the parent (it failed in
    each worker, with a traceback from each)."""
    command = [sys.executable, "-I", "-m", "rawprobe", "sweep", "-q", "-w", "2", "2001:db8::/120"]
    done = subprocess.run(
        ["unshare", "--net", *command], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "2001:db8::" in lines[0]
