"""The library's edges where only the kernel shows them: EACCES on a directed broadcast
(the lab client's subnet), and ``privileged=None`` falling back as uid 65534."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from unprivileged import can_run_unprivileged, run_as_nobody, unprivileged_tree

import rawprobe
from rawprobe.lab import Lab

pytestmark = pytest.mark.lab

#: The broadcast address of the client's link (198.18.1.0/24): the kernel refuses it
#: to sockets without SO_BROADCAST (EACCES), here in the route lookup.
SUBNET_BROADCAST = "198.18.1.255"


@pytest.mark.anyio
async def test_kernel_refusals_leave_as_one_error_not_a_group(lab: Lab) -> None:
    with lab.entered("client"):
        with pytest.raises(rawprobe.ResolutionError, match=r"broadcast destination.*EACCES"):
            await rawprobe.ping(SUBNET_BROADCAST, count=1)
        with pytest.raises(rawprobe.ResolutionError, match=r"broadcast destination.*EACCES"):
            await rawprobe.syn_scan(SUBNET_BROADCAST, [80])
        with pytest.raises(rawprobe.ResolutionError, match=r"broadcast destination.*EACCES"):
            await rawprobe.traceroute(SUBNET_BROADCAST, max_ttl=2)
        with pytest.raises(rawprobe.UsageError, match="broadcast=True"):
            await rawprobe.ping("ff02::1", count=1)
        # Allowed: a result, or one RawProbeError (never an ExceptionGroup).
        with contextlib.suppress(rawprobe.RawProbeError):
            await rawprobe.ping("ff02::1", count=1, timeout_s=0.2, broadcast=True)


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    reason = can_run_unprivileged()
    if reason is not None:
        if os.environ.get("RAWPROBE_LAB") == "required":
            pytest.fail(reason)
        pytest.skip(reason)
    with unprivileged_tree() as path:
        yield path


_AS_NOBODY = """
import json, sys
import anyio, rawprobe

async def main(target):
    out = {}
    out["ping"] = (await rawprobe.ping(target, count=1, interval_s=0)).received
    out["sweep"] = (await rawprobe.sweep(target + "-6", timeout_s=0.5)).alive_count
    out["trace"] = (await rawprobe.traceroute(target, method="udp", wait_s=0.5)).reached
    out["scan"] = (await rawprobe.syn_scan(target, [22, 23])).technique
    for name, call in (
        ("privileged", rawprobe.ping(target, count=1, privileged=True)),
        ("tcp", rawprobe.traceroute(target, method="tcp")),
    ):
        try:
            await call
        except rawprobe.PrivilegeError as exc:
            out[name] = type(exc).__name__
    print(json.dumps(out))

anyio.run(main, sys.argv[1])
"""


def test_nobody_gets_the_clis_fallbacks_from_the_library(lab: Lab, tree: Path) -> None:
    lab.set_ping_group_range("client", 0, 2147483647)
    try:
        done = run_as_nobody(tree, [lab.target_v4], netns=lab.ns("client"), code=_AS_NOBODY)
    finally:
        lab.set_ping_group_range("client", 1, 0)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "ping": 1,  # ICMP datagram sockets
        "sweep": 2,  # the same (the target answers for its whole /16)
        "trace": True,  # UDP sockets with IP_RECVERR
        "scan": "connect",  # connect() scan
        "privileged": "PrivilegeError",
        "tcp": "PrivilegeError",  # TCP has no unprivileged way
    }
