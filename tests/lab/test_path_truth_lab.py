"""Loss and quotes that tell the truth, against the real kernel (probes/path_truth.py,
probes/trace_stats.py): loss on one ECMP branch shows on that branch's path only; a
router that rate-limits its ICMP errors is marked rate-limited, not lossy; Linux's NAT
restores the quotes (no NAT reported), a NAT that does not is reported where it is."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import output_check
import pytest

from rawprobe.lab import Lab

pytestmark = pytest.mark.lab


def cli(lab: Lab, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = (sys.executable, "-I", "-m", "rawprobe", "trace", "-n", *args)
    return lab.run("client", *argv, check=False, timeout=timeout)


def last_rounds(output: str) -> dict[str, dict[str, Any]]:
    """The last ``--live --json`` round of each target (every line validated)."""
    events = output_check.events(output.splitlines(), "trace")
    return {event["target"]: event for event in events if event["event"] == "round"}


# -- ECMP: loss on one branch ------------------------------------------------------------


def test_live_over_several_flows_shows_the_loss_on_that_branch_only(lossy_branch: Lab) -> None:
    net = lossy_branch
    done = cli(net, "-U", "--live", "--json", "-c", "15", "-i", "0.1", "--flows", "16",
               net.target_v4, net.target_v6)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rounds = last_rounds(done.stdout)
    for target, truth in ((net.target_v4, net.paths_v4), (net.target_v6, net.paths_v6)):
        report = rounds[target]
        a1, b1 = truth[0][1], truth[1][1]
        by_branch: dict[str, list[dict[str, Any]]] = {a1: [], b1: []}
        for path in report["paths"]:
            by_branch[path["hops"][1]["addresses"][0]].append(path)
        assert by_branch[a1] and by_branch[b1], report["paths"]  # 16 flows: both taken
        for path in by_branch[b1]:
            assert [hop["loss"] for hop in path["hops"]] == [0, 0, 0, 0], path
        lost = sum(h["sent"] - h["received"] for p in by_branch[a1] for h in p["hops"][2:])
        sent = sum(h["sent"] for p in by_branch[a1] for h in p["hops"][2:])
        assert 0.05 < lost / sent < 0.4, (lost, sent)  # after a1: about 20%
        for path in by_branch[a1]:
            assert path["hops"][0]["loss"] == path["hops"][1]["loss"] == 0  # before: none
        rows = {(h["ttl"], h["addresses"][0]): h for h in report["hops"] if h["addresses"]}
        assert rows[2, a1]["loss"] == rows[2, b1]["loss"] == 0
        everything = report["hops"] + [h for p in report["paths"] for h in p["hops"]]
        assert not any(h["rate_limited"] for h in everything)  # real loss, not ICMP limits


# -- a router that rate-limits its ICMP errors ---------------------------------------------


@pytest.fixture
def ratelimit(topology_lab: Callable[[str], Lab]) -> Lab:
    """client - r1 - r2 - r3 - target, r2 rate-limiting its ICMP errors (Linux defaults)."""
    return topology_lab("ratelimit")


def test_live_marks_the_rate_limiting_router_and_no_other(ratelimit: Lab) -> None:
    net = ratelimit
    done = cli(net, "-U", "--live", "--json", "-c", "10", "-i", "0.2", "--flows", "8",
               net.target_v4, net.target_v6)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for target, (r1, r2, r3) in (
        (net.target_v4, net.paths_v4[0]),
        (net.target_v6, net.paths_v6[0]),
    ):
        rows = last_rounds(done.stdout)[target]["hops"]
        assert [(h["ttl"], h["addresses"]) for h in rows] == [
            (1, [r1]), (2, [r2]), (3, [r3]), (4, [target])
        ]  # (a flow r2 never answered is counted on r2's row: its only interface)  # fmt: skip
        assert rows[1]["rate_limited"] and rows[1]["loss"] > 0.3, rows[1]
        for row in (rows[0], rows[2], rows[3]):
            assert row["loss"] == 0 and not row["rate_limited"], rows


def test_a_paris_trace_marks_the_rate_limiting_router(ratelimit: Lab) -> None:
    """Three traces at once, 10 queries a hop, no retries: r2 answers a burst of about
    six errors, then one a second; the hops after it answer every probe."""
    net = ratelimit
    targets = ["198.19.0.11", "198.19.0.12", "198.19.0.13"]
    done = cli(net, "-U", "-q", "10", "--retries", "0", "-w", "1", "--json", *targets)
    assert done.returncode == 0, done.stderr
    traces = output_check.document(done.stdout, "trace")["traces"]
    r2 = net.paths_v4[0][1]
    marked = 0
    for trace in traces:
        r2_hop = trace["hops"][1]
        assert not any(h["rate_limited"] for h in trace["hops"] if h["ttl"] != 2), trace
        assert all(h["lost"] == 0 for h in trace["hops"] if h["ttl"] != 2), trace
        if r2_hop["lost"] >= 6:  # Fisher: 6 of 10 against 0 of 20, p = 0.0004
            assert r2_hop["rate_limited"], r2_hop
        marked += r2_hop["rate_limited"]
        assert all(r["address"] == r2 for r in r2_hop["responses"])
    assert marked >= 2  # 30 probes, about 7 answers: two traces at least lose most
    plain = cli(net, "-U", "-q", "10", "--retries", "0", "-w", "1", *targets)
    assert (
        f"hop 2 ({r2}) (rate-limited)" in plain.stdout
        or "hop 2 (no answer) (rate-limited)" in plain.stdout
    )


# -- NAT -------------------------------------------------------------------------------------

METHODS = [("-I", "icmp"), ("-U", "udp"), ("-T", "tcp")]


@pytest.fixture
def nat(topology_lab: Callable[[str], Lab]) -> Lab:
    """The line where r2 masquerades (IPv4 and IPv6): r3 and the target see only r2."""
    return topology_lab("nat")


@pytest.mark.parametrize(("flag", "method"), METHODS)
def test_linux_masquerade_restores_the_quotes_so_no_nat_is_reported(
    nat: Lab, flag: str, method: str
) -> None:
    done = cli(nat, flag, "-q", "2", "--json", nat.target_v4, nat.target_v6)
    assert done.returncode == 0, done.stderr
    for trace in output_check.document(done.stdout, "trace")["traces"]:
        assert trace["reached"] and len(trace["hops"]) == 4, trace
        assert trace["nat"] is None
        assert not any(r["rewrites"] for h in trace["hops"] for r in h["responses"])
    plain = cli(nat, flag, "-q", "1", nat.target_v4)
    assert "NAT" not in plain.stdout


#: r2 as a stateless NAT: the client's probes leave with r2's address; what comes back
#: to r2's address goes to the client, quotes untouched (nft; no conntrack).
STATELESS_NAT = """
table ip rp_stateless_nat {
  chain post { type filter hook postrouting priority 100;
    oifname "eth1" ip saddr 198.18.1.2 ip saddr set 198.18.3.1; }
  chain pre { type filter hook prerouting priority -300;
    iifname "eth1" ip daddr 198.18.3.1 notrack ip daddr set 198.18.1.2; }
}
table ip6 rp_stateless_nat {
  chain post { type filter hook postrouting priority 100;
    oifname "eth1" ip6 saddr 2001:db8:1::2 ip6 saddr set 2001:db8:3::1; }
  chain pre { type filter hook prerouting priority -300;
    iifname "eth1" ip6 daddr 2001:db8:3::1 notrack ip6 daddr set 2001:db8:1::2; }
}
"""


@pytest.fixture
def stateless_nat(nat: Lab) -> Iterator[Lab]:
    """The nat topology with r2's MASQUERADE swapped for STATELESS_NAT, put back after."""
    if shutil.which("nft") is None:
        pytest.fail("nft (nftables) is needed: scripts/install.sh installs it")
    masquerade = ("-t", "nat", "POSTROUTING", "-o", "eth1", "-j", "MASQUERADE")
    for tool in ("iptables", "ip6tables"):
        nat.run("r2", tool, masquerade[0], masquerade[1], "-D", *masquerade[2:])
    nat.run("r2", "nft", "-f", "-", input=STATELESS_NAT)
    try:
        yield nat
    finally:
        for family in ("ip", "ip6"):
            nat.run("r2", "nft", "delete", "table", family, "rp_stateless_nat", check=False)
        for tool in ("iptables", "ip6tables"):
            nat.run("r2", tool, masquerade[0], masquerade[1], "-A", *masquerade[2:])


@pytest.mark.parametrize(("flag", "method"), METHODS)
def test_a_nat_that_leaves_the_quotes_rewritten_is_reported_where_it_is(
    stateless_nat: Lab, flag: str, method: str
) -> None:
    net = stateless_nat
    done = cli(net, flag, "-q", "2", "-w", "1", "-m", "6", "--json", net.target_v4, net.target_v6)
    traces = {t["address"]: t for t in output_check.document(done.stdout, "trace")["traces"]}
    for target, client, outside, r3 in (
        (net.target_v4, net.client_v4, "198.18.3.1", net.paths_v4[0][2]),
        (net.target_v6, net.client_v6, "2001:db8:3::1", net.paths_v6[0][2]),
    ):
        trace = traces[target]
        if method == "udp" and ":" in target:
            # No IPv4 ID to match by: the rewritten checksum names no probe, so nothing
            # beyond the NAT is heard (README: which NATs can be seen).
            assert trace["nat"] is None and all(not h["responses"] for h in trace["hops"][2:])
            continue
        assert trace["reached"], trace
        nat_hop = trace["nat"]
        assert (nat_hop["ttl"], nat_hop["address"]) == (3, r3), nat_hop
        assert {"field": "source", "sent": client, "quoted": outside} in nat_hop["rewrites"]
    plain = cli(net, flag, "-q", "1", "-w", "1", "-m", "6", net.target_v4)
    assert (
        f"NAT before hop 3 ({net.paths_v4[0][2]}): quoted source {net.client_v4} -> 198.18.3.1"
        in plain.stdout
    )
