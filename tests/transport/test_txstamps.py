"""Matching the kernel's transmit stamps to sends (transport/txstamps.py), pure.

The kernel keys each stamp with a per-socket counter (SOF_TIMESTAMPING_OPT_ID) that
every packet it builds takes, whichever probe or batch sent it; these tests play the
kernel's side: keys in order, stamps missing, sends refused before or after the packet
was built, stamps out of order, and a count gone wrong.
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from rawprobe.transport.sockets import IP_RECVERR, IPV6_RECVERR
from rawprobe.transport.txstamps import WINDOW, TxStamp, TxStamps, tx_stamp_of

T0 = 1_800_000_000_000_000_000  # a CLOCK_REALTIME instant, ns


class Kernel:
    """The socket's side: the counter, and the stamps it reports."""

    def __init__(self) -> None:
        self.next_key = 0
        self.now = T0

    def build(self) -> int:
        key, self.next_key = self.next_key, self.next_key + 1
        return key

    def tick(self, ns: int = 1000) -> int:
        self.now += ns
        return self.now


def send(stamps: TxStamps, kernel: Kernel) -> tuple[TxStamp, int]:
    """A send the kernel accepted: our stamp object and the key the kernel gave it."""
    stamp = stamps.sent(kernel.tick())
    assert stamp is not None
    return stamp, kernel.build()


def test_stamps_reach_their_sends_across_batches() -> None:
    stamps, kernel = TxStamps(), Kernel()
    first = [send(stamps, kernel) for _ in range(3)]
    for stamp, key in first:  # read after the first batch
        stamps.stamped(key, stamp.not_before_ns + 700)
    second = [send(stamps, kernel) for _ in range(2)]
    for stamp, key in reversed(second):  # any order
        stamps.stamped(key, stamp.not_before_ns + 900)
    assert [s.kernel_ns - s.not_before_ns for s, _ in first + second] == [700] * 3 + [900] * 2
    assert stamps.awaited == 0 and not stamps.lost


def test_a_stamp_that_never_comes_leaves_its_send_alone_and_the_rest_matched() -> None:
    """A packet dropped in a queue or a full error queue: no stamp for one key."""
    stamps, kernel = TxStamps(), Kernel()
    sends = [send(stamps, kernel) for _ in range(4)]
    for stamp, key in sends:
        if key != 1:
            stamps.stamped(key, stamp.not_before_ns + 500)
    assert [s.kernel_ns != 0 for s, _ in sends] == [True, False, True, True]
    assert stamps.awaited == 1 and not stamps.lost


@pytest.mark.parametrize(
    ("code", "took_a_key"),
    [
        (errno.ENOBUFS, True),  # a full qdisc dropped the packet it had built
        (errno.EPERM, True),  # netfilter dropped it
        (errno.EHOSTUNREACH, False),  # no route: refused before building it
        (errno.ENETUNREACH, False),
        (errno.EACCES, False),  # a prohibit route
        (errno.EMSGSIZE, False),
        (errno.EAGAIN, False),  # a full send buffer
    ],
)
def test_a_refused_send_counts_the_key_the_kernel_took(code: int, took_a_key: bool) -> None:
    stamps, kernel = TxStamps(), Kernel()
    before, before_key = send(stamps, kernel)
    stamps.refused(code)
    if took_a_key:
        kernel.build()  # taken, never stamped: the packet died before the driver
    after, after_key = send(stamps, kernel)
    stamps.stamped(after_key, after.not_before_ns + 400)
    stamps.stamped(before_key, before.not_before_ns + 400)
    assert before.kernel_ns == before.not_before_ns + 400
    assert after.kernel_ns == after.not_before_ns + 400 and not stamps.lost


def test_enobufs_retries_each_take_a_key() -> None:
    """A send waits out full queues: every refused try took a key, the one that went
    out the next (exchange.py's retry loop, seen from the counter)."""
    stamps, kernel = TxStamps(), Kernel()
    first, first_key = send(stamps, kernel)
    for _ in range(5):
        stamps.refused(errno.ENOBUFS)
        kernel.build()
    retried, retried_key = send(stamps, kernel)
    assert retried_key == first_key + 6
    stamps.stamped(retried_key, retried.not_before_ns + 2000)
    stamps.stamped(first_key, first.not_before_ns + 300)
    assert retried.kernel_ns == retried.not_before_ns + 2000
    assert first.kernel_ns == first.not_before_ns + 300


def test_a_stamp_for_a_refused_sends_key_means_the_count_is_off() -> None:
    """The kernel refused without building (an errno the rules do not know), so the
    key we counted for it goes to the next packet: kernel stamps stop, nothing is
    attributed to the wrong send."""
    stamps, kernel = TxStamps(), Kernel()
    stamps.refused(errno.ENOBUFS)  # (counted: key 0) but the kernel built nothing
    stamp, key = send(stamps, kernel)  # the kernel's key 0, ours 1
    stamps.stamped(key, stamp.not_before_ns + 100)
    assert stamps.lost and stamp.kernel_ns == 0
    assert stamps.sent(kernel.tick()) is None  # user-space stamps from now on


def test_a_stamp_earlier_than_its_send_means_the_count_is_off() -> None:
    """The kernel built a packet we did not count: each stamp would reach the send
    after its own, earlier than that send began."""
    stamps, kernel = TxStamps(), Kernel()
    kernel.build()  # a refusal we took for one without a packet
    first, _ = send(stamps, kernel)  # ours 0, the kernel's 1
    stamps.stamped(0, first.not_before_ns - 5000)  # the unseen packet's stamp
    assert stamps.lost and first.kernel_ns == 0


def test_stamps_of_sends_older_than_the_window_are_ignored() -> None:
    stamps, kernel = TxStamps(), Kernel()
    oldest, oldest_key = send(stamps, kernel)
    for _ in range(WINDOW):
        send(stamps, kernel)
    stamps.stamped(oldest_key, oldest.not_before_ns + 100)
    assert oldest.kernel_ns == 0 and not stamps.lost
    assert stamps.awaited == WINDOW


def test_keys_wrap_at_32_bits() -> None:
    stamps, kernel = TxStamps(), Kernel()
    stamps._next = 0xFFFFFFFF  # (as after 2**32 - 1 sends)
    last = stamps.sent(kernel.tick())
    wrapped = stamps.sent(kernel.tick())
    assert last is not None and wrapped is not None
    stamps.stamped(0, wrapped.not_before_ns + 10)
    stamps.stamped(0xFFFFFFFF, last.not_before_ns + 10)
    assert (last.kernel_ns, wrapped.kernel_ns) == (
        last.not_before_ns + 10,
        wrapped.not_before_ns + 10,
    )


# -- reading the error queue's messages ---------------------------------------------------


def ancillary(origin: int, info: int, key: int, family: int = socket.AF_INET) -> list:
    """An error-queue message's ancillary data as recvmsg returns it."""
    seconds, nanos = divmod(T0, 1_000_000_000)
    timestamping = struct.pack("=qqqqqq", seconds, nanos, 0, 0, 0, 0)
    error = struct.pack("=IBBBBII", errno.ENOMSG, origin, 0, 0, 0, info, key) + bytes(16)
    level, kind = (
        (socket.IPPROTO_IP, IP_RECVERR)
        if family == socket.AF_INET
        else (socket.IPPROTO_IPV6, IPV6_RECVERR)
    )
    return [(socket.SOL_SOCKET, 37, timestamping), (level, kind, error)]


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_a_software_transmit_stamp_is_read_with_its_key(family: int) -> None:
    assert tx_stamp_of(ancillary(4, 0, 41, family)) == (41, T0)


@pytest.mark.parametrize(
    ("origin", "info"),
    [(4, 1), (4, 2), (1, 0), (2, 0)],  # scheduler and ACK stamps; a local and an ICMP error
)
def test_other_error_queue_messages_are_not_transmit_stamps(origin: int, info: int) -> None:
    assert tx_stamp_of(ancillary(origin, info, 41)) is None
    assert tx_stamp_of(ancillary(4, 0, 41)[1:]) is None  # no stamp in it
