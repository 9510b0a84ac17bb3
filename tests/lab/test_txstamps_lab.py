"""Kernel transmit stamps on the real kernel: ping and trace report RTTs the kernel
stamped at both ends (``rtt_source`` kernel), and the stamps reach the right probes
whatever the kernel refused in between (transport/txstamps.py's counting rules)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import output_check
import pytest

from rawprobe.lab import Lab
from rawprobe.probes.ping import PingOptions, new_machine, ping_protocols
from rawprobe.transport.base import Inbox, Sent, measured_rtt
from rawprobe.transport.raw import RawTransport, open_transport

pytestmark = pytest.mark.lab

FAMILIES = ["v4", "v6"]


def rawprobe_cli(lab: Lab, *args: str) -> tuple[str, str]:
    done = lab.run("client", sys.executable, "-I", "-m", "rawprobe", *args, timeout=60)
    return done.stdout, done.stderr


def test_ping_and_trace_report_kernel_stamps_in_json_and_with_v(lab: Lab) -> None:
    out, err = rawprobe_cli(
        lab, "ping", "-v", "--json", "-c", "3", "-i", "0.2", lab.target_v4, lab.target_v6
    )
    hosts = output_check.document(out, "ping")["hosts"]
    assert [h["rtt_source"] for h in hosts] == ["kernel", "kernel"]
    assert all(0 < rtt < 50 for h in hosts for rtt in h["rtts_ms"])
    assert f"rawprobe: {lab.target_v4}: rtt_source kernel" in err
    out, err = rawprobe_cli(lab, "trace", "-v", "-n", "-q", "1", "--json", lab.target_v6)
    hops = output_check.document(out, "trace")["traces"][0]["hops"]
    assert [h["rtt_source"] for h in hops] == ["kernel"] * 4
    assert f"rawprobe: {lab.target_v6}: rtt_source kernel" in err


def echo_to(
    transport: RawTransport, address: str, source: str | None = None
) -> tuple[tuple[object, ...], bytes]:
    """The key and packet of one echo request (a ping machine's first)."""
    machine = new_machine(transport, address, PingOptions(count=1), source=source)
    [outgoing] = machine.poll(0.0)
    return outgoing.key, outgoing.packet


@pytest.mark.parametrize("family", FAMILIES)
def test_the_kernel_stamp_leaves_the_hosts_send_path_out_of_the_rtt(lab: Lab, family: str) -> None:
    """The same echo measured from both send stamps: the kernel's, taken as the packet
    left, gives the shorter RTT (positive: it is still a round trip)."""
    target = lab.target_v4 if family == "v4" else lab.target_v6

    async def main() -> list[tuple[float, str, float]]:
        measured = []
        with lab.entered("client"):
            async with open_transport(ping_protocols([target]), tx_stamps=True) as transport:
                assert transport.tx_stamps
                for _ in range(5):
                    key, packet = echo_to(transport, target)
                    inbox = Inbox(4)
                    transport.register(key, inbox)  # type: ignore[arg-type]
                    sent = await transport.send(packet)
                    with anyio.fail_after(5):
                        await inbox.wait()
                    [reply] = inbox.take_all()
                    rtt, source = measured_rtt(sent, reply)
                    measured.append((rtt, source, (reply.received_ns - sent.realtime_ns) / 1e9))
        return measured

    for rtt, source, user_rtt in anyio.run(main):
        assert source == "kernel"
        assert 0 < rtt < user_rtt < 0.05


@contextmanager
def refusing_client(lab: Lab) -> Iterator[dict[str, str]]:
    """The client's kernel refuses sends to two addresses per family: one for want of a
    route (before it builds the packet), one by a netfilter DROP (after)."""
    refused = {
        "unreachable4": "198.18.201.1", "dropped4": "198.19.0.77",
        "unreachable6": "2001:db8:77::1", "dropped6": "2001:db8:ff::77",
    }  # fmt: skip
    lab.run("client", "ip", "route", "add", "unreachable", "198.18.201.0/24")
    lab.run("client", "ip", "-6", "route", "add", "unreachable", "2001:db8:77::/64")
    lab.run("client", "iptables", "-I", "OUTPUT", "-d", refused["dropped4"], "-j", "DROP")
    lab.run("client", "ip6tables", "-I", "OUTPUT", "-d", refused["dropped6"], "-j", "DROP")
    try:
        yield refused
    finally:
        lab.run("client", "ip6tables", "-D", "OUTPUT", "-d", refused["dropped6"], "-j", "DROP")
        lab.run("client", "iptables", "-D", "OUTPUT", "-d", refused["dropped4"], "-j", "DROP")
        lab.run("client", "ip", "-6", "route", "del", "unreachable", "2001:db8:77::/64")
        lab.run("client", "ip", "route", "del", "unreachable", "198.18.201.0/24")


def test_stamps_reach_their_probes_past_refused_sends(lab: Lab) -> None:
    """Sends refused before the packet was built (no route) take no key, those refused
    after (netfilter) take one: every probe that left still gets its own stamp."""

    async def main(refused: dict[str, str]) -> tuple[list[Sent], bool]:
        with lab.entered("client"):
            async with open_transport(ping_protocols(["::1", "127.0.0.1"]), tx_stamps=True) as t:
                packets = []
                for suffix, target in (("4", lab.target_v4), ("6", lab.target_v6)):
                    source = lab.client_v4 if suffix == "4" else lab.client_v6
                    order = [target, refused["unreachable" + suffix], target]
                    order += [refused["dropped" + suffix], target, target]
                    packets += [echo_to(t, a, source)[1] for a in order]
                stamps = await t.send_batch(packets)
                await anyio.sleep(0.1)
                t.read_pending()  # the error queues, then the replies
                return stamps, t.tx_stamps

    with refusing_client(lab) as refused:
        stamps, still_stamping = anyio.run(main, refused)
    assert [s.error for s in stamps] == [None, "EHOSTUNREACH", None, "EPERM", None, None] * 2
    left = [s for s in stamps if s.error is None]
    assert len(left) == 8 and still_stamping
    assert all(s.tx is not None and s.tx.kernel_ns >= s.realtime_ns for s in left)


def test_stamps_reach_their_probes_through_a_queue_that_refuses_and_delays(lab: Lab) -> None:
    """A 1 Mbit/s bottleneck: the qdisc refuses most of a burst (ENOBUFS, each refused
    try takes a key, and the send is retried until it goes) and sends the rest later,
    so their stamps come after the batch: every probe still gets its own stamp."""
    shaper = ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf"]
    lab.run("client", *shaper, "rate", "1mbit", "burst", "1600", "limit", "1600")

    async def main() -> tuple[list[Sent], bool]:
        with lab.entered("client"):
            protocols = [(socket.AF_INET, socket.IPPROTO_ICMP)]
            async with open_transport(protocols, rate_pps=0, tx_stamps=True) as transport:
                packets = [echo_to(transport, lab.target_v4)[1] for _ in range(100)]
                stamps = await transport.send_batch(packets)
                await anyio.sleep(0.3)  # the queue drains
                transport.read_pending()
                return stamps, transport.tx_stamps

    try:
        stamps, still_stamping = anyio.run(main)
        statistics = lab.run("client", "tc", "-s", "qdisc", "show", "dev", "eth0").stdout
    finally:
        lab.run("client", "tc", "qdisc", "del", "dev", "eth0", "root")
    assert "dropped 0" not in statistics  # the bottleneck did refuse packets
    assert [s.error for s in stamps] == [None] * 100 and still_stamping
    assert all(s.tx is not None and s.tx.kernel_ns >= s.realtime_ns for s in stamps)
    assert len({s.tx.kernel_ns for s in stamps if s.tx is not None}) == 100
