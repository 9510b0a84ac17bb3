"""The one send path (transport/exchange.py): its errno policy, stamps, counters and
recording, pinned on the real UdpTransport over scripted sockets (nothing is sent: the
sockets are never bound and their ``sendto`` only follows a script)."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import AsyncIterator

import anyio
import pytest

from rawprobe.errors import SendError, TransportClosed
from rawprobe.transport import dgram
from rawprobe.transport.base import Sent
from rawprobe.transport.exchange import NETWORK_SEND_ERRORS
from rawprobe.transport.memory import MemoryNetwork, open_memory_transport
from rawprobe.transport.udp_dgram import UdpTransport, open_udp_transport
from rawprobe.transport.wire.icmp import build_echo
from rawprobe.transport.wire.ipv4 import IPv4Header, build_ipv4
from rawprobe.transport.wire.udp import UdpHeader, build_udp

pytestmark = pytest.mark.anyio
US, TARGET, SPORT = "198.18.1.2", "198.19.0.5", 40123


class ScriptedSocket(socket.socket):
    """A UDP socket whose ``sendto`` follows ``script`` (an errno to raise, or 0 to
    "send": return the length, send nothing), then ``then`` forever; every call is kept."""

    def __init__(self, script: list[int], then: int = 0, family: int = socket.AF_INET) -> None:
        super().__init__(family, socket.SOCK_DGRAM)
        self.setblocking(False)
        self.script, self.then = script, then
        self.calls: list[tuple[bytes, object, float]] = []

    def sendto(self, data: bytes, address: object) -> int:  # type: ignore[override]
        self.calls.append((data, address, time.monotonic()))
        code = self.script.pop(0) if self.script else self.then
        if code:
            raise OSError(code, errno.errorcode[code])
        return len(data)


class Recorded:
    def __init__(self) -> None:
        self.packets: list[tuple[bytes, int, bool]] = []

    def record(self, packet: bytes, timestamp_ns: int, outgoing: bool) -> None:
        self.packets.append((packet, timestamp_ns, outgoing))


def probe(dport: int = 33434, ttl: int = 5) -> bytes:
    datagram = build_udp(UdpHeader(SPORT, dport), b"probe", src=US, dst=TARGET)
    return build_ipv4(IPv4Header(src=US, dst=TARGET, protocol=17, ttl=ttl), datagram)


@pytest.fixture
async def udp() -> AsyncIterator[UdpTransport]:
    async with open_udp_transport(rate_pps=0) as transport:
        transport.recorder = Recorded()
        yield transport


def scripted(transport: UdpTransport, *script: int, then: int = 0) -> ScriptedSocket:
    sock = ScriptedSocket(list(script), then)
    transport._sockets[(socket.AF_INET, SPORT)] = sock  # the source port's socket
    return sock


def recorded(transport: UdpTransport) -> list[tuple[bytes, int, bool]]:
    assert isinstance(transport.recorder, Recorded)
    return transport.recorder.packets


async def test_every_udp_probe_is_recorded_as_the_whole_ip_packet(udp: UdpTransport) -> None:
    sock = scripted(udp)
    packets = [probe(33434 + i) for i in range(3)]
    stamps = await udp.send_batch(packets)
    assert [error for *_, error in stamps] == [None] * 3
    assert recorded(udp) == [(p, s.realtime_ns, True) for p, s in zip(packets, stamps, strict=True)]
    assert [(data, address) for data, address, _ in sock.calls] == [
        (b"probe", (TARGET, 33434 + i)) for i in range(3)
    ]
    assert (udp.counters.sent, udp.counters.send_errors) == (3, 0)


@pytest.mark.parametrize("code", [errno.ENOBUFS, errno.EAGAIN])
async def test_full_queues_are_waited_out_and_the_probe_leaves(
    udp: UdpTransport, code: int
) -> None:
    sock = scripted(udp, code, code, code)
    before_ns = time.time_ns()
    sent = await udp.send(probe())
    assert sent.error is None and len(sock.calls) == 4
    # Stamped right before the syscall that went out, not before the first attempt.
    assert sent.monotonic_s >= sock.calls[-1][2] - 0.5
    assert sent.monotonic_s > sock.calls[0][2] and sent.realtime_ns > before_ns
    assert (udp.counters.sent, udp.counters.send_errors) == (1, 0)
    assert len(recorded(udp)) == 1


async def test_queues_that_never_drain_end_in_send_error(udp: UdpTransport) -> None:
    scripted(udp, then=errno.ENOBUFS)
    udp._queue_patience_s = 0.05
    with pytest.raises(SendError, match="kernel buffers stayed full") as raised:
        await udp.send(probe())
    assert isinstance(raised.value.__cause__, OSError)
    assert (udp.counters.sent, udp.counters.send_errors) == (0, 1)
    assert recorded(udp) == []


async def test_the_wait_for_full_queues_is_cancellable_and_records_what_left(
    udp: UdpTransport,
) -> None:
    scripted(udp, 0, 0, then=errno.ENOBUFS)  # the third packet finds the queues full
    packets = [probe(1000 + i) for i in range(4)]
    stamps: list[Sent] = []
    with anyio.move_on_after(0.05) as scope:
        await udp.send_batch(packets, stamps)
    assert scope.cancelled_caught
    assert len(stamps) == 2
    assert [p for p, _, _ in recorded(udp)] == packets[:2]
    assert udp.counters.sent == 2


async def test_closing_while_waiting_for_queues_raises_transport_closed(
    udp: UdpTransport,
) -> None:
    scripted(udp, then=errno.ENOBUFS)

    async def close_soon() -> None:
        await anyio.sleep(0.02)
        udp._close()  # what leaving the transport's block does

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(close_soon)
        with pytest.raises(TransportClosed, match="while sending"):
            await udp.send(probe())


@pytest.mark.parametrize("code", [errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPERM])
async def test_network_refusals_are_results(udp: UdpTransport, code: int) -> None:
    sock = scripted(udp, code, code)  # the retry after reading the error queue fails too
    sent = await udp.send(probe())
    assert sent.error == errno.errorcode[code] and code in NETWORK_SEND_ERRORS
    assert len(sock.calls) == 2
    assert (udp.counters.sent, udp.counters.send_errors) == (0, 1)
    assert recorded(udp) == []  # it never left


async def test_an_earlier_probes_pending_error_is_cleared_and_the_send_retried(
    udp: UdpTransport,
) -> None:
    sock = scripted(udp, errno.ECONNREFUSED)  # an earlier probe's port unreachable
    sent = await udp.send(probe())
    assert sent.error is None and len(sock.calls) == 2
    assert (udp.counters.sent, udp.counters.send_errors) == (1, 0)


async def test_other_errors_raise_send_error_chained_from_the_os_error(
    udp: UdpTransport,
) -> None:
    scripted(udp, errno.EINVAL)
    with pytest.raises(SendError, match=f"send to {TARGET} failed") as raised:
        await udp.send(probe())
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.EINVAL
    assert udp.counters.send_errors == 1


async def test_icmp_datagram_sockets_wait_out_full_queues_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ICMP datagram transport lost such a probe (a Sent with ENOBUFS) before."""
    sockets: list[ScriptedSocket] = []

    def scripted_socket(family: int, *_args: object) -> ScriptedSocket:
        sockets.append(ScriptedSocket([errno.ENOBUFS, errno.ENOBUFS], family=family))
        return sockets[-1]

    monkeypatch.setattr(dgram, "new_socket", scripted_socket)
    async with dgram.open_datagram_transport((socket.AF_INET,), rate_pps=0) as transport:
        transport.recorder = recorder = Recorded()
        packet = build_ipv4(
            IPv4Header(src=US, dst=TARGET, protocol=1, ttl=9), build_echo(7, 1, b"x")
        )
        sent = await transport.send(packet)
    assert sent.error is None
    [sock] = sockets
    assert [(data, address) for data, address, _ in sock.calls] == [(packet[20:], (TARGET, 0))] * 3
    assert recorder.packets == [(packet, sent.realtime_ns, True)]
    assert (transport.counters.sent, transport.counters.send_errors) == (1, 0)


async def test_the_memory_transport_sends_through_the_same_path() -> None:
    """Paced by the transport's bucket, stamped on the event loop's clock, recorded."""
    net = MemoryNetwork()
    net.add(TARGET)
    async with open_memory_transport(net, rate_pps=100) as transport:
        transport.recorder = recorder = Recorded()
        packets = [
            build_ipv4(IPv4Header(src=US, dst=TARGET, protocol=1), build_echo(7, seq, b"x"))
            for seq in range(3)
        ]
        start = anyio.current_time()
        stamps = await transport.send_batch(packets)
        elapsed = anyio.current_time() - start
    assert elapsed >= 0.015  # burst 1 at 100/s: 10 ms before each later send
    assert all(abs(s.realtime_ns - s.monotonic_s * 1e9) < 1e6 for s in stamps)  # one clock
    assert recorder.packets == [
        (p, s.realtime_ns, True) for p, s in zip(packets, stamps, strict=True)
    ]
    assert transport.counters.sent == 3
