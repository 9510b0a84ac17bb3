"""Every shipped topology (rawprobe/topologies/*.toml) builds, routes what it says and
tears down: traces across many flows take exactly the paths the file's truth lists
(several ECMP paths really taken), the multipath seed re-maps flows, the 1400-byte link
bites with DF, the black hole drops big packets and passes small ones, the NAT is the
only way back, and the rate-limiting router answers a burst only in part."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import pytest

from rawprobe.lab import Lab, lab_status, topology_names
from rawprobe.lab import lab as build_lab
from rawprobe.probes.trace_models import TraceResult
from rawprobe.probes.traceroute import TraceOptions, trace_protocols, traceroute_with
from rawprobe.transport.raw import open_transport

pytestmark = pytest.mark.lab

TOPOLOGIES = sorted(topology_names())
#: Enough flows that a path taken by a quarter of them is missed with p = 0.75**48 < 1e-5.
FLOWS = 48


def traces(
    net: Lab, address: str, method: str, flows: Sequence[int | None], **options: object
) -> list[TraceResult]:
    """One Paris trace per flow id (None: a fresh one from the transport) from the
    client, one probe per hop."""
    defaults: dict[str, object] = {"queries": 1, "wait_s": 0.5, "retries": 1, "max_ttl": 10}
    settings = TraceOptions(method=method, **{**defaults, **options})  # type: ignore[arg-type]

    async def main() -> list[TraceResult]:
        with net.entered("client"):
            async with open_transport(trace_protocols([address], method)) as transport:
                return [
                    await traceroute_with(transport, address, settings, flow_id=flow)
                    for flow in flows
                ]

    return anyio.run(main)


def routers(result: TraceResult) -> tuple[str | None, ...]:
    assert result.reached, result
    return result.path[:-1]


# -- every topology ---------------------------------------------------------------------


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_each_topology_builds_answers_and_tears_down(lab_required: None, name: str) -> None:
    with build_lab(topology=name) as net:
        assert set(net.namespaces) <= set(lab_status())
        state = json.loads(net.state_path.read_text(encoding="utf-8"))
        assert state["topology"]["name"] == name
        again = Lab.load(net.prefix)  # as `rawprobe lab down` in another process
        assert again.roles == net.roles and again.paths_v4 == net.paths_v4
        assert again.seed == net.seed and (net.seed is None) == (name not in MULTIPATH)
        for address in (net.target_v4, net.target_v6):
            done = net.run("client", "ping", "-n", "-c", "1", "-W", "2", address, check=False)
            assert done.returncode == 0, done.stdout
    assert not set(net.namespaces) & set(lab_status())
    assert not net.state_path.exists()


MULTIPATH = ("ecmp2", "ecmp4", "nested")
SINGLE = ("default", "mtu", "blackhole", "nat")  # (ratelimit: see its own test)


@pytest.mark.parametrize("name", MULTIPATH + SINGLE)
@pytest.mark.parametrize("family", [4, 6])
def test_udp_flows_take_exactly_the_paths_the_topology_lists(
    topology_lab: Callable[[str], Lab], name: str, family: int
) -> None:
    net = topology_lab(name)
    address, truth = (net.target_v4, net.paths_v4) if family == 4 else (net.target_v6, net.paths_v6)
    flows = range(FLOWS if name in MULTIPATH else 4)
    seen = {routers(result) for result in traces(net, address, "udp", flows)}
    assert seen == set(truth)


@pytest.mark.parametrize("name", MULTIPATH)
def test_tcp_flows_spread_too_and_icmp_only_over_ipv6(
    topology_lab: Callable[[str], Lab], name: str
) -> None:
    """TCP hashes its ports like UDP. ICMP has no ports: over IPv4 every flow takes one
    path (policy 1 reads no ICMP field); over IPv6 the flow label moves it (policy 3)."""
    net = topology_lab(name)
    tcp = {routers(r) for r in traces(net, net.target_v4, "tcp", range(FLOWS), port=80)}
    assert tcp == set(net.paths_v4)
    fresh = [None] * FLOWS  # ICMP flows: identifiers of the transport
    icmp4 = {routers(r) for r in traces(net, net.target_v4, "icmp", fresh)}
    assert len(icmp4) == 1 and icmp4 <= set(net.paths_v4)
    icmp6 = {routers(r) for r in traces(net, net.target_v6, "icmp", fresh)}
    assert icmp6 == set(net.paths_v6)


def test_a_new_seed_sends_flows_other_ways_and_the_same_seed_the_same_ways(
    topology_lab: Callable[[str], Lab],
) -> None:
    net = topology_lab("ecmp2")
    flows = range(32)  # the same mapping under two seeds: p = 2**-32

    def mapping() -> list[tuple[str | None, ...]]:
        return [routers(r) for r in traces(net, net.target_v4, "udp", flows)]

    before = net.seed
    try:
        net.set_multipath_seed(1)
        first = mapping()
        net.set_multipath_seed(2)
        second = mapping()
        net.set_multipath_seed(1)
        assert mapping() == first != second
    finally:
        if before is not None:
            net.set_multipath_seed(before)
    assert set(first) == set(second) == set(net.paths_v4)


# -- MTU, black hole, NAT, rate limit ---------------------------------------------------


def ping_df(net: Lab, address: str, packet_bytes: int) -> str:
    """The second line of ``ping -M do`` with a packet of ``packet_bytes`` (IP header
    included): a reply, an ICMP error, or nothing (empty)."""
    header = 28 if ":" not in address else 48
    argv = ("ping", "-n", "-M", "do", "-c", "1", "-W", "1", "-s", str(packet_bytes - header))
    done = net.run("client", *argv, address, check=False)
    return str(done.stdout).splitlines()[1].strip()


def test_the_1400_byte_link_bites_with_df(topology_lab: Callable[[str], Lab]) -> None:
    net = topology_lab("mtu")
    r2_v4, r2_v6 = net.paths_v4[0][1], net.paths_v6[0][1]
    assert ping_df(net, net.target_v4, 1400).startswith(f"1380 bytes from {net.target_v4}")
    assert ping_df(net, net.target_v4, 1401) == (
        f"From {r2_v4} icmp_seq=1 Frag needed and DF set (mtu = 1400)"
    )
    assert ping_df(net, net.target_v6, 1400).startswith(f"1360 bytes from {net.target_v6}")
    assert ping_df(net, net.target_v6, 1401) == f"From {r2_v6} icmp_seq=1 Packet too big: mtu=1400"


def test_the_black_hole_drops_big_packets_silently_and_passes_small_ones(
    topology_lab: Callable[[str], Lab],
) -> None:
    net = topology_lab("blackhole")
    for address in (net.target_v4, net.target_v6):
        assert f"bytes from {address}" in ping_df(net, address, 1400)
        assert ping_df(net, address, 1401) == ""  # no answer, no error
        assert ping_df(net, address, 1500) == ""  # (the links' MTU: no local error either)
    # Big probes whose TTL ends at r2 are still answered; beyond it, nothing.
    big = traces(net, net.target_v4, "udp", [None], packet_size=1500, wait_s=0.3, retries=0)
    assert big[0].path[:2] == net.paths_v4[0][:2] and set(big[0].path[2:]) == {None}


def test_the_nat_is_the_only_way_back(topology_lab: Callable[[str], Lab]) -> None:
    net = topology_lab("nat")
    outside = {4: "198.18.3.1", 6: "2001:db8:3::1"}  # r2 toward r3
    for family, tool, address in ((4, "iptables", net.target_v4), (6, "ip6tables", net.target_v6)):
        proto = "icmp" if family == 4 else "icmpv6"
        rule = ("INPUT", "-s", outside[family], "-p", proto)
        net.run("target", tool, "-I", *rule)
        try:
            net.run("client", "ping", "-n", "-c", "1", "-W", "2", address)  # (check: answered)
            listing = net.run("target", tool, "-L", "INPUT", "-v", "-x", "-n").stdout
        finally:
            net.run("target", tool, "-D", *rule)
        source = re.escape(outside[family])
        counted = re.search(rf"^\s*(\d+)\s.*\s{source}\s", listing, re.MULTILINE)
        assert counted and int(counted.group(1)) >= 1, listing  # the target saw r2, not us
    masquerade = ("POSTROUTING", "-o", "eth1", "-j", "MASQUERADE")
    net.run("r2", "iptables", "-t", "nat", "-D", *masquerade)
    try:  # (a new address: no connection the NAT already tracks)
        lost = net.run("client", "ping", "-n", "-c", "1", "-W", "1", "198.19.0.77", check=False)
    finally:
        net.run("r2", "iptables", "-t", "nat", "-A", *masquerade)
    assert lost.returncode == 1  # without the NAT nothing comes back


@pytest.mark.parametrize("family", [4, 6])
def test_the_rate_limiting_router_answers_a_burst_in_part(
    topology_lab: Callable[[str], Lab], family: int
) -> None:
    net = topology_lab("ratelimit")
    address = net.target_v4 if family == 4 else net.target_v6
    (result,) = traces(net, address, "udp", [None], queries=10, retries=0)
    answered = [len(hop.responses) for hop in result.hops]
    assert answered[0] == answered[2] == answered[3] == 10, answered
    assert 1 <= answered[1] <= 8, answered  # a burst of about 6, then 1/s (IPv6 10/s)
    assert result.hops[1].addresses == (net.paths_v4[0][1] if family == 4 else net.paths_v6[0][1],)


# -- the command line -------------------------------------------------------------------

MINE = """
description = "a user's own: a multipath router straight to two targets' links"
links = [
  { a = "client", b = "hub", v4 = "198.18.1.0/24", v6 = "2001:db8:1::/64", hosts = [2, 1] },
  { a = "hub", b = "target", v4 = "198.18.2.0/24", v6 = "2001:db8:2::/64", mtu = 1400 },
]
[nodes.client]
routes = [{ to = "default", via = "198.18.1.1" }, { to = "default", via = "2001:db8:1::1" }]
[nodes.hub]
router = true
multipath = { policy = 1 }
routes = [
  { to = "198.19.0.0/16", via = "198.18.2.2" },
  { to = "2001:db8::/32", via = "2001:db8:2::2" },
]
[nodes.target]
base = "default:target"
routes = [{ to = "default", via = "198.18.2.1" }, { to = "default", via = "2001:db8:2::1" }]
[paths]
v4 = [["198.18.1.1"]]
v6 = [["2001:db8:1::1"]]
"""


def test_cli_builds_a_users_file_with_a_seed_runs_in_its_nodes_and_tears_it_down(
    lab_required: None, tmp_path: Path
) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(MINE, encoding="utf-8")
    prefix = f"rpzcli{os.getpid() % 100000}"
    rawprobe = (sys.executable, "-I", "-m", "rawprobe", "lab")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*rawprobe, *argv], capture_output=True, text=True, check=False)

    up = run("up", "--prefix", prefix, "--topology", str(mine), "--seed", "9")
    try:
        assert up.returncode == 0, up.stderr
        assert "topology:   mine: a user's own" in up.stdout
        assert f"namespaces: {prefix}-client {prefix}-hub {prefix}-target" in up.stdout
        assert "multipath seed: 9" in up.stdout and "198.19.0.5" in up.stdout
        keys = ("net.ipv4.fib_multipath_hash_seed", "net.ipv4.fib_multipath_hash_policy")
        seed = run("exec", "--prefix", prefix, "--ns", "hub", "--", "sysctl", "-n", *keys)
        assert seed.stdout.split()[1] == "1" and seed.stdout.split()[0] not in ("0", "9")
        mtu = run("exec", "--prefix", prefix, "--ns", "target", "--", "cat",
                  "/sys/class/net/eth0/mtu")  # fmt: skip
        assert mtu.stdout.strip() == "1400"
        ping = run("exec", "--prefix", prefix, "--", "ping", "-c", "1", "-W", "2", "198.19.0.5")
        assert ping.returncode == 0, ping.stdout
    finally:
        down = run("down", prefix)
    assert down.returncode == 0, down.stderr
    assert not any(name.startswith(f"{prefix}-") for name in lab_status())
