"""The driver loop: what reaches the machine, and when (asyncio and trio)."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest

from rawprobe.probes.drive import drive
from rawprobe.probes.machine import MachineOutbox, Outgoing
from rawprobe.transport.base import Counters, Inbox, Reply, Sent
from rawprobe.transport.keys import KIND_ECHO, Cookies, MatchKey

pytestmark = pytest.mark.anyio

KEY: MatchKey = (KIND_ECHO, bytes((198, 19, 0, 5)), 0x4201, 1)


class HeldRepliesTransport:
    """A transport whose answer sits "in the kernel" until ``read_pending`` reads it,
    as a raw socket's does while its reader task waits for its turn."""

    def __init__(self) -> None:
        self.cookies = Cookies()
        self.counters = Counters()
        self.routes: dict[MatchKey, Inbox] = {}
        self.held: list[Reply] = []

    def source_for(self, destination: str) -> str:
        return "198.18.1.2"

    def register(self, key: MatchKey, inbox: Inbox, *, authenticated: bool = True) -> None:
        self.routes[key] = inbox

    def unregister(self, key: MatchKey) -> None:
        self.routes.pop(key, None)

    def register_route(self, kind: int, a: int, inbox: Inbox) -> None:
        raise AssertionError("not used")

    def unregister_route(self, kind: int, a: int) -> None:
        raise AssertionError("not used")

    def filter_tcp(self, local_ports: Sequence[int]) -> None:
        raise AssertionError("not used")

    async def send(self, packet: bytes) -> Sent:
        return (await self.send_batch([packet]))[0]

    async def send_batch(
        self, packets: Sequence[bytes], stamps: list[Sent] | None = None
    ) -> list[Sent]:
        self.held.append(Reply(KEY, socket.AF_INET, KEY[1], b"", 61, 0, 0.0, 1))
        stamps = [] if stamps is None else stamps
        stamps += [Sent(0, 0.0) for _ in packets]
        return stamps

    def read_pending(self) -> None:
        for reply in self.held:
            self.routes[reply.key].put(reply)
        self.held.clear()


class OneProbe(MachineOutbox):
    """Sends one probe and gives up on it as soon as it is polled again unanswered."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_once = False
        self.answered = False
        self.given_up = False

    @property
    def done(self) -> bool:
        return self.answered or self.given_up

    def poll(self, now: float) -> list[Outgoing]:
        if not self.sent_once:
            self.sent_once = True
            return [Outgoing(KEY, b"probe")]
        if not self.answered:
            self.given_up = True
        return []

    def sent(self, key: MatchKey, sent: Sent, now: float) -> None:
        pass

    def receive(self, reply: Reply, now: float) -> None:
        self.answered = True

    def next_deadline(self) -> float:
        return 0.0  # due at once: the next poll decides


async def test_replies_already_received_count_before_anything_expires() -> None:
    """Found measuring a /16 scan: readers take 256 datagrams per turn of the event
    loop, and probes whose answers still sat in the socket buffer timed out (3,399
    spurious retransmissions, and congestion backoffs). The driver now reads what the
    transport holds before each poll."""
    transport = HeldRepliesTransport()
    machine = OneProbe()
    await drive(machine, transport)
    assert machine.answered and not machine.given_up
    assert transport.routes == {}  # the key was released
