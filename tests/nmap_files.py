"""Helpers of the tests of nmap's output files: validation against nmap's DTD, what
python-libnmap reads from a file, the same view of a JSON document, the NDJSON merge.

These run the tools the ecosystem runs (xmllint, python-libnmap, jq); scripts/install.sh
installs them, so a missing one is a failure, not a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import output_check
from libnmap.parser import NmapParser

#: nmap's DTD as Debian's nmap package ships it.
NMAP_DTD = "/usr/share/nmap/nmap.dtd"
MERGE_JQ = Path(__file__).resolve().parent.parent / "deploy" / "merge-ndjson.jq"

#: A host as both views give it: up?, {(protocol, port): state} of the ports that are
#: not closed, how many are closed.
HostView = tuple[bool, dict[tuple[str, int], str], int]


def dtd_errors(path: Path) -> str:
    """xmllint's complaints about ``path`` against nmap's DTD ('' when it is valid)."""
    assert shutil.which("xmllint"), "xmllint is missing: run scripts/install.sh"
    assert Path(NMAP_DTD).exists(), f"{NMAP_DTD} is missing: run scripts/install.sh"
    done = subprocess.run(
        ["xmllint", "--noout", "--dtdvalid", NMAP_DTD, str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return "" if done.returncode == 0 else done.stderr or f"exit {done.returncode}"


def libnmap_view(xml: str) -> dict[str, HostView]:
    """What python-libnmap reads from an -oX file, host by host."""
    report = NmapParser.parse_fromstring(xml)
    view: dict[str, HostView] = {}
    for host in report.hosts:
        ports = {(s.protocol, s.port): s.state for s in host.services if s.state != "closed"}
        closed = sum(s.state == "closed" for s in host.services)
        extra = host.extraports_state
        if extra and extra["state"]["state"] == "closed":
            closed += int(extra["state"]["count"])
        view[host.address] = (host.is_up(), ports, closed)
    return view


def json_view(hosts: list[dict[str, Any]]) -> dict[str, HostView]:
    """The same view of a scan's JSON ``hosts`` (or its NDJSON host events)."""
    return {
        host["address"]: (
            host["state"] == "up",
            {
                (p["protocol"], p["port"]): p["state"]
                for p in host["ports"]
                if p["state"] != "closed"
            },
            host["closed"],
        )
        for host in hosts
    }


def merge_ndjson(text: str, command: str) -> list[dict[str, Any]]:
    """deploy/merge-ndjson.jq over shards' concatenated NDJSON, as the README runs it;
    every merged line valid against the schema, the hosts first, then one summary per
    shard."""
    assert shutil.which("jq"), "jq is missing: run scripts/install.sh"
    done = subprocess.run(
        ["jq", "-R", "-n", "-c", "-f", str(MERGE_JQ)],
        input=text, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    merged = output_check.events(done.stdout.splitlines(), command, summary=False)
    kinds = [event["event"] for event in merged]
    hosts = kinds.count("host")
    assert kinds == ["host"] * hosts + ["summary"] * (len(kinds) - hosts), kinds
    return merged


def comparable(host: dict[str, Any]) -> dict[str, Any]:
    """A JSON host without what differs between two runs of one scan (times, tries,
    TTL echoes of retransmissions)."""
    ports = [
        {k: v for k, v in p.items() if k not in ("rtt_ms", "tries", "ttl")} for p in host["ports"]
    ]
    return {**{k: v for k, v in host.items() if k != "min_rtt_ms"}, "ports": ports}
