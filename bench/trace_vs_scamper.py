"""Bench: 1000 lab targets traced concurrently, rawprobe vs scamper, same lab, same run.

    sudo .venv/bin/python bench/trace_vs_scamper.py [--targets 1000] [--runs 5] [--topology NAME]

Runs, alternately, ``rawprobe trace -n --json --file FILE`` (defaults: ICMP Paris, 3
queries per hop, 10,000 packets/s) and ``scamper -c "trace -P icmp-paris" -p 10000
-f FILE`` (one probe per hop unless unanswered) in the lab's client namespace, checks
that every trace completed, and prints both wall times (process start to exit), the
packets each sent, their medians and the ratio. ``--queries 1`` adds a rawprobe run
with one probe per hop, which is what scamper sends. Traffic stays inside the lab.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rawprobe.lab import Lab, lab


def targets(count: int) -> list[str]:
    """``count`` distinct addresses of the target's AnyIP range 198.19.0.0/16."""
    return [f"198.19.{(i + 10) // 250}.{(i + 10) % 250 + 1}" for i in range(count)]


def run_rawprobe(net: Lab, path: str, extra: list[str]) -> tuple[float, int, int]:
    """(wall seconds, complete traces, probes sent)."""
    argv = [sys.executable, "-I", "-m", "rawprobe", "trace", "-n", "--json", "--file", path]
    start = time.monotonic()
    done = net.run("client", *argv, *extra, check=False, timeout=300)
    wall = time.monotonic() - start
    if not done.stdout.startswith("{"):
        raise SystemExit(f"rawprobe failed (exit {done.returncode}): {done.stderr.strip()}")
    traces = json.loads(done.stdout)["traces"]
    return wall, sum(t["complete"] for t in traces), sum(t["probes_sent"] for t in traces)


def run_scamper(net: Lab, path: str) -> tuple[float, int, int]:
    """(wall seconds, complete traces, probes sent)."""
    argv = ["scamper", "-c", "trace -P icmp-paris", "-p", "10000", "-O", "json", "-f", path]
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
    return wall, complete, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", type=int, default=None, help="extra rawprobe run with -q N")
    parser.add_argument(
        "--topology", default="default", help="lab topology: name (rawprobe lab topologies) or file"
    )
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"rawprobe": [], "scamper": []}
    if args.queries:
        figures[f"rawprobe -q {args.queries}"] = []
    with lab(topology=args.topology) as net, tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "targets.txt")
        Path(path).write_text("\n".join(targets(args.targets)) + "\n", encoding="utf-8")
        for run in range(1, args.runs + 1):
            for name in figures:
                if name == "scamper":
                    wall, complete, sent = run_scamper(net, path)
                else:
                    extra = [] if name == "rawprobe" else ["-q", str(args.queries)]
                    wall, complete, sent = run_rawprobe(net, path, extra)
                figures[name].append(wall)
                print(
                    f"run {run} {name:<16} {wall:7.3f} s  complete {complete}/{args.targets}"
                    f"  probes {sent}",
                    flush=True,
                )
    print()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"median {name:<16} {value:7.3f} s")
    for name, value in medians.items():
        if name != "scamper":
            print(f"ratio {name} / scamper = {value / medians['scamper']:.2f}")


if __name__ == "__main__":
    main()
