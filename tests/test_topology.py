"""Lab topologies as data (rawprobe/topology.py), without building anything: the shipped
files parse, the default one is what rawprobe.lab's constants say, and a bad file is
refused with one line that says where."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

import rawprobe.lab as labmod
from rawprobe.errors import UsageError
from rawprobe.topology import builtin_topologies, load_topology, parse_topology

SHIPPED = sorted(builtin_topologies())


def test_the_shipped_topologies_are_those_the_issue_asks_for() -> None:
    assert set(SHIPPED) == {
        "default", "ecmp2", "ecmp4", "nested", "mtu", "blackhole", "nat", "ratelimit",
    }  # fmt: skip
    assert all(builtin_topologies()[name] for name in SHIPPED)  # each has a description


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_topology_has_a_client_a_target_and_a_truth_per_family(name: str) -> None:
    topology = load_topology(name)
    assert topology.roles[0] == "client" and "target" in topology.roles
    assert topology.addresses("client", 4) == (labmod.CLIENT_V4,)
    assert topology.addresses("client", 6) == (labmod.CLIENT_V6,)
    assert topology.paths_v4 and len(topology.paths_v4) == len(topology.paths_v6)
    target = topology.node("target")
    default_target = load_topology("default").node("target")
    assert target.listen == default_target.listen and target.iptables == default_target.iptables


def test_the_default_topology_is_what_the_lab_constants_say() -> None:
    topology = load_topology("default")
    assert topology.roles == labmod.ROLES
    assert [n.name for n in topology.nodes if n.router] == list(labmod.ROUTERS)
    assert topology.paths_v4 == (labmod.ROUTER_V4,) and topology.paths_v6 == (labmod.ROUTER_V6,)
    for family, prefixes in ((4, labmod.LINKS_V4), (6, labmod.LINKS_V6)):
        ends = [link.ends[0].v4 if family == 4 else link.ends[0].v6 for link in topology.links]
        assert [str(ipaddress.ip_interface(str(e)).network) for e in ends] == list(prefixes)
    assert topology.addresses("target", 4) == (labmod.TARGET_LINK_V4,)
    assert dict(topology.names) == dict(labmod.LAB_NAMES)
    target = topology.node("target")
    assert target.listen is not None
    assert target.listen.tcp == labmod.OPEN_PORTS
    assert target.listen.udp_echo == labmod.UDP_ECHO_PORTS
    assert dict(target.listen.dns) == {
        labmod.DNS_V4: "names", labmod.NXDOMAIN_DNS_V4: "nxdomain", "::": "nxdomain"
    }  # fmt: skip
    rules = "\n".join(rule for _, table in target.iptables + target.ip6tables for rule in table)
    for ports in (labmod.DROP_PORTS, labmod.REJECT_PORTS, labmod.UDP_DROP_PORTS,
                  labmod.UDP_REJECT_PORTS):  # fmt: skip
        assert f"--dport {ports.start}:{ports.stop - 1} " in rules
    locals_ = {route.to for route in target.routes if route.kind == "local"}
    assert locals_ == {labmod.TARGET_ANYIP_V4, labmod.TARGET_ANYIP_V6}
    holes = {route.to for route in target.routes if route.kind == "blackhole"}
    assert holes == {labmod.SILENT_NET_V4, labmod.SILENT_NET_V6}


def test_the_ip_script_of_a_router_with_two_next_hops_and_a_small_mtu() -> None:
    topology = parse_topology(
        """
        links = [
          { a = "client", b = "r1", v4 = "198.18.1.0/24", v6 = "2001:db8:1::/64", hosts = [2, 1] },
          { a = "r1", b = "x", v4 = "198.18.2.0/24", mtu = 1400 },
          { a = "r1", b = "y", v6 = "2001:db8:3::/64" },
        ]
        [nodes.client]
        routes = [{ to = "default", via = ["198.18.1.1"] }]
        [nodes.r1]
        router = true
        multipath = { policy = 1, policy_v6 = 3, fields_v6 = 0x3f }
        routes = [{ to = "default", via = ["2001:db8:3::2", "2001:db8:3::3"] }]
        [nodes.x]
        [nodes.y]
        """,
        "mine",
    )
    assert labmod._ip_batch("r1", topology).splitlines() == [
        "link set lo up",
        "addr add 198.18.1.1/24 dev eth0",
        "addr add 2001:db8:1::1/64 dev eth0 nodad",
        "link set eth0 up",
        "addr add 198.18.2.1/24 dev eth1",
        "link set eth1 mtu 1400",
        "link set eth1 up",
        "addr add 2001:db8:3::1/64 dev eth2 nodad",
        "link set eth2 up",
        "route add ::/0 nexthop via 2001:db8:3::2 nexthop via 2001:db8:3::3",
    ]
    node = topology.node("r1")
    assert node.multipath is not None and node.multipath.sysctls() == {
        "net/ipv4/fib_multipath_hash_policy": "1",
        "net/ipv6/fib_multipath_hash_policy": "3",
        "net/ipv6/fib_multipath_hash_fields": "0x3f",
    }
    assert topology.multipath_nodes == ("r1",)
    assert topology.paths_v4 == () and topology.names == {}


MINIMAL = 'links = [{ a = "client", b = "r1", v4 = "198.18.1.0/24" }]\n[nodes.client]\n[nodes.r1]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nodes.r1]\n", "a node named 'client' is needed"),
        ("nodes = 3\n", "nodes: must be a table"),
        ("[nodes.client]\ncolour = 'red'\n", "nodes.client: unknown key 'colour'"),
        ("[nodes.Client]\n", "nodes.Client: a node name is"),
        (
            "links = [{ a = 'client', b = 'r9', v4 = '198.18.1.0/24' }]\n[nodes.client]\n",
            "links[0]: no node 'r9'",
        ),
        (MINIMAL.replace("198.18.1.0/24", "192.0.2.0/24"), "outside 198.18.0.0/15"),
        (MINIMAL.replace("198.18.1.0/24", "10.0.0.0/8"), "outside 198.18.0.0/15"),
        (
            MINIMAL.replace('v4 = "198.18.1.0/24"', 'v6 = "2001:db8:1::/64", mtu = 1000'),
            "IPv6 needs an MTU of at least 1280",
        ),
        (MINIMAL + "[nodes.r1.multipath]\npolicy = 7\n", "nodes.r1.multipath.policy"),
        (MINIMAL.replace("}]", ", hosts = [1, 255] }]"), "host 255 does not fit"),
        (
            "[nodes.client]\nroutes = [{ to = 'default', via = '192.0.2.1' }]\n",
            "192.0.2.1 is outside",
        ),
        ("[nodes.client]\nroutes = [{ to = '198.19.0.0/16' }]\n", "a unicast route needs `via`"),
        (
            "[nodes.client]\nroutes = [{ to = '198.19.0.0/16', via = '2001:db8::1' }]\n",
            "next hops of another family",
        ),
        ("[nodes.client]\nbase = 'default:nobody'\n", "no node 'default:nobody'"),
        ('[nodes.client]\niptables = { filter = ["-A INPUT -j DROP\\n-F"] }\n', "one line"),
        ("[nodes.client]\n[nodes.t]\nlisten = {}\n[nodes.u]\nlisten = {}\n", "at most one"),
        ("[paths]\nv4 = [['2001:db8::1']]\n[nodes.client]\n", "not an IPv4 address"),
        ("[nodes.client\n", "not valid TOML"),
    ],
)
def test_a_bad_topology_is_refused_with_one_line_naming_the_place(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=r"^topology mine: ") as caught:
        parse_topology(text, "mine")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_user_file_is_read_by_path_and_an_unknown_name_lists_the_shipped_ones(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "two.toml"
    mine.write_text(MINIMAL, encoding="utf-8")
    topology = load_topology(str(mine))
    assert topology.name == "two" and topology.roles == ("client", "r1")
    assert topology.addresses("r1", 4) == ("198.18.1.2",) and topology.text == MINIMAL
    edge = parse_topology(MINIMAL.replace("}]", ", hosts = [1, 254] }]"), "edge")
    assert edge.addresses("r1", 4) == ("198.18.1.254",)
    with pytest.raises(UsageError, match="choose blackhole, default, ecmp2"):
        load_topology("nosuch")
    with pytest.raises(UsageError, match="cannot read topology"):
        load_topology(str(tmp_path / "missing.toml"))


def test_a_node_built_on_the_default_target_keeps_its_services_and_drops_its_next_hops() -> None:
    topology = parse_topology(
        '[nodes.client]\n[nodes.target]\nbase = "default:target"\n'
        'routes = [{ to = "default", via = "198.18.9.1" }]\n',
        "mine",
    )
    target = topology.node("target")
    assert [r.via for r in target.routes if r.via] == [("198.18.9.1",)]
    assert target.addresses == ("2001:db8:ff::5/128",) and target.listen is not None
