"""Start-up: wall time of ``rawprobe --version`` and of a one-probe ping, beside the floor.

Builds a lab, then runs every command through ``ip netns exec`` in the client namespace
(not ``rawprobe lab exec``, itself a Python process), interleaved, ``--runs`` times after
``--warmup`` runs, and prints each one's median and minimum wall time, interpreter
included: ``rawprobe --version``, ``rawprobe ping -c 1`` to the lab target, iputils'
``ping -c 1``, and the floor (``python -c pass``, with ``-S``, ``-I``, and what asyncio
and anyio cost before a probe module is imported). Then ``python -X importtime``'s ten
largest imports (self time) of both rawprobe commands.

Warm means what an installed package has: bytecode cached. The commands run without
PYTHONDONTWRITEBYTECODE (the warm-up runs write the caches of an editable install) and
with a warm page cache. Root only; every packet stays inside the lab this script builds.

    sudo .venv/bin/python bench/startup.py [--runs 20] [--baseline OTHER/.venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rawprobe.lab import lab

GOAL_S = 0.12


def wall_s(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()}")
    return took


def largest_imports(argv: list[str], env: dict[str, str], count: int = 10) -> list[str]:
    """``-X importtime``'s ``count`` largest imports by self time (µs self | cumulative)."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        rows.append((int(self_us), int(cumulative_us), name.strip()))
    rows.sort(reverse=True)
    return [f"{s:7d} us self {c:7d} us cumulative  {name}" for s, c, name in rows[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--baseline",
        metavar="PYTHON",
        help="also time this build's rawprobe (its bytecode caches are written: use a copy)",
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    python = sys.executable
    rawprobe = str(Path(python).parent / "rawprobe")

    with lab() as the_lab:
        netns = ["ip", "netns", "exec", the_lab.ns("client")]
        target = the_lab.target_v4
        cases = {
            "rawprobe --version": [rawprobe, "--version"],
            "rawprobe ping -c 1": [rawprobe, "ping", "-c", "1", target],
            "iputils ping -c 1": ["ping", "-n", "-c", "1", target],
            "python -c pass": [python, "-c", "pass"],
            "python -S -c pass": [python, "-S", "-c", "pass"],
            "python -I -c pass": [python, "-I", "-c", "pass"],
            "python -I -S -c pass": [python, "-I", "-S", "-c", "pass"],
            "python: import asyncio": [python, "-I", "-c", "import asyncio"],
            "python: anyio.run(sleep 0)": [
                python, "-I", "-c", "import anyio; anyio.run(anyio.sleep, 0)",
            ],
        }  # fmt: skip
        if args.baseline:
            other = str(Path(args.baseline).parent / "rawprobe")
            cases["baseline --version"] = [other, "--version"]
            cases["baseline ping -c 1"] = [other, "ping", "-c", "1", target]
        times: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(args.warmup + args.runs):
            for name, argv in cases.items():  # interleaved: every case sees the same load
                took = wall_s([*netns, *argv], env)
                if round_ >= args.warmup:
                    times[name].append(took)
        imports = {
            command: largest_imports([*netns, python, "-X", "importtime", *argv], env)
            for command, argv in (
                ("rawprobe --version", [rawprobe, "--version"]),
                ("rawprobe ping -c 1", [rawprobe, "ping", "-c", "1", target]),
            )
        }

    print(f"{args.runs} warm runs each under ip netns exec, interleaved (median, min):")
    for name, values in times.items():
        median, fastest = statistics.median(values) * 1000, min(values) * 1000
        print(f"  {name:28} {median:7.1f} ms  {fastest:7.1f} ms")
    for name in ("rawprobe --version", "rawprobe ping -c 1"):
        median = statistics.median(times[name])
        verdict = "meets" if median <= GOAL_S else "misses"
        print(f"{name}: median {median * 1000:.1f} ms {verdict} the {GOAL_S * 1000:.0f} ms goal")
    floor = statistics.median(times["python: anyio.run(sleep 0)"])
    ping = statistics.median(times["rawprobe ping -c 1"])
    print(f"ping above the anyio floor (asyncio + anyio.run): {(ping - floor) * 1000:+.1f} ms")
    for command, rows in imports.items():
        print(f"\n-X importtime, {command}: ten largest imports")
        for row in rows:
            print(f"  {row}")


if __name__ == "__main__":
    main()
