"""Full-range SYN scan: rawprobe against nmap (and masscan, when installed) in one run.

Builds a lab, then alternates, round after round, in the lab's client namespace:

    rawprobe scan -p- --rate 0 --json TARGET
    nmap -sS -p- -T4 -n -Pn -oG - TARGET
    masscan -p1-65535 --rate R --wait W TARGET   (only if masscan is on PATH)

Each is timed as a whole process (wall clock, startup included). Prints every round,
then the medians, the ratio rawprobe/nmap (the goal is <= 0.5) and whether each tool
found exactly the lab's open ports. Root only; every packet stays inside the lab.

    sudo .venv/bin/python bench/scan_vs_nmap.py [--rounds 5] [-6] [--masscan-rate 10000]
        [--baseline OTHER/.venv/bin/python]

``--baseline`` also times another build of rawprobe (the interpreter of its checkout) in
every round, beside this one and nmap, and prints both ratios and their change: the
before/after figure of a change, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import time

import baseline  # (bench/baseline.py: the script's folder is on the path)

from rawprobe.lab import Lab, lab

_NMAP_OPEN = re.compile(r"(\d+)/open/tcp")
_MASSCAN_OPEN = re.compile(r"Discovered open port (\d+)/tcp")


def timed(the_lab: Lab, *argv: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = the_lab.run("client", *argv, timeout=600)
    return time.perf_counter() - start, done.stdout


def rawprobe_round(
    the_lab: Lab, target: str, python: str = sys.executable
) -> tuple[float, set[int], dict[str, object]]:
    seconds, out = timed(
        the_lab, python, "-I", "-m", "rawprobe", "scan", "-p-", "--rate", "0", "--json", target
    )
    document = json.loads(out)
    (host,) = document["hosts"]
    found = {p["port"] for p in host["ports"] if p["state"] == "open"}
    return seconds, found, document


def nmap_round(the_lab: Lab, target: str) -> tuple[float, set[int]]:
    argv = ["nmap", "-sS", "-p-", "-T4", "-n", "-Pn", "-oG", "-", target]
    if ":" in target:
        argv.insert(1, "-6")
    seconds, out = timed(the_lab, *argv)
    return seconds, {int(port) for port in _NMAP_OPEN.findall(out)}


def masscan_round(the_lab: Lab, target: str, rate: int, wait_s: int) -> tuple[float, set[int]]:
    """masscan 1.3.2 never exits inside a network namespace (its issue #144: the
    receive thread keeps waiting, the status line counts "waiting -1-secs"...), so its
    time is taken when that status line first reaches "waiting 0-secs" (the moment it
    should exit), and the process is then killed."""
    argv = ["masscan", "-p1-65535", "--rate", str(rate), "--wait", str(wait_s), target]
    start = time.perf_counter()
    proc = the_lab.popen("client", *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None and proc.stdout is not None
    seconds = math.nan
    status = b""
    try:
        while chunk := proc.stderr.read1(4096):
            status = (status + chunk)[-256:]
            if b"waiting 0-secs" in status or b"waiting -" in status:
                seconds = time.perf_counter() - start
                break
        if math.isnan(seconds):
            seconds = time.perf_counter() - start  # it did exit (a fixed masscan)
    finally:
        proc.kill()
        out = proc.stdout.read().decode()
        proc.wait()
    return seconds, {int(port) for port in _MASSCAN_OPEN.findall(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-6", dest="v6", action="store_true", help="IPv6 target")
    parser.add_argument("--masscan-rate", type=int, default=10000)
    parser.add_argument("--masscan-wait", type=int, default=1, help="masscan --wait (s)")
    baseline.add_option(parser)
    args = parser.parse_args()
    use_masscan = shutil.which("masscan") is not None

    with lab() as the_lab:
        target = the_lab.target_v6 if args.v6 else the_lab.target_v4
        truth = set(the_lab.open_ports)
        ours: list[float] = []
        nmaps: list[float] = []
        masscans: list[float] = []
        baselines: list[float] = []
        exact = {"rawprobe": 0, "nmap": 0, "masscan": 0}
        print(f"target {target}, open ports {sorted(truth)}, {args.rounds} rounds")
        for number in range(1, args.rounds + 1):
            a, found_a, document = rawprobe_round(the_lab, target)
            b, found_b = nmap_round(the_lab, target)
            ours.append(a)
            nmaps.append(b)
            exact["rawprobe"] += found_a == truth
            exact["nmap"] += found_b == truth
            summary = document["summary"]  # (rawprobe/2)
            totals = summary["state_totals"]
            line = (
                f"round {number}: rawprobe {a:6.2f} s ({len(found_a)} open, states {totals},"
                f" peak {summary['timing']['peak_rate_pps']:,} pps)  nmap {b:6.2f} s"
                f" ({len(found_b)} open)  ratio {a / b:.2f}"
            )
            if args.baseline:
                base_s, found_base, _ = rawprobe_round(the_lab, target, args.baseline)
                baselines.append(base_s)
                line += f"  baseline {base_s:6.2f} s ({len(found_base)} open)"
            if use_masscan:
                c, found_c = masscan_round(the_lab, target, args.masscan_rate, args.masscan_wait)
                masscans.append(c)
                exact["masscan"] += found_c == truth
                line += f"  masscan {c:6.2f} s ({len(found_c)} open)"
            print(line, flush=True)
        ours_median, nmap_median = statistics.median(ours), statistics.median(nmaps)
        print()
        rounds = args.rounds
        print(f"rawprobe median {ours_median:.2f} s   exact open set {exact['rawprobe']}/{rounds}")
        print(f"nmap     median {nmap_median:.2f} s   exact open set {exact['nmap']}/{rounds}")
        print(f"ratio rawprobe/nmap {ours_median / nmap_median:.2f} (goal <= 0.50)")
        baseline.report(ours, baselines, nmap_median)
        if use_masscan:
            masscan_median = statistics.median(masscans)
            print(
                f"masscan  median {masscan_median:.2f} s at {args.masscan_rate} pps"
                f" (--wait {args.masscan_wait})   exact open"
                f" set {exact['masscan']}/{args.rounds}   ratio rawprobe/masscan"
                f" {ours_median / masscan_median:.2f}"
            )
        else:
            print("masscan: not installed, skipped")


if __name__ == "__main__":
    main()
