"""deploy/: the Kubernetes Indexed Job that runs a scan in shards is a valid Job (checked
with kubernetes-validate's bundled schemas, no cluster), its pods' arguments are a
valid ``rawprobe scan`` command line for every index, and the shards add up."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from rawprobe.cli.app import build_parser
from rawprobe.cli.args import parse_command_line

JOB = Path(__file__).resolve().parent.parent / "deploy" / "rawprobe-scan-job.yaml"


def job() -> dict[str, Any]:
    (document,) = yaml.safe_load_all(JOB.read_text())
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_the_job_manifest_is_valid_for_kubernetes(version: str) -> None:
    kubernetes_validate.validate(job(), version, strict=True)  # raises if not


def test_each_pod_scans_its_own_shard_and_the_shards_cover_the_space() -> None:
    spec = job()["spec"]
    assert spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["rawprobe"]
    args = [str(arg) for arg in container["args"]]
    shard = args[args.index("--shard") + 1]
    match = re.fullmatch(r"\$\(JOB_COMPLETION_INDEX\)/(\d+)", shard)
    assert match, shard
    shards = int(match[1])
    assert spec["completions"] == spec["parallelism"] == shards  # one pod per shard
    assert "NET_RAW" in container["securityContext"]["capabilities"]["add"]
    for index in range(shards):  # what each pod runs, as Kubernetes expands it
        argv = [arg.replace("$(JOB_COMPLETION_INDEX)", str(index)) for arg in args]
        parsed = parse_command_line(build_parser(argv), argv)
        assert parsed.command == "scan" and parsed.shard == (index, shards)
        assert parsed.seed is not None and parsed.ndjson  # one order; mergeable output
