"""Bench: 1000 lab targets traced concurrently, rawprobe vs scamper, same lab, same run.

    sudo .venv/bin/python bench/trace_vs_scamper.py [--targets 1000] [--runs 5]
        [--topology NAME] [--wait 5,3,10] [--baseline PYTHON] [--defaults]

Each round runs, in the lab's client namespace and one after the other:

- ``scamper -c "trace -P icmp-paris -w 5" -p 10000`` (one probe per hop, retried
  only on silence; 10,000 packets/s is the most scamper accepts, so 0.4 s is its floor
  for the 4000 probes of 1000 four-hop traces);
- ``rawprobe trace -n -q 1 --rate 0`` (no rate cap: its own CPU bounds it);
- ``rawprobe trace -n -q 1`` (its default rate, 10,000 packets/s, as scamper's);
- with ``--defaults``, ``rawprobe trace -n`` (its defaults: 3 queries a hop);
- with ``--baseline PYTHON``, another build's ``rawprobe trace -n -q 1 --rate 0``.

Every rawprobe run gets the same ``-w`` (``--wait``, rawprobe's default spelled out)
and writes JSON; each round checks that every trace completed and reports the kernel's
drops and the retries the run made (both must be 0 for a clean comparison: a retry
waits a whole timeout). Wall times run from process start to exit (start-up
included). The summary prints the median of the rounds for each, side by side, with
the ratio to scamper and the machine's load average. Traffic stays inside the lab.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import baseline

from rawprobe.lab import Lab, lab

SCAMPER = "scamper"
#: (name, the rawprobe arguments after ``trace -n``) of each rawprobe configuration.
FAST = ("rawprobe -q 1 --rate 0", ["-q", "1", "--rate", "0"])
PACED = ("rawprobe -q 1", ["-q", "1"])
DEFAULTS = ("rawprobe (defaults)", [])
BASELINE = "baseline -q 1 --rate 0"


def targets(count: int) -> list[str]:
    """``count`` distinct addresses of the target's AnyIP range 198.19.0.0/16."""
    return [f"198.19.{(i + 10) // 250}.{(i + 10) % 250 + 1}" for i in range(count)]


class Run:
    """One timed run: wall seconds, complete traces, probes sent, retries and kernel
    drops (None where the tool does not say)."""

    def __init__(self, wall: float, complete: int, sent: int, retries: int | None,
                 drops: int | None) -> None:  # fmt: skip
        self.wall, self.complete, self.sent = wall, complete, sent
        self.retries, self.drops = retries, drops


def run_rawprobe(net: Lab, python: str, path: str, extra: list[str], wait: str) -> Run:
    argv = [python, "-I", "-m", "rawprobe", "trace", "-n", "--json", "--file", path, "-w", wait]
    start = time.monotonic()
    done = net.run("client", *argv, *extra, check=False, timeout=300)
    wall = time.monotonic() - start
    if not done.stdout.startswith("{"):
        raise SystemExit(f"rawprobe failed (exit {done.returncode}): {done.stderr.strip()}")
    document: dict[str, Any] = json.loads(done.stdout)
    traces = document["traces"]
    summary = document.get("summary", {})
    counters = summary.get("counters") or {}
    retries = summary.get("retries")
    if retries is None:  # (a build before the summary said it)
        retries = sum(max(0, h["sent"] - 1) for t in traces for h in t["hops"]) if (
            "-q" in extra and extra[extra.index("-q") + 1] == "1") else None  # fmt: skip
    return Run(
        wall,
        sum(t["complete"] for t in traces),
        sum(t["probes_sent"] for t in traces),
        retries,
        counters.get("kernel_drops"),
    )


def run_scamper(net: Lab, path: str, wait_s: int) -> Run:
    argv = [SCAMPER, "-c", f"trace -P icmp-paris -w {wait_s}", "-p", "10000", "-O", "json",
            "-f", path]  # fmt: skip
    start = time.monotonic()
    done = net.run("client", *argv, check=False, timeout=300)
    wall = time.monotonic() - start
    complete = sent = 0
    for line in done.stdout.splitlines():
        record = json.loads(line)
        if record.get("type") != "trace":
            continue
        sent += record.get("probe_count", 0)
        hops = {hop["probe_ttl"] for hop in record.get("hops", [])}
        reached = record.get("stop_reason") == "COMPLETED"
        if reached and hops >= set(range(1, record.get("hop_count", 0) + 1)):
            complete += 1
    return Run(wall, complete, sent, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--wait", default="5,3,10", help="rawprobe's -w, every round")
    parser.add_argument("--defaults", action="store_true", help="also rawprobe's defaults")
    parser.add_argument(
        "--topology", default="default", help="lab topology: name (rawprobe lab topologies) or file"
    )
    baseline.add_option(parser)
    args = parser.parse_args()
    configs: list[tuple[str, str, list[str]]] = [(SCAMPER, "", [])]
    configs += [(FAST[0], sys.executable, FAST[1]), (PACED[0], sys.executable, PACED[1])]
    if args.defaults:
        configs.append((DEFAULTS[0], sys.executable, DEFAULTS[1]))
    if args.baseline:
        configs.append((BASELINE, args.baseline, FAST[1]))
    scamper_wait = max(1, round(float(args.wait.replace("/", ",").split(",")[0])))
    runs: dict[str, list[Run]] = {name: [] for name, _, _ in configs}
    loads: list[float] = []
    clean = True
    with lab(topology=args.topology) as net, tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "targets.txt")
        Path(path).write_text("\n".join(targets(args.targets)) + "\n", encoding="utf-8")
        print(f"{args.targets} targets; rawprobe -w {args.wait}, scamper -w {scamper_wait}")
        for number in range(1, args.runs + 1):
            loads.append(os.getloadavg()[0])
            for name, python, extra in configs:
                if name == SCAMPER:
                    run = run_scamper(net, path, scamper_wait)
                else:
                    run = run_rawprobe(net, python, path, extra, args.wait)
                runs[name].append(run)
                flags = ""
                if run.complete != args.targets or run.retries or run.drops:
                    flags = "  <- not a clean run"
                    clean = clean and name in (BASELINE, DEFAULTS[0])
                print(
                    f"run {number} {name:<24} {run.wall:7.3f} s  complete {run.complete}"
                    f"/{args.targets}  probes {run.sent:6}  retries {_count(run.retries)}"
                    f"  kernel drops {_count(run.drops)}  (load {loads[-1]:.2f}){flags}",
                    flush=True,
                )
    walls = {name: [r.wall for r in found] for name, found in runs.items()}
    scamper = statistics.median(walls[SCAMPER])
    print(f"\nmedians of {args.runs} rounds (1-minute load average: median "
          f"{statistics.median(loads):.2f}, {min(loads):.2f}-{max(loads):.2f})")  # fmt: skip
    print(f"{'':<24} {'median':>8} {'min':>7} {'max':>7} {'x scamper':>10}")
    for name, values in walls.items():
        median = statistics.median(values)
        print(
            f"{name:<24} {median:7.3f}s {min(values):6.3f}s {max(values):6.3f}s"
            f" {median / scamper:10.2f}"
        )
    fast, paced = statistics.median(walls[FAST[0]]), statistics.median(walls[PACED[0]])
    print(f"\n{FAST[0]} within scamper's time: {'yes' if fast <= scamper else 'NO'}")
    print(f"{PACED[0]} within 1.5 x scamper's time: {'yes' if paced <= 1.5 * scamper else 'NO'}")
    print(f"every rawprobe run complete, 0 retries, 0 kernel drops: {'yes' if clean else 'NO'}")
    if args.baseline:
        baseline.report(walls[FAST[0]], walls[BASELINE], scamper)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


if __name__ == "__main__":
    main()
