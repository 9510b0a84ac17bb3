"""``--baseline PYTHON``, shared by the benchmarks: time a second build of rawprobe (the
interpreter of another checkout, e.g. the commit before a change) in every round, beside
this one and the peer tool, and print both ratios and their change."""

from __future__ import annotations

import argparse
import statistics
from typing import Any


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", metavar="PYTHON", help="also time this build's rawprobe")


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """A run's ``summary`` (rawprobe/2). A baseline built before rawprobe/2 wrote
    rawprobe/1, with the same counts at the top under older names: mapped here."""
    if document.get("schema") == "rawprobe/1":
        return {**document, "hosts_up": document.get("alive_count")}
    found: dict[str, Any] = document["summary"]
    return found


def report(ours: list[float], baseline: list[float], peer_median_s: float) -> None:
    """Print the baseline's median ratio to the peer, this build's, and the change."""
    if not baseline:
        return
    base_ratio = statistics.median(baseline) / peer_median_s
    ratio = statistics.median(ours) / peer_median_s
    print(
        f"baseline ratio {base_ratio:.3f}; this build's {ratio:.3f} ({ratio / base_ratio - 1:+.1%})"
    )
