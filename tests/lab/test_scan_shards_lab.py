"""Shards of one scan run as separate processes in the lab, at the same time, as N
machines would: together they decide every port of the target exactly once, their
NDJSON merged by deploy/merge-ndjson.jq is the unsharded run, and each shard's workers
(--workers) split its share again."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import output_check
import pytest
from nmap_files import comparable, merge_ndjson

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

PORTS = "1-10000"
SHARDS = 4


def scan_argv(lab: Lab, *args: str) -> list[str]:
    return [sys.executable, "-I", "-m", "rawprobe", "scan", "-p", PORTS, "--seed", "42", "--all",
            "--rate", "20000", *args, lab.target_v4]  # fmt: skip


def test_four_shards_cover_the_targets_ports_exactly_once(lab: Lab) -> None:
    shards = [
        lab.popen("client", *scan_argv(lab, "--shard", f"{i}/{SHARDS}", "-w", "2", "--ndjson"),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(SHARDS)
    ]  # fmt: skip
    outputs = []
    for shard in shards:
        out, err = shard.communicate(timeout=300)
        assert shard.returncode == 0, err
        outputs.append(out)
    whole: dict[str, Any] = output_check.document(
        lab.run("client", *scan_argv(lab, "-w", "1", "--json"), timeout=300).stdout, "scan"
    )
    (host,) = whole["hosts"]
    assert whole["summary"]["complete"] and len(host["ports"]) == 10000  # (--all: all listed)
    per_shard: list[list[int]] = []
    for index, out in enumerate(outputs):
        *hosts, summary = output_check.events(out.splitlines(), "scan")
        assert (summary["shard"], summary["seed"], summary["workers"]) == (
            f"{index}/{SHARDS}", 42, 2,
        )  # fmt: skip
        assert summary["complete"]
        (part,) = hosts  # one host event per shard: its part of the target
        per_shard.append([p["port"] for p in part["ports"]])
    decided = [port for ports in per_shard for port in ports]
    assert sorted(decided) == list(range(1, 10001))  # every port once, none twice
    assert all(len(ports) > 2000 for ports in per_shard)  # each shard had its share
    merged = merge_ndjson("".join(outputs), "scan")
    merged_hosts = [e for e in merged if e["event"] == "host"]
    assert len(merged_hosts) == 1
    strip = ("schema", "command", "event")
    assert comparable({k: v for k, v in merged_hosts[0].items() if k not in strip}) == (
        comparable(host)
    )  # the union is the unsharded result, port by port, state by state
