"""Sweeps against the real kernel in the lab."""

from __future__ import annotations

import sys
from typing import Any

import output_check
import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab


def sweep(lab: Lab, *args: str) -> tuple[int, str, str]:
    command = [sys.executable, "-I", "-m", "rawprobe", "sweep", "-q", *args]
    done = lab.run("client", *command, check=False, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_whole_16_at_full_speed_finds_every_host(lab: Lab) -> None:
    code, out, err = sweep(lab, "--rate", "0", "--json", "198.19.0.0/16")
    assert code == 0, err
    document = output_check.document(out, "sweep")
    summary = document["summary"]
    assert summary["hosts_up"] == 65534 and summary["hosts_down"] == 0
    assert len({host["address"] for host in document["hosts"]}) == 65534
    assert summary["counters"]["kernel_drops"] == 0


@pytest.mark.parametrize(
    ("method", "port"), [("tcp-syn", "80"), ("tcp-syn", "81"), ("tcp-ack", "81"), ("udp", "33434")]
)
def test_methods_for_networks_that_drop_icmp(lab: Lab, method: str, port: str) -> None:
    v6_range = "2001:db8:ff::100-2001:db8:ff::10f"
    code, out, err = sweep(
        lab, "-M", method, "-p", port, "-t", "0.3", "198.19.3.0/28", v6_range, lab.silent_v4
    )
    assert code == 0, err
    alive = out.split()
    assert len(alive) == 14 + 16, out
    assert lab.silent_v4 not in alive


def test_plain_output_is_one_address_per_line_and_silence_exits_1(lab: Lab) -> None:
    code, out, _err = sweep(lab, "198.19.7.1-3")
    assert code == 0 and out.splitlines() == ["198.19.7.1", "198.19.7.2", "198.19.7.3"]
    code, out, _err = sweep(lab, "-t", "0.2", "198.18.200.0/29")
    assert code == 1 and out == ""


def test_four_shards_cover_the_space_exactly_once(lab: Lab) -> None:
    """NDJSON outputs of four shards merge by concatenation into one complete sweep."""
    events: list[dict[str, Any]] = []
    for shard in range(4):
        code, out, err = sweep(
            lab, "--rate", "0", "--ndjson", "--seed", "1", "--shard", f"{shard}/4", "198.19.16.0/20"
        )
        assert code == 0, err
        *hosts, summary = output_check.events(out.splitlines(), "sweep")  # each: its summary
        assert summary["shard"] == f"{shard}/4" and summary["hosts_up"] == len(hosts)
        events += hosts
    addresses = [event["address"] for event in events]
    assert len(addresses) == 4094 and len(set(addresses)) == 4094
    assert {event["state"] for event in events} == {"up"}


def test_ipv6_slice_of_the_64(lab: Lab) -> None:
    code, out, err = sweep(lab, "--rate", "0", "--json", "2001:db8:ff::/116")
    assert code == 0, err
    assert output_check.document(out, "sweep")["summary"]["hosts_up"] == 4096
