"""Lab topologies as data: a TOML file describes a network of namespaces once, and
``rawprobe/lab.py`` builds it. Pure: text in, validated values out (no namespace, no
command).

The package ships its topologies as ``rawprobe/topologies/NAME.toml`` (``default`` is
the line ``client - r1 - r2 - r3 - target``); a user's file is read the same way. The
format, by example::

    description = "one line for `rawprobe lab topologies`"
    links = [  # in order; node N's links get eth0, eth1, ... in this order
      { a = "client", b = "r1", v4 = "198.18.1.0/24", v6 = "2001:db8:1::/64", hosts = [2, 1] },
      { a = "r1", b = "target", v4 = "198.18.2.0/24", v6 = "2001:db8:2::/64", mtu = 1400 },
    ]

    [nodes.client]  # nodes in order: the namespaces are "<prefix>-<name>"
    routes = [{ to = "default", via = "198.18.1.1" }, { to = "default", via = "2001:db8:1::1" }]

    [nodes.r1]
    router = true                 # forwards (ip_forward, IPv6 forwarding)
    routes = [{ to = "198.18.0.0/15", via = ["198.18.2.2", "198.18.3.2"] }]  # ECMP
    multipath = { policy = 1, policy_v6 = 1 }  # fib_multipath_hash_policy (1: L4)
    icmp_ratelimit = true         # kernel defaults; or { interval_ms = 200, ... }
    iptables = { filter = ["-A FORWARD -m length --length 1401:65535 -j DROP"] }
    ip6tables = { nat = ["-A POSTROUTING -o eth1 -j MASQUERADE"] }

    [nodes.target]
    base = "default:target"       # node `target` of default.toml, minus its `via` routes
    routes = [{ to = "default", via = "198.18.2.1" }]

    [paths]  # the truth: the routers a trace from the client to the target shows
    v4 = [["198.18.1.1"]]

A link's ends get host number ``hosts[0]`` and ``hosts[1]`` (default 1 and 2) of each of
its prefixes. Routes are ``to`` a prefix or ``default``, ``via`` one next hop or several
(equal-cost multipath), or of ``type`` ``local`` (AnyIP: every address of the prefix is
the node's own) or ``blackhole``. ``addresses`` go on ``lo``. ``listen`` starts the lab's
listener on the node (``tcp`` ports, ``udp_echo`` ports, ``dns``: address -> ``names``
or ``nxdomain``). ``[names]`` maps addresses to the reverse names the DNS answers.

Traffic rule: every address, prefix and next hop must lie in 198.18.0.0/15 or
2001:db8::/32; a file that names anything else is refused.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from rawprobe.errors import UsageError

__all__ = [
    "LAB_RANGES",
    "NODE_NAME",
    "Link",
    "Listen",
    "Multipath",
    "Node",
    "Route",
    "Topology",
    "builtin_topologies",
    "load_topology",
    "parse_topology",
]

#: The only ranges a lab may use (benchmarking and documentation prefixes).
LAB_RANGES: Final = (
    ipaddress.ip_network("198.18.0.0/15"),
    ipaddress.ip_network("2001:db8::/32"),
)
#: The kernel defaults of a fresh namespace (6.18), for ``icmp_ratelimit = true``.
RATELIMIT_DEFAULTS: Final = {
    "interval_ms": 1000,
    "interval_ms_v6": 100,
    "per_sec": 1000,
    "burst": 50,
}
#: A node's name (its namespace is ``<prefix>-<name>``), and a shipped topology's.
NODE_NAME: Final = r"[a-z][a-z0-9]{0,11}"
_NAME_RE: Final = re.compile(NODE_NAME)
_TABLES: Final = ("filter", "nat", "mangle", "raw")
_ROUTE_TYPES: Final = ("unicast", "local", "blackhole")
_DNS_KINDS: Final = ("names", "nxdomain")


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a node: ``to`` a prefix (or ``default``), ``via`` its next hops
    (several: equal-cost multipath), or of ``kind`` local (AnyIP) or blackhole."""

    to: str
    family: int  # 4 or 6
    via: tuple[str, ...] = ()
    kind: str = "unicast"

    def ip_command(self) -> str:
        """The ``ip -batch`` line adding this route."""
        if self.kind == "local":
            return f"route add local {self.to} dev lo"
        if self.kind == "blackhole":
            return f"route add blackhole {self.to}"
        if len(self.via) == 1:
            return f"route add {self.to} via {self.via[0]}"
        hops = " ".join(f"nexthop via {hop}" for hop in self.via)
        to = self.to
        if to == "default":  # (spelled out: the family of `default` comes from `via` only)
            to = "::/0" if self.family == 6 else "0.0.0.0/0"
        return f"route add {to} {hops}"


@dataclass(frozen=True, slots=True)
class LinkEnd:
    node: str
    dev: str
    v4: str | None  # "198.18.1.2/24"
    v6: str | None


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair between two nodes; ``mtu`` None keeps the kernel's 1500."""

    ends: tuple[LinkEnd, LinkEnd]
    mtu: int | None = None


@dataclass(frozen=True, slots=True)
class Multipath:
    """How a router hashes flows onto its equal-cost next hops (per namespace):
    ``fib_multipath_hash_policy`` (0: L3, 1: L4, 2: L3 or inner L3, 3: custom
    ``fib_multipath_hash_fields``) for IPv4 and IPv6. The seed is set per run."""

    policy: int = 1
    policy_v6: int = 1
    fields: int | None = None
    fields_v6: int | None = None

    def sysctls(self) -> dict[str, str]:
        values = {
            "net/ipv4/fib_multipath_hash_policy": str(self.policy),
            "net/ipv6/fib_multipath_hash_policy": str(self.policy_v6),
        }
        if self.fields is not None:
            values["net/ipv4/fib_multipath_hash_fields"] = hex(self.fields)
        if self.fields_v6 is not None:
            values["net/ipv6/fib_multipath_hash_fields"] = hex(self.fields_v6)
        return values


@dataclass(frozen=True, slots=True)
class Listen:
    """The lab's listener on a node: TCP ports accepted, UDP ports echoed (RFC 862),
    DNS addresses (``names``: PTR from the topology's names; ``nxdomain``)."""

    tcp: tuple[int, ...] = ()
    udp_echo: tuple[int, ...] = ()
    dns: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Node:
    """One namespace: addresses on ``lo``, routes, and what it runs."""

    name: str
    router: bool = False
    addresses: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    multipath: Multipath | None = None
    #: ICMP error rate limits (keys of RATELIMIT_DEFAULTS); None: off, as in every lab.
    icmp_ratelimit: Mapping[str, int] | None = None
    iptables: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (table, rules)
    ip6tables: tuple[tuple[str, tuple[str, ...]], ...] = ()
    listen: Listen | None = None


@dataclass(frozen=True, slots=True)
class Topology:
    """A validated description. ``text`` is the TOML it came from (a lab's state file
    keeps it, so a later process sees the same network)."""

    name: str
    description: str
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    paths_v4: tuple[tuple[str, ...], ...]
    paths_v6: tuple[tuple[str, ...], ...]
    names: Mapping[str, str]
    text: str

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise UsageError(f"topology {self.name}: no node {name!r}; nodes are {self.roles}")

    def ends(self, name: str) -> list[LinkEnd]:
        """The node's link ends (its interfaces), eth0 first."""
        return [end for link in self.links for end in link.ends if end.node == name]

    def addresses(self, name: str, family: int) -> tuple[str, ...]:
        """The node's link addresses of one family (4 or 6), without prefix lengths."""
        found = []
        for end in self.ends(name):
            address = end.v4 if family == 4 else end.v6
            if address is not None:
                found.append(address.split("/")[0])
        return tuple(found)

    @property
    def multipath_nodes(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes if node.multipath is not None)


# -- reading ---------------------------------------------------------------------------


def builtin_topologies() -> dict[str, str]:
    """Names of the shipped topologies -> their one-line descriptions."""
    found = {}
    for entry in sorted(_builtin_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            name = entry.name.removesuffix(".toml")
            raw = _read_raw(entry.read_text(encoding="utf-8"), name)
            found[name] = str(raw.get("description", ""))
    return found


def load_topology(name_or_path: str) -> Topology:
    """A shipped topology by name, or a TOML file by path (anything with ``/`` or a
    ``.toml`` suffix). Raises UsageError with one line on a bad name or file."""
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read topology {name_or_path}: {exc.strerror}") from exc
        return parse_topology(text, path.stem)
    return parse_topology(_builtin_text(name_or_path), name_or_path)


def parse_topology(text: str, name: str) -> Topology:
    """Validate the TOML ``text`` of topology ``name``."""
    raw = _read_raw(text, name)
    return _Parser(name).topology(raw, text)


def _builtin_dir() -> Any:
    return resources.files("rawprobe") / "topologies"


def _builtin_text(name: str) -> str:
    if _NAME_RE.fullmatch(name) is None:
        raise UsageError(f"bad topology name {name!r}")
    entry = _builtin_dir() / f"{name}.toml"
    try:
        return str(entry.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(builtin_topologies())
        raise UsageError(f"no topology {name!r}: choose {known}, or give a file") from None


def _read_raw(text: str, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"topology {name}: not valid TOML: {exc}") from exc


class _Parser:
    """Checks every field, with messages that name the topology and the place."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, message: str) -> UsageError:
        return UsageError(f"topology {self.name}: {where}: {message}")

    def keys(self, table: Any, where: str, allowed: set[str] | None = None) -> dict[str, Any]:
        """``table`` checked to be a table with only ``allowed`` keys (None: any)."""
        if not isinstance(table, dict):
            raise self.fail(where, "must be a table")
        unknown = set(table) - allowed if allowed is not None else set()
        if unknown:
            raise self.fail(where, f"unknown key {sorted(unknown)[0]!r}")
        return table

    def topology(self, raw: dict[str, Any], text: str) -> Topology:
        allowed = {"description", "nodes", "links", "paths", "names"}
        self.keys(raw, "top level", allowed)
        nodes_raw = self.keys(raw.get("nodes", {}), "nodes")
        if not nodes_raw:
            raise self.fail("nodes", "at least one node is needed")
        nodes = tuple(self.node(name, table) for name, table in nodes_raw.items())
        names = {node.name for node in nodes}
        if "client" not in names:
            raise self.fail("nodes", "a node named 'client' is needed (where probes run)")
        links = self.links(raw.get("links", []), names)
        if sum(node.listen is not None for node in nodes) > 1:
            raise self.fail("nodes", "at most one node may listen")
        paths = self.keys(raw.get("paths", {}), "paths", {"v4", "v6"})
        names_raw = self.keys(raw.get("names", {}), "names")
        return Topology(
            name=self.name,
            description=self.text(raw.get("description", ""), "description"),
            nodes=nodes,
            links=links,
            paths_v4=self.paths(paths.get("v4", []), "paths.v4", 4),
            paths_v6=self.paths(paths.get("v6", []), "paths.v6", 6),
            names={
                self.address(a, "names", None): self.text(n, f"names.{a}")
                for a, n in names_raw.items()
            },
            text=text,
        )

    def node(self, name: str, table: Any) -> Node:
        where = f"nodes.{name}"
        if _NAME_RE.fullmatch(name) is None:
            raise self.fail(where, "a node name is a-z then up to 11 of a-z, 0-9")
        allowed = {"base", "router", "addresses", "routes", "multipath", "icmp_ratelimit"}
        allowed |= {"iptables", "ip6tables", "listen"}
        table = self.keys(table, where, allowed)
        if "base" in table:
            table = self.based(table, where)
        addresses = tuple(
            self.address(a, f"{where}.addresses", None, prefix=True)
            for a in self.array(table.get("addresses", []), f"{where}.addresses")
        )
        return Node(
            name=name,
            router=self.boolean(table.get("router", False), f"{where}.router"),
            addresses=addresses,
            routes=tuple(
                self.route(r, f"{where}.routes[{i}]")
                for i, r in enumerate(self.array(table.get("routes", []), f"{where}.routes"))
            ),
            multipath=self.multipath(table.get("multipath"), f"{where}.multipath"),
            icmp_ratelimit=self.ratelimit(table.get("icmp_ratelimit"), f"{where}.icmp_ratelimit"),
            iptables=self.firewall(table.get("iptables", {}), f"{where}.iptables"),
            ip6tables=self.firewall(table.get("ip6tables", {}), f"{where}.ip6tables"),
            listen=self.listen(table.get("listen"), f"{where}.listen"),
        )

    def based(self, table: dict[str, Any], where: str) -> dict[str, Any]:
        """The node ``base`` names (``TOPOLOGY:NODE``, shipped), without its routes
        through a next hop, with this node's fields over it (routes and addresses
        added to the base's)."""
        base = self.text(table["base"], f"{where}.base")
        topology, _, node = base.partition(":")
        raw = _read_raw(_builtin_text(topology), topology)
        found = (raw.get("nodes") or {}).get(node)
        if not isinstance(found, dict) or "base" in found:
            raise self.fail(f"{where}.base", f"no node {base!r} to start from")
        merged = {key: value for key, value in found.items() if key != "routes"}
        merged["routes"] = [r for r in found.get("routes", []) if "via" not in r]
        for key, value in table.items():
            if key in ("routes", "addresses") and isinstance(value, list):
                merged[key] = [*merged.get(key, []), *value]
            elif key != "base":
                merged[key] = value
        return merged

    def links(self, raw: Any, names: set[str]) -> tuple[Link, ...]:
        links = []
        count: dict[str, int] = {}
        for i, table in enumerate(self.array(raw, "links")):
            where = f"links[{i}]"
            table = self.keys(table, where, {"a", "b", "v4", "v6", "hosts", "mtu"})
            a, b = (self.text(table.get(k), f"{where}.{k}") for k in ("a", "b"))
            for end in (a, b):
                if end not in names:
                    raise self.fail(where, f"no node {end!r}")
            if a == b:
                raise self.fail(where, "a link joins two different nodes")
            hosts = self.array(table.get("hosts", [1, 2]), f"{where}.hosts")
            if len(hosts) != 2 or not all(isinstance(h, int) and h >= 1 for h in hosts):
                raise self.fail(f"{where}.hosts", "two host numbers, each at least 1")
            if "v4" not in table and "v6" not in table:
                raise self.fail(where, "a link needs a v4 or a v6 prefix (or both)")
            nets = {
                family: self.network(table[key], f"{where}.{key}", family)
                for family, key in ((4, "v4"), (6, "v6"))
                if key in table
            }
            mtu = table.get("mtu")
            if mtu is not None and not (isinstance(mtu, int) and 68 <= mtu <= 65535):
                raise self.fail(f"{where}.mtu", "an MTU is 68..65535")
            if mtu is not None and mtu < 1280 and 6 in nets:
                raise self.fail(f"{where}.mtu", "IPv6 needs an MTU of at least 1280")
            ends = []
            for node, host in zip((a, b), hosts, strict=True):
                index = count.get(node, 0)
                count[node] = index + 1
                v4 = self.host(nets.get(4), host, where)
                v6 = self.host(nets.get(6), host, where)
                ends.append(LinkEnd(node, f"eth{index}", v4, v6))
            links.append(Link((ends[0], ends[1]), mtu))
        return tuple(links)

    def host(self, net: Any, host: int, where: str) -> str | None:
        if net is None:
            return None
        last = net.num_addresses - (1 if net.version == 6 else 2)  # (IPv4: no broadcast)
        if not 1 <= host <= last:
            raise self.fail(where, f"host {host} does not fit in {net}")
        return f"{net[host]}/{net.prefixlen}"

    def route(self, raw: Any, where: str) -> Route:
        table = self.keys(raw, where, {"to", "via", "type"})
        kind = self.text(table.get("type", "unicast"), f"{where}.type")
        if kind not in _ROUTE_TYPES:
            raise self.fail(f"{where}.type", f"one of {', '.join(_ROUTE_TYPES)}")
        via_raw = table.get("via", [])
        via = tuple(
            self.address(v, f"{where}.via", None)
            for v in (via_raw if isinstance(via_raw, list) else [via_raw])
        )
        if (kind == "unicast") != bool(via):
            raise self.fail(where, "a unicast route needs `via`; local and blackhole none")
        to = self.text(table.get("to"), f"{where}.to")
        if to == "default":
            if kind != "unicast":
                raise self.fail(f"{where}.to", "only a unicast route can be default")
            family = ipaddress.ip_address(via[0]).version
        else:
            family = self.network(to, f"{where}.to", None).version
        if any(ipaddress.ip_address(v).version != family for v in via):
            raise self.fail(f"{where}.via", "next hops of another family than `to`")
        return Route(to=to, family=family, via=via, kind=kind)

    def multipath(self, raw: Any, where: str) -> Multipath | None:
        if raw is None:
            return None
        table = self.keys(raw, where, {"policy", "policy_v6", "fields", "fields_v6"})
        values = {}
        for key, value in table.items():
            top = 3 if key.startswith("policy") else 0xFFFFF
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise self.fail(f"{where}.{key}", f"an integer 0..{top}")
            values[key] = value
        return Multipath(**values)

    def ratelimit(self, raw: Any, where: str) -> Mapping[str, int] | None:
        if raw is None or raw is False:
            return None
        if raw is True:
            return dict(RATELIMIT_DEFAULTS)
        table = self.keys(raw, where, set(RATELIMIT_DEFAULTS))
        for key, value in table.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise self.fail(f"{where}.{key}", "a whole number >= 0")
        return {**RATELIMIT_DEFAULTS, **table}

    def firewall(self, raw: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        table = self.keys(raw, where, set(_TABLES))
        rules = []
        for name, lines in table.items():
            checked = tuple(self.text(r, f"{where}.{name}") for r in self.array(lines, where))
            if any("\n" in line or not line.startswith("-") for line in checked):
                raise self.fail(f"{where}.{name}", "each rule is one line such as '-A INPUT ...'")
            rules.append((name, checked))
        return tuple(rules)

    def listen(self, raw: Any, where: str) -> Listen | None:
        if raw is None:
            return None
        table = self.keys(raw, where, {"tcp", "udp_echo", "dns"})
        ports = {}
        for key in ("tcp", "udp_echo"):
            values = self.array(table.get(key, []), f"{where}.{key}")
            if not all(isinstance(p, int) and 1 <= p <= 65535 for p in values):
                raise self.fail(f"{where}.{key}", "ports are 1..65535")
            ports[key] = tuple(values)
        dns = self.keys(table.get("dns", {}), f"{where}.dns")
        zones = []
        for address, kind in dns.items():
            if address != "::":
                self.address(address, f"{where}.dns", None)
            if kind not in _DNS_KINDS:
                raise self.fail(f"{where}.dns.{address}", "`names` or `nxdomain`")
            zones.append((address, str(kind)))
        return Listen(ports["tcp"], ports["udp_echo"], tuple(zones))

    def paths(self, raw: Any, where: str, family: int) -> tuple[tuple[str, ...], ...]:
        return tuple(
            tuple(self.address(a, where, family) for a in self.array(path, where))
            for path in self.array(raw, where)
        )

    # -- scalars ---------------------------------------------------------------------

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, "must be a string")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, "must be an array")
        return value

    def address(self, value: Any, where: str, family: int | None, *, prefix: bool = False) -> str:
        """An address in the lab's ranges (``prefix``: with a prefix length)."""
        text = self.text(value, where)
        try:
            parsed = ipaddress.ip_interface(text) if prefix else ipaddress.ip_address(text)
        except ValueError as exc:
            raise self.fail(where, f"not an address: {text!r}") from exc
        if family is not None and parsed.version != family:
            raise self.fail(where, f"{text} is not an IPv{family} address")
        if not any(ipaddress.ip_address(str(text).split("/")[0]) in r for r in LAB_RANGES):
            raise self.fail(where, f"{text} is outside 198.18.0.0/15 and 2001:db8::/32")
        return text

    def network(self, value: Any, where: str, family: int | None) -> Any:
        text = self.text(value, where)
        try:
            net = ipaddress.ip_network(text)
        except ValueError as exc:
            raise self.fail(where, f"not a prefix: {text!r}") from exc
        if family is not None and net.version != family:
            raise self.fail(where, f"{text} is not an IPv{family} prefix")
        if not any(net.version == r.version and net.subnet_of(r) for r in LAB_RANGES):  # type: ignore[arg-type]
            raise self.fail(where, f"{text} is outside 198.18.0.0/15 and 2001:db8::/32")
        return net
