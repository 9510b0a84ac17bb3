"""Host sweep: rawprobe against fping (and icmplib) on the lab's /16, side by side.

Builds a lab, then alternates rounds of
  fping -g 198.19.0.0/16 -a -q -r 1 -i 0 -t 500
  rawprobe sweep --rate 0 --json 198.19.0.0/16
inside the lab's client namespace (wall time of each whole command, startup
included, with rawprobe's drop counters), then one rawprobe sweep at the default rate
(10,000 packets/s) with its drop counters; with --icmplib it runs icmplib's
async_multiping on the same /16 once (it is slow). Prints the medians, the hosts each
found and the ratios. With --v6 it also sweeps
1,048,576 addresses of the lab's IPv6 /64 and reports probes/s and peak RSS.
Root only; every packet stays inside the lab this script builds.

    sudo .venv/bin/python bench/sweep_vs_fping.py [--rounds 5] [--icmplib] [--v6]
        [--baseline OTHER/.venv/bin/python]

``--baseline`` also times another build of rawprobe (the interpreter of its checkout) in
every round, beside this one and fping, and prints both ratios and their change: the
before/after figure of a change, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import textwrap
import time
from typing import Any

import baseline  # (bench/baseline.py: the script's folder is on the path)

from rawprobe.lab import Lab, lab
from rawprobe.transport.pacing import DEFAULT_RATE_PPS

NETWORK = "198.19.0.0/16"
V6_MILLION = "2001:db8:ff::/108"  # 2**20 addresses of the target's /64

ICMPLIB = textwrap.dedent(
    """
    import ipaddress, sys, time
    from icmplib import async_multiping
    import asyncio
    hosts = [str(a) for a in ipaddress.ip_network(sys.argv[1]).hosts()]
    start = time.monotonic()
    results = asyncio.run(async_multiping(hosts, count=1, interval=0, timeout=1,
                                          concurrent_tasks=10000, privileged=True))
    print(sum(r.is_alive for r in results), time.monotonic() - start)
    """
)


def timed(the_lab: Lab, *argv: str) -> tuple[float, str]:
    start = time.monotonic()
    done = the_lab.run("client", *argv, check=False, timeout=600)
    return time.monotonic() - start, done.stdout


def fping(the_lab: Lab) -> tuple[float, int]:
    seconds, out = timed(
        the_lab, "fping", "-g", NETWORK, "-a", "-q", "-r", "1", "-i", "0", "-t", "500"
    )
    return seconds, len(out.split())


def rawprobe(
    the_lab: Lab, target: str = NETWORK, rate: int = 0, python: str = sys.executable
) -> tuple[float, int, dict[str, Any]]:
    command = [python, "-I", "-m", "rawprobe", "sweep", "--rate", str(rate), "--json"]
    seconds, out = timed(the_lab, *command, target)
    document = json.loads(out)
    summary = baseline.summary(document)
    return seconds, int(summary["hosts_up"]), summary


def _drops(summary: dict[str, Any]) -> str:
    """The transport's loss counters: replies the kernel dropped (SO_RXQ_OVFL) and
    replies that overflowed a probe's inbox."""
    counters = summary["counters"]
    return f"kernel drops {counters['kernel_drops']}, inbox overflow {counters['inbox_overflow']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--icmplib", action="store_true", help="also run icmplib once")
    parser.add_argument("--v6", action="store_true", help="also sweep 2**20 IPv6 addresses")
    baseline.add_option(parser)
    args = parser.parse_args()

    fping_s: list[float] = []
    rawprobe_s: list[float] = []
    baseline_s: list[float] = []
    with lab() as the_lab:
        for round_number in range(1, args.rounds + 1):
            f_s, f_found = fping(the_lab)
            r_s, r_found, summary = rawprobe(the_lab)
            fping_s.append(f_s)
            rawprobe_s.append(r_s)
            line = (
                f"round {round_number}: fping {f_s:.2f} s ({f_found} up)   "
                f"rawprobe {r_s:.2f} s ({r_found} up, {_drops(summary)})"
            )
            if args.baseline:
                b_s, b_found, _ = rawprobe(the_lab, python=args.baseline)
                baseline_s.append(b_s)
                line += f"   baseline {b_s:.2f} s ({b_found} up)"
            print(line, flush=True)
        f_med, r_med = statistics.median(fping_s), statistics.median(rawprobe_s)
        print(f"{NETWORK}: fping median {f_med:.2f} s, rawprobe median {r_med:.2f} s")
        print(f"ratio rawprobe/fping: {r_med / f_med:.2f} (<= 1.00 meets the target)")
        baseline.report(rawprobe_s, baseline_s, f_med)
        d_s, d_found, summary = rawprobe(the_lab, rate=DEFAULT_RATE_PPS)
        print(f"at the default rate ({DEFAULT_RATE_PPS} packets/s): {d_s:.2f} s, {d_found} up,"
              f" {_drops(summary)}")  # fmt: skip
        if args.icmplib:
            done = the_lab.run("client", sys.executable, "-c", ICMPLIB, NETWORK, check=False)
            if done.returncode == 0:
                found, icmplib_s = done.stdout.split()
                print(f"icmplib async_multiping: {float(icmplib_s):.2f} s ({found} up); "
                      f"ratio rawprobe/icmplib: {r_med / float(icmplib_s):.2f}")  # fmt: skip
            else:
                print(f"icmplib failed: {done.stderr.strip().splitlines()[-1:]}")
        if args.v6:
            v6_s, v6_found, summary = rawprobe(the_lab, V6_MILLION)
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            rate = summary["rate_pps"]
            print(f"{V6_MILLION}: {v6_found} of {summary['targets']} up in {v6_s:.2f} s, "
                  f"{rate} probes/s (sweep only), peak RSS {peak_mb:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
