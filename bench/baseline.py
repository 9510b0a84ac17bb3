"""``--baseline PYTHON``, shared by the benchmarks: time a second build of rawprobe (the
interpreter of another checkout, e.g. the commit before a change) in every round, beside
this one and the peer tool, and print both ratios and their change."""

from __future__ import annotations

import argparse
import statistics


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", metavar="PYTHON", help="also time this build's rawprobe")


def report(ours: list[float], baseline: list[float], peer_median_s: float) -> None:
    """Print the baseline's median ratio to the peer, this build's, and the change."""
    if not baseline:
        return
    base_ratio = statistics.median(baseline) / peer_median_s
    ratio = statistics.median(ours) / peer_median_s
    print(
        f"baseline ratio {base_ratio:.3f}; this build's {ratio:.3f} ({ratio / base_ratio - 1:+.1%})"
    )
