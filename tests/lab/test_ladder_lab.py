"""The privilege ladder: without CAP_NET_RAW, ping climbs down to ICMP datagram sockets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import output_check
import pytest
from unprivileged import can_run_unprivileged, run_as_nobody, unprivileged_tree

from rawprobe.lab import Lab
from rawprobe.probes.ping import PingOptions, ping_many_with
from rawprobe.transport.dgram import open_datagram_transport

pytestmark = pytest.mark.lab


@pytest.fixture
def ping_group_open(lab: Lab) -> Iterator[None]:
    """Every group may open ICMP datagram sockets in the client, for this test only."""
    lab.set_ping_group_range("client", 0, 2147483647)
    try:
        yield
    finally:
        lab.set_ping_group_range("client", 1, 0)  # the kernel's default: nobody


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    reason = can_run_unprivileged()
    if reason is not None:
        if os.environ.get("RAWPROBE_LAB") == "required":
            pytest.fail(reason)
        pytest.skip(reason)
    with unprivileged_tree() as path:
        yield path


def test_nobody_pings_over_icmp_datagram_sockets(
    lab: Lab, tree: Path, ping_group_open: None
) -> None:
    argv = ["ping", "-v", "-c", "2", "-i", "0.2", lab.target_v4, lab.target_v6]
    done = run_as_nobody(tree, argv, netns=lab.ns("client"))
    assert done.returncode == 0, done.stderr
    assert "ICMP datagram sockets" in done.stderr
    assert "2 packets transmitted, 2 received" in done.stdout
    json_run = run_as_nobody(tree, [*argv[:1], "--json", *argv[2:]], netns=lab.ns("client"))
    document = output_check.document(json_run.stdout, "ping")
    assert document["summary"]["sockets"] == "icmp-datagram"
    assert [host["received"] for host in document["hosts"]] == [2, 2]


def test_nobody_without_ping_group_gets_what_to_do(lab: Lab, tree: Path) -> None:
    done = run_as_nobody(tree, ["ping", "-c", "1", lab.target_v4], netns=lab.ns("client"))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "ping_group_range" in line and "CAP_NET_RAW" in line


@pytest.mark.anyio
async def test_datagram_transport_reports_errors_and_keeps_keys(
    lab: Lab, ping_group_open: None
) -> None:
    """Replies and ICMP errors (from the socket's error queue) on both families."""
    targets = [lab.target_v4, lab.target_v6]
    with lab.entered("client"):
        async with open_datagram_transport() as transport:
            replies = await ping_many_with(
                transport, targets, PingOptions(count=2, interval_s=0.05)
            )
            expired = await ping_many_with(transport, targets, PingOptions(count=1, ttl=2))
    assert [r.received for r in replies] == [2, 2]
    assert {reply.ttl for r in replies for reply in r.replies} == {61}
    assert [[e.source for e in r.errors] for r in expired] == [
        [lab.router_v4[1]],
        [lab.router_v6[1]],
    ]
    assert transport.counters.forged == 0


def test_nobody_sweeps_over_icmp_datagram_sockets(
    lab: Lab, tree: Path, ping_group_open: None
) -> None:
    argv = ["sweep", "-v", "-q", "198.19.4.1-20", lab.silent_v4]
    done = run_as_nobody(tree, argv, netns=lab.ns("client"))
    assert done.returncode == 0, done.stderr
    assert "ICMP datagram sockets" in done.stderr
    assert done.stdout.split() == [f"198.19.4.{i}" for i in range(1, 21)]
    done = run_as_nobody(tree, ["sweep", "--json", *argv[1:]], netns=lab.ns("client"))
    document = output_check.document(done.stdout, "sweep")
    assert document["summary"]["sockets"] == "icmp-datagram"
    assert [host["address"] for host in document["hosts"]] == [
        f"198.19.4.{i}" for i in range(1, 21)
    ]


def test_nobody_traces_with_icmp_over_datagram_sockets(
    lab: Lab, tree: Path, ping_group_open: None
) -> None:
    for target, routers in ((lab.target_v4, lab.router_v4), (lab.target_v6, lab.router_v6)):
        done = run_as_nobody(tree, ["trace", "-v", "-n", "--json", target], netns=lab.ns("client"))
        assert done.returncode == 0, done.stderr
        assert "ICMP datagram sockets" in done.stderr
        document = output_check.document(done.stdout, "trace")
        [trace] = document["traces"]
        path = [hop["responses"][0]["address"] for hop in trace["hops"]]
        assert trace["reached"] and path == [*routers, target]
        assert document["summary"]["sockets"] == "icmp-datagram"


def test_nobody_scans_with_connect_and_says_so(lab: Lab, tree: Path) -> None:
    argv = ["scan", "--json", "-p", "20-25,80,81,1000,2000,8080", lab.target_v4]
    done = run_as_nobody(tree, argv, netns=lab.ns("client"))
    assert done.returncode == 0, done.stderr
    assert "connect() scan" in done.stderr
    document = output_check.document(done.stdout, "scan")
    assert document["summary"]["technique"] == "connect"
    assert document["summary"]["sockets"] == "tcp-connect"
    assert document["summary"]["counters"] is None
    [host] = document["hosts"]
    states = {port["port"]: (port["state"], port["reason"]) for port in host["ports"]}
    assert states[22] == ("open", "syn-ack") and states[80] == ("open", "syn-ack")
    assert states[1000] == ("filtered", "no-response")
    assert states[2000][0] == "filtered"  # admin-prohibited arrives as an errno
    assert host["state_counts"]["closed"] == 6  # 20, 21, 23, 24, 25, 81


def test_nobody_traces_with_udp_like_tracepath(lab: Lab, tree: Path) -> None:
    """No ping_group_range, no capability: plain UDP sockets and their error queue."""
    for target, routers in ((lab.target_v4, lab.router_v4), (lab.target_v6, lab.router_v6)):
        argv = ["trace", "-v", "-n", "-M", "udp", "--json", target]
        done = run_as_nobody(tree, argv, netns=lab.ns("client"))
        assert done.returncode == 0, done.stderr
        assert "UDP sockets with IP_RECVERR" in done.stderr
        document = output_check.document(done.stdout, "trace")
        [trace] = document["traces"]
        path = [hop["responses"][0]["address"] for hop in trace["hops"]]
        assert trace["reached"] and path == [*routers, target]
        assert document["summary"]["sockets"] == "udp-datagram"
