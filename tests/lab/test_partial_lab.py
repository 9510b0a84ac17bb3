"""Streams and interrupted runs against the real kernel: NDJSON lines leave as hosts are
decided, and SIGINT leaves a partial report that says it is one."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator

import output_check
import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

RAWPROBE = [sys.executable, "-I", "-m", "rawprobe"]
RUNS: list[Run] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    yield
    while RUNS:
        RUNS.pop().close()


class Run:
    """A rawprobe process in the client namespace whose stdout lines are stamped
    (monotonic seconds) as they arrive."""

    def __init__(self, lab: Lab, *args: str) -> None:
        self.proc = lab.popen("client", *RAWPROBE, *args, stdout=-1, stderr=-1, text=True)
        self.lines: list[tuple[float, str]] = []
        self.err = ""
        RUNS.append(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_lines(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.lines) >= count, self.lines

    def finish(self, signum: int | None = None, timeout_s: float = 20.0) -> tuple[int, str]:
        if signum is not None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=timeout_s)
        finally:
            self.close()
        assert self.proc.stderr is not None
        return code, self.err

    def close(self) -> None:
        """Kill the process if it still runs; collect stderr and close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        if not self.proc.stderr.closed:
            self.err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()

    @property
    def text(self) -> list[str]:
        return [line for _t, line in self.lines]


def test_sweep_ndjson_lines_leave_as_hosts_are_decided(lab: Lab) -> None:
    """At 100 probes/s, 126 hosts take 1.3 s to probe: their lines must spread over
    that time, not arrive together at the end (they all did: one send batch)."""
    run = Run(lab, "sweep", "-q", "--ndjson", "--rate", "100", "198.19.5.0/25")
    code, err = run.finish()
    assert code == 0, err
    *hosts, summary = output_check.events(run.text, "sweep")
    assert len(hosts) == summary["hosts_up"] == 126 and not summary["interrupted"]
    spread = run.lines[-2][0] - run.lines[0][0]
    print(f"first to last NDJSON line: {spread:.2f} s")
    assert spread > 0.6, spread


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigint_sweep_ndjson_reports_what_was_decided(lab: Lab, backend: str) -> None:
    run = Run(lab, "--backend", backend, "sweep", "--ndjson", "--all", "--rate", "100",
              "198.19.5.0/24")  # fmt: skip
    run.wait_lines(20)
    code, err = run.finish(signal.SIGINT)
    assert code == 130, err
    *hosts, end = output_check.events(run.text, "sweep")
    assert end["interrupted"] and all(e["event"] == "host" for e in hosts)
    assert len(hosts) >= 20 and end["hosts_up"] + end["hosts_down"] == len(hosts)  # --all
    assert end["hosts_up"] == sum(e["state"] == "up" for e in hosts)
    assert end["hosts_undecided"] == 254 - end["hosts_up"] - end["hosts_down"] > 0
    assert len(hosts) <= end["probes_sent"] < 254  # undrawn targets are not counted
    (summary,) = err.splitlines()  # one line, not wrapped at 80 columns
    assert f"{end['hosts_up']} of 254 hosts up, {end['probes_sent']} probes" in summary
    assert "interrupted:" in summary


def test_sigint_trace_json_holds_the_hops_so_far(lab: Lab) -> None:
    run = Run(lab, "trace", "-n", "-q", "1", "-w", "5", "--json", lab.silent_v4)
    time.sleep(2.0)  # hops 1-3 answer at once; hop 4 and beyond wait 5 s
    code, err = run.finish(signal.SIGINT)
    assert code == 130, err
    document = output_check.document("\n".join(run.text), "trace")
    assert document["summary"]["interrupted"] is True
    (trace,) = document["traces"]
    assert trace["finished"] is False and not trace["reached"]
    answered = [[r["address"] for r in hop["responses"]] for hop in trace["hops"][:3]]
    assert answered == [[router] for router in lab.router_v4[:3]]
    assert all(hop["pending"] == 1 and hop["lost"] == 0 for hop in trace["hops"][3:])


def test_sigint_scan_plain_says_it_was_interrupted(lab: Lab) -> None:
    run = Run(lab, "scan", "-q", "-w", "1", "--rate", "200", "-p", "1-5000", lab.target_v4)
    time.sleep(2.0)
    code, err = run.finish(signal.SIGINT)
    assert code == 130, err
    interrupted = [line for line in run.text if line.startswith("rawprobe interrupted:")]
    assert len(interrupted) == 1 and "of 5,000 ports decided" in interrupted[0]
    assert "Host is up" in "\n".join(run.text)


def test_all_filtered_and_grepable_stdout(lab: Lab) -> None:
    run = Run(lab, "scan", "-q", "-p", "1000-1099", lab.target_v4)
    code, err = run.finish()
    assert code == 0, err
    assert f"All 100 scanned ports on {lab.target_v4} are filtered" in run.text
    run = Run(lab, "scan", "-q", "-p", "22,80,3000-3009", "-oG", "-", lab.target_v4)
    code, err = run.finish()
    assert code == 0, err
    assert all(line.startswith(("#", "Host: ")) for line in run.text), run.text
    assert any("22/open/tcp" in line for line in run.text)
