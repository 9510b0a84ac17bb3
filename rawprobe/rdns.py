"""Reverse DNS (PTR) for output that shows names, with a hard bound on the wait.

Why not ``getnameinfo``: it runs in a worker thread that cancellation cannot interrupt,
and ``asyncio.run`` joins its executor's threads at exit, so a resolver that never
answers costs glibc's whole timeout per lookup however the caller gives up. Here the
queries are dnspython's async ones (asyncio and trio): cancelling a lookup closes its
socket, and nothing outlives the ``async with`` block.

Contract of :class:`ReverseNames` (one per run):

- :meth:`~ReverseNames.want` starts lookups in the background and never blocks; at most
  ``max_in_flight`` (64) are in flight at once, each given up after ``lookup_timeout_s``.
- :meth:`~ReverseNames.names` waits for the lookups of the addresses it is given, but all
  the waits of one instance together, and the import of dnspython on entry (0.1-0.5 s,
  before any probe), last at most ``budget_s`` (2 s): once spent, it answers at once
  with the names already known. Whatever the number of targets and hops, names add at
  most ``budget_s`` to a run, plus the cancellation of unfinished lookups on exit.
- Every answer is cached for the run, failures too: an address is asked once.
- ``/etc/hosts`` is read first (glibc's ``hosts: files dns``, which traceroute's
  getnameinfo follows; dnspython does not read it). Loopback, unspecified and multicast
  addresses are named from it only: no query leaves for them.
- Names are returned in DNS master-file text; any byte outside letters, digits, ``-``,
  ``_`` and ``.`` is escaped as ``\\DDD``, so a hostile PTR record cannot carry
  terminal controls or markup.

The nameservers come from ``resolv_conf`` (``/etc/resolv.conf``; glibc's 127.0.0.1 when
it names none) unless ``nameservers`` is given: tests point them into the lab. Each
query opens its socket when it is sent, in the network namespace of the thread running
the event loop then; code that enters a lab namespace only while opening sockets
(``Lab.entered``) must not aim this at a lab address from outside the lab.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

__all__ = ["BUDGET_S", "LOOKUP_TIMEOUT_S", "MAX_IN_FLIGHT", "ReverseNames", "read_hosts"]

#: Total time the output of one run may wait for names.
BUDGET_S = 2.0
#: One lookup (all its tries and nameservers) is given up after this.
LOOKUP_TIMEOUT_S = 2.0
#: Lookups in flight at once.
MAX_IN_FLIGHT = 64
#: One try at one nameserver; the next try (or nameserver) comes after it.
_TRY_TIMEOUT_S = 1.0

_UNSAFE = re.compile(r"[^A-Za-z0-9._\-\\]")

Lookup = Callable[[str], Awaitable[str | None]]


def read_hosts(path: str) -> dict[str, str]:
    """Address -> canonical name (the first name of the first line naming it) of a
    hosts file; empty when it cannot be read."""
    names: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return names
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0].split("%", 1)[0]).compressed
        except ValueError:
            continue
        names.setdefault(address, fields[1])
    return names


def _safe(name: str) -> str:
    return _UNSAFE.sub(lambda m: "".join(f"\\{b:03d}" for b in m.group().encode()), name)


def _query_worthy(address: str) -> bool:
    """False for addresses no DNS server can know (loopback, unspecified, multicast)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast)


class ReverseNames:
    """Reverse lookups of one run: background, bounded, cached (see the module doc).

    Use as ``async with ReverseNames() as names:``. ``found`` is the live mapping of
    the names found so far (a view may render it as it grows); ``on_found(address,
    name)``, when set, is called in the event loop as each name arrives.
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        resolv_conf: str = "/etc/resolv.conf",
        hosts: str | None = "/etc/hosts",
        budget_s: float = BUDGET_S,
        lookup_timeout_s: float = LOOKUP_TIMEOUT_S,
        max_in_flight: int = MAX_IN_FLIGHT,
        lookup: Lookup | None = None,
    ) -> None:
        self.found: dict[str, str] = {}
        self.on_found: Callable[[str, str], None] | None = None
        self.queries = 0  #: lookups started (hosts-file and cached answers excluded)
        self._nameservers = list(nameservers) if nameservers is not None else None
        self._port = port
        self._resolv_conf = resolv_conf
        self._hosts_path = hosts
        self._hosts: dict[str, str] = {}
        self._budget_left_s = budget_s
        self._lookup_timeout_s = lookup_timeout_s
        self._limiter = anyio.Semaphore(max_in_flight)
        self._lookup: Lookup | None = lookup
        self._resolver: Any = None
        self._backend: Any = None
        self._asked: set[str] = set()
        self._pending: dict[str, anyio.Event] = {}
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> ReverseNames:
        start = time.monotonic()
        if self._hosts_path is not None:
            self._hosts = read_hosts(self._hosts_path)
        if self._lookup is None:
            self._lookup = self._dns_lookup
            self._resolver = self._make_resolver()
        self._budget_left_s -= time.monotonic() - start  # the import is part of the cost
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        task_group, self._task_group = self._task_group, None
        task_group.cancel_scope.cancel()  # unfinished lookups: their sockets close now
        return await task_group.__aexit__(exc_type, exc, tb)

    # -- asking ------------------------------------------------------------------------

    def want(self, addresses: Iterable[str]) -> None:
        """Start the lookups of ``addresses`` not asked yet; never blocks."""
        for address in addresses:
            if address in self._asked:
                continue
            self._asked.add(address)
            name = self._hosts.get(address)
            if name is not None:
                self._found(address, _safe(name))
                continue
            if not _query_worthy(address):
                continue
            if self._task_group is None:
                raise RuntimeError("ReverseNames used outside its async with block")
            self._pending[address] = anyio.Event()
            self.queries += 1
            self._task_group.start_soon(self._run, address)

    def known(self, addresses: Iterable[str]) -> dict[str, str]:
        """The names of ``addresses`` known now (no lookup started, no wait)."""
        return {a: self.found[a] for a in addresses if a in self.found}

    async def names(self, addresses: Iterable[str]) -> dict[str, str]:
        """Names of ``addresses`` (those that have one), waiting for their lookups
        within what is left of the budget."""
        wanted = list(dict.fromkeys(addresses))
        self.want(wanted)
        waits = [self._pending[a] for a in wanted if a in self._pending]
        if waits and self._budget_left_s > 0:
            start = anyio.current_time()
            with anyio.move_on_after(self._budget_left_s):
                for event in waits:
                    await event.wait()
            self._budget_left_s -= anyio.current_time() - start
        return self.known(wanted)

    @property
    def budget_left_s(self) -> float:
        return max(0.0, self._budget_left_s)

    # -- answering -----------------------------------------------------------------------

    def _found(self, address: str, name: str) -> None:
        self.found[address] = name
        if self.on_found is not None:
            self.on_found(address, name)

    async def _run(self, address: str) -> None:
        assert self._lookup is not None
        name: str | None = None
        try:
            async with self._limiter:
                with anyio.move_on_after(self._lookup_timeout_s):
                    name = await self._lookup(address)
        finally:
            self._pending.pop(address).set()
        if name:
            self._found(address, _safe(name))

    def _make_resolver(self) -> Any:
        """dnspython's async resolver, imported here: only runs that want names pay for
        the import (about 0.1 s)."""
        import dns.asyncbackend
        import dns.asyncresolver
        import dns.resolver

        # Named per instance: dnspython's default backend is the first one it saw in
        # the process, wrong for a later run on the other event loop.
        self._backend = dns.asyncbackend.get_backend(dns.asyncbackend.sniff())

        resolver = dns.asyncresolver.Resolver(configure=False)
        if self._nameservers is not None:
            resolver.nameservers = self._nameservers
        else:
            try:
                resolver.read_resolv_conf(self._resolv_conf)
            except dns.resolver.NoResolverConfiguration:
                resolver.nameservers = ["127.0.0.1"]  # glibc's default
        resolver.port = self._port
        resolver.timeout = min(float(resolver.timeout), _TRY_TIMEOUT_S)
        resolver.lifetime = self._lookup_timeout_s
        resolver.cache = None
        return resolver

    async def _dns_lookup(self, address: str) -> str | None:
        import dns.exception

        try:
            answer = await self._resolver.resolve_address(address, backend=self._backend)
        except (dns.exception.DNSException, OSError, ValueError):
            return None
        for rdata in answer:
            target = getattr(rdata, "target", None)
            if target is not None:
                text: str = target.to_text(omit_final_dot=True)
                return text
        return None
