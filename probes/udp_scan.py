"""nmap's UDP scan (``-sU``): a strategy on the bulk engine, with the TCP scan's tallies.

The strategy (the README's worked example of "Writing a probe"):

- **probe**: a UDP datagram to the port from one source port (``UdpProbes``), with a
  protocol payload where a real service answers only a well-formed request (DNS 53,
  NTP 123, SNMP 161; written from RFC 1035, RFC 5905 and RFC 1157), empty elsewhere.
  Each payload carries a 32-bit cookie of the probe where the protocol has room for
  one (the DNS ID, the NTP transmit timestamp, the SNMP request-id). An ICMP error
  quoting the probe is matched by its UDP checksum, a datagram back by its ports.
- **classify**: a UDP answer is *open* (udp-response); an ICMP port unreachable from
  the target itself is *closed* (port-unreach); any other unreachable is *filtered*
  with nmap's reason word (the TCP scan's table); anything else says nothing.
- **silence**: *open|filtered* (no-response), once the engine's outage guard has proof
  that the network delivered around the last try.

The kernel's ICMP rate limit: Linux sends a peer about one error per second after a
short burst, so most closed ports answer only a retry. The engine sees answers to
retransmissions as loss: it raises the retries (up to ``max_retries``) and halves the
window, so the scan slows down to the rate the answers come back at. Closed ports'
answers are not canaries (a rate-limited canary round would look like an outage).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rawprobe.probes.drive import EventCallback, drive
from rawprobe.probes.engine import UdpProbes, Verdict
from rawprobe.probes.models import ScanResult
from rawprobe.probes.scan import (
    CLOSED,
    OPEN,
    ScanMachine,
    ScanOptions,
    icmp_verdict,
    refused,
    source_lookup,
)
from rawprobe.probes.targets import TargetSpace
from rawprobe.transport.base import IcmpError, Reply, Transport, UdpAnswer

OPEN_FILTERED = "open|filtered"

#: The 100 UDP ports most often found open: the open-frequency column of nmap 7.93's
#: nmap-services, in rank order (ties broken by port number).
# fmt: off
TOP_UDP_PORTS: tuple[int, ...] = (
    631, 161, 137, 123, 138, 1434, 445, 135, 67, 53, 139, 500, 68, 520, 1900, 4500, 514,
    49152, 162, 69, 5353, 111, 49154, 1701, 998, 996, 997, 999, 3283, 49153, 1812, 136,
    2222, 2049, 32768, 5060, 1025, 1433, 3456, 80, 20031, 1026, 7, 1646, 1645, 593, 518,
    2048, 626, 1027, 177, 1719, 427, 497, 4444, 1023, 65024, 19, 9, 49193, 1029, 49, 88,
    1028, 17185, 1718, 49186, 2000, 31337, 49192, 49201, 515, 2223, 443, 49181, 1813, 120,
    158, 49200, 3703, 32815, 17, 5000, 32771, 33281, 1030, 623, 1022, 32769, 5632, 10000,
    49156, 49182, 49191, 49194, 9200, 30718, 49185, 49188, 49190,
)
# fmt: on


def _tlv(tag: int, body: bytes) -> bytes:
    """A BER element with a short length (every element here is under 128 bytes)."""
    return bytes((tag, len(body))) + body


def _dns(secret: int) -> bytes:
    """RFC 1035 4.1: a recursive standard query (ID: the cookie) for the root's NS."""
    header = (secret & 0xFFFF).to_bytes(2, "big") + b"\x01\x00\x00\x01" + bytes(6)
    return header + b"\x00\x00\x02\x00\x01"  # name ".", QTYPE NS, QCLASS IN


def _ntp(secret: int) -> bytes:
    """RFC 5905 7.3: a client request (LI 0, version 4, mode 3); the transmit
    timestamp carries the cookie (a server echoes it as the origin timestamp)."""
    return b"\x23" + bytes(39) + secret.to_bytes(4, "big") * 2


def _snmp(secret: int) -> bytes:
    """RFC 1157 4.1.2: SNMPv1 GetRequest, community "public", for sysDescr.0
    (1.3.6.1.2.1.1.1.0); request-id: the cookie."""
    varbind = _tlv(0x30, _tlv(0x06, bytes((0x2B, 6, 1, 2, 1, 1, 1, 0))) + b"\x05\x00")
    request_id = _tlv(0x02, (secret & 0x7FFFFFFF).to_bytes(4, "big"))
    pdu = _tlv(0xA0, request_id + b"\x02\x01\x00\x02\x01\x00" + _tlv(0x30, varbind))
    return _tlv(0x30, b"\x02\x01\x00" + _tlv(0x04, b"public") + pdu)


PAYLOADS = {53: _dns, 123: _ntp, 161: _snmp}

_OPEN = Verdict(OPEN, "udp-response", True, True)
_CLOSED = Verdict(CLOSED, "port-unreach", True)  # (rate-limited: no canary)
_UNREACHABLE: dict[int, tuple[int, int]] = {socket.AF_INET: (3, 3), socket.AF_INET6: (1, 4)}


def port_unreachable(answer: IcmpError) -> bool:
    """An ICMP (or ICMPv6) port unreachable."""
    return (answer.icmp_type, answer.code) == _UNREACHABLE.get(answer.family)


class UdpScan(UdpProbes):
    """The UDP scan's strategy (see the module docstring)."""

    silence = Verdict(OPEN_FILTERED, "no-response")
    fixed: ClassVar[Mapping[type, Verdict]] = {UdpAnswer: _OPEN}
    refused = staticmethod(refused)

    def payload(self, port_index: int, secret: int) -> bytes:
        make = PAYLOADS.get(self._ports[port_index])
        return make(secret) if make is not None else b""

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
    await drive(machine, transport, on_event=on_event, inbox_size=1 << 16)
    return machine.result()
