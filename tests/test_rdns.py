"""Reverse DNS with a hard bound (rawprobe/rdns.py): simulated lookups on both
backends, and dnspython's real queries against a DNS server on loopback."""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute

from rawprobe.rdns import MAX_IN_FLIGHT, ReverseNames, read_hosts

pytestmark = pytest.mark.anyio

ADDRESSES = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(300)]


async def _never(_address: str) -> str | None:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


async def test_waits_for_names_share_one_budget_whatever_the_number_of_lookups() -> None:
    start = anyio.current_time()
    async with ReverseNames(lookup=_never, budget_s=0.3, hosts=None) as names:
        for i in range(0, 300, 10):  # 30 hop lines, each waiting for its own names
            assert await names.names(ADDRESSES[i : i + 10]) == {}
        waited = anyio.current_time() - start
    elapsed = anyio.current_time() - start
    assert 0.3 <= waited < 1.0, waited  # once, not 30 times (and never the 2 s timeout)
    assert elapsed - waited < 0.5  # unfinished lookups are cancelled on exit, not awaited


async def test_lookups_in_flight_are_capped_at_64() -> None:
    in_flight = 0
    peak = 0
    release = anyio.Event()

    async def lookup(address: str) -> str | None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await release.wait()
        finally:
            in_flight -= 1
        return f"h{address.replace('.', '-')}.test"

    async with ReverseNames(lookup=lookup, hosts=None) as names:
        names.want(ADDRESSES)
        await anyio.sleep(0.1)
        assert in_flight == MAX_IN_FLIGHT == 64
        release.set()
        found = await names.names(ADDRESSES)
    assert peak == 64
    assert len(found) == 300 and found["198.18.0.1"] == "h198-18-0-1.test"


async def test_every_answer_is_cached_failures_too() -> None:
    asked: list[str] = []

    async def lookup(address: str) -> str | None:
        asked.append(address)
        return "named.test" if address.endswith(".1") else None

    async with ReverseNames(lookup=lookup, hosts=None) as names:
        for _ in range(3):
            found = await names.names(["198.18.1.1", "198.18.1.2", "198.18.1.1"])
            assert found == {"198.18.1.1": "named.test"}
    assert sorted(asked) == ["198.18.1.1", "198.18.1.2"]
    assert names.queries == 2


async def test_a_lookup_is_given_up_after_its_timeout_and_others_go_on() -> None:
    async def lookup(address: str) -> str | None:
        if address == "198.18.1.1":
            await anyio.sleep_forever()
        await anyio.sleep(0.05)
        return "quick.test"

    async with ReverseNames(lookup=lookup, lookup_timeout_s=0.2, hosts=None) as names:
        found = await names.names(["198.18.1.1", "198.18.1.2"])
        elapsed_ok = names.budget_left_s > 1.0  # ended by the lookup timeout, not the budget
    assert found == {"198.18.1.2": "quick.test"}
    assert elapsed_ok


async def test_the_hosts_file_comes_first_and_loopback_is_never_queried(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "# comment\n127.0.0.1 localhost\n198.18.1.1  gw.test gw  # router\n"
        "198.18.1.1 second.test\n2001:db8:0:0::1 six.test\nnot-an-address x\n",
        encoding="utf-8",
    )
    asked: list[str] = []

    async def lookup(address: str) -> str | None:
        asked.append(address)
        return None

    async with ReverseNames(lookup=lookup, hosts=str(hosts)) as names:
        found = await names.names(["198.18.1.1", "127.0.0.1", "2001:db8::1", "::1", "127.0.0.2"])
    assert found == {"198.18.1.1": "gw.test", "127.0.0.1": "localhost", "2001:db8::1": "six.test"}
    assert asked == []  # ::1 and 127.0.0.2: loopback, from the hosts file only
    assert read_hosts(str(tmp_path / "missing")) == {}


async def test_names_arrive_in_the_background_and_are_announced() -> None:
    seen: list[tuple[str, str]] = []

    async def lookup(address: str) -> str | None:
        await anyio.sleep(0.05)
        return "late.test"

    async with ReverseNames(lookup=lookup, hosts=None) as names:
        names.on_found = lambda address, name: seen.append((address, name))
        names.want(["198.18.1.1"])
        assert names.known(["198.18.1.1"]) == {}  # want() never waits
        await anyio.sleep(0.2)
        assert names.found == {"198.18.1.1": "late.test"}
    assert seen == [("198.18.1.1", "late.test")]


async def test_hostile_names_are_escaped() -> None:
    async def lookup(address: str) -> str | None:
        return "[bold red]x\x1b[2J.test"

    async with ReverseNames(lookup=lookup, hosts=None) as names:
        found = await names.names(["198.18.1.1"])
    assert found == {"198.18.1.1": "\\091bold\\032red\\093x\\027\\0912J.test"}


# -- dnspython against a server on loopback ----------------------------------------------


def _ptr_reply(query: bytes, table: dict[str, str]) -> bytes:
    """A minimal DNS answer: the PTR of ``table`` for the question, else NXDOMAIN."""
    (ident,) = struct.unpack_from("!H", query)
    labels, i = [], 12
    while query[i]:
        labels.append(query[i + 1 : i + 1 + query[i]].decode().lower())
        i += 1 + query[i]
    question = query[12 : i + 5]
    name = table.get(".".join(labels))
    head = struct.pack("!HHHHHH", ident, 0x8400 | (0 if name else 3), 1, int(bool(name)), 0, 0)
    if not name:
        return head + question
    rdata = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return head + question + struct.pack("!HHHIH", 0xC00C, 12, 1, 60, len(rdata)) + rdata


@asynccontextmanager
async def dns_server(table: dict[str, str] | None) -> AsyncIterator[int]:
    """A UDP DNS server on 127.0.0.1 (``table`` None: one that never answers); yields
    its port."""
    reverse = {ipaddress.ip_address(a).reverse_pointer: n for a, n in (table or {}).items()}
    async with (
        await anyio.create_udp_socket(local_host="127.0.0.1") as sock,
        anyio.create_task_group() as task_group,
    ):

        async def serve() -> None:
            async for query, peer in sock:
                if table is not None:
                    await sock.sendto(_ptr_reply(query, reverse), *peer)

        task_group.start_soon(serve)
        yield sock.extra(SocketAttribute.local_port)
        task_group.cancel_scope.cancel()


async def test_dnspython_queries_get_ptr_names() -> None:
    table = {"198.18.1.1": "r1.lab.test", "2001:db8:1::1": "r1.lab.test"}
    async with dns_server(table) as port:
        threads = threading.active_count()  # (the server's getaddrinfo started one)
        resolver = ReverseNames(nameservers=["127.0.0.1"], port=port, hosts=None)
        async with resolver as names:
            found = await names.names(["198.18.1.1", "2001:db8:1::1", "198.18.9.9"])
            assert names.budget_left_s > 1.0  # NXDOMAIN is an answer: no waiting
        assert threading.active_count() == threads  # no worker thread for asyncio.run to join
    assert found == {"198.18.1.1": "r1.lab.test", "2001:db8:1::1": "r1.lab.test"}


async def test_a_silent_nameserver_costs_the_budget_once_and_no_thread() -> None:
    async with dns_server(None) as port:
        threads = threading.active_count()
        start = anyio.current_time()
        async with ReverseNames(
            nameservers=["127.0.0.1"], port=port, hosts=None, budget_s=0.5
        ) as names:
            for address in ADDRESSES[:20]:
                assert await names.names([address]) == {}
        elapsed = anyio.current_time() - start
        assert threading.active_count() == threads
    assert elapsed < 1.5, elapsed


async def test_resolv_conf_names_the_nameservers(tmp_path: Path) -> None:
    async with dns_server({"198.18.1.1": "from-conf.test"}) as port:
        conf = tmp_path / "resolv.conf"
        conf.write_text("search lab.test\nnameserver 127.0.0.1\noptions timeout:5\n")
        async with ReverseNames(resolv_conf=str(conf), port=port, hosts=None) as names:
            assert await names.names(["198.18.1.1"]) == {"198.18.1.1": "from-conf.test"}


def test_dnspython_is_imported_only_when_names_are_looked_up() -> None:
    code = (
        "import sys, rawprobe.cli.app, rawprobe.cli.trace_cmd, rawprobe.rdns\n"
        "print(sorted(m for m in sys.modules if m == 'dns' or m.startswith('dns.')))"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # start-up of every command stays as it was
