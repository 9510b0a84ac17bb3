"""Target rules against the real kernel: exclusions across shards and workers, and the
source-address check (bind) in the client's namespace."""

from __future__ import annotations

import ipaddress
import sys

import output_check
import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

CLI = (sys.executable, "-I", "-m", "rawprobe")


def test_exclusions_hold_across_workers_and_shards(lab: Lab) -> None:
    """Two workers and two shards walk the space less the exclusions: together they
    find exactly the hosts left, and never probe an excluded one."""
    found: set[str] = set()
    for shard in ("0/2", "1/2"):
        done = lab.run(
            "client", *CLI, "sweep", "-q", "--json", "-w", "2", "--seed", "7", "--shard", shard,
            "--exclude", "198.19.4.0/26,198.19.4.200-210", "198.19.4.0/24", "198.19.5.0/30",
            check=False, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        document = output_check.document(done.stdout, "sweep")
        found |= {host["address"] for host in document["hosts"]}
    expected = {f"198.19.4.{n}" for n in range(64, 255) if not 200 <= n <= 210}
    expected |= {"198.19.5.1", "198.19.5.2"}
    assert found == expected
    assert not any(ipaddress.ip_address(a) in ipaddress.ip_network("198.19.4.0/26") for a in found)


def test_a_source_address_that_is_not_ours_is_refused_before_probing(lab: Lab) -> None:
    not_ours = "198.18.1.99"  # on the client's subnet, but nobody's
    for argv in (
        ("ping", "-c", "1", "-I", not_ours, lab.target_v4),
        ("trace", "-n", "-s", not_ours, lab.target_v4),
        ("scan", "-q", "-p", "80", "-S", not_ours, lab.target_v4),
    ):
        done = lab.run("client", *CLI, *argv, check=False, timeout=30)
        assert done.returncode == 2, done.stdout
        assert done.stderr.strip().splitlines() == [
            f"rawprobe: bind {not_ours}: Cannot assign requested address"
            " (not an address of this host)"
        ]
    done = lab.run(
        "client", *CLI, "ping", "-c", "1", "-I", lab.client_v4, lab.target_v4,
        check=False, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
