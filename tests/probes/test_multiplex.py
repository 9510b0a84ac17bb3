"""The multiplexer of many machines: routing, batching, completion order."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest

from rawprobe.probes.machine import MachineOutbox, Outgoing, Route
from rawprobe.probes.multiplex import Emitted, Finished, Multiplex
from rawprobe.transport.base import Reply, Sent
from rawprobe.transport.keys import KIND_ECHO, KIND_TCP, MatchKey

TARGET = bytes((198, 19, 0, 5))


def key(ident: int, seq: int) -> MatchKey:
    return (KIND_ECHO, TARGET, ident, seq)


def reply(k: MatchKey) -> Reply:
    data = b"\x45" + bytes(8) + b"\x01" + bytes(10) + b"\x00\x00" + bytes(62)  # an echo reply
    return Reply(k, socket.AF_INET, TARGET, data, 61, 0, 0.0, 1)


class Probes(MachineOutbox[str]):
    """Sends ``keys`` in one poll; done once each was answered. Records its calls."""

    def __init__(self, keys: Sequence[MatchKey], routes: tuple[Route, ...] = ()) -> None:
        super().__init__()
        self.routes = routes
        self.keys = list(keys)
        self.polled = False
        self.sent: list[list[MatchKey]] = []
        self.received: list[list[MatchKey]] = []

    @property
    def done(self) -> bool:
        answered = {k for batch in self.received for k in batch}
        return self.polled and answered >= set(self.keys)

    def poll(self, now: float) -> list[Outgoing]:
        if self.polled:
            return []
        self.polled = True
        return [Outgoing(k, b"probe") for k in self.keys]

    def sent_batch(self, keys: Sequence[MatchKey], stamps: Sequence[Sent], now: float) -> None:
        self.sent.append(list(keys))

    def receive_batch(self, replies: Sequence[Reply], now: float) -> None:
        self.received.append([r.key for r in replies])
        self._events.extend(f"answer {r.key[3]}" for r in replies)
        self._retired.extend(r.key for r in replies)

    def next_deadline(self) -> float:
        return 1.0


def run_once(many: Multiplex[str]) -> list[Outgoing]:
    batch = many.poll(0.0)
    many.sent_batch([o.key for o in batch], [Sent(0, 0.0) for _ in batch], 0.0)
    return batch


def test_a_batch_reaches_each_machine_as_one_batch_in_order() -> None:
    a, b = Probes([key(1, 1), key(1, 2)]), Probes([key(2, 1)])
    many = Multiplex([a, b])
    assert [o.key for o in run_once(many)] == [key(1, 1), key(1, 2), key(2, 1)]
    assert a.sent == [[key(1, 1), key(1, 2)]] and b.sent == [[key(2, 1)]]
    many.receive_batch([reply(key(1, 2)), reply(key(2, 1)), reply(key(1, 1))], 0.1)
    assert a.received == [[key(1, 2), key(1, 1)]] and b.received == [[key(2, 1)]]
    assert many.take_retired() == [key(1, 2), key(1, 1), key(2, 1)]


def test_events_are_tagged_and_finished_streams_in_completion_order() -> None:
    a, b = Probes([key(1, 1)]), Probes([key(2, 7)])
    many = Multiplex([a, b])
    run_once(many)
    many.receive_batch([reply(key(2, 7))], 0.1)
    assert many.take_events() == [Emitted(1, "answer 7"), Finished(1)]
    assert many.unfinished == (0,) and not many.done
    many.receive_batch([reply(key(1, 1))], 0.2)
    assert many.take_events() == [Emitted(0, "answer 1"), Finished(0)]
    assert many.done and many.next_deadline() == float("inf")


def test_a_machine_done_once_its_packets_are_due_finishes_after_they_left() -> None:
    """Found with ping_many_with: a ping whose last request is due and whose earlier
    ones were answered is ``done`` as soon as it is polled; finishing it there lost
    the send of its last request."""

    class LastOne(Probes):
        @property
        def done(self) -> bool:
            return self.polled

    last = LastOne([key(1, 1)])
    many = Multiplex([last])
    batch = many.poll(0.0)
    assert many.take_events() == [] and not many.done
    many.sent_batch([o.key for o in batch], [Sent(0, 0.0)], 0.0)
    assert last.sent == [[key(1, 1)]] and many.done


def test_a_late_reply_to_a_finished_machine_is_dropped() -> None:
    a, b = Probes([key(1, 1)]), Probes([key(2, 1)])
    a._retired = []  # (keeps its key owned after it finished)
    many = Multiplex([a, b])
    run_once(many)
    many.receive_batch([reply(key(1, 1))], 0.1)
    many.receive_batch([reply(key(1, 1))], 0.2)  # a duplicate, after a is done
    assert a.received == [[key(1, 1)]]


def test_declared_routes_are_the_multiplexers_and_route_replies() -> None:
    routed = Probes([key(9, 1)], routes=((KIND_ECHO, 9),))
    plain = Probes([(KIND_TCP, TARGET, 80, 5)])
    many = Multiplex([plain, routed])
    assert many.routes == ((KIND_ECHO, 9),)
    many.poll(0.0)
    many.receive_batch([reply(key(9, 42)), reply(key(8, 1))], 0.1)  # 42: sent by nobody
    assert routed.received == [[key(9, 42)]] and plain.received == []


def test_two_machines_may_not_declare_one_route() -> None:
    with pytest.raises(ValueError, match="route"):
        Multiplex([Probes([], routes=((KIND_ECHO, 9),)), Probes([], routes=((KIND_ECHO, 9),))])


def test_a_machine_is_finished_only_once_its_packets_left() -> None:
    """The driver hands replies over between the slices of a batch: a reply that makes
    a machine look done before the rest of its packets left must not finish it (its
    later sends and their replies were dropped, and pings were lost under load)."""
    a = Probes([key(1, 1), key(1, 2)])
    many = Multiplex([a])
    first, second = many.poll(0.0)
    many.sent_batch([first.key], [Sent(0, 0.0)], 0.0)
    a.keys = [key(1, 1)]  # the machine now looks done once its first packet is answered
    many.receive_batch([reply(first.key)], 0.1)
    assert not many.done
    many.sent_batch([second.key], [Sent(0, 0.0)], 0.2)
    assert a.sent == [[first.key], [second.key]]  # (dropped when it was finished early)
    assert many.done  # all its packets left, and it says it is done
