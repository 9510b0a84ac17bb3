"""A throw-away network of Linux network namespaces for tests, benchmarks and demos.

What to build is data: a topology (``rawprobe/topologies/NAME.toml``, or a user's own
file; format and validation in rawprobe/topology.py). :func:`lab_up` and :func:`lab`
build any of them (``topology="ecmp4"``); the default, and the one every constant of
this module describes, is the line (each box is a namespace named
``f"{prefix}-{role}"``)::

    client --- r1 --- r2 --- r3 --- target
         .1.0/24  .2.0/24  .3.0/24  .4.0/24      (198.18.N.0/24, 2001:db8:N::/64)

Each link is a veth pair created directly inside its two namespaces (a node's links are
``eth0``, ``eth1``, ... in the topology's order: in the line, ``eth0`` faces the client),
so no interface ever exists in the root namespace and concurrent labs cannot collide on
interface names. On link N the client-side end has host number 1 and the target-side
end host number 2 (the client itself is ``.2`` on link 1).

The target answers for all of 198.19.0.0/16 and 2001:db8:ff::/64 (AnyIP local routes),
listens on :data:`OPEN_PORTS`, drops TCP :data:`DROP_PORTS` silently and rejects TCP
:data:`REJECT_PORTS` with ICMP admin-prohibited. Over UDP it answers on
:data:`UDP_OPEN_PORTS` (:data:`UDP_ECHO_PORTS` echo every datagram, RFC 862; 53 is a DNS
responder), drops :data:`UDP_DROP_PORTS` and rejects :data:`UDP_REJECT_PORTS` the same
way; every other UDP port is closed (ICMP port unreachable). 198.18.200.0/24 and
2001:db8:ee::/64 are routed to the target and blackholed there: no answer, no ICMP
error. Routers forward, answer with the address of their client-facing interface
(checked with traceroute) and have ICMP rate limiting off until
:meth:`Lab.set_icmp_ratelimit` turns it on (the target too: pass ``roles=["target"]``).

Checked on kernel 6.18 (``traceroute -n -q 1``): v4 to 198.19.0.5 shows 198.18.1.1,
198.18.2.2, 198.18.3.2, 198.19.0.5; v6 to 2001:db8:ff::5 shows 2001:db8:1::1, ::2::2,
::3::2, 2001:db8:ff::5. Kernel facts worth knowing: echo replies and TCP always come
from the AnyIP address asked for, but ICMPv6 *errors* about an AnyIP address other than
:data:`TARGET_V6` (which is also configured on ``lo``) come from the target's link
address 2001:db8:4::2; a TCP ``connect()`` to a REJECT port fails at once over v4
(EHOSTUNREACH) but only after the 1 s SYN retransmit over v6 (EACCES), because the
first ICMPv6 error arrives while connect() still holds the socket lock.

Multipath routers (``multipath`` in a topology) hash flows onto their next hops with the
topology's ``fib_multipath_hash_policy``; their seed (``net.ipv4.fib_multipath_hash_seed``,
kernel 6.11 and later, which hashes IPv6 too) is set per run: :func:`lab_up`'s ``seed``
(a random one by default), :meth:`Lab.set_multipath_seed` later. Each router gets its
own seed derived from the run's: with one seed everywhere, a router behind another
would see only the flows the first one hashed its way and send them all one way.

Traffic rule: nothing here sends a packet; all addresses lie in 198.18.0.0/15 and
2001:db8::/32 (rawprobe/topology.py refuses any other), and the client has no route
outside them.

Every lab has a state file ``/run/rawprobe/labs/<prefix>.json`` (claimed with O_EXCL
before anything is built, removed by :meth:`Lab.down`), so a later process can find it
(:meth:`Lab.load`, :func:`lab_status`) and :func:`down_all` can remove what a crashed run
left behind; namespaces matching the naming scheme are found even without a state file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from rawprobe.errors import LabError, UsageError
from rawprobe.topology import (
    NODE_NAME,
    RATELIMIT_DEFAULTS,
    Node,
    Topology,
    builtin_topologies,
    load_topology,
    parse_topology,
)
from rawprobe.transport.sockets import setns_net

__all__ = [
    "CLIENT_V4",
    "CLIENT_V6",
    "DNS_V4",
    "DROP_PORTS",
    "EXTRA_PORTS",
    "LAB_NAMES",
    "LISTEN_PORTS",
    "NXDOMAIN_DNS_V4",
    "OPEN_PORTS",
    "REJECT_PORTS",
    "ROLES",
    "ROUTERS",
    "ROUTER_V4",
    "ROUTER_V6",
    "SILENT_NET_V4",
    "SILENT_NET_V6",
    "SILENT_V4",
    "SILENT_V6",
    "STATE_DIR",
    "TARGET_ANYIP_V4",
    "TARGET_ANYIP_V6",
    "TARGET_V4",
    "TARGET_V6",
    "UDP_DROP_PORTS",
    "UDP_ECHO_PORTS",
    "UDP_OPEN_PORTS",
    "UDP_REJECT_PORTS",
    "Lab",
    "check_lab_possible",
    "down_all",
    "lab",
    "lab_prefixes",
    "lab_status",
    "lab_up",
    "topology_names",
]

ROLES: Final = ("client", "r1", "r2", "r3", "target")
ROUTERS: Final = ("r1", "r2", "r3")

#: Links in order from the client; link N joins ROLES[N-1] (its eth1, or eth0 for the
#: client) and ROLES[N] (its eth0).
LINKS_V4: Final = ("198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24", "198.18.4.0/24")
LINKS_V6: Final = ("2001:db8:1::/64", "2001:db8:2::/64", "2001:db8:3::/64", "2001:db8:4::/64")

CLIENT_V4: Final = "198.18.1.2"
CLIENT_V6: Final = "2001:db8:1::2"
#: Client-facing address of r1, r2, r3: what a traceroute from the client shows.
ROUTER_V4: Final = ("198.18.1.1", "198.18.2.2", "198.18.3.2")
ROUTER_V6: Final = ("2001:db8:1::1", "2001:db8:2::2", "2001:db8:3::2")
#: Address of the target on its link (it also owns every address of the AnyIP ranges).
TARGET_LINK_V4: Final = "198.18.4.2"
TARGET_LINK_V6: Final = "2001:db8:4::2"
TARGET_ANYIP_V4: Final = "198.19.0.0/16"
TARGET_ANYIP_V6: Final = "2001:db8:ff::/64"
TARGET_V4: Final = "198.19.0.5"
TARGET_V6: Final = "2001:db8:ff::5"
SILENT_NET_V4: Final = "198.18.200.0/24"
SILENT_NET_V6: Final = "2001:db8:ee::/64"
SILENT_V4: Final = "198.18.200.1"
SILENT_V6: Final = "2001:db8:ee::1"

#: The lab's DNS server (the target's listener process, on AnyIP addresses): PTR
#: answers from :data:`LAB_NAMES` at DNS_V4; NXDOMAIN for every query at
#: NXDOMAIN_DNS_V4 and at every other target address, v4 and v6 (UDP port 53 is open
#: everywhere on the target, for UDP scans); NXDOMAIN_DNS_V4 is the resolver every lab
#: namespace starts with (see :meth:`Lab.set_resolver`), so no lookup made inside a lab
#: leaves it.
DNS_V4: Final = "198.19.0.53"
NXDOMAIN_DNS_V4: Final = "198.19.0.54"
#: Made-up reverse names of the lab's fixed addresses (``.test``: RFC 2606).
LAB_NAMES: Final[Mapping[str, str]] = {
    CLIENT_V4: "client.lab.test",
    CLIENT_V6: "client.lab.test",
    **{a: f"r{i + 1}.lab.test" for i, a in enumerate(ROUTER_V4)},
    **{a: f"r{i + 1}.lab.test" for i, a in enumerate(ROUTER_V6)},
    TARGET_LINK_V4: "target-link.lab.test",
    TARGET_LINK_V6: "target-link.lab.test",
    TARGET_V4: "target.lab.test",
    TARGET_V6: "target.lab.test",
}

LISTEN_PORTS: Final = (22, 80, 443, 8080)
#: More open ports, chosen outside the well-known range and the firewalled ranges.
EXTRA_PORTS: Final = (3306, 5432, 8443, 65535)
#: Every TCP port the target accepts connections on (v4 and v6), sorted.
OPEN_PORTS: Final = tuple(sorted(LISTEN_PORTS + EXTRA_PORTS))
#: TCP ports the target drops without an answer.
DROP_PORTS: Final = range(1000, 2000)
#: TCP ports the target rejects with ICMP admin-prohibited (v6: adm-prohibited).
REJECT_PORTS: Final = range(2000, 3000)
#: UDP ports where the target echoes every datagram back (from the address it was sent
#: to, on every target address): ports with a scan payload or low enough for a scan of
#: ports 1-40, and none that a test expects closed (traceroute's 33434 and up).
UDP_ECHO_PORTS: Final = (7, 123, 161, 1900)
#: Every UDP port that answers (53: the DNS responder), v4 and v6, sorted.
UDP_OPEN_PORTS: Final = tuple(sorted((*UDP_ECHO_PORTS, 53)))
#: UDP ports the target drops without an answer.
UDP_DROP_PORTS: Final = range(1100, 1200)
#: UDP ports the target rejects with ICMP admin-prohibited (v6: adm-prohibited).
UDP_REJECT_PORTS: Final = range(1200, 1300)

STATE_DIR: Final = Path("/run/rawprobe/labs")
NETNS_DIR: Final = Path("/run/netns")
#: ``ip netns exec NS`` bind-mounts the files of ``/etc/netns/NS/`` over ``/etc``.
ETC_NETNS_DIR: Final = Path("/etc/netns")

_PREFIX_RE: Final = re.compile(r"rp[0-9a-z]{1,20}")
#: A lab namespace: prefix, dash, node name (rawprobe/topology.py's node names).
_NS_RE: Final = re.compile(rf"(rp[0-9a-z]{{1,20}})-({NODE_NAME})")
_CMD_TIMEOUT_S: Final = 20.0
_LISTENER_READY_TIMEOUT_S: Final = 10.0
_SIOCGIFFLAGS: Final = 0x8913
_IFF_RUNNING: Final = 0x40
_IFREQ: Final = struct.Struct("16sh22x")  # struct ifreq: name, ifr_flags, padding

# ICMP rate-limit sysctls (checked on 6.18: all per-netns) for rawprobe/topology.py's
# keys, whose RATELIMIT_DEFAULTS are the kernel's (set_icmp_ratelimit(True)).
_RATELIMIT_SYSCTLS: Final = {
    "interval_ms": "net/ipv4/icmp_ratelimit",
    "interval_ms_v6": "net/ipv6/icmp/ratelimit",
    "per_sec": "net/ipv4/icmp_msgs_per_sec",
    "burst": "net/ipv4/icmp_msgs_burst",
}


def _ratelimit(values: Mapping[str, int]) -> dict[str, str]:
    return {_RATELIMIT_SYSCTLS[key]: str(value) for key, value in values.items()}


_RATELIMIT_ON: Final = _ratelimit(RATELIMIT_DEFAULTS)
# Per-destination limit off (0 ms) and the per-namespace global token bucket far out of
# reach (per_sec * HZ must fit in an int, hence not INT_MAX).
_RATELIMIT_OFF: Final = _ratelimit(
    {"interval_ms": 0, "interval_ms_v6": 0, "per_sec": 1000000, "burst": 1000000}
)
_SEED_SYSCTL: Final = "net/ipv4/fib_multipath_hash_seed"
#: The tables iptables-restore is given, with their built-in chains.
_CHAINS: Final = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
_COMMON_SYSCTLS: Final = {
    "net/ipv6/conf/all/accept_dad": "0",
    "net/ipv6/conf/default/accept_dad": "0",
    "net/ipv6/conf/default/accept_ra": "0",
    "net/ipv6/conf/default/router_solicitations": "0",
    **_RATELIMIT_OFF,
}
_ROUTER_SYSCTLS: Final = {
    "net/ipv4/ip_forward": "1",
    "net/ipv6/conf/all/forwarding": "1",
}

# The target's listener: dual-stack sockets on every open port; prints "ready" once all
# are listening; accepts and closes; exits when its namespace loses its name (so a
# manual `ip netns del` cannot leave it holding the namespace alive). It is also the
# lab's DNS server: argv[2] maps each DNS address to {reverse name: PTR name}; it
# answers PTR queries from that table and everything else with NXDOMAIN ("::" is every
# address of the target; the kernel prefers the sockets bound to one address). argv[3]
# lists the UDP echo ports. UDP sockets on "::" answer from the address a datagram was
# sent to (IPV6_PKTINFO, v4-mapped for v4), which IP_FREEBIND admits for AnyIP ones.
_LISTENER_SRC: Final = r"""
import json, os, selectors, socket, struct, sys
ns_path, zones, echo = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ports = [int(p) for p in sys.argv[4:]]
me = os.stat("/proc/self/ns/net")
sel = selectors.DefaultSelector()
IP_FREEBIND, IPV6_RECVPKTINFO, IPV6_PKTINFO = 15, 49, 50

def dns_reply(data, table):
    if len(data) < 12:
        return None
    ident, flags, qdcount = struct.unpack_from("!HHH", data)
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(data) or data[i] > 63:
            return None
        n, i = data[i], i + 1
        if n == 0:
            break
        labels.append(data[i:i + n].decode("ascii", "replace").lower())
        i += n
    if i + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, i)
    name = table.get(".".join(labels)) if (qtype, qclass) == (12, 1) else None
    head = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | (0 if name else 3),
                       1, 1 if name else 0, 0, 0)
    reply = head + data[12:i + 4]
    if name:
        rdata = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        reply += struct.pack("!HHHIH", 0xC00C, 12, 1, 60, len(rdata)) + rdata
    return reply

def udp_socket(address, port, answer):
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if address == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    s.bind((address, port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, answer)

for address, table in zones.items():
    udp_socket(address, 53, lambda query, table=table: dns_reply(query, table))
for port in echo:
    udp_socket("::", port, lambda datagram: datagram)
for port in ports:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(4096)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
null = os.open(os.devnull, os.O_RDWR)
sys.stdout.write("ready\n")
sys.stdout.flush()
for fd in (0, 1, 2):
    os.dup2(null, fd)
while True:
    for key, _ in sel.select(timeout=2.0):
        if key.data is not None:  # a UDP socket: key.data answers a datagram
            for _ in range(64):
                try:
                    query, ancillary, _, peer = key.fileobj.recvmsg(2048, 64)
                except OSError:
                    break
                reply = key.data(query)
                source = [(level, kind, data[:16] + bytes(4))
                          for level, kind, data in ancillary if kind == IPV6_PKTINFO]
                if reply is not None:
                    try:
                        key.fileobj.sendmsg([reply], source, 0, peer)
                    except OSError:
                        pass
            continue
        for _ in range(64):
            try:
                conn, _ = key.fileobj.accept()
            except OSError:
                break
            conn.close()
    try:
        st = os.stat(ns_path)
    except OSError:
        break
    if (st.st_dev, st.st_ino) != (me.st_dev, me.st_ino):
        break
"""


# --------------------------------------------------------------------------- helpers


def _fmt_cmd(argv: Sequence[str]) -> str:
    return " ".join(argv)


def _cmd(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run a command, return stdout; any failure becomes LabError with the command."""
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_CMD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f"lab command failed: {_fmt_cmd(argv)}: {exc}") from exc
    if proc.returncode != 0:
        raise LabError(_failure(argv, proc.returncode, proc.stderr, stdin))
    return proc.stdout


def _failure(argv: Sequence[str], rc: int, stderr: str, stdin: str | None) -> str:
    msg = f"lab command failed (exit {rc}): {_fmt_cmd(argv)}: {stderr.strip()}"
    if stdin:
        msg += "\n--- input ---\n" + stdin.rstrip()
    return msg


def _cmds_parallel(jobs: Sequence[tuple[Sequence[str], str | None]]) -> None:
    """Run independent commands concurrently; the first failure raises LabError."""
    started: list[tuple[Sequence[str], str | None, subprocess.Popen[str]]] = []
    try:
        for argv, stdin in jobs:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            started.append((argv, stdin, proc))
    except OSError as exc:
        for _, _, proc in started:
            proc.kill()
            proc.communicate()
        raise LabError(f"lab command failed: {exc}") from exc
    errors: list[str] = []
    for argv, stdin, proc in started:
        try:
            _, err = proc.communicate(stdin, timeout=_CMD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            errors.append(f"lab command timed out: {_fmt_cmd(argv)}")
            continue
        if proc.returncode != 0:
            errors.append(_failure(argv, proc.returncode, err, stdin))
    if errors:
        raise LabError(errors[0])


def _ns_names() -> list[str]:
    """Names of all named network namespaces (those under /run/netns)."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def _ns_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _pids_in_namespaces(names: Iterable[str]) -> list[int]:
    """Processes whose network namespace is one of the named ones (never our own pid)."""
    inodes: set[str] = set()
    for name in names:
        ident = _ns_identity(str(NETNS_DIR / name))
        if ident is not None:
            inodes.add(f"net:[{ident[1]}]")
    if not inodes:
        return []
    me = os.getpid()
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            link = os.readlink(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if link in inodes:
            pids.append(int(entry.name))
    return pids


def _kill_and_delete(names: Sequence[str]) -> list[str]:
    """Kill every process in the named namespaces, then delete those that exist."""
    existing = set(_ns_names())
    present = [n for n in names if n in existing]
    for pid in _pids_in_namespaces(present):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if present:
        batch = "".join(f"netns delete {n}\n" for n in present)
        with contextlib.suppress(LabError):
            _cmd(["ip", "-force", "-batch", "-"], stdin=batch)
        left = set(_ns_names()).intersection(present)
        if left:
            raise LabError(f"could not delete lab namespaces: {', '.join(sorted(left))}")
    return present


def _write_sysctls(values: Mapping[str, str]) -> None:
    """Write sysctls of the calling thread's network namespace (paths under /proc/sys)."""
    for key, value in values.items():
        path = f"/proc/sys/{key}"
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(value)
        except OSError as exc:
            raise LabError(f"cannot set sysctl {key.replace('/', '.')}={value}: {exc}") from exc


def _ptr_table(names: Mapping[str, str]) -> dict[str, str]:
    """Reverse name (``5.0.19.198.in-addr.arpa``) -> PTR name, for the DNS server."""
    return {ipaddress.ip_address(a).reverse_pointer: n for a, n in names.items()}


def _write_resolv_conf(ns: str, nameservers: Sequence[str]) -> None:
    """``/etc/netns/NS/resolv.conf`` naming ``nameservers``, replaced atomically (the
    temporary file lies outside the folder: ``ip netns exec`` mounts all it holds)."""
    folder = ETC_NETNS_DIR / ns
    tmp = ETC_NETNS_DIR / f".{ns}.resolv.conf.tmp"
    text = "# written by rawprobe's lab; removed with it\n"
    text += "".join(f"nameserver {a}\n" for a in nameservers)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="ascii")
        tmp.replace(folder / "resolv.conf")
    except OSError as exc:
        raise LabError(f"cannot write {folder / 'resolv.conf'}: {exc}") from exc


def _remove_etc_netns(names: Iterable[str]) -> None:
    """Remove what :func:`_write_resolv_conf` wrote for ``names`` (and the folders, when
    nothing else is left in them)."""
    for name in names:
        folder = ETC_NETNS_DIR / name
        for path in (folder / "resolv.conf", ETC_NETNS_DIR / f".{name}.resolv.conf.tmp"):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()


def _new_prefix() -> str:
    return f"rp{os.getpid() % 100000}{secrets.token_hex(2)}"


def _check_prefix(prefix: str) -> str:
    if not _PREFIX_RE.fullmatch(prefix):
        raise UsageError(
            f"bad lab prefix {prefix!r}: want 'rp' followed by 1-20 of [0-9a-z] (no dash)"
        )
    return prefix


def _state_path(prefix: str) -> Path:
    return STATE_DIR / f"{prefix}.json"


@functools.cache
def _default_topology() -> Topology:
    return load_topology("default")


def _topology(topology: str | Topology | None) -> Topology:
    """A topology given by name, file or value (None: the default line)."""
    if topology is None:
        return _default_topology()
    return topology if isinstance(topology, Topology) else load_topology(topology)


def _check_seed(seed: int) -> int:
    if not 0 <= seed <= 0xFFFFFFFF:
        raise UsageError(f"bad multipath seed {seed}: must be 0..4294967295")
    return seed


def _router_seed(seed: int, node: str) -> int:
    """The multipath hash seed of router ``node`` for a run's ``seed`` (never 0, which
    asks the kernel for its boot-time random one, the same in every namespace)."""
    return zlib.crc32(f"{seed}/{node}".encode()) or 1


# --------------------------------------------------------------------------- the lab


class Lab:
    """A handle on one lab: its names, addresses, and ways to run code inside it.

    Instances come from :func:`lab_up` (built by this process, which then owns the
    target's listener process) or :meth:`Lab.load` (a lab built by another process).
    All address attributes are plain strings; port attributes are tuples/ranges. The
    class attributes describe the default line; in any topology ``target_v4`` and the
    ports hold for a node built on ``default:target``, ``client_v4`` is the client's
    first address, ``paths_v4`` is the topology's truth (the routers a trace from the
    client shows, one tuple per path) and ``router_v4`` its only path (empty when there
    are several).
    """

    target_v4: str = TARGET_V4
    target_v6: str = TARGET_V6
    client_v4: str = CLIENT_V4
    client_v6: str = CLIENT_V6
    router_v4: tuple[str, ...] = ROUTER_V4
    router_v6: tuple[str, ...] = ROUTER_V6
    silent_v4: str = SILENT_V4
    silent_v6: str = SILENT_V6
    open_ports: tuple[int, ...] = OPEN_PORTS
    drop_ports: range = DROP_PORTS
    reject_ports: range = REJECT_PORTS
    udp_open_ports: tuple[int, ...] = UDP_OPEN_PORTS
    udp_drop_ports: range = UDP_DROP_PORTS
    udp_reject_ports: range = UDP_REJECT_PORTS
    roles: tuple[str, ...] = ROLES
    paths_v4: tuple[tuple[str, ...], ...] = (ROUTER_V4,)
    paths_v6: tuple[tuple[str, ...], ...] = (ROUTER_V6,)

    def __init__(self, prefix: str, topology: str | Topology | None = None) -> None:
        self.prefix: str = _check_prefix(prefix)
        self.topology: Topology = _topology(topology)
        #: The run's multipath hash seed (None: none set, or the kernel has no such sysctl).
        self.seed: int | None = None
        self.listener_pid: int | None = None
        self._listener: subprocess.Popen[bytes] | None = None
        t = self.topology
        if t is not _default_topology():
            self.roles = t.roles
            self.client_v4, self.client_v6 = (
                next(iter(t.addresses("client", f)), "") for f in (4, 6)
            )
            self.paths_v4, self.paths_v6 = t.paths_v4, t.paths_v6
            self.router_v4 = t.paths_v4[0] if len(t.paths_v4) == 1 else ()
            self.router_v6 = t.paths_v6[0] if len(t.paths_v6) == 1 else ()

    def __repr__(self) -> str:
        return f"Lab(prefix={self.prefix!r}, topology={self.topology.name!r})"

    # -- names ---------------------------------------------------------------------

    def ns(self, role: str) -> str:
        """Full namespace name of ``role`` (a node of the topology: :data:`ROLES` in
        the default line)."""
        if role not in self.roles:
            raise UsageError(f"unknown lab role {role!r}; roles are {', '.join(self.roles)}")
        return f"{self.prefix}-{role}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.ns(r) for r in self.roles)

    def netns_path(self, role: str) -> str:
        """Path of the namespace's bind mount, for setns() or ``nsenter --net=``."""
        return str(NETNS_DIR / self.ns(role))

    @property
    def state_path(self) -> Path:
        return _state_path(self.prefix)

    def exists(self) -> bool:
        """True when all the topology's namespaces exist."""
        return set(self.namespaces) <= set(_ns_names())

    # -- running things inside -----------------------------------------------------

    def run(
        self, role: str, *argv: str, check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside ``role``'s namespace (``ip netns exec``) and wait.

        Output is captured as text unless the caller passes ``stdout``, ``stderr``,
        ``capture_output`` or ``text``-related options itself. With ``check`` a non-zero
        exit raises :class:`LabError` carrying the command and its stderr; a
        ``timeout`` keyword is passed through (``subprocess.TimeoutExpired``).
        """
        full = ["ip", "netns", "exec", self.ns(role), *argv]
        if not {"stdout", "stderr", "capture_output"} & kw.keys():
            kw["capture_output"] = True
        if not {"text", "universal_newlines", "encoding", "errors"} & kw.keys():
            kw["text"] = True
        proc: subprocess.CompletedProcess[Any] = subprocess.run(full, check=False, **kw)
        if check and proc.returncode != 0:
            err = proc.stderr
            if isinstance(err, bytes):
                err = err.decode(errors="replace")
            raise LabError(
                _failure(full, proc.returncode, err if isinstance(err, str) else "", None)
            )
        return proc

    def popen(self, role: str, *argv: str, **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``role``'s namespace; the caller owns the process."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns(role), *argv], **kw)

    @contextlib.contextmanager
    def entered(self, role: str) -> Iterator[None]:
        """Put the *calling thread* into ``role``'s network namespace for the block.

        Sockets created inside the block belong to that namespace for their whole life
        and keep working after the thread returns to its original namespace (saved from
        ``/proc/thread-self/ns/net`` first, restored on exit even on error). Other
        threads are unaffected. Do not ``await`` across the block in async code: other
        tasks would run in the namespace too. Raises :class:`LabError` when the
        namespace cannot be entered or, worse, the original one cannot be restored.
        """
        path = self.netns_path(role)
        try:
            target_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise LabError(f"cannot open namespace {path}: {exc}") from exc
        try:
            saved_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(target_fd)
            raise LabError(f"cannot save the current network namespace: {exc}") from exc
        try:
            try:
                setns_net(target_fd)
            except OSError as exc:
                raise LabError(f"setns({path}) failed: {exc}") from exc
            try:
                yield
            finally:
                try:
                    setns_net(saved_fd)
                except OSError as exc:
                    raise LabError(
                        f"cannot return to the original network namespace: {exc}"
                    ) from exc
        finally:
            os.close(target_fd)
            os.close(saved_fd)

    # -- knobs ---------------------------------------------------------------------

    def set_icmp_ratelimit(self, enabled: bool, roles: Sequence[str] | None = None) -> None:
        """Turn the kernel's ICMP error rate limits on (kernel defaults) or off.

        Applies to the topology's routers unless ``roles`` says otherwise (the target's
        REJECT replies and UDP port unreachables are ICMP errors too: pass ``["target"]``
        or ``ROLES``; on, the target answers a burst of about six closed UDP ports, then
        about one a second, as a UDP scan meets it; checked in
        tests/lab/test_udp_lab.py). "On" means the
        defaults of a fresh namespace on 6.18: ``icmp_ratelimit`` 1000 ms,
        ``ipv6.icmp.ratelimit`` 100 ms, ``icmp_msgs_per_sec`` 1000, ``icmp_msgs_burst``
        50 (all per-namespace). Labs start with every limit off.
        """
        values = _RATELIMIT_ON if enabled else _RATELIMIT_OFF
        if roles is None:
            roles = [node.name for node in self.topology.nodes if node.router]
        for role in roles:
            with self.entered(role):
                _write_sysctls(values)

    def set_multipath_seed(self, seed: int) -> None:
        """Give the multipath routers new hash seeds, derived from ``seed`` (one per
        router; see the module's docstring): flows that took one path may now take
        another. Raises :class:`LabError` when the kernel has no
        ``net.ipv4.fib_multipath_hash_seed`` (before 6.11); that one sysctl seeds the
        IPv6 hash too."""
        _check_seed(seed)
        for role in self.topology.multipath_nodes:
            with self.entered(role):
                if not os.path.exists(f"/proc/sys/{_SEED_SYSCTL}"):
                    raise LabError("this kernel has no net.ipv4.fib_multipath_hash_seed (6.11+)")
                _write_sysctls({_SEED_SYSCTL: str(_router_seed(seed, role))})
        self.seed = seed

    def set_resolver(self, role: str, nameservers: Sequence[str] | None = None) -> None:
        """Point ``role``'s resolver (``/etc/netns/NS/resolv.conf``, read by processes
        started with ``ip netns exec``, e.g. :meth:`run`) at ``nameservers``.

        Every namespace starts with :data:`NXDOMAIN_DNS_V4` (an instant "no name"), and
        ``None`` restores it. :data:`DNS_V4` answers with :data:`LAB_NAMES`; a blackholed
        address such as :data:`SILENT_V4` never answers. Code running in-process
        (:meth:`entered`) does not see this file: pass :meth:`resolv_conf` to it."""
        _write_resolv_conf(self.ns(role), nameservers or (NXDOMAIN_DNS_V4,))

    def resolv_conf(self, role: str) -> str:
        """Path of ``role``'s resolv.conf (see :meth:`set_resolver`)."""
        return str(ETC_NETNS_DIR / self.ns(role) / "resolv.conf")

    def set_ping_group_range(self, role: str, lo: int, hi: int) -> None:
        """Set ``net.ipv4.ping_group_range`` of ``role`` (which gids may open ICMP
        datagram sockets; the default ``1 0`` admits nobody, ``0 2147483647`` all)."""
        with self.entered(role):
            _write_sysctls({"net/ipv4/ping_group_range": f"{lo}\t{hi}"})

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def load(cls, prefix: str) -> Lab:
        """A handle on an existing lab built by any process, from its state file (or,
        failing that, its namespaces). Raises :class:`LabError` when there is none."""
        path = _state_path(_check_prefix(prefix))
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            found = _lab_namespaces().get(prefix, [])
            if not found:
                raise LabError(f"no lab with prefix {prefix!r}") from None
            return cls._from_namespaces(prefix, found)
        except (OSError, ValueError) as exc:
            raise LabError(f"unreadable lab state {path}: {exc}") from exc
        if not isinstance(state, dict):
            raise LabError(f"unreadable lab state {path}: not an object")
        topology = state.get("topology")
        if isinstance(topology, dict):  # (rawprobe-lab/1 files have none: the line)
            name, text = topology.get("name"), topology.get("toml")
            if not isinstance(name, str) or not isinstance(text, str):
                raise LabError(f"unreadable lab state {path}: bad topology")
            try:
                self = cls(prefix, parse_topology(text, name))
            except UsageError as exc:
                raise LabError(f"unreadable lab state {path}: {exc}") from exc
        else:
            self = cls(prefix)
        pid, seed = state.get("listener_pid"), state.get("seed")
        self.listener_pid = pid if isinstance(pid, int) else None
        self.seed = seed if isinstance(seed, int) else None
        return self

    @classmethod
    def _from_namespaces(cls, prefix: str, names: Sequence[str]) -> Lab:
        """A handle on a lab whose state file is gone: enough to tear it down."""
        roles = tuple(name.partition("-")[2] for name in names)
        if set(roles) <= set(ROLES):
            return cls(prefix)
        nodes = tuple(Node(role) for role in roles)
        bare = Topology("unknown", "", nodes, (), (), (), {}, "")
        return cls(prefix, bare)

    def down(self) -> None:
        """Tear the lab down: kill every process left in its namespaces (the listener
        included), delete the namespaces (their veths go with them) and the state
        file. Idempotent; safe on a half-built lab. Raises :class:`LabError` only when
        a namespace survives deletion."""
        try:
            _kill_and_delete(self.namespaces)
        finally:
            _remove_etc_netns(self.namespaces)
            if self._listener is not None:
                proc, self._listener = self._listener, None
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            with contextlib.suppress(FileNotFoundError):
                self.state_path.unlink()

    def _write_state(self, *, exclusive: bool) -> None:
        state = {
            "schema": "rawprobe-lab/1",
            "prefix": self.prefix,
            "namespaces": list(self.namespaces),
            "topology": {"name": self.topology.name, "toml": self.topology.text},
            "seed": self.seed,
            "listener_pid": self.listener_pid,
            "created_unix": time.time(),
            "builder_pid": os.getpid(),
        }
        data = json.dumps(state, indent=1) + "\n"
        try:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            if exclusive:
                with open(self.state_path, "x", encoding="utf-8") as f:
                    f.write(data)
            else:
                tmp = self.state_path.with_suffix(".tmp")
                tmp.write_text(data, encoding="utf-8")
                tmp.replace(self.state_path)
        except FileExistsError as exc:
            raise LabError(f"lab prefix {self.prefix!r} is in use ({self.state_path})") from exc
        except OSError as exc:
            raise LabError(f"cannot write lab state {self.state_path}: {exc}") from exc

    def _build(self) -> None:
        topology = self.topology
        names = self.namespaces
        _cmd(["ip", "-batch", "-"], stdin="".join(f"netns add {n}\n" for n in names))
        can_seed = True
        for node in topology.nodes:
            with self.entered(node.name):
                _write_sysctls(_COMMON_SYSCTLS)
                if node.router:
                    _write_sysctls(_ROUTER_SYSCTLS)
                if node.icmp_ratelimit is not None:
                    _write_sysctls(_ratelimit(node.icmp_ratelimit))
                if node.multipath is not None:
                    _write_sysctls(node.multipath.sysctls())
                    can_seed = can_seed and os.path.exists(f"/proc/sys/{_SEED_SYSCTL}")
        # Distinct ifindexes matter: a veth whose ifindex equals its peer's (both 2 in
        # fresh namespaces) gets its carrier event deferred by linkwatch for up to a second.
        veths = ""
        for i, link in enumerate(topology.links):
            a, b = link.ends
            veths += (
                f"link add {a.dev} index {100 + 2 * i} netns {self.ns(a.node)} type veth"
                f" peer name {b.dev} index {101 + 2 * i} netns {self.ns(b.node)}\n"
            )
        if veths:
            _cmd(["ip", "-batch", "-"], stdin=veths)
        jobs: list[tuple[Sequence[str], str | None]] = [
            (["ip", "-n", self.ns(role), "-batch", "-"], _ip_batch(role, topology))
            for role in self.roles
        ]
        for node in topology.nodes:
            for tool, tables in (("iptables-restore", node.iptables),
                                 ("ip6tables-restore", node.ip6tables)):  # fmt: skip
                if tables:
                    jobs.append((["ip", "netns", "exec", self.ns(node.name), tool],
                                 _restore_input(tables)))  # fmt: skip
        _cmds_parallel(jobs)
        if self.seed is not None and not can_seed:
            self.seed = None  # (the kernel seeds the hash itself: see set_multipath_seed)
        if self.seed is not None and topology.multipath_nodes:
            self.set_multipath_seed(self.seed)
        for role in self.roles:  # no lookup made in the lab may reach the host's resolver
            self.set_resolver(role)
        self._wait_links_running()
        self._start_listener()
        self._write_state(exclusive=False)

    def _wait_links_running(self, timeout_s: float = 3.0) -> None:
        """Block until every veth is operationally up (IFF_RUNNING): before that its
        transmit queue may not be active yet and the first packets could be lost."""
        pending = [(end.node, end.dev) for link in self.topology.links for end in link.ends]
        deadline = time.monotonic() + timeout_s
        while True:
            pending = [(role, dev) for role, dev in pending if not self._running(role, dev)]
            if not pending:
                return
            if time.monotonic() > deadline:
                which = ", ".join(f"{self.ns(r)}/{d}" for r, d in pending)
                raise LabError(f"lab links did not come up within {timeout_s} s: {which}")
            time.sleep(0.005)

    def _running(self, role: str, dev: str) -> bool:
        with self.entered(role), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                res = fcntl.ioctl(s, _SIOCGIFFLAGS, _IFREQ.pack(dev.encode(), 0))
            except OSError as exc:
                raise LabError(f"cannot read flags of {self.ns(role)}/{dev}: {exc}") from exc
        flags: int = _IFREQ.unpack(res)[1]
        return bool(flags & _IFF_RUNNING)

    def _start_listener(self) -> None:
        """Start the listener on the node that has one (at most one: see topology.py)
        and wait until it says it is ready."""
        node = next((n for n in self.topology.nodes if n.listen is not None), None)
        if node is None or node.listen is None:
            return
        listen, table = node.listen, _ptr_table(self.topology.names)
        zones = {address: table if kind == "names" else {} for address, kind in listen.dns}
        argv = [
            "ip",
            "netns",
            "exec",
            self.ns(node.name),
            sys.executable,
            "-I",
            "-c",
            _LISTENER_SRC,
            self.netns_path(node.name),
            json.dumps(zones),
            json.dumps(listen.udp_echo),
            *map(str, listen.tcp),
        ]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise LabError(f"cannot start the {node.name} listener: {exc}") from exc
        self._listener = proc
        self.listener_pid = proc.pid
        assert proc.stdout is not None and proc.stderr is not None
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                ready = sel.select(timeout=_LISTENER_READY_TIMEOUT_S)
            line = proc.stdout.readline() if ready else b""
            if line != b"ready\n":
                proc.kill()
                proc.wait()
                err = proc.stderr.read().decode(errors="replace").strip()
                raise LabError(
                    f"{node.name} listener failed to start (ports {listen.tcp}): {err or 'timeout'}"
                )
        finally:
            proc.stdout.close()
            proc.stderr.close()


def _ip_batch(role: str, topology: Topology | None = None) -> str:
    """The ``ip -batch`` script configuring one namespace of ``topology`` (None: the
    default line): its links' addresses, MTU and state, addresses on lo, routes."""
    topology = topology or _default_topology()
    node = topology.node(role)
    lines = ["link set lo up"]
    for link in topology.links:
        for end in link.ends:
            if end.node != role:
                continue
            if end.v4 is not None:
                lines.append(f"addr add {end.v4} dev {end.dev}")
            if end.v6 is not None:
                lines.append(f"addr add {end.v6} dev {end.dev} nodad")
            if link.mtu is not None:
                lines.append(f"link set {end.dev} mtu {link.mtu}")
            lines.append(f"link set {end.dev} up")
    for address in node.addresses:
        lines.append(f"addr add {address} dev lo" + (" nodad" if ":" in address else ""))
    lines += [route.ip_command() for route in node.routes]
    return "\n".join(lines) + "\n"


def _restore_input(tables: Sequence[tuple[str, Sequence[str]]]) -> str:
    """iptables-restore's input for ``(table, rules)`` pairs (built-in chains ACCEPT)."""
    text = ""
    for table, rules in tables:
        chains = "".join(f":{chain} ACCEPT [0:0]\n" for chain in _CHAINS[table])
        text += f"*{table}\n{chains}" + "".join(f"{rule}\n" for rule in rules) + "COMMIT\n"
    return text


# --------------------------------------------------------------------------- module API


def check_lab_possible() -> str | None:
    """None when a lab can be built here, else a one-line reason (for skipping)."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth, iptables): run as root"
    for tool in ("ip", "iptables-restore", "ip6tables-restore"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool!r} on PATH"
    if not os.path.exists("/proc/thread-self/ns/net"):
        return "no /proc/thread-self/ns/net: network namespaces unavailable"
    try:
        proc = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"'ip netns list' failed: {exc}"
    if proc.returncode != 0:
        return f"'ip netns list' failed: {proc.stderr.strip()}"
    return None


def lab_up(
    prefix: str | None = None, topology: str | Topology | None = None, *, seed: int | None = None
) -> Lab:
    """Build a lab and return it (the default line in well under a second).

    ``topology`` is a shipped topology's name (see :func:`topology_names`), a TOML
    file's path or a parsed :class:`Topology`; None is the default line. ``seed`` is the
    run's multipath hash seed (0..2**32-1; None: a random one; ignored where the kernel
    has no such sysctl, and by topologies without multipath routers); ``Lab.seed``
    says which. ``prefix`` defaults to a fresh ``rp<pid><4 hex>``. On any failure
    everything built so far is torn down and :class:`LabError` is raised with the
    failing command and its stderr; a prefix already in use (state file or any of its
    namespaces) raises :class:`LabError` without touching the existing lab. A bad
    prefix, topology or seed raises :class:`UsageError`.
    """
    chosen = _topology(topology)  # (a bad file is reported first, root or not)
    reason = check_lab_possible()
    if reason is not None:
        raise LabError(reason)
    new = Lab(_new_prefix() if prefix is None else prefix, chosen)
    if new.topology.multipath_nodes:
        new.seed = secrets.randbits(32) if seed is None else _check_seed(seed)
    new._write_state(exclusive=True)  # claims the prefix against concurrent runs
    taken = set(new.namespaces) & set(_ns_names())
    if taken:
        new.state_path.unlink(missing_ok=True)
        raise LabError(f"lab namespaces already exist: {', '.join(sorted(taken))}")
    try:
        new._build()
    except BaseException as exc:
        try:
            new.down()
        except LabError as cleanup_exc:
            exc.add_note(f"teardown after the failure also failed: {cleanup_exc}")
        raise
    return new


@contextlib.contextmanager
def lab(
    prefix: str | None = None, topology: str | Topology | None = None, *, seed: int | None = None
) -> Iterator[Lab]:
    """``with lab() as net:`` builds a lab (see :func:`lab_up`) and tears it down
    however the block ends."""
    built = lab_up(prefix, topology, seed=seed)
    try:
        yield built
    finally:
        built.down()


def _lab_namespaces() -> dict[str, list[str]]:
    """Namespaces matching our naming scheme, grouped by prefix."""
    found: dict[str, list[str]] = {}
    for name in _ns_names():
        m = _NS_RE.fullmatch(name)
        if m:
            found.setdefault(m.group(1), []).append(name)
    return found


def _state_prefixes() -> list[str]:
    try:
        return sorted(
            p.stem for p in STATE_DIR.glob("*.json") if _PREFIX_RE.fullmatch(p.stem) is not None
        )
    except OSError:
        return []


def lab_prefixes() -> list[str]:
    """Prefixes of every lab that has a state file or namespaces, sorted."""
    return sorted(set(_lab_namespaces()) | set(_state_prefixes()))


def lab_status() -> list[str]:
    """Namespace names that belong to rawprobe labs (``rp...-<role>``), sorted."""
    return sorted(n for names in _lab_namespaces().values() for n in names)


def down_all(startswith: str = "rp") -> list[str]:
    """Remove every rawprobe lab on the machine, whoever built it: kill the processes
    inside, delete the namespaces, remove the state files. Returns the namespace names
    removed, sorted. Namespaces of other tools (not ``rp...-<role>``) are never touched.

    ``startswith`` narrows the sweep to prefixes starting with it (tests use this so
    that they do not tear down labs of concurrent runs)."""
    removed: list[str] = []
    by_prefix = _lab_namespaces()
    for prefix in sorted(set(by_prefix) | set(_state_prefixes())):
        if not prefix.startswith(startswith):
            continue
        found = by_prefix.get(prefix, [])
        removed += _kill_and_delete(found)
        _remove_etc_netns({*found, *_state_namespaces(prefix), *(f"{prefix}-{r}" for r in ROLES)})
        with contextlib.suppress(FileNotFoundError):
            _state_path(prefix).unlink()
    return sorted(removed)


def _state_namespaces(prefix: str) -> list[str]:
    """The namespaces a lab's state file names (none when it is missing or unreadable)."""
    try:
        state = json.loads(_state_path(prefix).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = state.get("namespaces") if isinstance(state, dict) else None
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and _NS_RE.fullmatch(n)]


def topology_names() -> dict[str, str]:
    """The shipped topologies: name -> one-line description."""
    return builtin_topologies()
