"""nmap's UDP scan (``-sU``): a strategy on the bulk engine, with the TCP scan's tallies.

The strategy (the README's worked example of "Writing a probe"):

- **probe**: a UDP datagram to the port from one source port (``UdpProbes``), with a
  protocol request where a real service answers only a well-formed one
  (probes/udp_payloads.py: DNS, NTP, SNMP...), elsewhere 8 bytes of the probe's
  cookie. An ICMP error quoting the probe is matched by its UDP checksum (the
  cookie's, where there is one), a datagram back by its ports.
- **classify**: a UDP answer is *open* (udp-response); an ICMP port unreachable from
  the target itself is *closed* (port-unreach); any other unreachable is *filtered*
  with nmap's reason word (transport/wire/icmp_table.py); anything else says nothing.
- **silence**: *open|filtered* (no-response), once the engine's outage guard has proof
  that the network delivered around the last try.

The kernel's ICMP rate limit: Linux sends a peer about one error per second after a
short burst, so past the burst closed ports look silent. Silence alone cannot tell a
dropped port from a rate-limited one, so every retry goes out with a *witness* (the
probe of a port the target answered closed, right after it): an answered witness
shows the target could have answered, and the silence is believed; unanswered
witnesses are evidence of the limit, and the engine then probes one port at a time,
a second apart (``Pace.limit_gap_s``), each undecided port with fresh retries (a
target that answered nothing rate-limited yet may be out of tokens from the start:
its silent ports get one more try once the first token has come). A
target without the limit is thus scanned at full speed however many ports it drops,
and one with it exactly. The limit mode is one for the whole scan (Linux keys its
bucket by the peer the errors go to, which is all of us); closed ports' answers are
not canaries (a rate-limited canary round would look like an outage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rawprobe.probes.drive import EventCallback
from rawprobe.probes.engine import UdpProbes, Verdict
from rawprobe.probes.multiplex import run_one
from rawprobe.probes.portspec import top_ports
from rawprobe.probes.scan import (
    CLOSED,
    OPEN,
    SCAN_INBOX,
    ScanMachine,
    ScanOptions,
    icmp_verdict,
    refused,
    source_lookup,
)
from rawprobe.probes.scan_models import ScanResult
from rawprobe.probes.targets import TargetSpace
from rawprobe.probes.udp_payloads import payload_for
from rawprobe.transport.base import IcmpError, Reply, Transport, UdpAnswer
from rawprobe.transport.wire import icmp_table

OPEN_FILTERED = "open|filtered"

TOP_UDP_PORTS = top_ports(100, "udp")

_OPEN = Verdict(OPEN, "udp-response", True, True)
_CLOSED = Verdict(CLOSED, "port-unreach", True)  # (rate-limited: no canary)


def port_unreachable(answer: IcmpError) -> bool:
    """An ICMP (or ICMPv6) port unreachable."""
    return (answer.icmp_type, answer.code) == icmp_table.PORT_UNREACHABLE[answer.family]


class UdpScan(UdpProbes):
    """The UDP scan's strategy (see the module docstring)."""

    silence = Verdict(OPEN_FILTERED, "no-response")
    fixed: ClassVar[Mapping[type, Verdict]] = {UdpAnswer: _OPEN}
    refused = staticmethod(refused)

    def payload(self, port_index: int, secret: int) -> bytes:
        # A protocol request where a service answers only one; else the probe's cookie
        # (its checksum, the key an ICMP error is matched by, then carries it).
        return payload_for(self._ports[port_index]) or secret.to_bytes(4, "big") * 2

    def classify(self, answer: Reply) -> Verdict | None:
        if isinstance(answer, UdpAnswer):
            return _OPEN
        if not isinstance(answer, IcmpError):
            return None
        if port_unreachable(answer) and answer.from_target:
            return _CLOSED
        return icmp_verdict(answer)


class UdpScanMachine(ScanMachine):
    """A UDP scan of every (host, port) of ``space`` x ``ports``: the TCP scan's
    machine (tallies, results, events) with the UDP strategy."""

    strategies: ClassVar[dict[str, Any]] = {"udp": UdpScan}


def udp_options(**options: Any) -> ScanOptions:
    """ScanOptions for a UDP scan (technique "udp")."""
    return ScanOptions(**{**options, "technique": "udp"})


async def udp_scan_with(
    transport: Transport,
    space: TargetSpace,
    ports: Sequence[int] = TOP_UDP_PORTS,
    options: ScanOptions | None = None,
    *,
    source: str | None = None,
    on_event: EventCallback | None = None,
) -> ScanResult:
    """UDP scan over an open transport (UDP and ICMP sockets:
    ``scan_protocols(space, "udp")``); as ``syn_scan_with``."""
    machine = UdpScanMachine(
        space, ports, cookies=transport.cookies,
        source_for=source_lookup(source, transport.source_for),
        options=options if options is not None else udp_options(),
    )  # fmt: skip
    return await run_one(transport, machine, on_event=on_event, inbox_size=SCAN_INBOX)
