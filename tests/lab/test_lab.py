"""The lab behaves like the network DESIGN.md section 5 promises (real kernel, root)."""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rawprobe.lab as labmod
from rawprobe.errors import LabError, UsageError
from rawprobe.lab import Lab, down_all, lab_status, lab_up

pytestmark = pytest.mark.lab

# Prints "open", "timeout" or "error <errno>" for a TCP connect from where it runs.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("open")
except TimeoutError:
    print("timeout")
except OSError as exc:
    print("error", exc.errno)
"""


def _connect(lab: Lab, addr: str, port: int, timeout_s: float = 1.0) -> str:
    out = lab.run("client", sys.executable, "-I", "-c", CONNECT, addr, str(port), str(timeout_s))
    return str(out.stdout).strip()


def _hops(output: str) -> list[str]:
    """Addresses of a ``traceroute -n -q 1`` output, one per hop."""
    return [m.group(1) for m in re.finditer(r"^\s*\d+\s+(\S+)", output, re.MULTILINE)]


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _unique(tag: str) -> str:
    return f"rpz{tag}{os.getpid() % 100000}{os.urandom(2).hex()}"


# --------------------------------------------------------------------------- reachability


@pytest.mark.parametrize(
    "addr", [labmod.TARGET_V4, labmod.TARGET_V6, "198.19.77.3", "2001:db8:ff::1234"]
)
def test_client_pings_target_and_any_anyip_address(lab: Lab, addr: str) -> None:
    res = lab.run("client", "ping", "-n", "-c", "1", "-W", "2", addr, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"from {addr}" in res.stdout


@pytest.mark.parametrize(
    ("flag", "dst", "routers"),
    [
        ("-4", labmod.TARGET_V4, labmod.ROUTER_V4),
        ("-6", labmod.TARGET_V6, labmod.ROUTER_V6),
    ],
)
def test_traceroute_shows_three_routers_then_target(
    lab: Lab, flag: str, dst: str, routers: tuple[str, ...]
) -> None:
    res = lab.run("client", "traceroute", flag, "-n", "-q", "1", "-w", "1", dst)
    assert _hops(res.stdout) == [*routers, dst], res.stdout


def test_router_addresses_are_the_client_facing_ones(lab: Lab) -> None:
    assert lab.router_v4 == ("198.18.1.1", "198.18.2.2", "198.18.3.2")
    assert lab.router_v6 == ("2001:db8:1::1", "2001:db8:2::2", "2001:db8:3::2")
    assert (lab.client_v4, lab.client_v6) == ("198.18.1.2", "2001:db8:1::2")


@pytest.mark.parametrize("addr", [labmod.SILENT_V4, labmod.SILENT_V6])
def test_silent_address_gets_no_answer_at_all(lab: Lab, addr: str) -> None:
    res = lab.run("client", "ping", "-n", "-c", "1", "-W", "1", addr, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "From " not in res.stdout  # no ICMP error either: silence
    assert addr in (lab.silent_v4, lab.silent_v6)


def test_client_has_no_route_outside_the_lab_ranges(lab: Lab) -> None:
    # Routers have no default route: anything outside 198.18/15 and 2001:db8::/32 dies
    # at r1 (this only asks the routing table, nothing is sent).
    res = lab.run("r1", "ip", "route", "get", "192.0.2.1", check=False)
    assert res.returncode != 0


# --------------------------------------------------------------------------- TCP + firewall


@pytest.mark.parametrize("addr", [labmod.TARGET_V4, labmod.TARGET_V6])
def test_tcp_open_drop_reject(lab: Lab, addr: str) -> None:
    assert set(labmod.LISTEN_PORTS) <= set(lab.open_ports)
    for port in lab.open_ports:
        assert _connect(lab, addr, port) == "open", port
    assert _connect(lab, addr, lab.drop_ports[0], timeout_s=0.5) == "timeout"
    # Admin-prohibited maps to EHOSTUNREACH (ICMPv4 code 13) and EACCES (ICMPv6 code 1).
    # Over v6 the first ICMP arrives while connect() still holds the socket lock and only
    # becomes a soft error (TcpExtLockDroppedIcmps); the SYN retransmitted after 1 s
    # fails the connect. Hence the 3 s timeout.
    want = errno.EHOSTUNREACH if ":" not in addr else errno.EACCES
    assert _connect(lab, addr, lab.reject_ports[0], timeout_s=3.0) == f"error {want}"
    assert _connect(lab, addr, 3999) == f"error {errno.ECONNREFUSED}"  # closed: RST


def test_anyip_address_accepts_tcp(lab: Lab) -> None:
    assert _connect(lab, "198.19.200.9", 80) == "open"
    assert _connect(lab, "2001:db8:ff::abcd", 443) == "open"


# --------------------------------------------------------------------------- in-process


def _netns_id() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def test_entered_creates_sockets_in_the_namespace_and_returns(lab: Lab) -> None:
    before = _netns_id()
    with lab.entered("client"):
        assert _netns_id() != before
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    assert _netns_id() == before
    with udp, tcp:
        udp.connect((lab.target_v4, 9))  # route lookup only: nothing is sent
        assert udp.getsockname()[0] == lab.client_v4
        tcp.settimeout(2)
        tcp.connect((lab.target_v6, 22))  # the socket still lives in the client ns
        assert tcp.getsockname()[0] == lab.client_v6


def test_entered_restores_namespace_after_an_exception(lab: Lab) -> None:
    before = _netns_id()
    with pytest.raises(RuntimeError), lab.entered("r2"):
        raise RuntimeError("boom")
    assert _netns_id() == before


def _echo_request(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"rawprobe-lab"
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return header[:2] + struct.pack("!H", ~total & 0xFFFF) + header[4:]


def _time_exceeded_from_r1(lab: Lab, count: int) -> int:
    """Send ``count`` TTL-1 echo requests at once; count r1's time-exceeded answers."""
    with lab.entered("client"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        for seq in range(count):
            sock.sendto(_echo_request(0x4C42, seq), (lab.target_v4, 0))
        sock.settimeout(0.3)
        got = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                data, (src, _) = sock.recvfrom(2048)
            except TimeoutError:
                break
            ihl = (data[0] & 0x0F) * 4
            if src == lab.router_v4[0] and data[ihl] == 11:
                got += 1
        return got


def test_icmp_ratelimit_off_by_default_and_switchable(lab: Lab) -> None:
    assert _time_exceeded_from_r1(lab, 100) == 100
    lab.set_icmp_ratelimit(True)
    try:
        limited = _time_exceeded_from_r1(lab, 100)
    finally:
        lab.set_icmp_ratelimit(False)
    assert limited <= 20, limited  # token bucket: a small burst, then 1 per second
    assert _time_exceeded_from_r1(lab, 100) == 100


def test_ping_group_range_admits_icmp_datagram_sockets(lab: Lab) -> None:
    def try_open() -> int:
        with lab.entered("client"):
            try:
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
            except OSError as exc:
                return exc.errno or -1
        return 0

    assert try_open() == errno.EACCES  # namespace default "1 0" admits no group
    lab.set_ping_group_range("client", 0, 2147483647)
    try:
        assert try_open() == 0
    finally:
        lab.set_ping_group_range("client", 1, 0)


def test_unknown_role_is_a_usage_error(lab: Lab) -> None:
    with pytest.raises(UsageError):
        lab.ns("r9")


def test_run_check_raises_lab_error_with_stderr(lab: Lab) -> None:
    with pytest.raises(LabError, match="No such file"):
        lab.run("client", "ls", "/nonexistent-rawprobe")


# --------------------------------------------------------------------------- lifecycle


@pytest.fixture
def own_lab(lab_required: None) -> Iterator[Lab]:
    """A private lab for lifecycle tests (never the shared one)."""
    built = lab_up(_unique("own"))
    try:
        yield built
    finally:
        built.down()


def test_load_and_down_remove_everything(own_lab: Lab) -> None:
    names = set(own_lab.namespaces)
    assert names <= _netns_names()
    assert names <= set(lab_status())
    assert own_lab.state_path.exists()
    resolv_confs = [Path(own_lab.resolv_conf(role)) for role in own_lab.roles]
    assert all(labmod.NXDOMAIN_DNS_V4 in p.read_text() for p in resolv_confs)
    pid = own_lab.listener_pid
    assert pid is not None

    other = Lab.load(own_lab.prefix)  # as a later CLI process would
    assert other.listener_pid == pid
    other.down()

    assert not names & _netns_names()
    assert not own_lab.state_path.exists()
    assert not any(p.parent.exists() for p in resolv_confs)  # /etc/netns/NS went too
    own_lab.down()  # idempotent, reaps our listener
    assert not os.path.exists(f"/proc/{pid}")
    with pytest.raises(LabError):
        Lab.load(own_lab.prefix)


def test_failed_build_leaves_nothing(lab_required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = _unique("fail")
    monkeypatch.setattr(labmod, "_ip_batch", lambda role, topology: "bogus-command\n")
    with pytest.raises(LabError, match="bogus-command") as info:
        lab_up(prefix)
    assert "ip -n" in str(info.value)  # names the failing command
    assert not {n for n in _netns_names() if n.startswith(prefix + "-")}
    assert not (labmod.STATE_DIR / f"{prefix}.json").exists()


def test_prefix_collision_fails_without_touching_the_other(lab_required: None) -> None:
    prefix = _unique("col")
    squatter = f"{prefix}-r2"
    subprocess.run(["ip", "netns", "add", squatter], check=True)
    try:
        with pytest.raises(LabError, match="already exist"):
            lab_up(prefix)
        assert squatter in _netns_names()
        assert not {n for n in _netns_names() if n.startswith(prefix) and n != squatter}
        assert not (labmod.STATE_DIR / f"{prefix}.json").exists()
    finally:
        subprocess.run(["ip", "netns", "delete", squatter], check=True)


def test_bad_prefix_is_refused(lab_required: None) -> None:
    for bad in ("xx1", "rp-1", "rp", "rpABC"):
        with pytest.raises(UsageError):
            lab_up(bad)


def test_down_all_cleans_what_a_crashed_run_left(lab: Lab) -> None:
    sweep = _unique("all")
    left = lab_up(sweep + "a")  # a whole lab nobody tears down
    orphan = f"{sweep}b-target"  # a namespace without a state file
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    stale = labmod.STATE_DIR / f"{sweep}c.json"  # a state file without namespaces
    stale.write_text("{}", encoding="utf-8")
    try:
        removed = down_all(startswith=sweep)
        assert removed == sorted([*left.namespaces, orphan])
        assert not (set(removed) & _netns_names())
        assert not left.state_path.exists() and not stale.exists()
        assert not any(os.path.exists(left.resolv_conf(role)) for role in left.roles)
        assert lab.exists()  # other labs untouched
    finally:
        left.down()
        subprocess.run(["ip", "netns", "delete", orphan], check=False, capture_output=True)
        stale.unlink(missing_ok=True)
